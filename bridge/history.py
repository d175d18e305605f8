"""The training history of a net: one dict per epoch, each with a list of per-batch dicts.

Indexing follows skorch: ``history[-1, 'valid_loss']``, ``history[:, 'train_loss']``,
``history[:, 'batches', :, 'train_loss']``, ``history[:, ('train_loss', 'valid_loss')]``.
"""

from __future__ import annotations

import io
import json
import os
from typing import IO, Any

from bridge.utils import atomic_write, open_file_like

__all__ = ["History"]


def _select(obj: Any, keys: tuple, level: int) -> Any:
    """Follow ``keys`` into ``obj``; even levels index lists, odd levels index dicts."""
    if not keys:
        return obj
    key, rest = keys[0], keys[1:]
    if level % 2 == 1:  # a dict of one epoch or one batch
        if isinstance(key, (list, tuple)):
            values = [obj[k] for k in key]  # KeyError when one is missing
            return _select_each(values, rest, level) if rest else values
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
        if items and misses == len(items) and rest:
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
        return self[-1]

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
        """
        with open_file_like(f, "r") as handle:
            return cls(json.load(handle))

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, tuple):
            if len(index) > 4:
                raise KeyError(f"history index has {len(index)} levels; at most 4 (epoch, key, batch, key)")
            return _select(list(self), index, 0)
        result = super().__getitem__(index)
        return History(result) if isinstance(index, slice) else result
