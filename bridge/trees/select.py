"""The rule that picks a tree strategy for one forward call (see ``docs/trees.md``).

Inputs: the forest's shape (:class:`ForestShape`: depth, tree count, nodes, features tested),
the call's batch size and device. On CPU the rule estimates each candidate's time as a
per-call part (torch operations launched, each ~6 us here) plus a per-(row, tree) part, with
constants fitted to ``benchmarks/trees.py`` runs on a 2-core x86 VM (AMD EPYC, torch 2.13,
one thread; recorded under ``benchmarks/results/``), and takes the smallest; where the call
runs the walk in C (:mod:`bridge.trees.native`), the walk is costed as that loop. On CUDA the
walk runs as one Triton kernel where it can (:mod:`bridge.trees.kernel`), and then the rule
takes it; otherwise a second cost model, fitted to runs on an H100 (torch 2.11, CUDA 13;
``benchmarks/results/trees-h100-eager.md`` and ``trees-matrix-h100-eager.md``), where a call's time
is mostly its operations' launches.
"""

from __future__ import annotations

from dataclasses import dataclass

STRATEGIES = ("gemm", "traversal", "perfect", "lookup", "bitvector")
CHOICES = ("auto",) + STRATEGIES

# GEMM does, per row, trees * nodes * leaves multiply-adds (padded to the largest tree)
# where the walks do ~depth gathers; it wins only while per-call overhead dominates. CPU
# measurements (1 thread): GradientBoosting 100 x depth 3 (7x8 per tree) 0.14 vs 0.27 ms
# (traversal) at 1 row, and about even with 'lookup' at 32 rows; HistGradientBoosting
# (30x31) 0.17 vs 0.94 ms at 1 row; RandomForest depth 8 (255x256) is never worth it.
GEMM_MAX_TREE_SIZE = {"cpu": 1024, "cuda": 4096}
GEMM_MAX_BATCH_CPU = 32  # on CUDA the cost model below decides
# Perfect trees (no child table, one gather fewer per level) are never picked: on CPU they
# trail the walk (HistGradientBoosting 94 vs 49 ms at 10k rows: padding walks finished
# shallow trees too), and on an H100 they took about twice the walk's time in every forest
# measured (the padding doubles the work; the launches are as many).

# CPU cost model, microseconds per operation launched and nanoseconds per (row, tree).
# Fitted on eight forests at 100..10k rows (benchmarks/trees.py --matrix): 'lookup' costs
# ~9 ns for its three table-looked-up levels plus ~6 ns per further level walked;
# 'bitvector' ~3 ns plus ~0.66 ns per feature group (twice that with 64-bit words, > 32
# leaves): a least-squares fit over the 10k- and 100k-row cells of session 6's runs
# (trees-vm.md, trees-matrix-vm.md; 14 cells, 12.0-70 ns); sessions 2-5 used 1.0, fitted at
# 100-10k rows, where the per-call launches inflate it;
# 'lookup' also copies the input transposed (~1.5 ns per row and feature: visible for a
# single deep tree, 100k rows: 17.9 vs 14.9 ms for the plain walk).
OPERATION_US = 6.0
LOOKUP_TOP_NS = 9.0
LOOKUP_COPY_NS = 1.5  # per row and feature: its transposed copy of the input
WALK_LEVEL_NS = 6.0
BITVECTOR_BASE_NS = 3.0
BITVECTOR_GROUP_NS = 0.66


@dataclass(frozen=True)
class ForestShape:
    """What the rule needs to know about a forest.

    Attributes
    ----------
    depth : int
        Largest number of interior levels on a root-to-leaf path.
    n_trees : int
        Number of trees.
    tree_size : int
        Interior nodes times leaves of the largest tree (GEMM's per-tree work per row).
    mean_depth : float
        Mean over trees of their depth (levels a full walk takes on average).
    mean_depth_below_top : float
        Mean over trees of the levels below the third (what 'lookup' still walks).
    groups : int
        Feature groups (feature, comparison mode) the bit-vector strategy searches.
    n_features : int
        Input columns the forest reads (1 + the largest feature index).
    word_bits : int
        Bits per tree word of the bit-vector strategy (32 or 64).
    """

    depth: int
    n_trees: int
    tree_size: int
    mean_depth: float = 0.0
    mean_depth_below_top: float = 0.0
    groups: int = 0
    word_bits: int = 32
    n_features: int = 0


