"""The rule that picks a tree strategy for one forward call (see ``docs/trees.md``).

Inputs: the forest's shape (:class:`ForestShape`: depth, tree count, nodes, features tested),
the call's batch size and device. On CPU the rule estimates each candidate's time as a
per-call part (torch operations launched, each ~6 us here) plus a per-(row, tree) part, with
constants fitted to ``benchmarks/trees.py`` runs on a 2-core x86 VM (AMD EPYC, torch 2.13,
one thread; recorded under ``benchmarks/results/``), and takes the smallest. On CUDA no
measurement exists yet (no GPU was available): the CUDA branch is a stated prior.
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
GEMM_MAX_BATCH = {"cpu": 32, "cuda": 1 << 62}
# CUDA prior: perfect trees (no child table, one gather fewer per level) while the padding
# stays small relative to the real tree. On CPU they trail the walk (measured:
# HistGradientBoosting 94 vs 49 ms at 10k rows: padding walks finished shallow trees too).
PERFECT_MAX_PADDING = 4.0

# CPU cost model, microseconds per operation launched and nanoseconds per (row, tree).
# Fitted on eight forests at 100..10k rows (benchmarks/trees.py --matrix): 'lookup' costs
# ~9 ns for its three table-looked-up levels plus ~6 ns per further level walked;
# 'bitvector' ~3 ns plus ~1 ns per feature group (2 with 64-bit words, > 32 leaves; measured
# 0.6-1.2 across the matrix, so boosting forests of depth 5 sit near the lookup/bitvector line);
# 'lookup' also copies the input transposed (~1.5 ns per row and feature: visible for a
# single deep tree, 100k rows: 17.9 vs 14.9 ms for the plain walk).
OPERATION_US = 6.0
LOOKUP_TOP_NS = 9.0
LOOKUP_COPY_NS = 1.5  # per row and feature: its transposed copy of the input
WALK_LEVEL_NS = 6.0
BITVECTOR_BASE_NS = 3.0
BITVECTOR_GROUP_NS = 1.0


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
    padding_ratio : float
        Slots of the perfect-tree layout divided by the forest's real slots.
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
    padding_ratio: float = 1.0
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
    if shape.padding_ratio <= PERFECT_MAX_PADDING:
        names.append("perfect")
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


def choose_strategy(shape: ForestShape, *, batch: int, device_type: str,
                    available: tuple[str, ...] | list[str]) -> str:
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

    Returns
    -------
    str
        One of :data:`STRATEGIES`.
    """
    gemm_size = GEMM_MAX_TREE_SIZE.get(device_type, GEMM_MAX_TREE_SIZE["cpu"])
    gemm_batch = GEMM_MAX_BATCH.get(device_type, GEMM_MAX_BATCH["cpu"])
    if "gemm" in available and shape.tree_size <= gemm_size and batch <= gemm_batch:
        return "gemm"
    if device_type == "cuda":
        if "perfect" in available and shape.padding_ratio <= PERFECT_MAX_PADDING:
            return "perfect"
        return "traversal"
    best, best_cost = "traversal", float("inf")
    for name in ("lookup", "bitvector", "traversal"):  # (a loop, not min(key=): torch.compile
        if name in available:                         # traces this with fullgraph=True)
            cost = estimated_cpu_microseconds(name, shape, batch)
            if cost < best_cost:
                best, best_cost = name, cost
    return best
