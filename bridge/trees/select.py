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
# measurements (1 thread, traversal with int32 tables): GradientBoosting 100 x depth 3
# (7x8 per tree) 0.14 vs 0.27 ms at 1 row, 0.30 vs 0.32 at 32, 0.48 vs 0.64 at 64 but 1.6
# vs 0.46 at 128; HistGradientBoosting (30x31) 0.17 vs 0.94 ms at 1 row, 0.81 vs 1.19 at
# 32, 1.57 vs 1.35 at 64; RandomForest depth 8 (255x256) is never worth it. Hence: a
# per-tree size (nodes x leaves) cap and a batch cap. The CUDA values are a prior, not
# measured (no GPU in the measuring runs).
GEMM_MAX_TREE_SIZE = {"cpu": 1024, "cuda": 4096}
GEMM_MAX_BATCH = {"cpu": 32, "cuda": 1 << 62}
# On CPU, perfect trees are within noise of the walk on balanced forests (RandomForest
# depth 8: 40 vs 41 ms at 10k rows) and behind elsewhere (GradientBoosting 19 vs 17 ms,
# HistGradientBoosting 94 vs 49 ms: the walk skips finished shallow trees, padding does
# not), so CPU walks the real tree. On CUDA (one gather fewer per level, no child table)
# perfect trees are the prior choice while the padding stays small relative to the tree.
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
