"""skl2onnx converter for ``sklearn.feature_selection.SequentialFeatureSelector``'s
``transform`` (skl2onnx has none): a ``Gather`` of the selected columns (standard ai.onnx,
where skl2onnx's other selectors use ai.onnx.ml's ArrayFeatureExtractor).
"""

from __future__ import annotations

from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from sklearn.feature_selection import SequentialFeatureSelector

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import add_constant, float_type_of

ALIAS = "BridgeSequentialFeatureSelector"


def _selected(model) -> list[int]:
    selected = [int(i) for i in model.get_support(indices=True)]
    if not selected:
        raise UnsupportedEstimatorError(
            f"{type(model).__name__} selected no feature: its transform gives no columns, "
            "which has no ONNX conversion (see SUPPORTED.md)")
    return selected


def selection_shape_calculator(operator) -> None:
    """The selected columns ``(N, k)`` in the input's float type."""
    width = len(_selected(operator.raw_operator))
    operator.outputs[0].type = float_type_of(operator)([None, width])


def convert_selection(scope, operator, container) -> None:
    """Write ``X[:, support]``."""
    columns = add_constant(scope, container, "selected_columns",
                           _selected(operator.raw_operator), TensorProto.INT64)
    container.add_node("Gather", [operator.inputs[0].full_name, columns],
                       [operator.outputs[0].full_name], axis=1,
                       name=scope.get_unique_operator_name("Gather"))


def register() -> bool:
    """Register the converter unless skl2onnx already has one; return whether it did."""
    if SequentialFeatureSelector in sklearn_operator_name_map:
        return False
    update_registered_converter(SequentialFeatureSelector, ALIAS, selection_shape_calculator,
                                convert_selection)
    return True
