"""Lookup strategy: the first three levels of every tree by one table lookup.

Every row starts at the roots, so the seven tests at the top three levels of each tree need
no per-row table lookups: the input is transposed once to ``[features, N]``, the tests'
features are whole-row copies and all of them are one broadcast comparison. Their outcomes
form a 7-bit code per (tree, row) (bit ``h`` = outcome of heap position ``h``, whose
children are ``2h + 1`` when the test fails and ``2h + 2`` when it holds), and a table
``exits[tree, code]`` gives the node reached at level 3, or the leaf reached above it.

A forest of depth <= 3 (gradient boosting's default) is done then; deeper trees continue
with the level-by-level walk of :mod:`bridge.trees.traversal` from level 3.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bridge.trees.ensemble import TreeEnsemble
from bridge.trees.predicates import NodeTests
from bridge.trees.traversal import (
    TERMINAL_THRESHOLD,
    TraversalTrees,
    filled_column,
    filled_rows,
    flat_rows,
)

LEVELS = 3
TESTS = 2**LEVELS - 1  # heap positions 0..6
CODES = 2**TESTS


def lookup_size(ensemble: TreeEnsemble) -> int:
    """Entries of the exit table (trees x codes), for the size limit."""
    return ensemble.n_trees * CODES


class LookupTrees(nn.Module):
    """Leaf reached by each row in each tree: three levels by lookup, then a walk.

    Parameters
    ----------
    ensemble : TreeEnsemble
        The forest.
    walk : TraversalTrees, optional
        The walk to continue with (shared with a 'traversal' strategy built beside it).
    """

    def __init__(self, ensemble: TreeEnsemble, walk: TraversalTrees | None = None):
        super().__init__()
        self.walk = walk if walk is not None else TraversalTrees(ensemble)
        never_mode = ensemble.filler_mode
        roots = ensemble.tree_root[self.walk.tree_order]  # trees in the walk's order
        heap = _heap_positions(ensemble, roots)  # [trees, 7] references, -1: none
        rows = heap.T.reshape(-1)  # test row h * n_trees + t
        interior = rows >= 0
        safe = np.where(interior, rows, 0)
        fill = self.walk.missing_fill
        value_row = (ensemble.feature if fill is None else
                     filled_column(ensemble.feature, ensemble.missing_true, ensemble.n_features))
        # positions under a leaf are absent: their bits never decide an exit (see _walk_top)
        feature = np.where(interior, value_row[safe], 0)
        threshold = np.where(interior, ensemble.threshold[safe], TERMINAL_THRESHOLD)
        mode = np.where(interior, ensemble.mode[safe], never_mode)
        missing = interior & ensemble.missing_true[safe] & (fill is None)
        members = {r: ensemble.members[int(n)] for r, n in enumerate(rows.tolist())
                   if n in ensemble.members}
        self.tests = NodeTests(threshold, mode, missing, members)
        reached = np.stack([_walk_top(ensemble, roots, code) for code in range(CODES)], axis=1)
        exits = np.where(reached >= 0, self.walk.node_slot[np.maximum(reached, 0)],
                         self.walk.leaf_slot[np.maximum(-1 - reached, 0)])
        self.n_trees: int = ensemble.n_trees
        self.n_features: int = ensemble.n_features
        self.active: list[int] = self.walk.active[LEVELS:]  # walks still going at level 3+
        self.terminal_leaf: np.ndarray = self.walk.terminal_leaf  # forward returns slots
        self.tree_order: np.ndarray = self.walk.tree_order
        index = self.walk.feature.dtype
        self.register_buffer("feature", torch.from_numpy(feature))
        self.register_buffer("exits", torch.from_numpy(exits.reshape(-1)).to(index))
        self.register_buffer("exit_base", torch.arange(self.n_trees).mul(CODES).unsqueeze(1))
        self.register_buffer("bits", torch.tensor([[float(1 << h) for h in range(TESTS)]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the terminal slot [n_trees, N] of ``x`` [N, F] (see :attr:`terminal_leaf`)."""
        n_rows = x.shape[0]
        rows = filled_rows(x, self.n_features, self.walk.missing_fill)  # once, for both uses
        values = transposed_rows(rows, self.n_features, self.walk.missing_fill)
        outcome = self.outcomes(values.index_select(0, self.feature))  # [7 * trees, N]
        code = torch.matmul(self.bits.to(outcome.dtype), outcome.view(TESTS, -1))
        position = code.view(self.n_trees, n_rows).add_(self.exit_base.to(code.dtype))
        slot = self.exits.index_select(0, position.to(self.exits.dtype).view(-1))
        slot = slot.view(self.n_trees, n_rows)
        if not self.active:
            return slot
        flat, row_start = flat_rows(rows, self.walk.feature.dtype)
        return self.walk.walk(flat, slot, row_start, self.active)

    def outcomes(self, tested: torch.Tensor) -> torch.Tensor:
        """Outcome (0/1, floating) of every top test [7 * trees, N] on its fetched values."""
        dtype = torch.float64 if tested.dtype == torch.float64 else torch.float32
        if not self.tests.simple:
            rows = torch.arange(tested.shape[0], device=tested.device).unsqueeze(1)
            return self.tests(tested, rows.expand(tested.shape)).to(dtype)
        threshold = self.tests.thresholds(tested.dtype).unsqueeze(1)
        out = tested if tested.dtype == dtype else torch.empty(
            tested.shape, dtype=dtype, device=tested.device)
        return self.tests.compare_into(tested, threshold, out)


def _heap_positions(ensemble: TreeEnsemble, roots: np.ndarray) -> np.ndarray:
    """References at heap positions 0..6 of each tree ([trees, 7]; -1 where none)."""
    heap = np.full((len(roots), TESTS), -1, dtype=np.int64)
    heap[:, 0] = roots
    for h in range(TESTS // 2):
        node = heap[:, h]
        interior = node >= 0
        safe = np.where(interior, node, 0)
        heap[:, 2 * h + 1] = np.where(interior, ensemble.false_child[safe], -1)
        heap[:, 2 * h + 2] = np.where(interior, ensemble.true_child[safe], -1)
    return np.where(heap >= 0, heap, -1)


def _walk_top(ensemble: TreeEnsemble, roots: np.ndarray, code: int) -> np.ndarray:
    """References reached from ``roots`` after three levels under ``code``; walks stop at
    leaves."""
    reference, heap = roots.copy(), np.zeros_like(roots)
    for _ in range(LEVELS):
        interior = reference >= 0
        safe = np.where(interior, reference, 0)
        bit = (code >> heap) & 1
        step = np.where(bit == 1, ensemble.true_child[safe], ensemble.false_child[safe])
        reference = np.where(interior, step, reference)
        heap = np.where(interior, 2 * heap + 1 + bit, heap)
    return reference


def transposed_rows(rows: torch.Tensor, n_features: int,
                    missing_fill: float | None = None) -> torch.Tensor:
    """The feature columns of ``rows`` (from :func:`filled_rows`) as a contiguous ``[F, N]``
    copy (the tests copy whole feature rows); with ``missing_fill``, rows ``F .. 2F - 1``
    are the NaN-filled copy."""
    width = n_features if missing_fill is None else 2 * n_features
    return rows[:, :width].t().contiguous()
