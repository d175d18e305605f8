"""SVM decisions, one-vs-one votes, libsvm's pairwise coupling and the RBF kernel's elementwise
steps as C loops, for eager calls on CPU tensors.

At one row the torch coupling (:mod:`bridge.svm.coupling`) costs ~240 us in small operations
and a synchronisation per sweep; ``bridge/svm/_svm.c`` runs each row's iteration in a C loop
with the same float32 arithmetic (the two agree bit for bit), and in another loop adds the
intercepts to the kernel sums and counts the votes (eight torch operations). It is an
optional extension built at install time (``setup.py``) with only Python's C API: where it
did not build, or with ``BRIDGE_SVM_KERNEL=0`` in the environment, the torch version runs,
as it does under tracing, scripting, ``torch.compile``, export, autograd and on other
devices. This module checks every argument before handing data addresses to C; the C code
checks that every pair names a class.

A served one-row call cannot afford those checks on every call (~1 us each):
:class:`KernelTables` and :class:`ClassifierTables` check and copy a module's tensors once,
:class:`Prepared` keeps them while the module's tensors are the same objects at the same
version, and each call then checks only the tensors it made itself (dtype, shape,
contiguity). C only ever receives addresses of tensors the tables own or the call made.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable

import torch

from bridge.derived import EagerMemo
from bridge.svm.coupling import COUPLING_SWEEPS

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


def rbf_exponent(dots: torch.Tensor, x_squared: torch.Tensor, v_squared: torch.Tensor,
                 gamma: float) -> torch.Tensor:
    """The RBF kernel's exponent ``max(x_sq + v_sq - 2 dots, 0) * -gamma`` [N, V] (float32).

    ``dots`` [N, V] holds the products ``x . v``, ``x_squared`` [N] and ``v_squared`` [V]
    the squared norms (all float32). Each step is rounded to float32 as torch rounds
    ``(x_sq[:, None] + v_sq - 2.0 * dots).clamp_min(0.0)`` and ``-gamma * squared``.
    Written into ``dots`` when it is a contiguous CPU tensor (returned either way).

    Raises
    ------
    ValueError
        When a tensor is not on the CPU or has another dtype or shape than stated.
    RuntimeError
        When the extension is not built.
    """
    _built()
    dots = _rows("rbf_exponent", "dots", dots)
    x_squared = _indices("rbf_exponent", "x_squared", x_squared, torch.float32)
    v_squared = _indices("rbf_exponent", "v_squared", v_squared, torch.float32)
    n_rows, n_vectors = dots.shape
    if x_squared.numel() != n_rows or v_squared.numel() != n_vectors:
        raise ValueError(f"rbf_exponent: dots of shape {tuple(dots.shape)} need {n_rows} row "
                         f"and {n_vectors} vector norms; got {x_squared.numel()} and "
                         f"{v_squared.numel()}")
    _svm.rbf_exponent(dots.data_ptr(), x_squared.data_ptr(), v_squared.data_ptr(), n_rows,
                      n_vectors, float(gamma))
    return dots


_VERSION = operator.attrgetter("_version")


class Prepared(EagerMemo):
    """Tables built from a module's tensors, kept while those tensors are the same objects at
    the same version (``.to()``, ``load_state_dict`` and in-place edits rebuild them).

    Copies and pickles start empty. Tensors without a version counter (made under
    ``torch.inference_mode``) get fresh tables on every call.
    """

    def get(self, sources: tuple[torch.Tensor, ...], build: Callable[..., object]) -> object:
        """``build(*sources)``, from an earlier call while ``sources`` are unchanged."""
        state = self._state
        if state is not None and all(map(operator.is_, state[0], sources)):
            try:
                if list(map(_VERSION, sources)) == state[1]:
                    return state[2]
            except RuntimeError:  # an inference tensor: no version counter
                return _build(build, sources)
        try:
            versions = list(map(_VERSION, sources))
        except RuntimeError:
            return _build(build, sources)
        tables = _build(build, sources)
        self._state = (sources, versions, tables)
        return tables


def _float32(n_rows: int, n_columns: int) -> torch.Tensor:
    """An uninitialised float32 matrix (without a dtype argument while float32 is torch's
    default dtype: parsing it costs ~0.4 us)."""
    out = torch.empty(n_rows, n_columns)
    return out if out.dtype == torch.float32 else out.to(torch.float32)


def _build(build: Callable[..., object], sources: tuple[torch.Tensor, ...]) -> object:
    """Tables as ordinary tensors (not inference tensors, not recording autograd)."""
    with torch.inference_mode(False), torch.no_grad():
        return build(*sources)


class KernelTables:
    """An RBF kernel's support vectors [V, F] for :meth:`exponent`: their transpose (a view:
    the matrix product runs as the torch path runs it) and squared norms (a tensor of its
    own, the only one handed to C)."""

    __slots__ = ("vectors_t", "norms", "n_vectors", "_norms_address")

    def __init__(self, vectors: torch.Tensor):
        _check("KernelTables", "vectors", vectors, torch.float32, 2)
        self.vectors_t = vectors.t()
        self.norms = vectors.square().sum(dim=1).contiguous()
        self.n_vectors = vectors.shape[0]
        self._norms_address = self.norms.data_ptr()

    @classmethod
    def build(cls, vectors: torch.Tensor) -> KernelTables | None:
        """The tables, or None where C cannot take them (not a CPU float32 matrix)."""
        try:
            return cls(vectors)
        except (ValueError, TypeError):
            return None

    def exponent(self, x: torch.Tensor, gamma: float) -> torch.Tensor:
        """``max(|x|^2 + |v|^2 - 2 x.v, 0) * -gamma`` [N, V] for rows ``x`` [N, F] (float32):
        the operations of ``SvmKernel.forward`` before its exponential, the same bits."""
        dots = torch.mm(x, self.vectors_t)
        x_squared = x.square().sum(dim=1)
        n_rows, n_vectors = dots.shape
        if (dots.dtype != torch.float32 or n_vectors != self.n_vectors
                or not dots.is_contiguous() or x_squared.dtype != torch.float32
                or x_squared.shape != (n_rows,) or not x_squared.is_contiguous()):
            raise RuntimeError(f"rbf_exponent: unexpected products {dots.dtype} "
                               f"{tuple(dots.shape)} / norms {tuple(x_squared.shape)}")
        _svm.rbf_exponent(dots.data_ptr(), x_squared.data_ptr(), self._norms_address, n_rows,
                          n_vectors, gamma)
        return dots


class ClassifierTables:
    """One SVMClassifier's tables for :meth:`decide` and :meth:`probabilities`, checked and
    copied once: the pair weights in float64 (as the torch path converts them), intercepts,
    pair classes, labels and Platt coefficients."""

    __slots__ = ("weights64", "owned", "n_pairs", "n_classes", "steps", "addresses")

    def __init__(self, pair_weights: torch.Tensor, rho: torch.Tensor, pair_rows: torch.Tensor,
                 pair_columns: torch.Tensor, labels: torch.Tensor, prob_a: torch.Tensor,
                 prob_b: torch.Tensor):
        _check("ClassifierTables", "pair_weights", pair_weights, torch.float32, 2)
        self.n_pairs = n_pairs = pair_weights.shape[1]
        rows, columns = _pairs("ClassifierTables", pair_rows, pair_columns, n_pairs)
        labels = _indices("ClassifierTables", "labels", labels)
        self.n_classes = n_classes = labels.numel()
        if not 1 <= n_classes <= MAX_CLASSES:
            raise ValueError(f"ClassifierTables: {n_classes} labels; expected 1..{MAX_CLASSES}")
        if bool(((rows < 0) | (rows >= n_classes) | (columns < 0) | (columns >= n_classes)).any()):
            raise IndexError(f"ClassifierTables: a pair names a class outside 0..{n_classes - 1}")
        values = [_indices("ClassifierTables", name, tensor, torch.float32)
                  for name, tensor in (("rho", rho), ("prob_a", prob_a), ("prob_b", prob_b))]
        if values[0].numel() not in (1, n_pairs) or any(
                v.numel() not in (0, 1, n_pairs) for v in values[1:]):
            raise ValueError(f"ClassifierTables: rho, prob_a and prob_b need 1 or {n_pairs} "
                             f"values (prob_a and prob_b: or none); got "
                             f"{[v.numel() for v in values]}")
        self.weights64 = pair_weights.to(torch.float64)
        self.owned = [t.clone() for t in (rows, columns, labels, *values)]  # ours alone
        self.steps = [int(t.numel() > 1) for t in self.owned[3:]]
        self.addresses = [t.data_ptr() for t in self.owned]

    @classmethod
    def build(cls, *tensors: torch.Tensor) -> ClassifierTables | None:
        """The tables, or None where C cannot take them (another dtype, device or size: the
        torch path then runs, and says what is wrong where it cannot run either)."""
        try:
            return cls(*tensors)
        except (ValueError, IndexError, TypeError):
            return None

    def _sums(self, sums: torch.Tensor) -> int:
        """Rows of the kernel sums [N, pairs] (float64, contiguous) made by the call."""
        n_rows, n_pairs = sums.shape
        if sums.dtype != torch.float64 or n_pairs != self.n_pairs or not sums.is_contiguous():
            raise RuntimeError(f"decide: unexpected kernel sums {sums.dtype} "
                               f"{tuple(sums.shape)}")
        return n_rows

    def decide(self, sums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decision values [N, pairs] (float32) and labels [N] of the kernel sums, as
        :func:`decide`."""
        n_rows = self._sums(sums)
        rows, columns, labels, rho = self.addresses[:4]
        decisions = _float32(n_rows, self.n_pairs)
        out = torch.empty(n_rows, dtype=torch.int64)
        _svm.decide(sums.data_ptr(), rho, self.steps[0], n_rows, self.n_pairs, self.n_classes,
                    rows, columns, labels, decisions.data_ptr(), out.data_ptr())
        return decisions, out

    def probabilities(self, sums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels [N] and coupled Platt probabilities [N, classes] (float32) of the kernel
        sums: ``sigmoid(-(decision * prob_a + prob_b))`` per pair, then :func:`couple`."""
        n_rows = self._sums(sums)
        rows, columns, labels, rho, a, b = self.addresses
        if self.owned[4].numel() == 0:
            raise ValueError("probabilities: this classifier has no Platt coefficients")
        platt = _float32(n_rows, self.n_pairs)
        out = torch.empty(n_rows, dtype=torch.int64)
        _svm.decide_platt(sums.data_ptr(), rho, self.steps[0], n_rows, self.n_pairs,
                          self.n_classes, rows, columns, labels, a, self.steps[1], b,
                          self.steps[2], platt.data_ptr(), out.data_ptr())
        platt.sigmoid_()
        scores = _float32(n_rows, self.n_classes)
        _svm.couple(platt.data_ptr(), n_rows, self.n_pairs, self.n_classes, rows, columns,
                    COUPLING_SWEEPS, scores.data_ptr())
        return out, scores
