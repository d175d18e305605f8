"""The tree-ensemble module: strategies, per-call selection, chunking and aggregation.

:class:`TreeEnsembleModule` maps an input [N, F] (or [F]) to aggregated scores and
has-score flags; the ONNX operator modules put base values, transforms and labels on top.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bridge.derived import eager_call
from bridge.errors import ConversionError
from bridge.trees.aggregate import LeafAggregator
from bridge.trees.attributes import TreeSpec
from bridge.trees.bitvector import (
    BitvectorTrees,
    bitvector_groups,
    bitvector_size,
    bitvector_unsupported,
)
from bridge.trees.ensemble import TreeEnsemble
from bridge.trees.gemm import GemmTrees, gemm_size
from bridge.trees.lookup import LEVELS as LOOKUP_LEVELS
from bridge.trees.lookup import LookupTrees, lookup_size
from bridge.trees.perfect import PerfectTrees, perfect_size
from bridge.trees.predicates import comparison_dtype
from bridge.trees.select import (
    ForestShape,
    auto_candidates,
    choose_strategy,
    validate_strategy,
)
from bridge.trees.traversal import TraversalTrees

# Tables larger than these (entries) are not built: the strategy would not pay off and
# would cost hundreds of MB.
GEMM_LIMIT = 2**26
PERFECT_LIMIT = 2**25
LOOKUP_LIMIT = 2**24  # also keeps lookup's float32 table positions exact
BITVECTOR_LIMIT = 2**23
# Rows per chunk are sized so that one chunk's largest intermediate holds about this many
# entries (keeps memory flat and caches warm for 100k-row batches); lookup's tests and the
# bit-vectors' masks (which chunk their AND pass themselves) measured best with more.
CHUNK_ENTRIES = 2**19
LOOKUP_CHUNK_ENTRIES = 2**20
BITVECTOR_CHUNK_ENTRIES = 2**21
# On CUDA a chunk costs its launches (the H100 runs: a random forest at 100k rows took 5.1 ms
# in 57 chunks, 1.1 ms as one replayed CUDA graph of the same calls), and memory is not the
# CPU's cache: every strategy's chunk holds up to this many entries there (~256 MB at 8 bytes).
CUDA_CHUNK_ENTRIES = 2**25
# "auto" remembers its picks per (batch, device, fused walk) in eager mode: the rule's Python
# costs ~10 us a call, a third of a 1-row call's walk with the C walk. Cleared when full.
REMEMBERED_CHOICES = 256


class TreeEnsembleModule(nn.Module):
    """A forest as tensor programs.

    Parameters
    ----------
    spec : TreeSpec
        The parsed forest.
    strategy : str
        ``"auto"`` (choose per call) or one of :data:`~bridge.trees.select.STRATEGIES`.
    double_thresholds : bool
        Whether thresholds were stored as doubles (integer inputs are then compared in
        float64 rather than float32).

    Raises
    ------
    ValueError
        For an unknown ``strategy``.
    ConversionError
        When a forced strategy's tables would exceed its size limit, or it cannot run the
        forest (bit-vectors: more than 64 leaves in a tree, or equality/set tests).
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
        sizes = {"gemm": gemm_size(ensemble), "perfect": perfect_size(ensemble),
                 "lookup": lookup_size(ensemble), "bitvector": bitvector_size(ensemble)}
        limits = {"gemm": GEMM_LIMIT, "perfect": PERFECT_LIMIT, "lookup": LOOKUP_LIMIT,
                  "bitvector": BITVECTOR_LIMIT}
        unsupported = bitvector_unsupported(ensemble)
        if strategy == "bitvector" and unsupported is not None:
            raise ConversionError(
                f"tree_strategy='bitvector' cannot run this forest: {unsupported}; use "
                "'traversal' or 'auto'"
            )
        if strategy in limits and sizes[strategy] > limits[strategy]:
            raise ConversionError(
                f"tree_strategy={strategy!r} would need {sizes[strategy]:,} table entries for "
                f"this forest ({self.n_trees} trees, depth {self.depth}); the limit is "
                f"{limits[strategy]:,}: use 'traversal' or 'auto'"
            )
        self.shape: ForestShape = forest_shape(ensemble)
        if strategy == "auto":
            wanted = auto_candidates(self.shape, unsupported is None)
        else:
            wanted = (strategy,)
        walk = TraversalTrees(ensemble) if {"traversal", "lookup"} & set(wanted) else None
        builders = {"gemm": GemmTrees, "perfect": PerfectTrees, "bitvector": BitvectorTrees,
                    "traversal": lambda _: walk, "lookup": lambda e: LookupTrees(e, walk)}
        self.strategies = nn.ModuleDict({
            name: builders[name](ensemble) for name in wanted
            if name == "traversal" or sizes[name] <= limits[name]
        })
        # rows per chunk, so that a chunk's largest intermediate holds about the strategy's
        # budget of entries; bit-vectors return rows first ([N, trees])
        gemm_width = max(int(ensemble.nodes_per_tree().max()),
                         int(ensemble.leaves_per_tree().max()))
        budgets = {"gemm": (CHUNK_ENTRIES, gemm_width), "lookup": (LOOKUP_CHUNK_ENTRIES, 7),
                   "bitvector": (BITVECTOR_CHUNK_ENTRIES, 1)}
        default = (CHUNK_ENTRIES, 2 + ensemble.n_outputs)
        self.chunk_rows: dict[str, int] = {}
        self.cuda_chunk_rows: dict[str, int] = {}
        for name in self.strategies:
            budget, per_tree = budgets.get(name, default)
            self.chunk_rows[name] = max(1, budget // max(1, self.n_trees * per_tree))
            self.cuda_chunk_rows[name] = max(1, CUDA_CHUNK_ENTRIES
                                             // max(1, self.n_trees * per_tree))
        self.tree_dim: dict[str, int] = {name: 1 if name == "bitvector" else 0
                                         for name in self.strategies}
        # one aggregator per strategy: a strategy may return its own terminal ids
        self.aggregators = nn.ModuleDict({
            name: LeafAggregator(ensemble, spec.aggregate, getattr(module, "terminal_leaf", None),
                                 getattr(module, "tree_order", None))
            for name, module in self.strategies.items()
        })
        self.last_strategy: str = ""
        self.choices: dict[tuple, str] = {}  # see REMEMBERED_CHOICES

    def rows_per_chunk(self, name: str, device_type: str) -> int:
        """Rows strategy ``name`` processes at once on ``device_type``."""
        if device_type == "cuda":
            return self.cuda_chunk_rows[name]
        return self.chunk_rows[name]

    def choose(self, batch: int, device_type: str, fused_walk: bool = False) -> str:
        """The strategy this module uses for a call with ``batch`` rows on ``device_type``
        (``fused_walk``: whether 'traversal' would run the call as one kernel)."""
        if self.strategy != "auto":
            return self.strategy
        key = (batch, device_type, fused_walk)
        eager = eager_call()  # (traced and compiled graphs hold no dictionary lookups)
        name = self.choices.get(key) if eager else None
        if name is None:
            name = choose_strategy(self.shape, batch=batch, device_type=device_type,
                                   available=tuple(self.strategies), fused_walk=fused_walk)
            if eager:
                if len(self.choices) >= REMEMBERED_CHOICES:
                    self.choices.clear()
                self.choices[key] = name
        return name

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
        if x.dtype != dtype:  # (a no-op .to still costs ~1.5 us)
            x = x.to(dtype)
        # the ModuleDicts' own dicts: a ModuleDict lookup costs ~0.7 us, a dict's ~0.05
        strategies = self._modules["strategies"]._modules
        walk = strategies.get("traversal")
        fused = walk is not None and walk.kernel_runs(x)
        name = self.choose(x.shape[0], x.device.type, fused)
        if self.last_strategy != name:  # (nn.Module's __setattr__ costs ~1 us)
            self.last_strategy = name
        strategy, aggregator = strategies[name], self._modules["aggregators"]._modules[name]
        if fused and name == "traversal" and x.is_cpu and aggregator.sums_in_walk:
            # the C walk adds up the leaf values in its loop: no [trees, N] slots, no
            # per-output gathers and reductions (a 1-row call of a random forest: ~25 us)
            sums = strategy.walk_and_sum(x, aggregator.values_by_terminal(accumulate),
                                         aggregator.tree_outputs, aggregator.n_outputs)
            return sums, aggregator.constant_flags(x.shape[0])
        rows, tree_dim = self.rows_per_chunk(name, x.device.type), self.tree_dim[name]
        if x.shape[0] <= rows:
            return aggregator(strategy(x), accumulate, tree_dim)
        scores, flags = [], []
        for chunk in torch.split(x, rows):
            score, has = aggregator(strategy(chunk), accumulate, tree_dim)
            scores.append(score)
            flags.append(has)
        return torch.cat(scores), torch.cat(flags)


def forest_shape(ensemble: TreeEnsemble) -> ForestShape:
    """The :class:`ForestShape` the selection rule reads."""
    depths = ensemble.tree_depth.astype(float)
    leaves = int(ensemble.leaves_per_tree().max())
    return ForestShape(
        depth=ensemble.max_depth, n_trees=ensemble.n_trees,
        tree_size=int(ensemble.nodes_per_tree().max()) * leaves,
        mean_depth=float(depths.mean()),
        mean_depth_below_top=float(np.maximum(depths - LOOKUP_LEVELS, 0).mean()),
        groups=bitvector_groups(ensemble), word_bits=32 if leaves <= 32 else 64,
        n_features=ensemble.n_features)
