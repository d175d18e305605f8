"""Level-by-level traversal: every (row, tree) pair walks one level per step, by gathers.

Nodes are laid out so that each interior node's true and false children sit in adjacent
slots; a leaf is a terminal slot whose test always holds and whose first child is itself,
so ``max_depth`` steps of ``slot = first_child[slot] + (not test)`` end every walk at its
leaf whatever the tree's own depth.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
from torch import nn

from bridge.trees.ensemble import (
    BRANCH_EQ,
    BRANCH_GT,
    BRANCH_GTE,
    BRANCH_LEQ,
    BRANCH_LT,
    BRANCH_MEMBER,
    BRANCH_NEQ,
    TreeEnsemble,
)
from bridge.trees.predicates import NodeTests

# A threshold that makes a terminal slot's test hold for the value 0 under each mode.
_ALWAYS_TRUE = {BRANCH_LEQ: np.inf, BRANCH_LT: np.inf, BRANCH_GTE: -np.inf,
                BRANCH_GT: -np.inf, BRANCH_EQ: 0.0, BRANCH_NEQ: 1.0}


class TraversalTrees(nn.Module):
    """Leaf reached by each row in each tree, found by ``max_depth`` gather steps."""

    def __init__(self, ensemble: TreeEnsemble):
        super().__init__()
        modes = ensemble.modes_used
        terminal_mode = modes[0] if len(modes) == 1 and modes[0] != BRANCH_MEMBER else BRANCH_LEQ
        n_slots = ensemble.n_nodes + ensemble.n_leaves
        first_child = np.zeros(n_slots, dtype=np.int64)
        feature = np.full(n_slots, ensemble.n_features, dtype=np.int64)  # the zero column
        threshold = np.full(n_slots, _ALWAYS_TRUE[terminal_mode])
        mode = np.full(n_slots, terminal_mode, dtype=np.int64)
        missing = np.zeros(n_slots, dtype=bool)
        members: dict[int, np.ndarray] = {}
        slot_leaf = np.zeros(n_slots, dtype=np.int64)
        roots = np.zeros(ensemble.n_trees, dtype=np.int64)
        next_slot = 0
        for tree, root in enumerate(ensemble.tree_root.tolist()):
            roots[tree] = next_slot
            queue = deque([(root, next_slot)])
            next_slot += 1
            while queue:
                reference, slot = queue.popleft()
                if reference < 0:
                    first_child[slot] = slot
                    slot_leaf[slot] = -1 - reference
                    continue
                feature[slot] = ensemble.feature[reference]
                threshold[slot] = ensemble.threshold[reference]
                mode[slot] = ensemble.mode[reference]
                missing[slot] = ensemble.missing_true[reference]
                if reference in ensemble.members:
                    members[slot] = ensemble.members[reference]
                first_child[slot] = next_slot
                queue.append((int(ensemble.true_child[reference]), next_slot))
                queue.append((int(ensemble.false_child[reference]), next_slot + 1))
                next_slot += 2
        self.depth: int = ensemble.max_depth
        self.n_features: int = ensemble.n_features
        self.feature_bits: int = max(1, int(ensemble.n_features + 1).bit_length())
        packed = (first_child << self.feature_bits) | feature
        self.register_buffer("packed", torch.from_numpy(packed))
        self.register_buffer("roots", torch.from_numpy(roots))
        self.register_buffer("slot_leaf", torch.from_numpy(slot_leaf))
        self.tests = NodeTests(threshold, mode, missing, members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the leaf index [N, n_trees] of ``x`` [N, F] (in the comparison dtype)."""
        n_rows = x.shape[0]
        padded = torch.cat(
            [x[:, : self.n_features], torch.zeros(n_rows, 1, dtype=x.dtype, device=x.device)], 1)
        mask = (1 << self.feature_bits) - 1
        slot = self.roots.unsqueeze(0).expand(n_rows, -1).contiguous()
        shape = slot.shape
        for _ in range(self.depth):
            flat = slot.view(-1)
            packed = self.packed.index_select(0, flat).view(shape)
            values = padded.gather(1, packed & mask)
            outcome = self.tests(values, slot)
            slot = (packed >> self.feature_bits) + (~outcome).to(torch.int64)
        return self.slot_leaf.index_select(0, slot.view(-1)).view(shape)
