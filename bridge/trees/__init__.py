"""Tree ensembles as tensor programs: GEMM, walks, perfect trees, lookups and bit-vectors.

The ONNX converters (``bridge/onnx/ops/ml/tree.py``) parse a node into a :class:`TreeSpec`
and wrap a :class:`TreeEnsembleModule`; ``docs/trees.md`` explains the strategies and the
rule that picks one per call.
"""

from bridge.trees.attributes import TreeSpec, parse_legacy, parse_tree_ensemble
from bridge.trees.module import TreeEnsembleModule
from bridge.trees.select import (
    CHOICES,
    STRATEGIES,
    ForestShape,
    choose_strategy,
    validate_strategy,
)

__all__ = [
    "CHOICES",
    "STRATEGIES",
    "ForestShape",
    "TreeEnsembleModule",
    "TreeSpec",
    "choose_strategy",
    "parse_legacy",
    "parse_tree_ensemble",
    "validate_strategy",
]
