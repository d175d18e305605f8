"""Combine the leaves each row reaches into per-output scores (SUM, AVERAGE, MIN, MAX).

Besides the scores it reports, per row and output, whether any reached leaf carried a weight
for that output ("has a score"): onnxruntime's binary-classifier and MIN/MAX rules depend
on it. The flag is computed only when it can differ between rows.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bridge.trees.ensemble import TreeEnsemble


class LeafAggregator(nn.Module):
    """Turns leaf indices [trees, N] (tree-major, trees in any order) into scores [N, outputs].

    Also returns the has-score flags [N, outputs]. With ``terminal_leaf`` the indices are a
    strategy's own terminal ids, ``terminal_leaf[i]`` being the leaf of id ``i``: the tables
    are laid out by terminal id, which spares the strategy one lookup pass.
    """

    def __init__(self, ensemble: TreeEnsemble, aggregate: str,
                 terminal_leaf: np.ndarray | None = None):
        super().__init__()
        rows = slice(None) if terminal_leaf is None else terminal_leaf
        values = torch.from_numpy(np.ascontiguousarray(ensemble.leaf_values[rows]))
        leaf_has = torch.from_numpy(np.ascontiguousarray(ensemble.leaf_has[rows]))
        self.aggregate: str = aggregate
        self.n_outputs: int = ensemble.n_outputs
        always = leaf_has.all(0)
        never = ~leaf_has.any(0)
        self.static_has: bool = bool((always | never).all())
        # one row per output: a 1-D index_select per output is ~4x faster on CPU than
        # selecting rows of a [leaves, outputs] table (1M leaves of one output: 0.8 vs 4.2 ms)
        self.register_buffer("values64", values.t().contiguous())
        self.register_buffer("values32", self.values64.float())
        self.register_buffer("leaf_has", leaf_has.t().contiguous())
        self.register_buffer("constant_has", always)

    def forward(self, leaf: torch.Tensor, dtype: torch.dtype,
                tree_dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and has-score flags [N, outputs] of leaf ids ``leaf`` ([trees, N], or
        [N, trees] with ``tree_dim=1``)."""
        table = self.values64 if dtype == torch.float64 else self.values32
        flat = leaf.reshape(-1)
        shape = (leaf.shape[0], leaf.shape[1], self.n_outputs)
        gathered = _per_output(table, flat).view(shape)
        if self.aggregate == "SUM" or self.aggregate == "AVERAGE":
            scores = gathered.sum(tree_dim)
            if self.static_has:
                has = self.constant_has.unsqueeze(0).expand(scores.shape[0], -1)
            else:
                has = _per_output(self.leaf_has, flat).view(shape).any(tree_dim)
            return scores, has
        leaf_has = _per_output(self.leaf_has, flat).view(shape)
        if self.aggregate == "MIN":
            scores = torch.where(leaf_has, gathered, torch.full_like(gathered, float("inf")))
            scores = scores.amin(tree_dim)
        else:
            scores = torch.where(leaf_has, gathered, torch.full_like(gathered, float("-inf")))
            scores = scores.amax(tree_dim)
        has = leaf_has.any(tree_dim)
        return torch.where(has, scores, torch.zeros_like(scores)), has


def _per_output(table: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """Entries ``flat`` of each row of ``table`` [outputs, leaves], as [len(flat), outputs]."""
    columns = [row.index_select(0, flat) for row in table.unbind(0)]
    return columns[0].unsqueeze(-1) if len(columns) == 1 else torch.stack(columns, -1)
