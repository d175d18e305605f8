"""skl2onnx converter for ``sklearn.impute.MissingIndicator`` (skl2onnx has none).

The boolean mask ``IsNaN(X)`` (or ``X == missing_values``), restricted to ``features_``;
dense output only. ``error_on_new`` cannot raise inside a graph: a feature missing at
inference but not in fit is dropped, as scikit-learn does when ``error_on_new=False``.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common.data_types import BooleanTensorType
from sklearn.impute import MissingIndicator

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import add_constant, add_node, proto_float_of

ALIAS = "BridgeMissingIndicator"


def missing_indicator_shape_calculator(operator) -> None:
    """Boolean output ``(N, len(features_))``."""
    operator.outputs[0].type = BooleanTensorType([None, len(operator.raw_operator.features_)])


def convert_missing_indicator(scope, operator, container) -> None:
    """``IsNaN`` or ``Equal``, then a Gather of the indicated columns."""
    model = operator.raw_operator
    if model.sparse is True:
        raise UnsupportedEstimatorError(
            "MissingIndicator(sparse=True) has no ONNX conversion (graphs hold dense tensors); "
            "use sparse=False or 'auto' (see SUPPORTED.md)"
        )
    x = operator.inputs[0].full_name
    missing = model.missing_values
    if isinstance(missing, float) and np.isnan(missing) or missing is None:
        mask = add_node(scope, container, "IsNaN", [x], "mask")
    elif isinstance(missing, (int, float, np.number)):
        value = add_constant(scope, container, "missing_value", [float(missing)],
                             proto_float_of(operator))
        mask = add_node(scope, container, "Equal", [x, value], "mask")
    else:
        raise UnsupportedEstimatorError(
            f"MissingIndicator(missing_values={missing!r}) has no ONNX conversion; supported: "
            "NaN or a number (see SUPPORTED.md)"
        )
    columns = add_constant(scope, container, "features", np.asarray(model.features_),
                           TensorProto.INT64)
    container.add_node("Gather", [mask, columns], [operator.outputs[0].full_name], axis=1,
                       name=scope.get_unique_operator_name("Gather"))


def register() -> bool:
    """Register the converter unless skl2onnx already has one; return whether it did."""
    if MissingIndicator in sklearn_operator_name_map:
        return False
    update_registered_converter(MissingIndicator, ALIAS, missing_indicator_shape_calculator,
                                convert_missing_indicator)
    return True
