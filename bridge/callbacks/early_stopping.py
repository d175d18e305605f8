"""Stop training when a monitored score has not improved for a number of epochs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from bridge.callbacks.base import Callback

__all__ = ["EarlyStopping"]

_THRESHOLD_MODES = ("rel", "abs")


class EarlyStopping(Callback):
    """Stop training once ``monitor`` has not improved for ``patience`` epochs in a row.

    An epoch counts as an improvement when its score beats the best score so far by more
    than ``threshold`` (relative to the best score's magnitude for ``'rel'``, in the score's
    units for ``'abs'``). Stopping ends the epoch loop the way skorch does (by raising
    ``KeyboardInterrupt``, which the net catches), so ``on_train_end`` still runs.

    Parameters
    ----------
    monitor : str, default='valid_loss'
        The history key to watch, written each epoch by the net or a scoring callback.
    patience : int, default=5
        How many epochs without improvement to tolerate before stopping.
    threshold : float, default=1e-4
        The smallest change that counts as an improvement.
    threshold_mode : {'rel', 'abs'}, default='rel'
        Whether ``threshold`` is a fraction of the best score's magnitude or an absolute amount.
    lower_is_better : bool, default=True
        Whether smaller scores are better (losses) or larger ones (accuracies).
    sink : callable, default=print
        Receives the message when training stops (only when ``net.verbose`` is set).
    load_best : bool, default=False
        Restore the module's weights from the best epoch when training ends. Only the
        module is restored; use :class:`~bridge.callbacks.Checkpoint` with ``load_best=True``
        for the optimizer and history too.

    Attributes
    ----------
    best_epoch_ : int
        The epoch of the best score (0 before the first improvement).
    misses_ : int
        Epochs since the last improvement.

    Raises
    ------
    ValueError
        From ``on_train_begin``, for an unknown ``threshold_mode`` or a ``patience`` below 1.
    KeyError
        From ``on_epoch_end``, when the history has no ``monitor`` entry for the epoch.
    """

    def __init__(
        self,
        monitor: str = "valid_loss",
        patience: int = 5,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        lower_is_better: bool = True,
        sink: Callable[[str], Any] = print,
        load_best: bool = False,
    ):
        self.monitor = monitor
        self.patience = patience
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.lower_is_better = lower_is_better
        self.sink = sink
        self.load_best = load_best

    def __getstate__(self) -> dict:
        # The best weights are a copy of the module's; pickling the net already stores those.
        state = dict(super().__getstate__())
        if "best_model_weights_" in state:
            state["best_model_weights_"] = None
        return state

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        """Check the parameters and reset the counters."""
        if self.threshold_mode not in _THRESHOLD_MODES:
            raise ValueError(
                f"EarlyStopping: threshold_mode={self.threshold_mode!r} is invalid; "
                f"accepted: {', '.join(_THRESHOLD_MODES)}"
            )
        if self.patience < 1:
            raise ValueError(f"EarlyStopping: patience={self.patience} is invalid; it must be >= 1")
        self.misses_ = 0
        self.dynamic_threshold_ = math.inf if self.lower_is_better else -math.inf
        self.best_epoch_ = 0
        self.best_model_weights_ = None

    def _is_score_improved(self, score: float) -> bool:
        if self.lower_is_better:
            return score < self.dynamic_threshold_
        return score > self.dynamic_threshold_

    def _calc_new_threshold(self, score: float) -> float:
        """The score the next epoch must beat, given a new best ``score``."""
        margin = self.threshold * abs(score) if self.threshold_mode == "rel" else self.threshold
        return score - margin if self.lower_is_better else score + margin

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        """Record the epoch's score and stop training when patience has run out."""
        try:
            score = net.history[-1, self.monitor]
        except KeyError as exc:
            raise KeyError(
                f"EarlyStopping monitors {self.monitor!r}, which is not in the history of epoch "
                f"{len(net.history)}; keys there: {sorted(net.history[-1])}. Use a validation "
                "split for 'valid_*' keys, or a scoring callback that writes the key."
            ) from exc
        if self._is_score_improved(score):
            self.misses_ = 0
            self.dynamic_threshold_ = self._calc_new_threshold(score)
            self.best_epoch_ = net.history[-1, "epoch"]
            if self.load_best:
                self.best_model_weights_ = {
                    key: value.detach().clone() for key, value in net.module_.state_dict().items()
                }
        else:
            self.misses_ += 1
        if self.misses_ >= self.patience:
            if net.verbose:
                self._sink(
                    f"Stopping since {self.monitor} has not improved in the last "
                    f"{self.patience} epochs.",
                    net.verbose,
                )
            raise KeyboardInterrupt

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        """Restore the best module weights when ``load_best`` is set."""
        if not self.load_best or self.best_model_weights_ is None:
            return
        if self.best_epoch_ == net.history[-1, "epoch"]:
            return
        net.module_.load_state_dict(self.best_model_weights_)
        self._sink(f"Restoring best model from epoch {self.best_epoch_}.", net.verbose)

    def _sink(self, text: str, verbose: Any) -> None:
        # ``print`` only speaks when the net is verbose; any other sink (a logger) always hears.
        if self.sink is not print or verbose:
            self.sink(text)
