"""Callbacks that send the history to experiment trackers: TensorBoard, MLflow, Neptune, Sacred and Weights & Biases.

Each takes the tracker's own writer or run object (skorch's names and arguments) and imports the
tracker's package only when it needs it, raising an ImportError that names the package to install.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from numbers import Real
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from bridge.callbacks.base import Callback
from bridge.dataset import get_len
from bridge.errors import ConfigurationError

__all__ = [
    "MlflowLogger",
    "NeptuneLogger",
    "SacredLogger",
    "TensorBoard",
    "WandbLogger",
    "loggable_keys",
    "rename_tensorboard_key",
]


def _import_service(module: str, package: str, callback: str) -> ModuleType:
    """Import ``module``; when it is missing, say which pip package ``callback`` needs."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{callback} needs the '{package}' package, which is not installed "
                          f"(importing {module!r} failed): pip install {package}") from exc


def loggable_keys(row: dict, keys_ignored: Iterable[str] = ()) -> Iterator[str]:
    """The keys of a history row that loggers send: values, not bookkeeping.

    Left out: ``epoch``, ``batches``, ``*_best`` flags, ``*_batch_count`` counters, ``event_*``
    markers and every key in ``keys_ignored``.

    Parameters
    ----------
    row : dict
        One epoch row (or one batch row) of a history.
    keys_ignored : iterable of str
        Further keys to leave out.

    Yields
    ------
    str
        The keys to log, in the row's order.
    """
    ignored = set(keys_ignored)
    for key in row:
        if key in ("epoch", "batches") or key in ignored:
            continue
        if key.endswith(("_best", "_batch_count")) or key.startswith("event_"):
            continue
        yield key


