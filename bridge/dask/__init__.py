"""Dask support: converted models and fitted nets score Dask arrays and DataFrames lazily,
the model travelling once per worker (``pip install onnxbridge[dask]``).

Importing this package does not import Dask; :func:`is_dask_collection` is cheap enough for
the in-memory call paths to ask on every call.
"""

from __future__ import annotations

from typing import Any

from bridge.dask.payload import ModelPayload, load_counts
from bridge.dask.scoring import score

__all__ = ["is_dask_collection", "score", "load_counts", "ModelPayload"]


def is_dask_collection(X: Any) -> bool:
    """Whether ``X`` is a Dask collection (it implements ``__dask_graph__``); no Dask import."""
    return getattr(type(X), "__dask_graph__", None) is not None
