"""The rule that picks a tree strategy for one forward call (see ``docs/trees.md``).

Inputs: the forest's depth and tree count, the call's batch size and device. The thresholds
below come from ``benchmarks/trees.py`` runs (2-core x86 CPU; recorded under
``benchmarks/results/``); on CUDA, where gathers are cheap and matmuls cheaper, GEMM stays
worthwhile to a larger depth.
"""

from __future__ import annotations

STRATEGIES = ("gemm", "traversal", "perfect")
CHOICES = ("auto",) + STRATEGIES

# GEMM does, per row, trees * nodes * leaves multiply-adds (padded to the largest tree)
# where traversal does ~depth gathers; it wins only while per-call overhead dominates. CPU
# measurements: 100 depth-3 trees (7x8 per tree) 0.15 ms vs 0.29 ms at 1 row but 0.72 vs
# 0.52 ms at 100 rows; HistGradientBoosting (30x31) 0.19 vs 1.1 ms at 1 row; RandomForest
# depth 8 (255x256) 2.5 vs 0.5 ms at 1 row. Hence: a per-tree size (nodes x leaves) cap and
# a batch cap. The CUDA values are a prior, not measured (no GPU in the measuring runs).
GEMM_MAX_TREE_SIZE = {"cpu": 1024, "cuda": 4096}
GEMM_MAX_BATCH = {"cpu": 32, "cuda": 1 << 62}
# On CPU the measured runs never showed perfect trees clearly ahead of the child-table walk
# (within noise on balanced forests, 1.3-1.6x behind at 100k rows), so CPU walks the real
# tree. On CUDA (one gather fewer per level, no child table) perfect trees are the prior
# choice while the padding stays small relative to the real tree.
PERFECT_MAX_PADDING = 4.0


def auto_candidates(tree_size: int, padding_ratio: float) -> tuple[str, ...]:
    """The strategies ``"auto"`` may pick for a forest on some device (the ones worth building)."""
    names = []
    if tree_size <= max(GEMM_MAX_TREE_SIZE.values()):
        names.append("gemm")
    names.append("traversal")
    if padding_ratio <= PERFECT_MAX_PADDING:
        names.append("perfect")
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


def choose_strategy(*, depth: int, n_trees: int, batch: int, device_type: str,
                    available: tuple[str, ...] | list[str], padding_ratio: float,
                    tree_size: int) -> str:
    """Pick the strategy for one call.

    Parameters
    ----------
    depth : int
        Largest number of interior levels on a root-to-leaf path.
    n_trees : int
        Number of trees.
    batch : int
        Rows in this call.
    device_type : str
        ``"cpu"`` or ``"cuda"`` (other devices follow the CPU rule).
    available : sequence of str
        Strategies built for this forest (GEMM and perfect are skipped when their
        tables would be too large).
    padding_ratio : float
        Slots of the perfect layout divided by the forest's real slots.
    tree_size : int
        Interior nodes times leaves of the largest tree (GEMM's per-tree work per row).

    Returns
    -------
    str
        One of ``"gemm"``, ``"traversal"``, ``"perfect"``.
    """
    gemm_size = GEMM_MAX_TREE_SIZE.get(device_type, GEMM_MAX_TREE_SIZE["cpu"])
    gemm_batch = GEMM_MAX_BATCH.get(device_type, GEMM_MAX_BATCH["cpu"])
    if "gemm" in available and tree_size <= gemm_size and batch <= gemm_batch:
        return "gemm"
    if device_type == "cuda" and "perfect" in available and padding_ratio <= PERFECT_MAX_PADDING:
        return "perfect"
    return "traversal"
