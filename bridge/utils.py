"""Small helpers shared by the nets, datasets and callbacks.

Conversions between numpy, pandas and torch (:func:`to_tensor`, :func:`to_numpy`,
:func:`to_device`) and indexing of heterogeneous data. The file helpers
(:func:`atomic_write`, :func:`open_file_like`, ...) live in :mod:`bridge.files` and are
importable from here too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from numbers import Number
from typing import Any

import numpy as np
import torch
from scipy import sparse

from bridge.errors import DeviceError
from bridge.files import (  # noqa: F401  (re-exported: skorch code imports them from utils)
    atomic_write,
    bytes_of,
    check_writable_path,
    open_file_like,
    remove_abandoned_temporaries,
)

__all__ = [
    "FirstStepAccumulator",
    "duplicate_items",
    "flatten",
    "freeze_parameter",
    "unfreeze_parameter",
    "atomic_write",
    "check_device",
    "data_from_dataset",
    "get_dim",
    "get_map_location",
    "is_dataset",
    "is_multi_input",
    "is_pandas_ndframe",
    "is_skorch_dataset",
    "is_torch_data_type",
    "multi_indexing",
    "noop",
    "params_for",
    "to_device",
    "to_numpy",
    "to_tensor",
    "train_loss_score",
    "valid_loss_score",
]


def is_pandas_ndframe(x: Any) -> bool:
    """Whether ``x`` is a pandas DataFrame or Series (without importing pandas)."""
    return type(x).__module__.startswith("pandas") and hasattr(x, "iloc")


def is_dataset(x: Any) -> bool:
    """Whether ``x`` is a ``torch.utils.data.Dataset``."""
    return isinstance(x, torch.utils.data.Dataset)


def is_torch_data_type(x: Any) -> bool:
    """Whether ``x`` is data torch consumes as is: a tensor or a ``PackedSequence``."""
    return isinstance(x, torch.Tensor | torch.nn.utils.rnn.PackedSequence)


def flatten(nested: Any) -> Iterator[Any]:
    """Yield the leaves of nested lists and tuples, depth first (``[[1, 2], (3,)]`` gives 1, 2, 3)."""
    for item in nested:
        if isinstance(item, list | tuple):
            yield from flatten(item)
        else:
            yield item


def duplicate_items(*collections: Any) -> set[Any]:
    """The items found more than once across ``collections`` (lists, tuples, sets, dicts' keys or single items)."""
    seen: set[Any] = set()
    repeated: set[Any] = set()
    for collection in collections:
        if isinstance(collection, str | bytes) or not hasattr(collection, "__iter__"):
            collection = [collection]  # a single item
        for item in collection:
            if item in seen:
                repeated.add(item)
            seen.add(item)
    return repeated


class FirstStepAccumulator:
    """Keeps the result of the first closure call of an optimizer step.

    Optimizers such as LBFGS call the closure several times per step; the loss and output of
    the first call are the ones recorded (those of the parameters before the step).
    """

    def __init__(self) -> None:
        self.step: Any = None

    def store_step(self, step: Any) -> None:
        """Keep ``step`` unless one is kept already."""
        if self.step is None:
            self.step = step

    def get_step(self) -> Any:
        """The kept step result."""
        return self.step


def train_loss_score(net: Any, X: Any = None, y: Any = None) -> float:
    """The loss of the last training batch in ``net.history`` (a scorer for ``BatchScoring``)."""
    return net.history[-1, "batches", -1, "train_loss"]


def valid_loss_score(net: Any, X: Any = None, y: Any = None) -> float:
    """The loss of the last validation batch in ``net.history`` (a scorer for ``BatchScoring``)."""
    return net.history[-1, "batches", -1, "valid_loss"]


def noop(*args: Any, **kwargs: Any) -> None:
    """Do nothing (a placeholder callable)."""


def to_tensor(X: Any, device: str | torch.device | None, accept_sparse: bool = False) -> Any:
    """Turn ``X`` into torch tensors on ``device``.

    Parameters
    ----------
    X : tensor, ndarray, pandas object, number, dict, list or tuple of those
        The data; containers are converted element by element.
    device : str, torch.device or None
        Where the tensors go; ``None`` leaves them where they are.
    accept_sparse : bool
        Whether scipy sparse matrices become sparse COO tensors.

    Returns
    -------
    tensor, dict, list or tuple
        The same structure with tensors.

    Raises
    ------
    TypeError
        When ``X`` (or an element) cannot be converted.
    """
    if isinstance(X, torch.Tensor):
        return X if device is None else X.to(device)
    if isinstance(X, Mapping):
        return {key: to_tensor(val, device, accept_sparse) for key, val in X.items()}
    if isinstance(X, (list, tuple)):
        if X and all(isinstance(v, Number) for v in X):
            return to_device(torch.as_tensor(np.asarray(X)), device)
        return type(X)(to_tensor(v, device, accept_sparse) for v in X)
    if is_pandas_ndframe(X):
        return to_tensor(X.to_numpy(), device, accept_sparse)
    if isinstance(X, np.ndarray):
        if X.dtype == object:
            raise TypeError(f"cannot convert a numpy array of dtype object to a tensor: {X[:3]!r}...")
        return to_device(torch.as_tensor(X if X.flags.writeable else X.copy()), device)
    if isinstance(X, (Number, np.number, np.bool_)):
        return to_device(torch.as_tensor(X), device)
    if sparse.issparse(X):
        if not accept_sparse:
            raise TypeError("sparse matrices are not accepted here; pass accept_sparse=True or X.toarray()")
        coo = X.tocoo()
        indices = torch.as_tensor(np.vstack([coo.row, coo.col]), dtype=torch.long)
        tensor = torch.sparse_coo_tensor(indices, torch.as_tensor(coo.data), coo.shape)
        return to_device(tensor, device)
    raise TypeError(
        f"cannot convert {type(X).__name__} to a torch tensor; accepted: tensors, numpy arrays, "
        "pandas objects, numbers, and dicts/lists/tuples of those"
    )


def to_numpy(X: Any) -> Any:
    """Turn tensors (on any device), pandas objects and containers of them into numpy arrays.

    Parameters
    ----------
    X : tensor, ndarray, pandas object, dict, list or tuple
        The data.

    Returns
    -------
    ndarray or the same container of ndarrays
        Tensors are detached and copied to the CPU first.

    Raises
    ------
    TypeError
        When ``X`` has no numpy representation.
    """
    if isinstance(X, np.ndarray):
        return X
    if isinstance(X, torch.Tensor):
        if X.is_sparse:
            X = X.to_dense()
        return X.detach().cpu().numpy()
    if isinstance(X, Mapping):
        return {key: to_numpy(val) for key, val in X.items()}
    if is_pandas_ndframe(X):
        return X.to_numpy()
    if isinstance(X, (list, tuple)):
        return type(X)(to_numpy(v) for v in X)
    if isinstance(X, (Number, np.number)):
        return np.asarray(X)
    if hasattr(X, "__array__"):  # e.g. a SliceDataset
        return np.asarray(X)
    raise TypeError(f"cannot convert {type(X).__name__} to a numpy array")


def to_device(X: Any, device: str | torch.device | None) -> Any:
    """Move tensors, modules and containers of tensors to ``device`` (``None``: leave them)."""
    if device is None:
        return X
    if isinstance(X, (torch.Tensor, torch.nn.Module)):
        return X.to(device)
    if isinstance(X, Mapping):
        return {key: to_device(val, device) for key, val in X.items()}
    if isinstance(X, torch.nn.utils.rnn.PackedSequence):
        return X.to(device)
    if isinstance(X, (list, tuple)):
        return type(X)(to_device(v, device) for v in X)
    return X


def check_device(device: str | torch.device | None) -> None:
    """Raise :class:`~bridge.errors.DeviceError` when ``device`` cannot be used here.

    Parameters
    ----------
    device : str, torch.device or None
        The requested device.

    Raises
    ------
    DeviceError
        When CUDA (or MPS) is asked for but not available; the message lists what is.
    """
    if device is None:
        return
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"device={device!r} is not a valid torch device: {exc}") from exc
    available = ["cpu"]
    if torch.cuda.is_available():
        available += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        available.append("mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device={device!r} was requested but CUDA is not available; available devices: {available}")
    if kind == "mps" and "mps" not in available:
        raise DeviceError(f"device={device!r} was requested but MPS is not available; available devices: {available}")


