"""Classifier nets: :class:`NeuralNetClassifier` (multi-class) and :class:`NeuralNetBinaryClassifier`.

Labels of any type (strings included) are encoded as indices into ``classes_`` for the
criterion and decoded again by ``predict``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.multiclass import check_classification_targets

from bridge.callbacks import EpochScoring, EpochTimer, PassthroughScoring, PrintLog
from bridge.dask import is_dask_collection
from bridge.dask import score as dask_score
from bridge.dataset import ValidSplit
from bridge.net.net import NeuralNet
from bridge.net.validation import cast_floating, check_input, require_y
from bridge.utils import data_from_dataset, is_dataset, to_numpy

__all__ = ["NeuralNetBinaryClassifier", "NeuralNetClassifier"]


def _classifier_callbacks() -> list[tuple[str, Any]]:
    return [
        ("epoch_timer", EpochTimer()),
        ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
        ("valid_loss", PassthroughScoring(name="valid_loss")),
        ("valid_acc", EpochScoring("accuracy", name="valid_acc", lower_is_better=False, on_train=False)),
        ("print_log", PrintLog()),
    ]


def _encode(y: Any, classes: np.ndarray) -> np.ndarray:
    """Indices of ``y``'s labels in ``classes`` (in the order of ``classes``, sorted or not).

    Raises
    ------
    ValueError
        For labels that are not in ``classes``.
    """
    sorter = np.argsort(classes, kind="stable")
    positions = np.clip(np.searchsorted(classes, y, sorter=sorter), 0, len(classes) - 1)
    indices = sorter[positions]
    unknown = classes[indices] != y
    if np.any(unknown):
        raise ValueError(f"y contains labels not in classes_ {classes.tolist()}: {np.unique(y[unknown]).tolist()[:10]}")
    return indices.astype(np.int64)


def _are_indices(y: np.ndarray, classes: np.ndarray) -> bool:
    """Whether integer ``y`` can only be positions into ``classes`` (some value is not a label)."""
    if y.dtype.kind not in "iu" or not len(y) or y.min() < 0 or y.max() >= len(classes):
        return False
    try:
        return not np.isin(y, classes).all()
    except TypeError:
        return True


class _LabelEncodingMixin:
    """Shared target handling: classes_ inference, encoding and decoding."""

    def _resolve_classes(self, y_np: np.ndarray | None, classes: Any, reset: bool) -> None:
        given = self.__dict__.get("classes", None) if classes is None else classes
        if not reset and getattr(self, "classes_", None) is not None:
            return
        if given is not None and len(given):
            # given classes keep their order: column i of the module's output is classes[i]
            self.classes_ = np.asarray(list(dict.fromkeys(np.asarray(given).tolist())))
        elif y_np is not None:
            self.classes_ = np.unique(y_np)
        elif reset:
            self.classes_ = None

    def _classes_from_dataset(self, dataset: Any, reset: bool, classes: Any) -> None:
        """Infer ``classes_`` from the targets a Dataset holds (bridge's Dataset, TensorDataset, Subsets)."""
        try:
            _, targets = data_from_dataset(dataset)
        except (AttributeError, TypeError, ValueError):
            targets = None  # a custom Dataset: classes_ stays unknown unless classes= is given
        if targets is not None:
            targets = np.asarray(to_numpy(targets))
            if targets.ndim != 1:
                targets = None
        self._resolve_classes(targets, classes, reset)

    def decode_targets(self, y: Any) -> Any:
        """Map class indices back to labels (identity while ``classes_`` is unknown)."""
        classes = getattr(self, "classes_", None)
        if classes is None or y is None:
            return y
        indices = np.asarray(to_numpy(y)).astype(np.int64)
        if classes.dtype.kind in "iu" and np.array_equal(classes, np.arange(len(classes))):
            return indices  # labels 0..k-1 are their own indices (also for columns beyond those seen)
        return classes[indices]

    def _targets_to_indices(self, y: Any, reset: bool, classes: Any) -> Any:
        if y is None:
            self._resolve_classes(None, classes, reset)
            return None
        y_np = to_numpy(y) if isinstance(y, torch.Tensor) else np.asarray(y)
        if y_np.ndim == 2 and y_np.shape[1] == 1:
            warnings.warn("A column-vector y was passed when a 1d array was expected; it is used as y.ravel()",
                          DataConversionWarning, stacklevel=3)
            y_np = y_np.ravel()
        if y_np.ndim != 1 or (y_np.dtype == object and len(y_np) and isinstance(y_np[0], np.ndarray)):
            self._resolve_classes(None, classes, reset)
            return y  # multi-label or soft targets go to the criterion unchanged
        check_classification_targets(y_np)
        self._resolve_classes(y_np, classes, reset)
        explicit = classes is not None or self.__dict__.get("classes", None) is not None
        # with explicit classes, integer y that are not labels are taken as positions into them
        encoded = y_np.astype(np.int64) if explicit and _are_indices(y_np, self.classes_) else _encode(y_np, self.classes_)
        if isinstance(y, torch.Tensor):
            return torch.as_tensor(encoded, device=y.device)
        return encoded


class NeuralNetClassifier(_LabelEncodingMixin, ClassifierMixin, NeuralNet):
    """A multi-class classifier net (skorch-compatible).

    The module outputs class probabilities for the default ``NLLLoss`` (its log is taken in
    :meth:`get_loss`) or logits for ``CrossEntropyLoss`` (softmax applied in ``predict_proba``).

    Parameters
    ----------
    module : torch.nn.Module class or instance
        The network; its output has one column per class.
    criterion : torch loss class or instance
        Default ``torch.nn.NLLLoss``.
    train_split : callable or None
        Default: a stratified 5-fold :class:`~bridge.dataset.ValidSplit`.
    classes : array-like or None
        All class labels, when ``y`` does not show all of them.
    **kwargs
        Every other :class:`~bridge.net.NeuralNet` parameter, routed ones included.
    """

    def __init__(self, module: Any, criterion: Any = torch.nn.NLLLoss,
                 train_split: Any = ValidSplit(5, stratified=True),  # noqa: B008 - stateless default
                 classes: Any = None, **kwargs: Any):
        super().__init__(module, criterion=criterion, train_split=train_split, **kwargs)
        self.classes = classes

    @property
    def _default_callbacks(self) -> list[tuple[str, Any]]:
        return _classifier_callbacks()

    def _prepare_fit_data(self, X: Any, y: Any, reset: bool, classes: Any = None) -> tuple[Any, Any]:
        require_y(self, X, y)
        X, y = check_input(self, X, y, reset=reset)
        encoded = self._targets_to_indices(y, reset, classes)
        if y is None and is_dataset(X):
            self._classes_from_dataset(X, reset, classes)
        return cast_floating(X, self.module_dtype()), encoded

    def get_loss(self, y_pred: Any, y_true: Any, X: Any = None, training: bool = False) -> torch.Tensor:
        """NLL of ``log(y_pred)`` for ``NLLLoss`` (the module outputs probabilities), else the criterion.

        Raises
        ------
        ValueError
            When the module's output has a different number of columns than there are classes.
        ConfigurationError
            On the first batch, for an element-wise loss (``MSELoss``, ...) whose output and
            target differ in shape (class indices against one column per class).
        """
        classes = getattr(self, "classes_", None)
        if classes is not None and isinstance(y_pred, torch.Tensor) and y_pred.dim() == 2 and y_pred.shape[1] < len(classes):
            # more columns than classes seen is fine (a class may be missing from this y)
            raise ValueError(f"the module outputs {y_pred.shape[1]} columns but there are {len(classes)} classes "
                             f"{classes.tolist()[:10]}; make the module output one column per class (or pass classes=)")
        self._check_loss_shapes_once(y_pred, y_true)
        if isinstance(self.criterion_, torch.nn.NLLLoss):
            eps = torch.finfo(y_pred.dtype).eps
            y_pred = torch.log(y_pred + eps)
        return super().get_loss(y_pred, y_true, X=X, training=training)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row, as a label from ``classes_``.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        if is_dask_collection(X):  # Dask in: a lazy Dask result (bridge/dask)
            return dask_score(self, X, "predict")
        probabilities = self._raw_probabilities(X)
        return self.decode_targets(to_numpy(probabilities.argmax(dim=-1)))


class NeuralNetBinaryClassifier(_LabelEncodingMixin, ClassifierMixin, NeuralNet):
    """A binary classifier net whose module outputs one logit per row (skorch-compatible).

    Parameters
    ----------
    module : torch.nn.Module class or instance
        The network; its output has shape ``(n,)`` or ``(n, 1)``.
    criterion : torch loss class or instance
        Default ``torch.nn.BCEWithLogitsLoss``.
    train_split : callable or None
        Default: a stratified 5-fold :class:`~bridge.dataset.ValidSplit`.
    threshold : float
        Probability above which ``predict`` returns the positive class.
    **kwargs
        Every other :class:`~bridge.net.NeuralNet` parameter, routed ones included.
    """

    def __init__(self, module: Any, criterion: Any = torch.nn.BCEWithLogitsLoss,
                 train_split: Any = ValidSplit(5, stratified=True),  # noqa: B008 - stateless default
                 threshold: float = 0.5, **kwargs: Any):
        super().__init__(module, criterion=criterion, train_split=train_split, **kwargs)
        self.threshold = threshold

    @property
    def _default_callbacks(self) -> list[tuple[str, Any]]:
        return _classifier_callbacks()

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # y with 3 classes or more is refused in fit
        return tags

    def _prepare_fit_data(self, X: Any, y: Any, reset: bool, classes: Any = None) -> tuple[Any, Any]:
        require_y(self, X, y)
        X, y = check_input(self, X, y, reset=reset)
        if y is not None and np.ndim(to_numpy(y)) > 1:
            raise ValueError(f"NeuralNetBinaryClassifier needs a 1-dimensional y (one 0/1 label per row); "
                             f"got shape {np.shape(to_numpy(y))}")
        if y is not None:
            labels = np.unique(np.asarray(to_numpy(y)).ravel())
            check_classification_targets(np.asarray(to_numpy(y)))  # continuous y: 'Unknown label type'
            if len(labels) > 2:
                raise ValueError(f"Only binary classification is supported. NeuralNetBinaryClassifier got y with "
                                 f"{len(labels)} classes: {labels.tolist()[:10]}; use NeuralNetClassifier for more")
            if classes is None and set(labels.tolist()) <= {0, 1}:
                classes = [0, 1]
        y = self._targets_to_indices(y, reset, classes)
        if y is not None:
            y = cast_floating(y.to(torch.float64) if isinstance(y, torch.Tensor) else y.astype(np.float64), self.module_dtype())
        return cast_floating(X, self.module_dtype()), y

    def infer(self, x: Any, **fit_params: Any) -> Any:
        """The module's logits flattened to shape ``(n,)``.

        Raises
        ------
        ValueError
            When the module's output is not of shape ``(n,)`` or ``(n, 1)``.
        """
        y_infer = super().infer(x, **fit_params)
        rest = None
        if isinstance(y_infer, tuple):
            y_infer, *rest = y_infer
        if y_infer.dim() > 2 or (y_infer.dim() == 2 and y_infer.shape[1] != 1):
            raise ValueError(f"a binary classifier's module must output shape (n,) or (n, 1); got {tuple(y_infer.shape)}")
        y_infer = y_infer.reshape(-1)
        return (y_infer, *rest) if rest is not None else y_infer

    def get_loss(self, y_pred: Any, y_true: Any, X: Any = None, training: bool = False) -> torch.Tensor:
        """The criterion on logits and float targets of the same shape."""
        y_true = torch.as_tensor(y_true, device=y_pred.device) if not isinstance(y_true, torch.Tensor) else y_true.to(y_pred.device)
        return self.criterion_(y_pred, y_true.reshape(y_pred.shape).to(y_pred.dtype))

    def _raw_probabilities(self, X: Any) -> torch.Tensor:
        positive = super()._raw_probabilities(X)
        if positive.dim() != 1:  # a custom predict_nonlinearity already returned both columns
            return positive
        return torch.stack([1 - positive, positive], dim=1)

    def predict(self, X: Any) -> np.ndarray:
        """The class of each row: positive when its probability exceeds ``threshold``.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        if is_dask_collection(X):  # Dask in: a lazy Dask result (bridge/dask)
            return dask_score(self, X, "predict")
        positive = self._raw_probabilities(X)[:, 1]
        return self.decode_targets(to_numpy((positive > self.threshold).long()))
