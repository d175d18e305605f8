"""Lazy scoring of Dask arrays and DataFrames with a converted model or a fitted net.

The model travels as one graph key holding its bytes (:class:`~bridge.dask.payload.ModelPayload`),
every block task names that key, and each worker process rebuilds the model once. The output
type comes from calling the model on one made-up row locally, so nothing of ``X`` is computed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from bridge.dask.payload import ModelPayload
from bridge.errors import ChunkingError

__all__ = ["score", "model_key"]

#: Methods whose columns are the classes.
_PER_CLASS = ("predict_proba", "predict_log_proba")


def model_key(payload: ModelPayload) -> str:
    """The graph key under which ``payload`` travels (the same for every method and call)."""
    return f"bridge-model-{payload.token}"


def score(model: Any, X: Any, method: str = "predict", *, device: str | torch.device = "auto"):
    """Run ``model.<method>`` over a Dask collection, lazily.

    Parameters
    ----------
    model : ConvertedModel or fitted NeuralNet
        What :func:`bridge.from_sklearn` / :func:`bridge.from_onnx`-based wrappers return, or
        a net after ``fit``.
    X : dask.array.Array or dask.dataframe.DataFrame
        A 2-D array chunked along rows only (any chunk sizes, empty chunks included), or a
        DataFrame (text columns and column names checked as in the in-memory call).
    method : str, default "predict"
        ``predict``, ``predict_proba``, ``predict_log_proba``, ``decision_function``,
        ``transform`` or ``score_samples``: whichever the model has.
    device : str or torch.device, default "auto"
        Where each worker runs the model: ``"auto"`` is CUDA when that worker sees a GPU.

    Returns
    -------
    dask.array.Array, dask.dataframe.Series or dask.dataframe.DataFrame
        An array for an array; for a DataFrame, a Series named after ``method`` (one value
        per row) or a DataFrame (columns: the classes for probabilities, else 0..k-1), on
        ``X``'s index. Nothing is computed.

    Raises
    ------
    ChunkingError
        ``X`` is chunked along its columns, its column count is unknown, it is not 2-D, or
        it is an object array (text needs a DataFrame, whose columns carry their types).
    TypeError
        ``X`` is another kind of Dask collection.
    RuntimeError
        ``device`` is not a torch device (a worker without the device raises
        :class:`~bridge.errors.DeviceError` when its task runs).
    AttributeError
        The model has no ``method``.
    """
    import dask
    import dask.array as da
    import dask.dataframe as dd

    function = getattr(model, method)  # AttributeError as in the in-memory call
    if not (isinstance(device, str) and device == "auto"):
        device = torch.device(device)  # a malformed device fails here, not on the workers
    if isinstance(X, da.Array):
        sample = _array_sample(X)
    elif isinstance(X, dd.DataFrame):
        sample = dd.utils.meta_nonempty(X._meta).iloc[:1]
    else:
        raise TypeError(f"bridge scores a dask.array.Array or a dask.dataframe.DataFrame; got "
                        f"{type(X).__module__}.{type(X).__name__}")
    local = _as_numpy(function(sample))  # checks columns, dtypes and text like the real call
    if local.ndim not in (1, 2):
        raise ChunkingError(f"{method} gives {local.ndim}-D output; bridge scores Dask "
                            "collections with 1-D or 2-D outputs")
    payload = ModelPayload(model)
    held = dask.delayed(payload, name=model_key(payload), pure=True)
    if isinstance(X, da.Array):
        return _score_array(X, held, method, str(device), local)
    return _score_frame(X, held, method, str(device), local, _columns(model, method, local))


def _array_sample(X: Any) -> np.ndarray:
    if X.ndim != 2:
        raise ChunkingError(f"X has {X.ndim} dimension(s) (shape {X.shape}); bridge scores 2-D "
                            "Dask arrays, rows by columns")
    if len(X.chunks[1]) != 1:
        raise ChunkingError(f"X is chunked along its columns (column chunks {X.chunks[1]}); "
                            "each task needs whole rows: X = X.rechunk({1: -1})")
    if any(math.isnan(size) for size in X.chunks[1]):
        raise ChunkingError("X has an unknown number of columns (chunks (..., (nan,))); compute "
                            "its chunk sizes first: X.compute_chunk_sizes()")
    if X.dtype == object:
        raise ChunkingError("X is a Dask array of dtype object; score text columns from a "
                            "dask.dataframe.DataFrame, whose columns say which hold text")
    return np.zeros((1, X.shape[1]), dtype=X.dtype)


def _as_numpy(result: Any) -> np.ndarray:
    if isinstance(result, torch.Tensor):
        return result.detach().cpu().numpy()
    return np.asarray(result)


def _columns(model: Any, method: str, local: np.ndarray) -> list | None:
    if local.ndim == 1:
        return None
    width = local.shape[1]
    classes = getattr(model, "classes_", None)
    if classes is None:
        classes = getattr(model, "_classes", None)
    if method in _PER_CLASS and classes is not None and len(classes) == width:
        return list(np.asarray(classes).tolist())
    return list(range(width))


def _score_array(X: Any, held: Any, method: str, device: str, local: np.ndarray) -> Any:
    if local.ndim == 1:
        return X.map_blocks(_score_block, held, method, device, local.dtype, (),
                            drop_axis=1, chunks=(X.chunks[0],), dtype=local.dtype,
                            meta=np.empty((0,), dtype=local.dtype))
    width = local.shape[1]
    return X.map_blocks(_score_block, held, method, device, local.dtype, (width,),
                        chunks=(X.chunks[0], (width,)), dtype=local.dtype,
                        meta=np.empty((0, width), dtype=local.dtype))


def _score_block(block: np.ndarray, payload: ModelPayload, method: str, device: str,
                 dtype: np.dtype, trailing: tuple[int, ...]) -> np.ndarray:
    """One block's result (runs on a worker)."""
    if len(block) == 0:
        return np.empty((0, *trailing), dtype=dtype)
    result = _as_numpy(getattr(payload.model(device), method)(block))
    return result.astype(dtype, copy=False)


def _score_frame(X: Any, held: Any, method: str, device: str, local: np.ndarray,
                 columns: list | None) -> Any:
    import pandas as pd

    index = X._meta.index[:0]
    if columns is None:
        meta = pd.Series(np.empty(0, dtype=local.dtype), index=index, name=method)
    else:
        meta = pd.DataFrame(np.empty((0, len(columns)), dtype=local.dtype), index=index,
                            columns=columns)
    return X.map_partitions(_score_partition, held, method, device, meta, meta=meta,
                            align_dataframes=False)


def _score_partition(part: Any, payload: ModelPayload, method: str, device: str,
                     meta: Any) -> Any:
    """One partition's result, on the partition's index (runs on a worker)."""
    import pandas as pd

    if len(part) == 0:
        return meta.iloc[:0].set_axis(part.index[:0], axis=0)
    values = _as_numpy(getattr(payload.model(device), method)(part)).astype(
        meta.dtypes.iloc[0] if isinstance(meta, pd.DataFrame) else meta.dtype, copy=False)
    if isinstance(meta, pd.Series):
        return pd.Series(values, index=part.index, name=meta.name)
    return pd.DataFrame(values, index=part.index, columns=meta.columns)
