"""TopK's selection as a C loop (``bridge/onnx/_select.c``) for eager calls on CPU tensors.

``torch.topk`` does not put equal values in index order, which ONNX's TopK requires, so the
torch path (:func:`bridge.onnx.ops.indexing._topk_lower_index_first`) repairs ties with
comparisons and sorts over the whole row; for kNN's neighbour search (5 of 5,000 distances
per query) that was half of the call. The C loop keeps each row's best ``k`` in a sorted
buffer in one pass, ties in index order, NaN ranked above every number (as ``torch.sort``
ranks it). Both give the same values and indices.

An optional extension built at install time (``setup.py``): where it did not build, with
``BRIDGE_SELECT_KERNEL=0`` in the environment, under tracing, export, ``torch.compile`` or
autograd, and on other devices or dtypes, the torch path runs.
"""

from __future__ import annotations

import os

import torch

from bridge.derived import eager_call

try:  # built by setup.py where a C compiler was found
    from bridge.onnx import _select
except ImportError:
    _select = None

SWITCH = "BRIDGE_SELECT_KERNEL"
MAX_K = 256  # as in _select.c: larger k take the torch path


def usable(x: torch.Tensor, count: int) -> bool:
    """Whether :func:`select` serves this call: built and switched on, an eager call on a
    CPU float32/float64 tensor that records no gradient, ``1 <= count <= MAX_K``."""
    return (_select is not None and x.is_cpu
            and x.dtype in (torch.float32, torch.float64) and 0 < count <= MAX_K
            and count <= (x.shape[-1] if x.dim() else 1)
            and not (x.requires_grad and torch.is_grad_enabled()) and eager_call()
            and os.environ.get(SWITCH, "1") != "0")


def select(x: torch.Tensor, count: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``count`` smallest (or largest) entries of each row of ``x`` along its last
    axis, sorted, equal values in index order: ``(values, int64 indices)``.

    Raises
    ------
    ValueError
        When :func:`usable` says no (the caller takes the torch path instead).
    """
    if not usable(x, count):
        raise ValueError(f"select: no C selection for a {x.dtype} tensor on {x.device} with "
                         f"k={count} (see bridge.onnx.select.usable)")
    rows = x.detach().reshape(-1, x.shape[-1]).contiguous()
    values = torch.empty((rows.shape[0], count), dtype=x.dtype)
    indices = torch.empty((rows.shape[0], count), dtype=torch.int64)
    _select.select(rows.data_ptr(), rows.shape[0], rows.shape[1], count, int(largest),
                   int(x.dtype == torch.float64), values.data_ptr(), indices.data_ptr())
    shape = x.shape[:-1] + (count,)
    return values.reshape(shape), indices.reshape(shape)


def built() -> bool:
    """Whether the C selection is built and switched on (``BRIDGE_SELECT_KERNEL``)."""
    return _select is not None and os.environ.get(SWITCH, "1") != "0"


def select_distances(products: torch.Tensor, norms: torch.Tensor, count: int, root: bool,
                     dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``count`` smallest distances of each row, from the float64 parts of squared
    Euclidean distances (:meth:`bridge.onnx.ops.control_flow.OnnxScan.squared_parts`):
    row ``r``'s distances are ``max(products[r] + norms[r], 0)`` rounded to ``dtype``
    (float32 or float64), square-rooted when ``root``, as torch computes them, in one C
    pass that also selects (kNN's search: five passes over the distances before).

    Raises
    ------
    ValueError
        When the C loop is not built or switched off, or the tensors are not contiguous
        float64 CPU tensors of matching rows with ``1 <= count <= min(columns, MAX_K)``.
    """
    rows, columns = products.shape if products.dim() == 2 else (0, 0)
    if not (built() and products.dtype == norms.dtype == torch.float64 and products.is_cpu
            and norms.is_cpu and products.is_contiguous() and norms.is_contiguous()
            and tuple(norms.shape) == (rows,) and 0 < count <= min(columns, MAX_K)
            and dtype in (torch.float32, torch.float64)):
        raise ValueError(f"select_distances: no C selection for products {products.dtype} "
                         f"{tuple(products.shape)}, norms {tuple(norms.shape)}, k={count}")
    values = torch.empty((rows, count), dtype=dtype)
    indices = torch.empty((rows, count), dtype=torch.int64)
    _select.select_squared(products.data_ptr(), norms.data_ptr(), rows, columns, count,
                           int(root), int(dtype == torch.float64), values.data_ptr(),
                           indices.data_ptr())
    return values, indices
