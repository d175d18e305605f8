"""Perfect-tree traversal: every tree padded to a complete binary tree of the forest's depth.

Interior node ``h`` of a padded tree has children ``2h+1`` (true) and ``2h+2`` (false), so a
step needs no child table: ``h = 2h + 2 - test``. A leaf above the full depth is pushed down:
its padding nodes test anything and both their subtrees end in copies of the leaf. Memory
grows as ``n_trees * 2**depth``; :func:`perfect_size` says how much before building.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bridge.trees.ensemble import TreeEnsemble
from bridge.trees.predicates import NodeTests
from bridge.trees.traversal import flat_rows, index_dtype


def perfect_size(ensemble: TreeEnsemble) -> int:
    """Number of padded slots (interior nodes plus leaves) the layout would hold."""
    return ensemble.n_trees * (2 ** (ensemble.max_depth + 1) - 1)


class PerfectTrees(nn.Module):
    """Leaf reached by each row in each tree, by index arithmetic on padded trees."""

    def __init__(self, ensemble: TreeEnsemble):
        super().__init__()
        depth = ensemble.max_depth
        n_trees = ensemble.n_trees
        pad_mode = ensemble.filler_mode
        n_internal = 2 ** depth - 1
        feature = np.zeros((n_trees, n_internal), dtype=np.int64)
        threshold = np.zeros((n_trees, n_internal))
        mode = np.full((n_trees, n_internal), pad_mode, dtype=np.int64)
        missing = np.zeros((n_trees, n_internal), dtype=bool)
        member_nodes = np.full((n_trees, n_internal), -1, dtype=np.int64)
        level = ensemble.tree_root.reshape(n_trees, 1)  # references at the current level
        for d in range(depth):
            start = 2 ** d - 1
            internal = level >= 0
            safe = np.where(internal, level, 0)
            columns = slice(start, start + level.shape[1])
            feature[:, columns] = np.where(internal, ensemble.feature[safe], 0)
            threshold[:, columns] = np.where(internal, ensemble.threshold[safe], 0.0)
            mode[:, columns] = np.where(internal, ensemble.mode[safe], pad_mode)
            missing[:, columns] = internal & ensemble.missing_true[safe]
            member_nodes[:, columns] = np.where(internal, level, -1)
            true_next = np.where(internal, ensemble.true_child[safe], level)
            false_next = np.where(internal, ensemble.false_child[safe], level)
            level = np.stack([true_next, false_next], axis=2).reshape(n_trees, -1)
        leaf = -1 - level  # every reference is a leaf at full depth
        members: dict[int, np.ndarray] = {}
        if ensemble.members:
            flat_nodes = member_nodes.reshape(-1)
            for slot in np.flatnonzero(np.isin(flat_nodes, list(ensemble.members))).tolist():
                members[slot] = ensemble.members[int(flat_nodes[slot])]
        self.depth: int = depth
        self.n_internal: int = n_internal
        self.n_features: int = ensemble.n_features
        index = index_dtype(n_trees * (2 * n_internal + 1))
        self.register_buffer("feature", torch.from_numpy(feature.reshape(-1)).to(index))
        self.register_buffer("tree_base", (torch.arange(n_trees) * n_internal).to(index)
                             .unsqueeze(1))
        # global node n = tree * n_internal + h ends at leaf slot tree * (n_internal + 1)
        # + h - n_internal, i.e. n + tree - n_internal
        self.register_buffer("leaf_base", (torch.arange(n_trees) - n_internal).to(index)
                             .unsqueeze(1))
        self.register_buffer("leaf", torch.from_numpy(leaf.reshape(-1)).to(index))
        self.tests = NodeTests(threshold.reshape(-1), mode.reshape(-1), missing.reshape(-1),
                               members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the leaf index [n_trees, N] of ``x`` [N, F] (in the comparison dtype)."""
        n_rows = x.shape[0]
        values, row_start = flat_rows(x, self.feature.dtype)
        node = self.tree_base.expand(-1, n_rows).contiguous()  # the roots, tree-major
        shape = node.shape
        for _ in range(self.depth):
            flat = node.view(-1)
            position = self.feature.index_select(0, flat).view(shape) + row_start
            outcome = self.tests.outcome(values.index_select(0, position.view(-1)).view(shape),
                                         node)
            # heap position h -> 2h + 2 - test; on global numbering n = base + h that is
            # 2n + 2 - base - test
            node = node * 2 + (2 - self.tree_base) - outcome.to(node.dtype)
        position = node + self.leaf_base
        return self.leaf.index_select(0, position.view(-1)).view(shape)
