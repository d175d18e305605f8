"""The tree-ensemble module: strategies, per-call selection, chunking and aggregation.

:class:`TreeEnsembleModule` maps an input [N, F] (or [F]) to aggregated scores and
has-score flags; the ONNX operator modules put base values, transforms and labels on top.
"""

from __future__ import annotations

import torch
from torch import nn

from bridge.errors import ConversionError
from bridge.trees.aggregate import LeafAggregator
from bridge.trees.attributes import TreeSpec
from bridge.trees.gemm import GemmTrees, gemm_size
from bridge.trees.perfect import PerfectTrees, perfect_size
from bridge.trees.predicates import comparison_dtype
from bridge.trees.select import auto_candidates, choose_strategy, validate_strategy
from bridge.trees.traversal import TraversalTrees

# Tables larger than these (entries) are not built: the strategy would not pay off and
# would cost hundreds of MB.
GEMM_LIMIT = 2**26
PERFECT_LIMIT = 2**25
# Rows per chunk are sized so that one chunk's largest intermediate holds about this many
# entries (keeps memory flat and caches warm for 100k-row batches).
CHUNK_ENTRIES = 2**19


class TreeEnsembleModule(nn.Module):
    """A forest as tensor programs.

    Parameters
    ----------
    spec : TreeSpec
        The parsed forest.
    strategy : str
        ``"auto"`` (choose per call), ``"gemm"``, ``"traversal"`` or ``"perfect"``.
    double_thresholds : bool
        Whether thresholds were stored as doubles (integer inputs are then compared in
        float64 rather than float32).

    Raises
    ------
    ValueError
        For an unknown ``strategy``.
    ConversionError
        When a forced strategy's tables would exceed its size limit.
    """

    def __init__(self, spec: TreeSpec, strategy: str = "auto", double_thresholds: bool = False):
        super().__init__()
        validate_strategy(strategy)
        ensemble = spec.ensemble
        self.strategy: str = strategy
        self.double_thresholds: bool = double_thresholds
        self.n_features: int = ensemble.n_features
        self.n_trees: int = ensemble.n_trees
        self.depth: int = ensemble.max_depth
        sizes = {"gemm": gemm_size(ensemble), "perfect": perfect_size(ensemble)}
        limits = {"gemm": GEMM_LIMIT, "perfect": PERFECT_LIMIT}
        if strategy in limits and sizes[strategy] > limits[strategy]:
            raise ConversionError(
                f"tree_strategy={strategy!r} would need {sizes[strategy]:,} table entries for "
                f"this forest ({self.n_trees} trees, depth {self.depth}); the limit is "
                f"{limits[strategy]:,}: use 'traversal' or 'auto'"
            )
        real_slots = ensemble.n_nodes + ensemble.n_leaves
        self.padding_ratio: float = sizes["perfect"] / max(real_slots, 1)
        self.tree_size: int = int(ensemble.nodes_per_tree().max()) * int(
            ensemble.leaves_per_tree().max())
        if strategy == "auto":
            wanted = auto_candidates(self.tree_size, self.padding_ratio)
        else:
            wanted = (strategy,)
        builders = {"gemm": GemmTrees, "traversal": TraversalTrees, "perfect": PerfectTrees}
        self.strategies = nn.ModuleDict({
            name: builders[name](ensemble) for name in wanted
            if name == "traversal" or sizes[name] <= limits[name]
        })
        self.gemm_width: int = max(int(ensemble.nodes_per_tree().max()),
                                   int(ensemble.leaves_per_tree().max()))
        self.n_outputs: int = ensemble.n_outputs
        # one aggregator per strategy: a strategy may return its own terminal ids
        self.aggregators = nn.ModuleDict({
            name: LeafAggregator(ensemble, spec.aggregate, getattr(module, "terminal_leaf", None))
            for name, module in self.strategies.items()
        })
        self.last_strategy: str = ""

    def choose(self, batch: int, device_type: str) -> str:
        """The strategy this module uses for a call with ``batch`` rows on ``device_type``."""
        if self.strategy != "auto":
            return self.strategy
        return choose_strategy(depth=self.depth, n_trees=self.n_trees, batch=batch,
                               device_type=device_type, available=tuple(self.strategies),
                               padding_ratio=self.padding_ratio, tree_size=self.tree_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (scores [N, outputs], has-score flags [N, outputs]) for ``x``."""
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.shape[1] < self.n_features:
            raise ValueError(
                f"tree ensemble input must be [N, F] with F >= {self.n_features} (the largest "
                f"feature index used plus one); got shape {tuple(x.shape)}"
            )
        dtype = comparison_dtype(x, self.double_thresholds)
        accumulate = torch.float64 if dtype == torch.float64 else torch.float32
        x = x.to(dtype)
        name = self.choose(x.shape[0], x.device.type)
        self.last_strategy = name
        strategy, aggregator = self.strategies[name], self.aggregators[name]
        width = self.gemm_width if name == "gemm" else 2 + self.n_outputs
        rows = max(1, CHUNK_ENTRIES // max(1, self.n_trees * width))
        if x.shape[0] <= rows:
            return aggregator(strategy(x), accumulate)
        scores, flags = [], []
        for chunk in torch.split(x, rows):
            score, has = aggregator(strategy(chunk), accumulate)
            scores.append(score)
            flags.append(has)
        return torch.cat(scores), torch.cat(flags)
