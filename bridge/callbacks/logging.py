"""Logging callbacks: :class:`EpochTimer` (``dur``), :class:`PrintLog` (a table row per epoch) and :class:`ProgressBar`."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Sequence
from numbers import Number
from typing import Any

from bridge.callbacks.base import Callback

# The experiment-tracker loggers live in bridge.callbacks.loggers; importable from here too, where skorch has them.
from bridge.callbacks.loggers import (  # noqa: F401
    MlflowLogger,
    NeptuneLogger,
    SacredLogger,
    TensorBoard,
    WandbLogger,
)

__all__ = ["EpochTimer", "PrintLog", "ProgressBar"]

_COLORS = ("\033[36m", "\033[32m", "\033[35m", "\033[34m", "\033[31m", "\033[33m")
_END_COLOR = "\033[0m"
_ANSI = re.compile("\033\\[[0-9;]*m")


class EpochTimer(Callback):
    """Record each epoch's wall-clock duration in seconds under ``'dur'``."""

    def on_epoch_begin(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        self.epoch_start_time_ = time.perf_counter()

    def on_epoch_end(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        net.history.record("dur", time.perf_counter() - self.epoch_start_time_)


class PrintLog(Callback):
    """Print one table row per epoch (a header before the first), best values highlighted.

    Parameters
    ----------
    keys_ignored : str, list of str or None
        History keys not to print (``batches`` and ``*_best`` keys never are).
    sink : callable
        Where lines go (``print`` by default; e.g. a logger's ``info``).
    floatfmt : str
        Format of float values.
    stralign : str
        Alignment of the columns: ``'right'`` or ``'left'``.
    """

    def __init__(self, keys_ignored: Any = None, sink: Callable[[str], Any] = print, tablefmt: str = "simple",
                 floatfmt: str = ".4f", stralign: str = "right"):
        self.keys_ignored = keys_ignored
        self.sink = sink
        self.tablefmt = tablefmt
        self.floatfmt = floatfmt
        self.stralign = stralign

    def initialize(self) -> PrintLog:
        self.first_iteration_ = True
        ignored = self.keys_ignored
        self.keys_ignored_ = set([ignored] if isinstance(ignored, str) else (ignored or ()))
        self.keys_ignored_.add("batches")
        return self

    def _columns(self, row: dict) -> list[str]:
        keys = [k for k in row if k not in self.keys_ignored_ and not k.endswith("_best")
                and k not in ("epoch", "dur") and not k.endswith("_batch_count")]
        scalars = sorted(k for k in keys if not k.startswith("event_"))
        events = sorted(k for k in keys if k.startswith("event_"))
        head = ["epoch"] if "epoch" in row else []
        tail = ["dur"] if "dur" in row and "dur" not in self.keys_ignored_ else []
        return head + scalars + events + tail

    def _format(self, key: str, value: Any, color: str) -> str:
        if key.startswith("event_"):
            return "+" if value else ""
        if isinstance(value, bool) or not isinstance(value, Number):
            return str(value)
        text = format(value, self.floatfmt) if isinstance(value, float) else str(value)
        return f"{color}{text}{_END_COLOR}" if color else text

    def table_row(self, row: dict) -> tuple[list[str], list[str]]:
        """``(column names, formatted cells)`` for one epoch row."""
        columns = self._columns(row)
        cells = []
        for index, key in enumerate(columns):
            color = _COLORS[index % len(_COLORS)] if row.get(key + "_best") else ""
            cells.append(self._format(key, row[key], color))
        return columns, cells

    def on_epoch_end(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        if self.sink is print and not getattr(net, "verbose", 1):
            return  # print speaks only for a verbose net; any other sink (a logger) always hears
        columns, cells = self.table_row(net.history[-1])
        columns = [c[len("event_"):] if c.startswith("event_") else c for c in columns]  # '+' marks an event
        widths = [max(len(c), 8) for c in columns]
        right = self.stralign == "right"

        def pad(text: str, width: int) -> str:
            gap = " " * max(0, width - len(_ANSI.sub("", text)))
            return gap + text if right else text + gap

        line = "  ".join(pad(cell, w) for cell, w in zip(cells, widths))
        if self.first_iteration_:
            self.sink("  ".join(pad(c, w) for c, w in zip(columns, widths)))
            self.sink("  ".join("-" * w for w in widths))
            self.first_iteration_ = False
        self.sink(line)


class ProgressBar(Callback):
    """A tqdm progress bar over the batches of each epoch (needs the ``tqdm`` package).

    Parameters
    ----------
    batches_per_epoch : 'auto', 'count', int or None
        Bar length: computed from the data ('auto'), counted during the first epoch
        ('count'), or fixed.
    detect_notebook : bool
        Use tqdm's notebook bar inside Jupyter.
    postfix_keys : sequence of str
        Batch values shown next to the bar (from the batch's loss).
    """

    def __init__(self, batches_per_epoch: Any = "auto", detect_notebook: bool = True,
                 postfix_keys: Sequence[str] = ("train_loss", "valid_loss")):
        self.batches_per_epoch = batches_per_epoch
        self.detect_notebook = detect_notebook
        self.postfix_keys = postfix_keys

    def initialize(self) -> ProgressBar:
        try:
            import tqdm  # noqa: F401
        except ImportError as exc:
            raise ImportError("ProgressBar needs the tqdm package: pip install tqdm") from exc
        self.pbar_ = None
        self.counted_batches_ = None
        return self

    def _total(self, net: Any, dataset_train: Any, dataset_valid: Any) -> int | None:
        if self.batches_per_epoch == "count":
            return self.counted_batches_
        if self.batches_per_epoch is None:
            return None  # a bar without a total
        if self.batches_per_epoch != "auto":
            return int(self.batches_per_epoch)
        total = 0
        for dataset, training in ((dataset_train, True), (dataset_valid, False)):
            if dataset is not None:
                size = net.get_params_for("iterator_train" if training else "iterator_valid").get("batch_size", net.batch_size)
                size = len(dataset) if size == -1 else size
                total += -(-len(dataset) // size)
        return total

    def on_epoch_begin(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        import tqdm

        bar = tqdm.tqdm
        if self.detect_notebook and "ipykernel" in sys.modules:
            import tqdm.notebook

            bar = tqdm.notebook.tqdm
        self.seen_batches_ = 0
        self.pbar_ = bar(total=self._total(net, dataset_train, dataset_valid), leave=False)

    def on_batch_end(self, net: Any, batch: Any = None, training: bool | None = None, **kwargs: Any) -> None:
        self.seen_batches_ += 1
        key = "train_loss" if training else "valid_loss"
        if key in self.postfix_keys and "loss" in kwargs:
            loss = kwargs["loss"]
            self.pbar_.set_postfix({key: float(loss.detach() if hasattr(loss, "detach") else loss)}, refresh=False)
        self.pbar_.update()

    def on_epoch_end(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        if self.batches_per_epoch == "count" and self.counted_batches_ is None:
            self.counted_batches_ = self.seen_batches_
        if self.pbar_ is not None:
            self.pbar_.close()
            self.pbar_ = None  # a closed bar holds the output stream, which cannot be pickled

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["pbar_"] = None  # a bar (open after an interrupted epoch) is not picklable
        return state