def auto_candidates(shape: ForestShape, bitvector_possible: bool) -> tuple[str, ...]:
    """The strategies ``"auto"`` may pick for a forest on some device (the ones worth building)."""
    names = []
    if shape.tree_size <= max(GEMM_MAX_TREE_SIZE.values()):
        names.append("gemm")
    names += ["traversal", "lookup"]
    if bitvector_possible:
        names.append("bitvector")
    return tuple(names)


def validate_strategy(strategy: str) -> str:
    """Return ``strategy`` when it is one of :data:`CHOICES`.

    Raises
    ------
    ValueError
        Naming the value and the valid ones.
    """
    if strategy not in CHOICES:
        raise ValueError(
            f"tree_strategy={strategy!r} is not valid; expected one of {list(CHOICES)}"
        )
    return strategy


def estimated_cpu_microseconds(strategy: str, shape: ForestShape, batch: int) -> float:
    """The cost model's estimate for one call of ``strategy`` on CPU (``lookup``,
    ``bitvector`` or ``traversal``)."""
    walks = batch * shape.n_trees / 1000.0  # thousands of (row, tree) pairs
    if strategy == "lookup":
        # its top three levels launch as many ops as the walk's (the transposed input, the tests,
        # the matmul and the exit lookup): measured about even at 1-100 rows
        launches = 11 + 8 * shape.depth
        per_walk = (LOOKUP_TOP_NS + WALK_LEVEL_NS * shape.mean_depth_below_top
                    + LOOKUP_COPY_NS * shape.n_features / shape.n_trees)
    elif strategy == "bitvector":
        launches = 4 * 8 + 2 * shape.groups + 12  # ~8 search steps of 4 launches
        word = 2.0 if shape.word_bits > 32 else 1.0
        per_walk = BITVECTOR_BASE_NS + BITVECTOR_GROUP_NS * word * shape.groups
    else:
        launches = 10 + 8 * shape.depth
        per_walk = WALK_LEVEL_NS * shape.mean_depth
    return OPERATION_US * launches + walks * per_walk


# CPU with the walk in C (bridge/trees/native.py, `fused_walk`): the call's fixed part is
# about the aggregation's operations, and a walk costs ~2.2 ns per level of its tree's depth
# (a least-squares fit over the same 10k- and 100k-row cells: 6.8 ns per (row, tree) at depth
# 3, 18 at 8.6, 40-51 at 20; the walks stop at their leaves, so shallow leaves cost less than
# the depth says). It beats GEMM at 1 row too (trees-vm-fit.md: gradient boosting 0.17 vs
# 0.26 ms, HistGradientBoosting 0.20 vs 0.32), so GEMM is not a candidate then.
FUSED_LAUNCHES = 10
FUSED_LEVEL_NS = 2.2


def estimated_cpu_fused_microseconds(strategy: str, shape: ForestShape, batch: int) -> float:
    """:func:`estimated_cpu_microseconds` where 'traversal' walks in C."""
    if strategy != "traversal":
        return estimated_cpu_microseconds(strategy, shape, batch)
    walks = batch * shape.n_trees / 1000.0
    return OPERATION_US * FUSED_LAUNCHES + walks * FUSED_LEVEL_NS * shape.mean_depth


