"""``RandomizedSearchCV`` converted like ``GridSearchCV``: as its ``best_estimator_``.

skl2onnx 1.20 converts GridSearchCV (options passed through to the best estimator) but has
no converter for its randomized sibling, whose fitted state is the same. This registers
skl2onnx's own GridSearchCV parser, shape calculator and converter for it, only while
skl2onnx lacks one.
"""

from __future__ import annotations

from skl2onnx import update_registered_converter
from skl2onnx._parse import _parse_sklearn_grid_search_cv
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.operator_converters.grid_search_cv import convert_sklearn_grid_search_cv
from skl2onnx.shape_calculators.grid_search_cv import (
    convert_sklearn_grid_search_cv as grid_search_cv_shapes,
)
from sklearn.model_selection import RandomizedSearchCV


def register() -> list[str]:
    """Register RandomizedSearchCV where skl2onnx lacks it; return the names registered."""
    if RandomizedSearchCV in sklearn_operator_name_map:
        return []
    update_registered_converter(
        RandomizedSearchCV, "BridgeRandomizedSearchCV", grid_search_cv_shapes,
        convert_sklearn_grid_search_cv, parser=_parse_sklearn_grid_search_cv,
        options="passthrough",
    )
    return ["RandomizedSearchCV"]