def _as_scalar(value: Any) -> float | None:
    """``value`` as a float when it is one real number (Python, numpy or a 1-element tensor), else None."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().reshape(())) if value.numel() == 1 else None
    if isinstance(value, np.ndarray):
        return float(value.reshape(())) if value.size == 1 and np.issubdtype(value.dtype, np.number) else None
    if isinstance(value, (Real, np.number)):
        return float(value)
    return None


def _batch_values(net: Any, batch: Any, training: bool | None, step: dict) -> dict:
    """The current batch's row, with its loss and size (the net fills those in only at the epoch's end)."""
    batches = net.history[-1]["batches"] if len(net.history) else []
    row = dict(batches[-1]) if batches else {}
    prefix = "train" if training else "valid"
    loss = step.get("loss")
    if loss is not None and f"{prefix}_loss" not in row:
        row[f"{prefix}_loss"] = _as_scalar(loss)  # one read from the device per batch, only when batches are logged
    if batch is not None and f"{prefix}_batch_size" not in row:
        row[f"{prefix}_batch_size"] = get_len(batch[0] if isinstance(batch, (tuple, list)) else batch)
    return row


class _HistoryLogger(Callback):
    """Shared by the loggers: ``keys_ignored`` (a key or a list of keys) becomes the set ``keys_ignored_``."""

    keys_ignored: Any = None

    def _init_keys_ignored(self) -> None:
        ignored = self.keys_ignored
        self.keys_ignored_ = {ignored} if isinstance(ignored, str) else set(ignored or ())
        self.keys_ignored_.add("batches")

    def initialize(self) -> _HistoryLogger:
        self._init_keys_ignored()
        return self

    def _keys(self, row: dict) -> Iterator[str]:
        return loggable_keys(row, getattr(self, "keys_ignored_", {"batches"}))


class _SuffixedLogger(_HistoryLogger):
    """Loggers whose batch and epoch values share one namespace: suffixes keep them apart when both are logged."""

    log_on_batch_end: bool = False
    log_on_epoch_end: bool = True
    batch_suffix: str | None = None
    epoch_suffix: str | None = None

    def _init_suffixes(self) -> None:
        both = bool(self.log_on_batch_end and self.log_on_epoch_end)
        self.batch_suffix_ = self.batch_suffix if self.batch_suffix is not None else ("_batch" if both else "")
        self.epoch_suffix_ = self.epoch_suffix if self.epoch_suffix is not None else ("_epoch" if both else "")

    def initialize(self) -> _SuffixedLogger:
        self._init_keys_ignored()
        self._init_suffixes()
        return self


def rename_tensorboard_key(key: str) -> str:
    """TensorBoard tag of a history key: ``train_*`` and ``valid_*`` go to the ``Loss/`` section."""
    return f"Loss/{key}" if key.startswith(("train", "valid")) else key


class TensorBoard(_HistoryLogger):
    """Write each epoch's history values as TensorBoard scalars (step = epoch number).

    Parameters
    ----------
    writer : torch.utils.tensorboard.SummaryWriter, str or path
        The writer to use, or a log directory for a new ``SummaryWriter`` (needs the
        ``tensorboard`` package). A pickled copy of the callback (of a fitted net) holds the
        writer's log directory instead, and opens a new writer there when it logs again.
    close_after_train : bool
        Close the writer when training ends (it reopens itself if written to again).
    keys_ignored : str, list of str or None
        History keys not to write (besides ``epoch``, ``batches``, ``*_best``, ``event_*``).
    key_mapper : callable
        Maps a history key to its tag; the default puts ``train_*``/``valid_*`` under ``Loss/``.
    """

    def __init__(self, writer: Any, close_after_train: bool = True, keys_ignored: Any = None,
                 key_mapper: Callable[[str], str] = rename_tensorboard_key):
        self.writer = writer
        self.close_after_train = close_after_train
        self.keys_ignored = keys_ignored
        self.key_mapper = key_mapper

    def _writer(self) -> Any:
        writer = self.__dict__.get("writer_")
        if writer is None:
            writer = self.writer
            if isinstance(writer, (str, os.PathLike)):
                tensorboard = _import_service("torch.utils.tensorboard", "tensorboard", "TensorBoard")
                writer = tensorboard.SummaryWriter(log_dir=os.fspath(writer))
            self.writer_ = writer
        return writer

    def initialize(self) -> TensorBoard:
        self._init_keys_ignored()
        self.writer_ = None
        self._writer()
        return self

    def add_scalar_maybe(self, history: Any, key: str, tag: str, global_step: int | None = None) -> None:
        """Write ``history[-1][key]`` under ``tag`` when it is present and one real number.

        Parameters
        ----------
        history : History or list of dict
            The epoch rows; the last one is written.
        key : str
            The history key.
        tag : str
            The TensorBoard tag.
        global_step : int or None
            The step; None means the number of rows (the epoch number).
        """
        if not len(history):
            return
        value = _as_scalar(history[-1].get(key))
        if value is None:
            return  # absent, or not a scalar (a list, a string): nothing TensorBoard can plot
        step = len(history) if global_step is None else global_step
        self._writer().add_scalar(tag=tag, scalar_value=value, global_step=step)

    def on_epoch_end(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        epoch = net.history[-1].get("epoch", len(net.history))
        for key in self._keys(net.history[-1]):
            self.add_scalar_maybe(net.history, key=key, tag=self.key_mapper(key), global_step=epoch)

    def on_train_end(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        if self.close_after_train:
            self._writer().close()

    def __getstate__(self) -> dict:
        """A writer holds a thread and cannot be pickled: a copy keeps its log directory and reopens it."""
        state = dict(self.__dict__)
        state["writer_"] = None
        writer = state["writer"]
        if not isinstance(writer, (str, os.PathLike)) and callable(getattr(writer, "get_logdir", None)):
            state["writer"] = writer.get_logdir()
        return state


class MlflowLogger(_SuffixedLogger):
    """Log history values to an MLflow run as metrics, and the trained net as artifacts.

    Parameters
    ----------
    run : mlflow.entities.Run or None
        The run to log to; None takes ``mlflow.active_run()`` when initialized.
    client : mlflow.tracking.MlflowClient or None
        The client that logs; None creates ``MlflowClient()`` (the configured tracking URI).
    create_artifact : bool
        At the end of training, log ``params.pth``, ``optimizer.pth``, ``criterion.pth`` and
        ``history.json`` (written to a temporary directory first).
    terminate_after_train : bool
        Mark the run finished when training ends.
    log_on_batch_end, log_on_epoch_end : bool
        Log each batch's values (step = batch number over the whole fit) and/or each epoch's
        (step = epoch number).
    batch_suffix, epoch_suffix : str or None
        Appended to metric names; None means ``'_batch'``/``'_epoch'`` when both levels are
        logged and nothing otherwise.
    keys_ignored : str, list of str or None
        History keys not to log.

    Notes
    -----
    Values that are not one real number (a list, a string) are not logged: MLflow metrics are floats.
    """

    def __init__(self, run: Any = None, client: Any = None, create_artifact: bool = True,
                 terminate_after_train: bool = True, log_on_batch_end: bool = False, log_on_epoch_end: bool = True,
                 batch_suffix: str | None = None, epoch_suffix: str | None = None, keys_ignored: Any = None):
        self.run = run
        self.client = client
        self.create_artifact = create_artifact
        self.terminate_after_train = terminate_after_train
        self.log_on_batch_end = log_on_batch_end
        self.log_on_epoch_end = log_on_epoch_end
        self.batch_suffix = batch_suffix
        self.epoch_suffix = epoch_suffix
        self.keys_ignored = keys_ignored

    def initialize(self) -> MlflowLogger:
        super().initialize()
        self.run_ = self.run
        self.client_ = self.client
        if self.run_ is None:
            self.run_ = _import_service("mlflow", "mlflow", "MlflowLogger").active_run()
            if self.run_ is None:
                raise ConfigurationError("MlflowLogger(run=None) needs an active MLflow run; start one with "
                                         "mlflow.start_run() before fitting, or pass run=client.create_run(...)")
        if self.client_ is None:  # looked up on the module at each call, so a configured client class is used
            self.client_ = _import_service("mlflow.tracking", "mlflow", "MlflowLogger").MlflowClient()
        self.batch_step_ = 0
        return self

    def _log(self, row: dict, suffix: str, step: int) -> None:
        run_id = self.run_.info.run_id
        for key in self._keys(row):
            value = _as_scalar(row[key])
            if value is not None:
                self.client_.log_metric(run_id, key + suffix, value, step=step)

    def on_batch_end(self, net: Any, batch: Any = None, training: bool | None = None, **kwargs: Any) -> None:
        if self.log_on_batch_end:
            self.batch_step_ += 1
            self._log(_batch_values(net, batch, training, kwargs), self.batch_suffix_, self.batch_step_)

    def on_epoch_end(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        if self.log_on_epoch_end:
            row = net.history[-1]
            self._log(row, self.epoch_suffix_, row.get("epoch", len(net.history)))

    def on_train_end(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        run_id = self.run_.info.run_id
        if self.create_artifact:
            with tempfile.TemporaryDirectory() as directory:
                files = {name: Path(directory) / name
                         for name in ("params.pth", "optimizer.pth", "criterion.pth", "history.json")}
                net.save_params(f_params=files["params.pth"], f_optimizer=files["optimizer.pth"],
                                f_criterion=files["criterion.pth"], f_history=files["history.json"])
                for path in files.values():
                    self.client_.log_artifact(run_id, path)
        if self.terminate_after_train:
            self.client_.set_terminated(run_id)


class NeptuneLogger(_HistoryLogger):
    """Log the net's configuration and history values to a Neptune run (or a namespace of one).

    Under ``base_namespace``: ``model/`` (module type and printed summary), ``config/`` (net,
    optimizer, criterion, lr, max_epochs, batch_size, device), then ``train/epoch/<name>`` and
    ``validation/epoch/<name>`` series for ``train_*``/``valid_*`` keys (``batch`` instead of
    ``epoch`` with ``log_on_batch_end``), ``epoch_duration`` for ``dur`` and ``epoch/<key>``
    for other keys. Learning-rate events (``event_lr``) go to ``train/epoch/event_lr``.

    Parameters
    ----------
    run : neptune.Run or a handler of one (``run['namespace']``)
        Where to log.
    log_on_batch_end : bool
        Also log each batch's loss and size.
    close_after_train : bool
        Stop the run (the root run for a handler) when training ends.
    keys_ignored : str, list of str or None
        History keys not to log.
    base_namespace : str
        The namespace everything goes under.
    """

    def __init__(self, run: Any, *, log_on_batch_end: bool = False, close_after_train: bool = True,
                 keys_ignored: Any = None, base_namespace: str = "training"):
        self.run = run
        self.log_on_batch_end = log_on_batch_end
        self.close_after_train = close_after_train
        self.keys_ignored = keys_ignored
        self.base_namespace = base_namespace

    def initialize(self) -> NeptuneLogger:
        super().initialize()
        from bridge import __version__

        self._file_type = _import_service("neptune.types", "neptune", "NeptuneLogger").File
        self._handler_type = _import_service("neptune.handler", "neptune", "NeptuneLogger").Handler
        self._root()["source_code/integrations/bridge"] = __version__
        return self

    def _root(self) -> Any:
        """The run itself, or the run a namespace handler belongs to (handlers cannot be stopped)."""
        handler = self.__dict__.get("_handler_type")
        return self.run.get_root_object() if handler is not None and isinstance(self.run, handler) else self.run

    def _namespace(self) -> Any:
        return self.run[self.base_namespace]

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        device = net.device if isinstance(net.device, (str, Real)) else str(net.device)
        fields = {
            "model/model_type": type(net.module_).__name__,
            "model/summary": self._file_type.from_content(str(net.module_), extension="txt"),
            "config/net": type(net).__name__,
            "config/optimizer": type(net.optimizer_).__name__,
            "config/criterion": type(net.criterion_).__name__,
            "config/lr": net.lr,
            "config/max_epochs": net.max_epochs,
            "config/batch_size": net.batch_size,
            "config/device": device,
        }
        for path, value in fields.items():
            self._namespace()[path] = value

    def _append(self, key: str, value: Any, granularity: str) -> None:
        prefix, _, name = key.partition("_")
        if key == "dur":
            self._namespace()["epoch_duration"].append(value)
        elif prefix in ("train", "valid") and name:
            kind = "validation" if prefix == "valid" else "train"
            self._namespace()[kind][granularity][name].append(value)
        else:
            self._namespace()[granularity][key].append(value)

    def on_batch_end(self, net: Any, batch: Any = None, training: bool | None = None, **kwargs: Any) -> None:
        if self.log_on_batch_end:
            row = _batch_values(net, batch, training, kwargs)
            for key in self._keys(row):
                self._append(key, row[key], "batch")

    def on_epoch_end(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        row = net.history[-1]
        for key in self._keys(row):
            self._append(key, row[key], "epoch")

    def on_train_end(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        events = [row["event_lr"] for row in net.history if "event_lr" in row]
        if events:
            series = self._namespace()["train/epoch/event_lr"]
            for value in events:
                series.append(value)
        if self.close_after_train:
            self._root().stop()


class SacredLogger(_SuffixedLogger):
    """Log history values as Sacred metrics with ``experiment.log_scalar`` (Sacred numbers the steps).

    Parameters
    ----------
    experiment : sacred.run.Run or sacred.Experiment
        The object whose ``log_scalar`` is called: the ``_run`` of a Sacred main function, or
        the experiment while it runs.
    log_on_batch_end, log_on_epoch_end : bool
        Log each batch's values and/or each epoch's.
    batch_suffix, epoch_suffix : str or None
        Appended to metric names; None means ``'_batch'``/``'_epoch'`` when both levels are
        logged and nothing otherwise.
    keys_ignored : str, list of str or None
        History keys not to log.
    """

    def __init__(self, experiment: Any, log_on_batch_end: bool = False, log_on_epoch_end: bool = True,
                 batch_suffix: str | None = None, epoch_suffix: str | None = None, keys_ignored: Any = None):
        self.experiment = experiment
        self.log_on_batch_end = log_on_batch_end
        self.log_on_epoch_end = log_on_epoch_end
        self.batch_suffix = batch_suffix
        self.epoch_suffix = epoch_suffix
        self.keys_ignored = keys_ignored

    def _log(self, row: dict, suffix: str) -> None:
        for key in self._keys(row):
            value = _as_scalar(row[key])
            if value is not None:
                self.experiment.log_scalar(key + suffix, value)

    def on_batch_end(self, net: Any, batch: Any = None, training: bool | None = None, **kwargs: Any) -> None:
        if self.log_on_batch_end:
            self._log(_batch_values(net, batch, training, kwargs), self.batch_suffix_)

    def on_epoch_end(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        if self.log_on_epoch_end:
            self._log(net.history[-1], self.epoch_suffix_)


class WandbLogger(_HistoryLogger):
    """Log each epoch's history values to a Weights & Biases run; watch the module; keep the best parameters.

    Parameters
    ----------
    wandb_run : wandb run
        The object returned by ``wandb.init(...)``.
    save_model : bool
        After each epoch whose ``valid_loss`` is the best so far, save the module's parameters
        to ``best_model.pth`` in the run's directory (W&B uploads the files there).
    keys_ignored : str, list of str or None
        History keys not to log.
    """

    def __init__(self, wandb_run: Any, save_model: bool = True, keys_ignored: Any = None):
        self.wandb_run = wandb_run
        self.save_model = save_model
        self.keys_ignored = keys_ignored

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        self.wandb_run.watch(net.module_)

    def on_epoch_end(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        row = net.history[-1]
        self.wandb_run.log({key: row[key] for key in self._keys(row)})
        if self.save_model and row.get("valid_loss_best"):
            net.save_params(f_params=Path(self.wandb_run.dir) / "best_model.pth")