# CUDA cost model (torch operations only), from the H100 runs: a fixed part in microseconds
# (the launches: ~7 us each there, eight per level of a walk) plus nanoseconds per (row, tree).
# GEMM: 0.22 ms, and per walk 1.7 ns + 0.0085 ns per multiply-add of a tree (56: 2.3 ns,
# 992: 9.6 ns); walks: 0.6 ns per level; lookup: its table-looked-up top levels ~1.1 ns;
# bit-vectors: 0.6 ms + 20 us per feature group (a search each), ~0.5 ns + 0.025 ns per group.
CUDA_GEMM_US, CUDA_GEMM_BASE_NS, CUDA_GEMM_MAC_NS = 220.0, 1.7, 0.0085
CUDA_WALK_US, CUDA_LEVEL_US, CUDA_LEVEL_NS, CUDA_LOOKUP_TOP_NS = 100.0, 55.0, 0.6, 1.1
CUDA_BITVECTOR_US, CUDA_GROUP_US = 600.0, 20.0
CUDA_BITVECTOR_NS, CUDA_GROUP_NS = 0.5, 0.025


def estimated_cuda_microseconds(strategy: str, shape: ForestShape, batch: int) -> float:
    """The CUDA cost model's estimate for one call of ``strategy`` run as torch operations
    (``gemm``, ``lookup``, ``bitvector`` or ``traversal``)."""
    walks = batch * shape.n_trees / 1000.0  # thousands of (row, tree) pairs
    if strategy == "gemm":
        return CUDA_GEMM_US + walks * (CUDA_GEMM_BASE_NS + CUDA_GEMM_MAC_NS * shape.tree_size)
    if strategy == "bitvector":
        return (CUDA_BITVECTOR_US + CUDA_GROUP_US * shape.groups
                + walks * (CUDA_BITVECTOR_NS + CUDA_GROUP_NS * shape.groups))
    launches = CUDA_WALK_US + CUDA_LEVEL_US * shape.depth
    if strategy == "lookup":
        return launches + walks * (CUDA_LOOKUP_TOP_NS
                                   + CUDA_LEVEL_NS * shape.mean_depth_below_top)
    return launches + walks * CUDA_LEVEL_NS * shape.mean_depth


def choose_strategy(shape: ForestShape, *, batch: int, device_type: str,
                    available: tuple[str, ...] | list[str], fused_walk: bool = False) -> str:
    """Pick the strategy for one call.

    Parameters
    ----------
    shape : ForestShape
        The forest.
    batch : int
        Rows in this call.
    device_type : str
        ``"cpu"`` or ``"cuda"`` (other devices follow the CPU rule).
    available : sequence of str
        Strategies built for this forest (some are skipped when their tables would be too
        large, bit-vectors when the forest has more than 64 leaves per tree or equality
        tests).
    fused_walk : bool
        Whether 'traversal' would run this call as one fused loop: a Triton kernel on CUDA
        (:mod:`bridge.trees.kernel`), C on CPU (:mod:`bridge.trees.native`).

    Returns
    -------
    str
        One of :data:`STRATEGIES`.
    """
    walks = ("lookup", "bitvector", "traversal")
    if device_type == "cuda":
        if fused_walk and "traversal" in available:
            return "traversal"
        small = shape.tree_size <= GEMM_MAX_TREE_SIZE["cuda"]
        return _cheapest(("gemm",) + walks if small else walks, available,
                         estimated_cuda_microseconds, shape, batch)
    if fused_walk and "traversal" in available:
        return _cheapest(walks, available, estimated_cpu_fused_microseconds, shape, batch)
    if ("gemm" in available and shape.tree_size <= GEMM_MAX_TREE_SIZE["cpu"]
            and batch <= GEMM_MAX_BATCH_CPU):
        return "gemm"
    return _cheapest(walks, available, estimated_cpu_microseconds, shape, batch)


def _cheapest(names: tuple[str, ...], available, estimate, shape: ForestShape,
              batch: int) -> str:
    """The one of ``names`` built (in ``available``) that ``estimate`` costs least."""
    best, best_cost = "traversal", float("inf")
    for name in names:  # (a loop, not min(key=): torch.compile traces this with fullgraph=True)
        if name in available:
            cost = estimate(name, shape, batch)
            if cost < best_cost:
                best, best_cost = name, cost
    return best
