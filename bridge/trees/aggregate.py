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
        self.register_buffer("values64", values)
        self.register_buffer("values32", values.float())
        self.register_buffer("leaf_has", leaf_has)
        self.register_buffer("constant_has", always)

    def forward(self, leaf: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        n_trees, n_rows = leaf.shape[0], leaf.shape[1]
        table = self.values64 if dtype == torch.float64 else self.values32
        flat = leaf.reshape(-1)
        gathered = table.index_select(0, flat).view(n_trees, n_rows, self.n_outputs)
        if self.aggregate == "SUM" or self.aggregate == "AVERAGE":
            scores = gathered.sum(0)
            if self.static_has:
                has = self.constant_has.unsqueeze(0).expand(n_rows, -1)
            else:
                has = self.leaf_has.index_select(0, flat).view(
                    n_trees, n_rows, self.n_outputs).any(0)
            return scores, has
        leaf_has = self.leaf_has.index_select(0, flat).view(n_trees, n_rows, self.n_outputs)
        if self.aggregate == "MIN":
            scores = torch.where(leaf_has, gathered, torch.full_like(gathered, float("inf")))
            scores = scores.amin(0)
        else:
            scores = torch.where(leaf_has, gathered, torch.full_like(gathered, float("-inf")))
            scores = scores.amax(0)
        has = leaf_has.any(0)
        return torch.where(has, scores, torch.zeros_like(scores)), has
