"""The training history of a net: one dict per epoch, each with a list of per-batch dicts.

:class:`DistributedHistory` is the same history shared by the processes of a data-parallel
run through a ``torch.distributed`` store: every process reads the batches of all of them.

Indexing follows skorch: ``history[-1, 'valid_loss']``, ``history[:, 'train_loss']``,
``history[:, 'batches', :, 'train_loss']``, ``history[:, ('train_loss', 'valid_loss')]``.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import torch

from bridge.errors import ModelFileError
from bridge.files import atomic_write, open_file_like

__all__ = ["DistributedHistory", "History", "read_history_file"]


def _select(obj: Any, keys: tuple, level: int) -> Any:
    """Follow ``keys`` into ``obj``; even levels index lists, odd levels index dicts."""
    if not keys:
        return obj
    key, rest = keys[0], keys[1:]
    if level % 2 == 1:  # a dict of one epoch or one batch
        if isinstance(key, (list, tuple)):
            values = [obj[k] for k in key]  # KeyError when one is missing
            return type(key)(_select_each(values, rest, level) if rest else values)
        return _select(obj[key], rest, level + 1)
    if isinstance(key, slice):
        items = obj[key]
        results = []
        misses = 0
        for item in items:
            try:
                results.append(_select(item, rest, level + 1))
            except KeyError:
                misses += 1
        if rest and not results and (items or rest[0] != "batches"):
            raise KeyError(f"key {rest[0]!r} was not found in any of the selected entries")
        return results
    if isinstance(key, int):
        return _select(obj[key], rest, level + 1)
    raise TypeError(f"history index {key!r} must be an int or a slice at this position")


def _select_each(values: list, rest: tuple, level: int) -> list:
    return [_select(v, rest, level + 1) for v in values]


class History(list):
    """A list of epoch dicts with skorch-style multi-level indexing.

    Each epoch is a dict whose ``'batches'`` entry is a list of per-batch dicts.
    """

    def new_epoch(self) -> None:
        """Start a new epoch row."""
        self.append({"batches": []})

    def new_batch(self) -> None:
        """Start a new batch row in the current epoch."""
        self._current_epoch()["batches"].append({})

    def _current_epoch(self) -> dict:
        if not self:
            raise ValueError("History is empty: call new_epoch() before recording")
        return list.__getitem__(self, -1)

    def current_batches(self) -> list:
        """The batch rows this process recorded in the current epoch (the rows themselves).

        Raises
        ------
        ValueError
            When there is no epoch yet.
        """
        return self._current_epoch()["batches"]

    def fill_batch_rows(self, first_row: int, columns: dict[str, list]) -> None:
        """Write ``columns`` into the current epoch's batch rows ``first_row``, ``first_row + 1``, ...

        The training loop records each batch's loss this way once per epoch, after reading all
        losses back from the device in one copy.

        Parameters
        ----------
        first_row : int
            The index of the first row to fill.
        columns : dict of str to list
            One list of values per key, all of the same length.

        Raises
        ------
        RuntimeError
            When there are fewer rows than values (a ``new_batch`` call was skipped).
        """
        batches = self.current_batches()
        count = max((len(values) for values in columns.values()), default=0)
        rows = batches[first_row:first_row + count]
        if len(rows) != count:
            raise RuntimeError(f"expected one history row per batch ({count}), found {len(rows)}; "
                               "the net's on_batch_begin must call history.new_batch()")
        for key, values in columns.items():
            for row, value in zip(rows, values):
                row[key] = value

    def record(self, attr: str, value: Any) -> None:
        """Set ``attr`` of the current epoch to ``value``.

        Parameters
        ----------
        attr : str
            The key, e.g. ``'valid_loss'``.
        value : object
            The value (JSON-serialisable if the history is to be saved).

        Raises
        ------
        ValueError
            When there is no epoch yet.
        """
        self._current_epoch()[attr] = value

    def record_batch(self, attr: str, value: Any) -> None:
        """Set ``attr`` of the current batch of the current epoch to ``value``.

        Raises
        ------
        ValueError
            When there is no epoch or no batch yet.
        """
        batches = self._current_epoch()["batches"]
        if not batches:
            raise ValueError("the current epoch has no batch: call new_batch() before record_batch()")
        batches[-1][attr] = value

    def to_list(self) -> list:
        """The history as a plain list of dicts."""
        return list(self)

    def to_file(self, f: str | os.PathLike | IO) -> None:
        """Save the history as JSON (atomically when ``f`` is a path)."""
        text = json.dumps(self.to_list())

        def write(handle: IO) -> None:
            handle.write(text if isinstance(handle, io.TextIOBase) or "b" not in getattr(handle, "mode", "b")
                         else text.encode("utf-8"))

        atomic_write(f, write)

    @classmethod
    def from_file(cls, f: str | os.PathLike | IO) -> History:
        """Load a history saved with :meth:`to_file`.

        Parameters
        ----------
        f : path or file object
            The JSON file.

        Returns
        -------
        History

        Raises
        ------
        ModelFileError
            When the file is not a JSON list of one object per epoch (empty, cut short,
            corrupted); the message names the file. A ``ValueError`` and an ``OSError``.
        """
        return cls(read_history_file(f))

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, tuple):
            if index and isinstance(index[0], int) and not -len(self) <= index[0] < len(self):
                raise IndexError(f"history has {len(self)} epochs; epoch index {index[0]} is out of range")
            if len(index) > 4:
                raise KeyError(f"history index has {len(index)} levels; at most 4 (epoch, key, batch, key)")
            return _select(list(self), index, 0)
        result = super().__getitem__(index)
        return History(result) if isinstance(index, slice) else result


def read_history_file(f: str | os.PathLike | IO) -> list:
    """The epochs in a history file written by :meth:`History.to_file`, checked for shape.

    Parameters
    ----------
    f : path or file object
        The JSON file.

    Returns
    -------
    list of dict
        One dict per epoch (each ``'batches'`` a list of dicts).

    Raises
    ------
    ModelFileError
        Naming the file and what is wrong with it (a missing file: ``FileNotFoundError``).
    """
    name = repr(os.fspath(f)) if isinstance(f, (str, os.PathLike)) else repr(f)
    text: Any = ""
    try:
        with open_file_like(f, "r") as handle:
            text = handle.read()
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        epochs = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        detail = "it is empty" if not text else f"{type(error).__name__}: {error}"
        raise ModelFileError(f"the history file {name} is not valid JSON ({detail}); it is cut short or "
                             "corrupted, or was not written by History.to_file / save_params") from error
    problem = _history_shape_problem(epochs)
    if problem:
        raise ModelFileError(f"the history file {name} is not a history: {problem}")
    return epochs


def _history_shape_problem(epochs: Any) -> str:
    """What keeps ``epochs`` from being a history ('' when nothing does)."""
    if not isinstance(epochs, list):
        return f"expected a JSON list of one object per epoch, got {type(epochs).__name__}"
    for index, epoch in enumerate(epochs):
        if not isinstance(epoch, dict):
            return f"epoch {index} is a {type(epoch).__name__}, not an object"
        batches = epoch.get("batches", [])
        if not isinstance(batches, list) or not all(isinstance(batch, dict) for batch in batches):
            return f"the 'batches' of epoch {index} are not a list of objects"
    return ""


_PREFIX = "bridge-history"


def _to_json(value: Any, key: str) -> Any:
    """``value`` as JSON-compatible Python data (numpy and torch scalars included)."""
    if isinstance(value, np.generic | torch.Tensor) and np.ndim(value) == 0:
        return value.item()
    if isinstance(value, dict):
        return {k: _to_json(v, key) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v, key) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"DistributedHistory shares records as JSON; the value of {key!r} ({type(value).__name__}) "
                    "is not JSON-serialisable; record a number, string, list or dict instead")


class DistributedHistory(History):
    """A :class:`History` shared by the processes of a data-parallel run.

    Each process records its own epochs and batches as usual and publishes them to a
    ``torch.distributed`` key-value store (``TCPStore``, ``FileStore``, ``HashStore``, ...).
    Reading (indexing, iteration, ``to_list``) returns a merged view: the epochs of this
    process, each with the batches of every process (rank 0's first), and epoch-level values
    of this process completed by those only other processes recorded. So scores computed
    from batch rows, such as ``train_loss``, cover all the data, and every process takes the
    same decisions (early stopping, checkpoints).

    Publishing costs one store write per record; reading needs no collective call, so any
    process may read at any time and sees what the others have published so far. Epochs a
    process has moved past are final and cached.

    Parameters
    ----------
    *args
        An optional initial list of epochs (this process's own).
    store : torch.distributed.Store or None
        The store all processes share; None keeps the history local to this process
        (allowed only with ``world_size`` 1).
    rank : int or None
        This process's rank; default ``torch.distributed.get_rank()`` when a process group
        is initialized, else 0.
    world_size : int or None
        The number of processes; default ``torch.distributed.get_world_size()`` when a
        process group is initialized, else 1.

    Raises
    ------
    ValueError
        For a rank outside ``[0, world_size)``, or several processes without a store.
    """

    def __init__(self, *args: Any, store: Any = None, rank: int | None = None, world_size: int | None = None):
        super().__init__(*args)
        initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
        if rank is None:
            rank = torch.distributed.get_rank() if initialized else 0
        if world_size is None:
            world_size = torch.distributed.get_world_size() if initialized else 1
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank!r} is not valid for world_size={world_size!r}; expected 0 <= rank < world_size")
        if store is None and world_size > 1:
            raise ValueError(f"DistributedHistory with world_size={world_size} needs a store shared by the "
                             "processes (e.g. torch.distributed.TCPStore); got store=None")
        self.store = store
        self.rank = rank
        self.world_size = world_size
        self._final: dict[tuple[int, int], dict] = {}  # (rank, epoch) -> an epoch another rank moved past
        self._latest: dict[tuple[int, int], dict] = {}  # (rank, epoch) -> the last read of it
        for index in range(len(self)):
            self._publish_epoch(index)
        self._publish_epoch_count()
        self._flush()

    # ---------------------------------------------------------------- publishing
    def _key(self, rank: int, *parts: Any) -> str:
        return "/".join([_PREFIX, str(rank), *map(str, parts)])

    def _set(self, key: str, value: Any) -> None:
        if self.store is not None:
            self.store.set(key, json.dumps(value))

    def _flush(self) -> None:
        # A store client's ``set`` does not wait for the server; a request that is answered does,
        # and the server handles one connection's requests in order. So after this call every
        # earlier write is visible to the other processes.
        if self.store is not None:
            self.store.check([self._key(self.rank, "epochs")])

    def _publish_epoch_count(self) -> None:
        self._set(self._key(self.rank, "epochs"), len(self))

    def _publish_epoch(self, index: int) -> None:
        epoch = list.__getitem__(self, index)
        if isinstance(epoch, dict):
            own = {k: _to_json(v, k) for k, v in epoch.items() if k != "batches"}
            self._set(self._key(self.rank, index), own)
            batches = epoch.get("batches", [])
            for position in range(len(batches)):
                self._publish_batch(index, position)
            self._set(self._key(self.rank, index, "batches"), len(batches))
        else:
            self._set(self._key(self.rank, index), _to_json(epoch, f"epoch {index}"))

    def _publish_batch(self, epoch: int, position: int) -> None:
        row = list.__getitem__(self, epoch)["batches"][position]
        self._set(self._key(self.rank, epoch, position), {k: _to_json(v, k) for k, v in row.items()})

    def new_epoch(self) -> None:
        """Start a new epoch row and publish it."""
        super().new_epoch()
        self._publish_epoch(len(self) - 1)
        self._publish_epoch_count()
        self._flush()

    def new_batch(self) -> None:
        """Start a new batch row in the current epoch and publish it."""
        super().new_batch()
        epoch = len(self) - 1
        count = len(self.current_batches())
        self._publish_batch(epoch, count - 1)
        self._set(self._key(self.rank, epoch, "batches"), count)
        self._flush()

    def record(self, attr: str, value: Any) -> None:
        """Set ``attr`` of the current epoch and publish it (the value must be JSON-serialisable)."""
        _to_json(value, attr)
        super().record(attr, value)
        self._publish_epoch_values(len(self) - 1)
        self._flush()

    def _publish_epoch_values(self, index: int) -> None:
        epoch = list.__getitem__(self, index)
        self._set(self._key(self.rank, index), {k: _to_json(v, k) for k, v in epoch.items() if k != "batches"})

    def record_batch(self, attr: str, value: Any) -> None:
        """Set ``attr`` of the current batch and publish it (the value must be JSON-serialisable)."""
        _to_json(value, attr)
        super().record_batch(attr, value)
        self._publish_batch(len(self) - 1, len(self.current_batches()) - 1)
        self._flush()

    def fill_batch_rows(self, first_row: int, columns: dict[str, list]) -> None:
        """Write ``columns`` into the current epoch's batch rows and publish those rows."""
        super().fill_batch_rows(first_row, columns)
        count = max((len(values) for values in columns.values()), default=0)
        for position in range(first_row, first_row + count):
            self._publish_batch(len(self) - 1, position)
        self._flush()

    # ---------------------------------------------------------------- reading
    def _get(self, key: str) -> Any:
        return json.loads(self.store.get(key)) if self.store.check([key]) else None

    def _other_epoch(self, rank: int, index: int, epochs_done: int) -> dict | None:
        cached = self._final.get((rank, index))
        if cached is not None:
            return cached
        values = self._get(self._key(rank, index))
        if not isinstance(values, dict):
            return None
        count = self._get(self._key(rank, index, "batches")) or 0
        batches = [self._get(self._key(rank, index, position)) or {} for position in range(count)]
        epoch = {**values, "batches": batches}
        if index < epochs_done - 1:
            self._final[(rank, index)] = epoch
        self._latest[(rank, index)] = epoch
        return epoch

    def _merged(self) -> list:
        own = list(list.__iter__(self))
        if self.store is None or self.world_size == 1:
            return own
        try:
            done = {rank: self._get(self._key(rank, "epochs")) or 0
                    for rank in range(self.world_size) if rank != self.rank}
            return self._merge(own, lambda rank, index: (self._other_epoch(rank, index, done[rank])
                                                         if index < done[rank] else None))
        except RuntimeError:  # the store is gone (its host process ended): use the last records read
            return self._merge(own, lambda rank, index: self._latest.get((rank, index)))

    def _merge(self, own: list, other_epoch: Any) -> list:
        merged = []
        for index, epoch in enumerate(own):
            if not isinstance(epoch, dict):
                merged.append(epoch)
                continue
            values = {k: v for k, v in epoch.items() if k != "batches"}
            batches: list = []
            for rank in range(self.world_size):
                if rank == self.rank:
                    batches += epoch.get("batches", [])
                    continue
                other = other_epoch(rank, index)
                if other is not None:
                    batches += other["batches"]
                    for key, value in other.items():
                        values.setdefault(key, value)
            merged.append({**values, "batches": batches})
        return merged

    def __getitem__(self, index: Any) -> Any:
        merged = History(self._merged())
        return merged[index]

    def __iter__(self) -> Iterator:
        return iter(self._merged())

    def __eq__(self, other: object) -> bool:
        return self._merged() == (list(other) if isinstance(other, list) else other)

    __hash__ = None  # type: ignore[assignment] - a mutable list

    def __repr__(self) -> str:
        return f"DistributedHistory(rank={self.rank}, world_size={self.world_size}, epochs={len(self)})"

    def to_list(self) -> list:
        """The merged history (all processes' batches) as a plain list of dicts."""
        return self._merged()

    def __reduce__(self) -> tuple:
        # A store holds a connection and cannot be pickled: the copy keeps the merged records.
        return (_rebuild_distributed, (self._merged(), self.rank, self.world_size))


def _rebuild_distributed(records: list, rank: int, world_size: int) -> DistributedHistory:
    history = DistributedHistory(records)
    history.rank, history.world_size = rank, world_size
    return history
