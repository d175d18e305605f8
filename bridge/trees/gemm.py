"""GEMM strategy: evaluate every node test at once, then find leaves with one batched matmul.

For tree ``t`` a path matrix ``P[t]`` holds, for interior node ``i`` and leaf ``l``, +1 when
``l`` lies under the true branch of ``i``, -1 under its false branch, 0 otherwise. With the
test outcomes ``O`` (0/1) of a row, ``(O @ P[t])[l]`` equals the number of true-branch
ancestors of ``l`` exactly when ``l`` is the leaf the row reaches. The work is
``rows * trees * nodes * leaves``: cheap for shallow trees, prohibitive for deep ones.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bridge.trees.ensemble import TreeEnsemble, leaf_paths
from bridge.trees.predicates import NodeTests


def gemm_size(ensemble: TreeEnsemble) -> int:
    """Entries of the padded path matrices: ``trees * max nodes * max leaves``."""
    return (ensemble.n_trees * int(ensemble.nodes_per_tree().max())
            * int(ensemble.leaves_per_tree().max()))


class GemmTrees(nn.Module):
    """Leaf reached by each row in each tree, by node tests and a batched matmul."""

    def __init__(self, ensemble: TreeEnsemble):
        super().__init__()
        n_trees = ensemble.n_trees
        node_counts = ensemble.nodes_per_tree()
        leaf_counts = ensemble.leaves_per_tree()
        width_nodes, width_leaves = int(node_counts.max()), int(leaf_counts.max())
        node_start = np.concatenate([[0], np.cumsum(node_counts)[:-1]])
        leaf_start = np.concatenate([[0], np.cumsum(leaf_counts)[:-1]])
        node_slot = np.arange(ensemble.n_nodes) - node_start[ensemble.node_tree]
        leaf_slot = np.arange(ensemble.n_leaves) - leaf_start[ensemble.leaf_tree]

        size = n_trees * width_nodes
        flat_node = ensemble.node_tree * width_nodes + node_slot
        feature = np.zeros(size, dtype=np.int64)
        threshold = np.zeros(size)
        mode = np.full(size, ensemble.modes_used[0], dtype=np.int64)
        missing = np.zeros(size, dtype=bool)
        feature[flat_node] = ensemble.feature
        threshold[flat_node] = ensemble.threshold
        mode[flat_node] = ensemble.mode
        missing[flat_node] = ensemble.missing_true
        members = {int(flat_node[n]): v for n, v in ensemble.members.items()}

        paths = np.zeros((n_trees, width_nodes, width_leaves), dtype=np.float32)
        expected = np.full((n_trees, width_leaves), -1.0, dtype=np.float32)  # padding: never
        leaf_table = np.zeros((n_trees, width_leaves), dtype=np.int64)
        true_path, false_path = leaf_paths(ensemble)
        for leaf in range(ensemble.n_leaves):
            tree, column = int(ensemble.leaf_tree[leaf]), int(leaf_slot[leaf])
            for node in true_path[leaf]:
                paths[tree, node_slot[node], column] = 1.0
            for node in false_path[leaf]:
                paths[tree, node_slot[node], column] = -1.0
            expected[tree, column] = len(true_path[leaf])
            leaf_table[tree, column] = leaf
        self.n_trees: int = n_trees
        self.width_nodes: int = width_nodes
        self.register_buffer("feature", torch.from_numpy(feature))
        self.register_buffer("paths", torch.from_numpy(paths))
        self.register_buffer("expected", torch.from_numpy(expected).unsqueeze(1))
        self.register_buffer("leaf_table", torch.from_numpy(leaf_table))
        self.tests = NodeTests(threshold, mode, missing, members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the leaf index [n_trees, N] of ``x`` [N, F] (in the comparison dtype)."""
        n_rows = x.shape[0]
        values = x.index_select(1, self.feature)  # [N, trees * width]
        outcome = self.tests(values, None).to(self.paths.dtype)
        outcome = outcome.view(n_rows, self.n_trees, self.width_nodes).transpose(0, 1)
        reached = torch.bmm(outcome, self.paths) == self.expected  # [trees, N, leaves]
        column = reached.to(torch.uint8).argmax(2)  # [trees, N]
        return self.leaf_table.gather(1, column)
