"""Checkpointing callbacks: save the net's state when a monitored value improves or when training
ends, and resume training from such a checkpoint. Every file is written atomically."""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

from bridge.callbacks.base import Callback
from bridge.errors import ConfigurationError
from bridge.files import atomic_write, remove_abandoned_temporaries
from bridge.history import read_history_file
from bridge.utils import noop

__all__ = ["Checkpoint", "TrainEndCheckpoint", "LoadInitState"]

# f_* targets that are not a torch object ``net.<name>_`` (f_params is the module's).
_NON_MODULE_TARGETS = ("f_history", "f_pickle")


def _check_target_names(owner: str, kwargs: dict) -> None:
    """Reject non ``f_*`` keywords and the ambiguous ``f_params`` + ``f_module`` pair."""
    for key in kwargs:
        if not key.startswith("f_"):
            raise TypeError(
                f"{owner} got an unexpected argument {key!r}; extra arguments name files and "
                f"must start with 'f_' (did you mean 'f_{key}'?)"
            )
    if kwargs.get("f_params") and kwargs.get("f_module"):
        raise TypeError(
            f"{owner} got both f_params and f_module; they name the same file, pass one"
        )


def _staging_path(path: str) -> str:
    """A unique sibling of ``path`` (same folder, so ``os.replace`` onto ``path`` is atomic)."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.partial")


def remove_abandoned_staging(path: str, started: float) -> list[str]:
    """Delete what an interrupted checkpoint left beside ``path``: staged copies (``.<name>.<id>.partial``)
    older than this save (``started``, a ``time.time()``), and the temporary files of their writes
    and of ``path`` itself whose writer is gone (see :func:`bridge.files.remove_abandoned_temporaries`).

    Returns
    -------
    list of str
        The files removed.
    """
    folder, name = os.path.split(os.path.abspath(path))
    staged = re.compile(re.escape(f".{name}.") + r"[0-9a-f]{12}\.partial")
    removed = remove_abandoned_temporaries(path)  # of a save_params straight to ``path``
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            inner = entry.name[len(".tmp-"):-len("-12345678")] if entry.name.startswith(".tmp-") else ""
            if inner and staged.fullmatch(inner):
                removed += remove_abandoned_temporaries(os.path.join(folder, inner))
            elif staged.fullmatch(entry.name) and entry.stat().st_mtime <= started:
                with contextlib.suppress(OSError):
                    os.remove(entry.path)
                    removed.append(entry.path)
    return removed


class _FileTargets(Callback):
    """What Checkpoint and TrainEndCheckpoint share: open-ended ``f_*`` file parameters."""

    def _get_param_names(self) -> list[str]:
        # The f_<name> extras are parameters too (get_params, set_params, clone).
        return sorted(key for key in vars(self) if not key.endswith("_"))

    def _f_kwargs(self) -> dict[str, Any]:
        return {key: value for key, value in vars(self).items() if key.startswith("f_")}


class Checkpoint(_FileTargets):
    """Save the net's state at the end of every epoch in which ``monitor`` says so.

    With the default ``monitor='valid_loss_best'`` a checkpoint is written whenever the
    validation loss reaches a new minimum. Each checkpoint is all-or-nothing: every file is
    first written in full (flushed and fsynced) next to its target, and only when all of
    them are written are they renamed over the previous checkpoint's files. A failure
    part-way (full disk, an exception in a writer) re-raises after removing the partial files,
    leaving the previous checkpoint intact.

    Parameters are stored with ``torch.save`` (or safetensors) and loaded back with
    ``torch.load(weights_only=True)``; ``f_pickle`` is the only option that pickles, and a
    pickle must only ever be loaded from a trusted source.

    Parameters
    ----------
    monitor : str, callable or None, default='valid_loss_best'
        A boolean history key (e.g. ``'valid_acc_best'`` from a scoring callback), a callable
        ``monitor(net) -> bool``, or ``None`` to save at every epoch.
    f_params, f_optimizer, f_criterion : str, file object or None
        Defaults ``'params.pt'``, ``'optimizer.pt'``, ``'criterion.pt'``: where to save the
        state dicts of ``net.module_``, ``net.optimizer_`` and ``net.criterion_`` (``None``
        skips one). Strings may use ``{net}``, ``{last_epoch}`` and ``{last_batch}``
        (e.g. ``'params_{last_epoch[epoch]}.pt'``).
    f_history : str, file object or None, default='history.json'
        Where to save the history (JSON; not formatted).
    f_pickle : str, file object or None, default=None
        Where to pickle the whole net (trusted use only).
    fn_prefix : str, default=''
        Prefix of every file name given as a string.
    dirname : str, default=''
        The folder of the files (created if needed); only with string targets.
    event_name : str or None, default='event_cp'
        History key recording whether the epoch was checkpointed; ``None`` records nothing
        (the default ``event_cp`` is also how loading finds the epoch of ``{last_epoch}``).
    sink : callable, default=noop
        Receives a message for each checkpoint (``print`` speaks only when the net is verbose).
    load_best : bool, default=False
        Load the last checkpoint back into the net when training ends (needs a ``monitor``).
    use_safetensors : bool, default=False
        Save tensors with safetensors; the optimizer state cannot be saved this way.
    **kwargs
        ``f_<name>`` targets for further modules or optimizers of the net (``net.<name>_``).

    Raises
    ------
    TypeError
        For an argument not starting with ``f_``, or both ``f_params`` and ``f_module``.
    ValueError
        From :meth:`initialize`/:meth:`save_model`: ``dirname`` with non-string targets,
        or ``use_safetensors`` with ``f_optimizer``.
    KeyError
        From ``on_epoch_end``, when the history lacks the ``monitor`` key.
    """

    def __init__(
        self,
        monitor: str | Callable[[Any], bool] | None = "valid_loss_best",
        f_params: Any = "params.pt",
        f_optimizer: Any = "optimizer.pt",
        f_criterion: Any = "criterion.pt",
        f_history: Any = "history.json",
        f_pickle: Any = None,
        fn_prefix: str = "",
        dirname: str = "",
        event_name: str | None = "event_cp",
        sink: Callable[[str], Any] = noop,
        load_best: bool = False,
        use_safetensors: bool = False,
        **kwargs: Any,
    ):
        _check_target_names(type(self).__name__, {"f_params": f_params, **kwargs})
        self.monitor = monitor
        self.f_params = f_params
        self.f_optimizer = f_optimizer
        self.f_criterion = f_criterion
        self.f_history = f_history
        self.f_pickle = f_pickle
        self.fn_prefix = fn_prefix
        self.dirname = dirname
        self.event_name = event_name
        self.sink = sink
        self.load_best = load_best
        self.use_safetensors = use_safetensors
        vars(self).update(kwargs)

    def _validate(self) -> None:
        owner = type(self).__name__
        _check_target_names(owner, self._f_kwargs())
        if self.use_safetensors and self.f_optimizer is not None:
            raise ConfigurationError(
                f"{owner}: the optimizer state cannot be saved with safetensors; pass "
                "f_optimizer=None or use_safetensors=False"
            )
        if self.dirname:
            for key, value in self._f_kwargs().items():
                if value is not None and not isinstance(value, (str, os.PathLike)):
                    raise ConfigurationError(
                        f"{owner}: dirname={self.dirname!r} needs file names, but {key} is a "
                        f"{type(value).__name__}; pass a string or drop dirname"
                    )

    def initialize(self) -> Checkpoint:
        """Validate the targets and create ``dirname``; returns ``self``."""
        self._validate()
        if self.dirname:
            os.makedirs(self.dirname, exist_ok=True)
        return self

    @property
    def f_history_(self) -> Any:
        """The full path of the history file (``dirname``/``fn_prefix`` applied), or ``None``."""
        if self.f_history is None:
            return None
        if not isinstance(self.f_history, (str, os.PathLike)):
            return self.f_history
        return os.path.join(self.dirname, self.fn_prefix + os.fspath(self.f_history))

    # ------------------------------------------------------------------------------ naming
    def _format_target(self, net: Any, target: Any, epoch_index: int, history: Any = None) -> Any:
        """Apply ``fn_prefix``, ``dirname`` and the ``{net}``/``{last_epoch}``/... fields."""
        if target is None or not isinstance(target, (str, os.PathLike)):
            return target
        template = os.fspath(target)
        history = net.history if history is None else history
        last_epoch = history[epoch_index] if history else {}
        batches = last_epoch.get("batches") or [{}]
        try:
            name = template.format(net=net, last_epoch=last_epoch, last_batch=batches[-1])
        except (KeyError, IndexError) as exc:
            raise ValueError(
                f"{type(self).__name__}: cannot fill in the file name {template!r} from the "
                f"history ({type(exc).__name__}: {exc}); fields such as {{last_epoch[epoch]}} "
                "need a history (save and load f_history with the checkpoint)"
            ) from exc
        return os.path.join(self.dirname, self.fn_prefix + name)

    def get_formatted_files(self, net: Any) -> dict[str, Any]:
        """The files of the latest checkpoint recorded in ``net.history``.

        The epoch that fills in ``{last_epoch}``-style fields is the last one flagged by
        ``event_name`` (else the last one) in the checkpoint's own saved history when that
        file exists, so the names resolve before the history is loaded into a new net; without
        it, ``net.history`` is used.

        Parameters
        ----------
        net : NeuralNet
            The net being loaded into (its history is the fallback; ``{net}`` fields use it).

        Returns
        -------
        dict
            ``{'f_params': path, 'f_optimizer': path, ...}`` with ``None`` for skipped targets.
        """
        history = net.history
        saved = self.f_history_
        if isinstance(saved, (str, os.PathLike)) and os.path.exists(saved):
            history = read_history_file(saved)  # a corrupt file: ModelFileError naming it
        epoch_index = -1
        if self.event_name is not None and history:
            flags = [row.get(self.event_name, False) for row in history]
            checkpointed = [index for index, flag in enumerate(flags) if flag]
            if checkpointed:
                epoch_index = checkpointed[-1]
        return {
            key: self._format_target(net, value, epoch_index, history)
            for key, value in self._f_kwargs().items()
        }

    # ------------------------------------------------------------------------------ saving
    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        """Save a checkpoint when ``monitor`` says so, and record ``event_name``."""
        row = net.history[-1]
        if isinstance(self.monitor, str) and f"{self.monitor}_best" in row:
            warnings.warn(
                f"Checkpoint monitor is {self.monitor!r} and the history also has "
                f"'{self.monitor}_best'; did you mean monitor='{self.monitor}_best'?",
                UserWarning,
                stacklevel=2,
            )
        if self.monitor is None:
            do_checkpoint = True
        elif callable(self.monitor):
            do_checkpoint = bool(self.monitor(net))
        else:
            if self.monitor not in row:
                raise KeyError(
                    f"Checkpoint monitors {self.monitor!r}, which is not in the history of "
                    f"epoch {len(net.history)} (keys: {sorted(row)}); use a validation split "
                    "for 'valid_*' keys, or a scoring callback that writes the key"
                )
            do_checkpoint = bool(row[self.monitor])
        if self.event_name is not None:
            net.history.record(self.event_name, do_checkpoint)
        if do_checkpoint:
            self.save_model(net)
            self._sink(f"A checkpoint was triggered in epoch {len(net.history)}.", net.verbose)

    def save_model(self, net: Any) -> None:
        """Write the checkpoint's files, all or none of them.

        Parameters
        ----------
        net : NeuralNet
            The net whose module, optimizer, criterion, history (and pickle) are saved.

        Raises
        ------
        Exception
            Whatever a writer raised; partial files are removed and the previous checkpoint's
            files are left as they were.
        """
        self._validate()
        started = time.time()
        targets = {
            key: self._format_target(net, value, -1) for key, value in self._f_kwargs().items()
        }
        targets["f_history"] = self.f_history_
        pickle_target = targets.pop("f_pickle", None)
        staged: dict[str, str] = {}  # final path -> staging path

        def stage(target: Any) -> Any:
            if not isinstance(target, (str, os.PathLike)):
                return target
            final = os.fspath(target)
            folder = os.path.dirname(final)
            if folder:
                os.makedirs(folder, exist_ok=True)
            staged[final] = _staging_path(final)
            return staged[final]

        try:
            save_kwargs = {key: stage(value) for key, value in targets.items() if value is not None}
            extra = {"use_safetensors": True} if self.use_safetensors else {}
            for key, value in save_kwargs.items():  # one call per target, as overriding code expects
                net.save_params(**{key: value}, **extra)
            if pickle_target is not None:
                atomic_write(stage(pickle_target), lambda handle: pickle.dump(net, handle))
            for final, staging in staged.items():
                if os.path.exists(staging):  # an overridden save_params may skip a target
                    os.replace(staging, final)
        except BaseException:
            for staging in staged.values():
                with contextlib.suppress(FileNotFoundError):
                    os.remove(staging)
            raise
        for final in staged:  # leftovers of a checkpoint that was killed mid-write
            remove_abandoned_staging(final, started)

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        """Load the best checkpoint back into the net when ``load_best`` is set."""
        if not self.load_best or self.monitor is None:
            return
        self._sink("Loading best checkpoint after training.", net.verbose)
        net.load_params(checkpoint=self, **self._load_kwargs())

    def _load_kwargs(self) -> dict[str, Any]:
        return {"use_safetensors": True} if self.use_safetensors else {}

    def _sink(self, text: str, verbose: Any) -> None:
        # ``print`` only speaks when the net is verbose; any other sink (a logger) always hears.
        if self.sink is not print or verbose:
            self.sink(text)


class TrainEndCheckpoint(_FileTargets):
    """Save the net's state once, when training ends (files prefixed ``'train_end_'``).

    Parameters
    ----------
    f_params, f_optimizer, f_criterion, f_history, f_pickle : str, file object or None
        As for :class:`Checkpoint` (same defaults).
    fn_prefix : str, default='train_end_'
        Prefix of every file name given as a string.
    dirname : str, default=''
        The folder of the files.
    use_safetensors : bool, default=False
        Save tensors with safetensors (then ``f_optimizer`` must be ``None``).
    sink : callable, default=noop
        Receives a message when the checkpoint is written.
    **kwargs
        ``f_<name>`` targets for further modules of the net.

    Raises
    ------
    TypeError
        For an argument not starting with ``f_``.
    """

    def __init__(
        self,
        f_params: Any = "params.pt",
        f_optimizer: Any = "optimizer.pt",
        f_criterion: Any = "criterion.pt",
        f_history: Any = "history.json",
        f_pickle: Any = None,
        fn_prefix: str = "train_end_",
        dirname: str = "",
        use_safetensors: bool = False,
        sink: Callable[[str], Any] = noop,
        **kwargs: Any,
    ):
        _check_target_names(type(self).__name__, {"f_params": f_params, **kwargs})
        self.f_params = f_params
        self.f_optimizer = f_optimizer
        self.f_criterion = f_criterion
        self.f_history = f_history
        self.f_pickle = f_pickle
        self.fn_prefix = fn_prefix
        self.dirname = dirname
        self.use_safetensors = use_safetensors
        self.sink = sink
        vars(self).update(kwargs)

    def as_checkpoint(self) -> Checkpoint:
        """The :class:`Checkpoint` (``monitor=None``, no event) that writes and reads the files."""
        targets = self._f_kwargs()
        return Checkpoint(
            monitor=None,
            fn_prefix=self.fn_prefix,
            dirname=self.dirname,
            event_name=None,
            sink=self.sink,
            use_safetensors=self.use_safetensors,
            **targets,
        )

    def initialize(self) -> TrainEndCheckpoint:
        """Build the underlying :class:`Checkpoint` as ``checkpoint_``; returns ``self``."""
        self.checkpoint_ = self.as_checkpoint().initialize()
        return self

    # Let ``net.load_params(checkpoint=train_end_cp)`` work like with a Checkpoint.
    @property
    def f_history_(self) -> Any:
        """The full path of the history file, or ``None``."""
        return self.as_checkpoint().f_history_

    def get_formatted_files(self, net: Any) -> dict[str, Any]:
        """The files written at the end of training (see :meth:`Checkpoint.get_formatted_files`)."""
        return self.as_checkpoint().get_formatted_files(net)

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        """Write the checkpoint."""
        checkpoint = getattr(self, "checkpoint_", None) or self.initialize().checkpoint_
        checkpoint.save_model(net)
        checkpoint._sink("Final checkpoint triggered", net.verbose)


class LoadInitState(Callback):
    """Load a checkpoint's module, optimizer, criterion and history when training begins.

    On the first run of a script nothing has been saved yet and nothing is loaded; on the
    next run training continues from the checkpoint, at the epoch after the saved history's
    last one. Loading happens once per initialisation of the net.

    Parameters
    ----------
    checkpoint : Checkpoint or TrainEndCheckpoint
        Where the files are (its ``dirname``, ``fn_prefix`` and ``f_*`` names).
    use_safetensors : bool, default=False
        Whether the checkpoint was written with safetensors.

    Raises
    ------
    FileNotFoundError
        From ``on_train_begin``, when the checkpoint is incomplete: its history exists (or
        some of its files do) but another of its files is missing.
    """

    def __init__(self, checkpoint: Checkpoint | TrainEndCheckpoint, use_safetensors: bool = False):
        self.checkpoint = checkpoint
        self.use_safetensors = use_safetensors

    def initialize(self) -> LoadInitState:
        """Arm the callback to load at the next ``on_train_begin``; returns ``self``."""
        self.did_load_ = False
        return self

    def _resolved_checkpoint(self) -> Checkpoint:
        if isinstance(self.checkpoint, TrainEndCheckpoint):
            return self.checkpoint.as_checkpoint()
        return self.checkpoint

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        """Load the checkpoint, if it has been written."""
        if getattr(self, "did_load_", False):
            return
        self.did_load_ = True
        checkpoint = self._resolved_checkpoint()
        history_file = checkpoint.f_history_
        if isinstance(history_file, (str, os.PathLike)):
            if not os.path.exists(history_file):
                return  # nothing saved yet: a first run
        else:
            files = [
                path
                for path in checkpoint.get_formatted_files(net).values()
                if isinstance(path, (str, os.PathLike))
            ]
            if files and not any(os.path.exists(path) for path in files):
                return
        load_kwargs = {"use_safetensors": True} if self.use_safetensors else {}
        net.load_params(checkpoint=checkpoint, **load_kwargs)
