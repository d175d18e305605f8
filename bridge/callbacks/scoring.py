"""Scoring callbacks: :class:`EpochScoring`, :class:`BatchScoring` and :class:`PassthroughScoring`.

Scores are written to the net's history under the callback's name, with ``<name>_best``.
With caching, predictions made during the epoch are reused instead of running the module again.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
from sklearn.metrics import get_scorer, make_scorer
from sklearn.metrics._scorer import _BaseScorer

from bridge.callbacks.base import Callback
from bridge.dataset import unpack_data, uses_placeholder_y
from bridge.utils import data_from_dataset, to_numpy

__all__ = ["BatchScoring", "EpochScoring", "PassthroughScoring"]


@contextlib.contextmanager
def cached_forward_iter(net: Any, use_caching: bool, y_preds: list) -> Iterator[None]:
    """Make ``net.forward_iter`` yield ``y_preds`` instead of running the module (when caching)."""
    net_caching = getattr(net, "use_caching", "auto")
    if net_caching != "auto":
        use_caching = bool(net_caching)
    if not use_caching:
        yield
        return

    def forward_iter_from_cache(X: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        yield from y_preds

    net.forward_iter = forward_iter_from_cache
    try:
        yield
    finally:
        del net.forward_iter


def _innermost(function: Any) -> Any:
    """The function under ``functools.partial`` layers."""
    while isinstance(function, partial):
        function = function.func
    return function


def _is_metric_function(function: Any) -> bool:
    """Whether ``function`` compares targets with predictions (``metric(y_true, y_pred)``)
    rather than scoring an estimator (``scorer(net, X, y)``)."""
    if isinstance(function, _BaseScorer):
        return False
    inner = _innermost(function)
    if getattr(inner, "__module__", "").startswith("sklearn.metrics"):
        return True
    try:
        first = next(iter(inspect.signature(inner).parameters), None)
    except (TypeError, ValueError):
        return False
    return first == "y_true"


def _scorer_for(scoring: Any) -> Callable[[Any, Any, Any], float]:
    if scoring is None:
        return lambda net, X, y: net.score(X, y)
    if isinstance(scoring, str):
        return get_scorer(scoring)
    if isinstance(scoring, dict):
        raise ValueError(f"scoring={scoring!r}: a dict (multi-metric scoring) is not supported by one "
                         "callback; add one scoring callback per metric")
    if callable(scoring):
        return make_scorer(scoring) if _is_metric_function(scoring) else scoring
    raise TypeError(f"scoring must be None, a metric name or a callable scorer(net, X, y); got {scoring!r}")


def _default_name(scoring: Any) -> str:
    if scoring is None:
        return "score"
    if isinstance(scoring, str):
        return scoring
    if isinstance(scoring, _BaseScorer):  # make_scorer(accuracy_score) is named after its metric
        return getattr(_innermost(scoring._score_func), "__name__", type(scoring).__name__)
    inner = _innermost(scoring)
    return getattr(inner, "__name__", type(inner).__name__)


def _decode(net: Any, y: Any) -> Any:
    decode = getattr(net, "decode_targets", None)
    return decode(y) if (decode is not None and y is not None) else y


class _ScoringBase(Callback):
    def __init__(self, scoring: Any, lower_is_better: bool | None = True, on_train: bool = False,
                 name: str | None = None, target_extractor: Callable = to_numpy, use_caching: bool = True):
        self.scoring = scoring
        self.lower_is_better = lower_is_better
        self.on_train = on_train
        self.name = name
        self.target_extractor = target_extractor
        self.use_caching = use_caching

    def initialize(self) -> _ScoringBase:
        self.best_score_ = np.inf if self.lower_is_better else -np.inf
        self.name_ = self.name if self.name is not None else _default_name(self.scoring)
        return self

    def _is_best_score(self, score: float) -> bool | None:
        if self.lower_is_better is None:
            return None  # no direction, no '<name>_best'
        return score < self.best_score_ if self.lower_is_better else score > self.best_score_

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        _resume_best_score(self, net.history)

    def _score(self, net: Any, X: Any, y: Any) -> float:
        return _scorer_for(self.scoring)(net, X, y)


class EpochScoring(_ScoringBase):
    """Score the net once per epoch on the validation (or training) data.

    Parameters
    ----------
    scoring : None, str or callable
        A sklearn metric name (``'accuracy'``, ``'roc_auc'``, ...), a scorer
        ``scoring(net, X, y) -> float``, or None for ``net.score``.
    lower_is_better : bool
        Direction used for ``<name>_best``.
    on_train : bool
        Score the training data instead of the validation data.
    name : str or None
        History key; defaults to the metric name or the function's name.
    target_extractor : callable
        Turns the targets into what the scorer expects (numpy arrays by default).
    use_caching : bool
        Reuse the predictions made during the epoch (the net's ``use_caching`` overrides it).
    """

    def on_epoch_begin(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        self.y_trues_: list = []
        self.y_preds_: list = []

    def on_batch_end(self, net: Any, batch: Any = None, training: bool | None = None, **kwargs: Any) -> None:
        if not self.use_caching or training != self.on_train:
            return
        _, y = unpack_data(batch)
        if y is not None:
            self.y_trues_.append(y)
        self.y_preds_.append(kwargs["y_pred"])

    def get_test_data(self, dataset_train: Any, dataset_valid: Any, use_caching: bool) -> tuple[Any, Any, list]:
        """``(X_test, y_test, cached y_preds)`` for this epoch's score."""
        dataset = dataset_train if self.on_train else dataset_valid
        if use_caching:
            y_test = None
            if self.y_trues_ and not uses_placeholder_y(dataset):
                y_test = np.concatenate([np.atleast_1d(self.target_extractor(y)) for y in self.y_trues_])
            return dataset, y_test, self.y_preds_
        try:
            X_test, y_test = data_from_dataset(dataset)
        except AttributeError:
            X_test, y_test = dataset, None
        if y_test is not None:
            y_test = self.target_extractor(y_test)
        return X_test, y_test, []

    def on_epoch_end(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        dataset = dataset_train if self.on_train else dataset_valid
        if dataset is None:
            return
        net_caching = getattr(net, "use_caching", "auto")
        use_caching = self.use_caching if net_caching == "auto" else bool(net_caching)
        X_test, y_test, y_preds = self.get_test_data(dataset_train, dataset_valid, use_caching)
        if X_test is None:
            return
        with cached_forward_iter(net, use_caching, y_preds):
            score = self._score(net, X_test, _decode(net, y_test))
        self._record_score(net.history, float(score))
        self.y_trues_, self.y_preds_ = [], []  # do not keep device tensors alive between epochs

    def _record_score(self, history: Any, score: float) -> None:
        history.record(self.name_, score)
        is_best = self._is_best_score(score)
        if is_best is None:
            return
        if is_best:
            self.best_score_ = score
        history.record(self.name_ + "_best", bool(is_best))


class BatchScoring(_ScoringBase):
    """Score every batch and record the size-weighted mean at the end of each epoch.

    Parameters are those of :class:`EpochScoring`; each batch's score lands in the batch
    row of the history and the epoch mean under ``name``.
    """

    def on_batch_end(self, net: Any, batch: Any = None, training: bool | None = None, **kwargs: Any) -> None:
        if training != self.on_train:
            return
        X, y = unpack_data(batch)
        y_pred = kwargs["y_pred"]
        with cached_forward_iter(net, self.use_caching, [y_pred]):
            score = self._score(net, X, _decode(net, self.target_extractor(y)))
        net.history.record_batch(self.name_, float(score))

    def on_epoch_end(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        _record_weighted_mean(net.history, self.name_, "train" if self.on_train else "valid", self)


class PassthroughScoring(Callback):
    """Turn a per-batch value already in the history (e.g. ``train_loss``) into its epoch mean.

    Parameters
    ----------
    name : str
        The batch-level history key, also used for the epoch value.
    lower_is_better : bool
        Direction used for ``<name>_best``.
    on_train : bool
        Weigh by ``train_batch_size`` (else ``valid_batch_size``).
    """

    def __init__(self, name: str, lower_is_better: bool | None = True, on_train: bool = False):
        self.name = name
        self.lower_is_better = lower_is_better
        self.on_train = on_train

    def initialize(self) -> PassthroughScoring:
        self.best_score_ = np.inf if self.lower_is_better else -np.inf
        self.name_ = self.name
        return self

    def _is_best_score(self, score: float) -> bool | None:
        if self.lower_is_better is None:
            return None
        return score < self.best_score_ if self.lower_is_better else score > self.best_score_

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        _resume_best_score(self, net.history)

    def on_epoch_end(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        _record_weighted_mean(net.history, self.name, "train" if self.on_train else "valid", self)


def _record_weighted_mean(history: Any, name: str, prefix: str, callback: Any) -> None:
    batches = history[-1]["batches"]
    values, sizes = [], []
    for row in batches:
        if name in row and prefix + "_batch_size" in row:  # a value without its batch size cannot be weighed
            values.append(row[name])
            sizes.append(row[prefix + "_batch_size"])
    if not values:
        return
    score = float(np.average(values, weights=sizes))
    history.record(name, score)
    is_best = callback._is_best_score(score)
    if is_best is None:
        return
    if is_best:
        callback.best_score_ = score
    history.record(name + "_best", bool(is_best))


def _resume_best_score(callback: Any, history: Any) -> None:
    """Continue from the best score already in the history (training resumed, e.g. after load_params)."""
    if callback.lower_is_better is None or not history:
        return
    scores = [row[callback.name_] for row in history if isinstance(row, dict) and callback.name_ in row]
    if scores:
        callback.best_score_ = min(scores) if callback.lower_is_better else max(scores)