def get_map_location(target_device: str | torch.device | None, fallback_device: str = "cpu") -> torch.device:
    """The device to load tensors to: ``target_device`` when usable, else ``fallback_device``."""
    if target_device is None:
        target_device = fallback_device
    device = torch.device(target_device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return torch.device(fallback_device)
    return device


def get_dim(y: Any) -> int:
    """Number of dimensions of an array or tensor."""
    return y.ndim if hasattr(y, "ndim") else y.dim()


def params_for(prefix: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``kwargs`` routed to ``prefix`` (``prefix__name``), without the prefix.

    Parameters
    ----------
    prefix : str
        E.g. ``"module"`` or ``"callbacks__print_log"``.
    kwargs : mapping
        Parameter names to values.

    Returns
    -------
    dict
        ``{name: value}`` for every ``prefix__name`` key.
    """
    head = prefix if prefix.endswith("__") else prefix + "__"
    return {key[len(head):]: val for key, val in kwargs.items() if key.startswith(head)}


def _index_one(data: Any, index: Any) -> Any:
    if data is None:
        return None
    if is_pandas_ndframe(data):
        return data.iloc[index]
    if isinstance(data, (list, tuple)) and not isinstance(index, (int, np.integer)) and not isinstance(index, slice):
        return [data[i] for i in np.asarray(index).tolist()]
    if isinstance(data, (list, tuple)) and isinstance(index, slice):
        return data[index]
    if isinstance(data, torch.Tensor) and isinstance(index, np.ndarray):
        index = torch.as_tensor(index, device=data.device)
    return data[index]


def multi_indexing(data: Any, index: Any) -> Any:
    """Index ``data`` (array, tensor, pandas object, list, dict or tuple of those) with ``index``.

    Parameters
    ----------
    data : array-like, dict, list or tuple
        The data; dict values and tuple elements are indexed one by one.
    index : int, slice, array of int or bool
        The rows to take.

    Returns
    -------
    the same structure as ``data``
        The selected rows.
    """
    if isinstance(data, Mapping) and not is_pandas_ndframe(data):
        selected = {key: multi_indexing(val, index) for key, val in data.items()}
        return type(data)(**selected) if _is_slicedict(data) else selected
    if is_multi_input(data):
        return type(data)(multi_indexing(val, index) for val in data)
    if isinstance(index, list):
        index = np.asarray(index)
    return _index_one(data, index)


def _is_slicedict(data: Any) -> bool:
    return type(data).__name__ == "SliceDict"


def data_from_dataset(dataset: Any, X_indexing: Any = None, y_indexing: Any = None) -> tuple[Any, Any]:
    """The ``(X, y)`` behind a :class:`bridge.dataset.Dataset` or a ``Subset`` of one.

    Parameters
    ----------
    dataset : Dataset or torch.utils.data.Subset
        The dataset.
    X_indexing, y_indexing : ignored
        Kept for skorch compatibility.

    Returns
    -------
    tuple
        ``(X, y)`` restricted to the subset's rows.

    Raises
    ------
    AttributeError
        When the data cannot be extracted (a user dataset without ``X``/``y``).
    """
    if isinstance(dataset, torch.utils.data.Subset):
        X, y = data_from_dataset(dataset.dataset)
        indices = np.asarray(dataset.indices)
        return multi_indexing(X, indices), multi_indexing(y, indices)
    if hasattr(dataset, "X") and hasattr(dataset, "y"):
        return dataset.X, dataset.y
    if isinstance(dataset, torch.utils.data.TensorDataset):
        if len(dataset.tensors) != 2:
            raise AttributeError(f"a TensorDataset gives X and y only with 2 tensors; this one has "
                                 f"{len(dataset.tensors)}")
        return dataset.tensors[0], dataset.tensors[1]
    raise AttributeError(f"could not extract X and y from a {type(dataset).__name__}")


def is_skorch_dataset(dataset: Any) -> bool:
    """Whether ``dataset`` is bridge's :class:`~bridge.dataset.Dataset` or a ``Subset`` (of a Subset) of one."""
    from bridge.dataset import Dataset

    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset
    return isinstance(dataset, Dataset)


def is_multi_input(data: Any) -> bool:
    """Whether ``data`` holds several inputs side by side: a list or tuple of indexable parts.

    ``[X_text, X_numbers]`` (arrays, tensors, lists, dicts or pandas objects with one entry per
    row each) is indexed part by part; ``[0, 1, 2]`` is a list of rows.
    """
    return isinstance(data, list | tuple) and bool(data) and all(
        not isinstance(v, str | bytes) and (hasattr(v, "__len__") or hasattr(v, "shape")) for v in data)


def is_sequence_of_arrays(x: Any) -> bool:
    """Whether ``x`` is a list/tuple whose elements are arrays or tensors."""
    return isinstance(x, Sequence) and not isinstance(x, str) and all(hasattr(v, "shape") for v in x)


def freeze_parameter(param: torch.nn.Parameter) -> None:
    """Stop gradients for ``param`` (``requires_grad = False``), the default of :class:`Freezer`.

    Parameters
    ----------
    param : torch.nn.Parameter
        The parameter to freeze in place.
    """
    param.requires_grad = False


def unfreeze_parameter(param: torch.nn.Parameter) -> None:
    """Let gradients flow again for ``param`` (``requires_grad = True``), for :class:`Unfreezer`.

    Parameters
    ----------
    param : torch.nn.Parameter
        The parameter to unfreeze in place.
    """
    param.requires_grad = True
