"""The default :class:`Dataset` over in-memory data and :class:`ValidSplit`, the internal train/valid split.

Nets do not index a :class:`Dataset` row by row when its data is in memory (see
``bridge.net.data``); it stays a real ``torch.utils.data.Dataset`` for DataLoaders and callbacks.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Number
from typing import Any

import numpy as np
import torch
from scipy import sparse
from sklearn.model_selection import ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit, check_cv

from bridge.utils import is_multi_input, is_pandas_ndframe, multi_indexing, to_numpy

__all__ = ["Dataset", "ValidSplit", "get_len", "unpack_data", "uses_placeholder_y"]


def get_len(data: Any) -> int:
    """Number of rows of ``data`` (array, tensor, dict or list/tuple of arrays).

    Raises
    ------
    ValueError
        When the parts of a dict or tuple have different lengths.
    """
    if isinstance(data, Mapping) and not is_pandas_ndframe(data):
        lengths = {get_len(v) for v in data.values()}
    elif is_multi_input(data):
        lengths = {get_len(v) for v in data}
    else:
        return data.shape[0] if sparse.issparse(data) else len(data)
    if len(lengths) != 1:
        raise ValueError(f"the parts of the data have different lengths: {sorted(lengths)}")
    return lengths.pop()


def unpack_data(data: Any) -> tuple[Any, Any]:
    """Split a batch into ``(X, y)``.

    Raises
    ------
    ValueError
        When the batch is not a pair.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    raise ValueError(
        f"a batch must be an (X, y) pair but got a {type(data).__name__}"
        + (f" of length {len(data)}" if hasattr(data, "__len__") else "")
        + "; a custom Dataset should return (X, y) from __getitem__"
    )


def uses_placeholder_y(dataset: Any) -> bool:
    """Whether ``dataset`` (or the dataset under a ``Subset``) was built without ``y``."""
    if isinstance(dataset, torch.utils.data.Subset):
        return uses_placeholder_y(dataset.dataset)
    return isinstance(dataset, Dataset) and dataset.y is None


class Dataset(torch.utils.data.Dataset):
    """A dataset over in-memory ``X`` (and optionally ``y``).

    Parameters
    ----------
    X : ndarray, tensor, DataFrame, dict or list/tuple of those
        The input data.
    y : array-like or None
        The targets; without them each item's target is the placeholder ``tensor([0.])``.
    length : int or None
        The number of rows, when it cannot be read from ``X``.

    Raises
    ------
    ValueError
        When ``X`` and ``y`` have different lengths.
    """

    def __init__(self, X: Any, y: Any = None, length: int | None = None):
        self.X = X
        self.y = y
        self.X_is_ndframe = is_pandas_ndframe(X)
        if length is not None:
            self._len = length
            return
        len_X = get_len(X)
        if y is not None and get_len(y) != len_X:
            raise ValueError(f"X and y have inconsistent lengths: {len_X} and {get_len(y)}")
        self._len = len_X

    def __len__(self) -> int:
        return self._len

    def transform(self, X: Any, y: Any) -> tuple[Any, Any]:
        """Per-item transformation; by default only a placeholder ``y`` and dense sparse rows."""
        y = torch.Tensor([0]) if y is None else y
        if sparse.issparse(X):
            X = X.toarray().squeeze(0)
        return X, y

    def __getitem__(self, i: Any) -> tuple[Any, Any]:
        X = self.X
        if self.X_is_ndframe:
            X = {column: X[column].to_numpy().reshape(-1, 1) for column in X}
        return self.transform(multi_indexing(X, i), multi_indexing(self.y, i))


def _is_float(value: Any) -> bool:
    return isinstance(value, Number) and not float(value).is_integer()


class ValidSplit:
    """The internal train/valid split of a net: the first split of a cross-validation scheme.

    Parameters
    ----------
    cv : int, float, cross-validation generator or iterable
        An int uses (Stratified)KFold with that many folds and keeps the first fold for
        validation; a float is the validation fraction ((Stratified)ShuffleSplit); an object with
        ``split`` or an iterable of (train, valid) index pairs is used as is.
    stratified : bool
        Whether to stratify by ``y`` (classification targets only).
    random_state : int, RandomState or None
        Seed for the shuffle split; only meaningful when ``cv`` is a float.

    Raises
    ------
    ValueError
        When ``cv`` is a non-positive number, or ``random_state`` is given with a non-float ``cv``.
    """

    def __init__(self, cv: Any = 5, stratified: bool = False, random_state: Any = None):
        if isinstance(cv, Number) and cv <= 0:
            raise ValueError(f"cv must be a positive int or a float in (0, 1); got {cv!r}")
        if _is_float(cv) and not 0 < cv < 1:
            raise ValueError(f"a float cv is the validation fraction and must lie in (0, 1); got {cv!r}")
        if not _is_float(cv) and random_state is not None:
            raise ValueError(f"random_state={random_state!r} has no effect unless cv is a float (got cv={cv!r}); leave it None")
        self.cv = cv
        self.stratified = stratified
        self.random_state = random_state

    def check_cv(self, y: Any) -> Any:
        """The cross-validation object this split uses for targets ``y``."""
        if _is_float(self.cv):
            splitter = StratifiedShuffleSplit if self.stratified else ShuffleSplit
            return splitter(test_size=self.cv, random_state=self.random_state)
        y_arr = to_numpy(y) if (self.stratified and y is not None) else y
        return check_cv(self.cv, y=y_arr, classifier=self.stratified)

    def __call__(self, dataset: Any, y: Any = None, groups: Any = None) -> tuple[Any, Any]:
        """Split ``dataset`` into ``(dataset_train, dataset_valid)`` ``Subset`` objects.

        Raises
        ------
        ValueError
            When stratifying without ``y`` or when ``y`` and ``dataset`` lengths differ.
        """
        if self.stratified and y is None:
            raise ValueError("a stratified ValidSplit needs y; pass y to fit or use stratified=False")
        cv = self.check_cv(y)
        is_stratified = isinstance(cv, (StratifiedKFold, StratifiedShuffleSplit))
        if self.stratified and not is_stratified:
            raise ValueError(f"stratified=True needs classification targets; got a {type(cv).__name__}")
        n_rows = get_len(dataset)
        if y is not None and get_len(y) != n_rows:
            raise ValueError(f"cannot split: the dataset has {n_rows} rows but y has {get_len(y)}")
        args: tuple = (np.arange(n_rows),)
        if is_stratified:
            args += (np.asarray(to_numpy(y)),)
        idx_train, idx_valid = next(iter(cv.split(*args, groups=groups)))
        return torch.utils.data.Subset(dataset, idx_train), torch.utils.data.Subset(dataset, idx_valid)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cv={self.cv!r}, stratified={self.stratified!r}, random_state={self.random_state!r})"

    def get_metadata_routing(self) -> Any:
        """With scikit-learn's metadata routing: ``split`` passes ``groups`` to a splitter given as ``cv``."""
        from sklearn.utils.metadata_routing import MetadataRouter, MethodMapping

        router = MetadataRouter(owner=type(self).__name__)
        if hasattr(self.cv, "get_metadata_routing"):
            router.add(cv=self.cv, method_mapping=MethodMapping().add(caller="split", callee="split"))
        return router
