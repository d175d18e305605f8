"""The in-memory fast path: batches cut from whole tensors kept on the device.

A :class:`bridge.dataset.Dataset` over arrays (numpy, tensors, or dicts of them) is converted
to tensors on the net's device once, and each batch is one indexing operation instead of
``batch_size`` calls to ``__getitem__`` plus a collate. Anything else goes through a DataLoader.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from bridge.dataset import Dataset

__all__ = ["TensorBatchIterator", "fast_iterator_for", "is_in_memory"]

# DataLoader arguments whose effect the fast path reproduces (or that only matter for
# per-row loading and so have nothing to do on tensors already in memory).
_FAST_PATH_KWARGS = {"batch_size", "shuffle", "drop_last", "num_workers", "pin_memory",
                     "persistent_workers", "prefetch_factor", "timeout"}


def _is_array(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return not value.is_sparse
    return isinstance(value, np.ndarray) and value.dtype != object and value.dtype.kind in "biufc"


def is_in_memory(data: Any) -> bool:
    """Whether ``data`` is an array, a tensor, or a dict of them (all with rows first)."""
    if isinstance(data, Mapping):
        return bool(data) and all(_is_array(v) and v.ndim >= 1 for v in data.values())
    return _is_array(data) and data.ndim >= 1


def _base_and_indices(dataset: Any) -> tuple[Any, np.ndarray | None]:
    """Unwrap (possibly nested) ``Subset`` objects into the base dataset and its row indices."""
    indices = None
    while isinstance(dataset, Subset):
        own = np.asarray(dataset.indices, dtype=np.int64)
        indices = own if indices is None else own[indices]
        dataset = dataset.dataset
    return dataset, indices


def _as_tensor(value: Any, device: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) and not value.flags.writeable:
        value = value.copy()  # torch cannot wrap read-only memory
    tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
    return tensor if device is None else tensor.to(device)


def _tensors_on(dataset: Dataset, device: Any) -> tuple[Any, Any]:
    """``(X, y)`` of ``dataset`` as tensors on ``device``, converted once and cached on the dataset."""
    cache = dataset.__dict__.setdefault("_tensor_cache", {})
    key = str(device)
    if key not in cache:
        X = dataset.X
        X_t = {k: _as_tensor(v, device) for k, v in X.items()} if isinstance(X, Mapping) else _as_tensor(X, device)
        y_t = None if dataset.y is None else _as_tensor(dataset.y, device)
        cache[key] = (X_t, y_t)
    return cache[key]


def _take(data: Any, index: Any) -> Any:
    if isinstance(data, dict):
        return {k: v[index] for k, v in data.items()}
    return data[index]


class TensorBatchIterator:
    """Iterate over ``(X_batch, y_batch)`` cut from whole tensors, like a DataLoader would yield.

    Parameters
    ----------
    X : tensor or dict of tensors
        All rows, already on the target device.
    y : tensor or None
        The targets; ``None`` yields a zero placeholder of shape ``(batch, 1)`` as the
        default Dataset does.
    indices : tensor of int64 or None
        The rows to use (a train/valid subset); all rows when None.
    batch_size : int
        Rows per batch.
    shuffle : bool
        Draw a new ``torch.randperm`` each time iteration starts.
    drop_last : bool
        Skip a final incomplete batch.
    """

    def __init__(self, X: Any, y: Any, indices: torch.Tensor | None, batch_size: int,
                 shuffle: bool = False, drop_last: bool = False):
        self.X = X
        self.y = y
        self.indices = indices
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        first = next(iter(X.values())) if isinstance(X, dict) else X
        self.device = first.device
        self.n_rows = len(indices) if indices is not None else len(first)

    def __len__(self) -> int:
        if self.drop_last:
            return self.n_rows // self.batch_size
        return -(-self.n_rows // self.batch_size)

    def _placeholder(self, size: int) -> torch.Tensor:
        return torch.zeros((size, 1), device=self.device)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        order = None
        if self.shuffle:
            order = torch.randperm(self.n_rows, device=self.device)
            if self.indices is not None:
                order = self.indices[order]
        elif self.indices is not None:
            order = self.indices
        stop = len(self) * self.batch_size if self.drop_last else self.n_rows
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, self.n_rows)
            index = slice(start, end) if order is None else order[start:end]
            y_batch = _take(self.y, index) if self.y is not None else self._placeholder(end - start)
            yield _take(self.X, index), y_batch


def fast_iterator_for(dataset: Any, iterator_cls: Any, kwargs: dict[str, Any], device: Any) -> TensorBatchIterator | None:
    """A :class:`TensorBatchIterator` standing in for ``iterator_cls(dataset, **kwargs)``, or None.

    The fast path is taken only when the result is the same as the DataLoader's: the iterator is
    torch's ``DataLoader`` with arguments limited to batching and shuffling, and the dataset is
    bridge's default :class:`Dataset` (or a ``Subset`` of one) over in-memory arrays.

    Parameters
    ----------
    dataset : torch Dataset
        The dataset the DataLoader would read.
    iterator_cls : type
        The net's ``iterator_train`` or ``iterator_valid``.
    kwargs : dict
        The DataLoader arguments (with ``batch_size`` resolved).
    device : str, torch.device or None
        Where the tensors live (None: where they already are).

    Returns
    -------
    TensorBatchIterator or None
    """
    if iterator_cls is not DataLoader or not set(kwargs) <= _FAST_PATH_KWARGS:
        return None
    base, indices = _base_and_indices(dataset)
    if type(base) is not Dataset or not is_in_memory(base.X):
        return None
    if base.y is not None and not is_in_memory(base.y):
        return None
    X_t, y_t = _tensors_on(base, device)
    first = next(iter(X_t.values())) if isinstance(X_t, dict) else X_t
    index_t = None if indices is None else torch.as_tensor(indices, device=first.device)
    return TensorBatchIterator(X_t, y_t, index_t, kwargs["batch_size"],
                               shuffle=bool(kwargs.get("shuffle", False)), drop_last=bool(kwargs.get("drop_last", False)))
