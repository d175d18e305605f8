"""SVM decisions, one-vs-one votes and libsvm's pairwise coupling as C loops, for eager calls
on CPU tensors.

At one row the torch coupling (:mod:`bridge.svm.coupling`) costs ~240 us in small operations
and a synchronisation per sweep; ``bridge/svm/_svm.c`` runs each row's iteration in a C loop
with the same float32 arithmetic (the two agree bit for bit), and in another loop adds the
intercepts to the kernel sums and counts the votes (eight torch operations). It is an
optional extension built at install time (``setup.py``) with only Python's C API: where it
did not build, or with ``BRIDGE_SVM_KERNEL=0`` in the environment, the torch version runs,
as it does under tracing, scripting, ``torch.compile``, export, autograd and on other
devices. This module checks every argument before handing data addresses to C; the C code
checks that every pair names a class.
"""

from __future__ import annotations

import os

import torch

try:  # built by setup.py where a C compiler was found
    from bridge.svm import _svm
except ImportError:
    _svm = None

SWITCH = "BRIDGE_SVM_KERNEL"
MAX_CLASSES = 4096  # as in _svm.c: its workspace holds 2 * C * C + C floats


def available() -> bool:
    """Whether the C loops can run here (built, and ``BRIDGE_SVM_KERNEL`` is not ``0``)."""
    return _svm is not None and os.environ.get(SWITCH, "1") != "0"


def decide(sums: torch.Tensor, rho: torch.Tensor, pair_rows: torch.Tensor,
           pair_columns: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decision values [N, pairs] (float32) and one-vs-one labels [N] (int64).

    The decisions are ``(sums + rho).to(float32)`` for the kernel sums ``sums`` [N, pairs]
    (float64) and ``rho`` (float32, one value per pair or one for all). Pair ``k`` votes for
    class ``pair_rows[k]`` when its decision is above 0, else for ``pair_columns[k]``; the
    most voted class wins, ties going to the lowest index, and its entry of ``labels``
    [classes] (int64) is the row's label.

    Raises
    ------
    ValueError
        When a tensor is not on the CPU or has another dtype or shape than stated.
    IndexError
        When a pair names a class outside ``labels``.
    RuntimeError
        When the extension is not built.
    """
    _built()
    _check("decide", "sums", sums, torch.float64, 2)
    sums = sums.contiguous()
    n_rows, n_pairs = sums.shape
    rows, columns = _pairs("decide", pair_rows, pair_columns, n_pairs)
    labels = _indices("decide", "labels", labels)
    rho = _indices("decide", "rho", rho, torch.float32)
    if labels.numel() < 1 or rho.numel() not in (1, n_pairs):
        raise ValueError(f"decide: need at least one label and 1 or {n_pairs} rho values; got "
                         f"{labels.numel()} and {rho.numel()}")
    decisions = torch.empty((n_rows, n_pairs), dtype=torch.float32)
    out = torch.empty(n_rows, dtype=torch.int64)
    _svm.decide(sums.data_ptr(), rho.data_ptr(), int(rho.numel() > 1), n_rows, n_pairs,
                labels.numel(), rows.data_ptr(), columns.data_ptr(), labels.data_ptr(),
                decisions.data_ptr(), out.data_ptr())
    return decisions, out


def couple(pairs: torch.Tensor, pair_rows: torch.Tensor, pair_columns: torch.Tensor,
           n_classes: int, max_sweeps: int = 100) -> torch.Tensor:
    """Coupled probabilities [N, n_classes] (float32) of pair probabilities ``pairs`` [N, pairs].

    Each pair's probability is clamped to [1e-7, 1 - 1e-7]; pair ``k`` is class
    ``pair_rows[k]`` against ``pair_columns[k]``. The same arithmetic as building the
    pairwise matrix and calling
    :func:`bridge.svm.coupling.couple_pairwise_probabilities` on it.

    Raises
    ------
    ValueError
        When a tensor is not on the CPU or has another dtype or shape than stated, or
        ``n_classes`` is outside 1..4096.
    IndexError
        When a pair names a class outside ``0..n_classes - 1``.
    RuntimeError
        When the extension is not built.
    """
    _built()
    pairs = _rows("couple", "pairs", pairs)
    rows, columns = _pairs("couple", pair_rows, pair_columns, pairs.shape[1])
    if not 1 <= int(n_classes) <= MAX_CLASSES:
        raise ValueError(f"couple: n_classes={n_classes!r}; expected 1..{MAX_CLASSES}")
    out = torch.empty((pairs.shape[0], int(n_classes)), dtype=torch.float32)
    _svm.couple(pairs.data_ptr(), pairs.shape[0], pairs.shape[1], int(n_classes),
                rows.data_ptr(), columns.data_ptr(), int(max_sweeps), out.data_ptr())
    return out


def _built() -> None:
    if _svm is None:
        raise RuntimeError("bridge.svm._svm is not built (no C compiler at install time)")


def _rows(function: str, name: str, values: torch.Tensor) -> torch.Tensor:
    """``values`` as a contiguous CPU float32 matrix, or ValueError."""
    _check(function, name, values, torch.float32, 2)
    return values.contiguous()


def _indices(function: str, name: str, values: torch.Tensor,
             dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """``values`` as a contiguous CPU vector of ``dtype`` (int64), or ValueError."""
    _check(function, name, values, dtype, 1)
    return values.contiguous()


def _check(function: str, name: str, values: torch.Tensor, dtype: torch.dtype,
           dim: int) -> None:
    """Raise ValueError unless ``values`` is a CPU tensor of ``dtype`` with ``dim`` axes."""
    if not isinstance(values, torch.Tensor) or not values.is_cpu:
        where = values.device if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"{function}: {name} is on {where}; expected a CPU tensor")
    if values.dtype != dtype or values.dim() != dim:
        raise ValueError(f"{function}: {name} must be a {dim}-D {dtype} tensor; got "
                         f"{values.dtype} of shape {tuple(values.shape)}")


def _pairs(function: str, pair_rows: torch.Tensor, pair_columns: torch.Tensor,
           n_pairs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair classes as contiguous CPU int64 vectors of ``n_pairs`` entries, or ValueError."""
    rows = _indices(function, "pair_rows", pair_rows)
    columns = _indices(function, "pair_columns", pair_columns)
    if rows.numel() != n_pairs or columns.numel() != n_pairs:
        raise ValueError(f"{function}: pair_rows and pair_columns must hold one entry per "
                         f"pair ({n_pairs}); got {rows.numel()} and {columns.numel()}")
    return rows, columns
