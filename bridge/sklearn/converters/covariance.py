"""skl2onnx converter for ``sklearn.covariance.EllipticEnvelope`` (skl2onnx has none).

``score_samples`` is minus the squared Mahalanobis distance to ``location_`` under the
fitted precision, ``decision_function`` subtracts ``offset_``, and ``predict`` is 1 where
the decision is non-negative, else -1 (as scikit-learn).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common.data_types import Int64TensorType, guess_tensor_type
from sklearn.covariance import EllipticEnvelope

from bridge.sklearn.converters._graph import add_constant, add_node, float_type_of, proto_float_of

ALIAS = "BridgeEllipticEnvelope"


def elliptic_envelope_parser(scope, model, inputs, custom_parsers=None):
    """Outputs: label, decision scores and, with option ``score_samples``, the sample scores."""
    operator = scope.declare_local_operator(ALIAS, model)
    operator.inputs = inputs
    operator.outputs.append(scope.declare_local_variable("label", Int64TensorType()))
    float_type = guess_tensor_type(inputs[0].type)
    operator.outputs.append(scope.declare_local_variable("scores", float_type))
    if scope.get_options(model, dict(score_samples=False))["score_samples"]:
        operator.outputs.append(scope.declare_local_variable("score_samples", float_type))
    return operator.outputs


def elliptic_envelope_shape_calculator(operator) -> None:
    """Label ``(N, 1)`` int64; scores ``(N, 1)`` in the input's float type."""
    operator.outputs[0].type = Int64TensorType([None, 1])
    for output in operator.outputs[1:]:
        output.type = float_type_of(operator)([None, 1])


def convert_elliptic_envelope(scope, operator, container) -> None:
    """``-(x - location) P (x - location)^T`` row by row, then the offset and the sign."""
    model = operator.raw_operator
    proto = proto_float_of(operator)
    x = operator.inputs[0].full_name
    location = add_constant(scope, container, "location",
                            np.asarray(model.location_).reshape(1, -1), proto)
    centered = add_node(scope, container, "Sub", [x, location], "centered")
    precision = add_constant(scope, container, "precision", model.get_precision(), proto)
    projected = add_node(scope, container, "MatMul", [centered, precision], "projected")
    product = add_node(scope, container, "Mul", [projected, centered], "product")
    axes = add_constant(scope, container, "axis", [1], TensorProto.INT64)
    distance = add_node(scope, container, "ReduceSum", [product, axes], "mahalanobis",
                        keepdims=1)
    scores = add_node(scope, container, "Neg", [distance], "negative_mahalanobis")
    if len(operator.outputs) > 2:
        container.add_node("Identity", [scores], [operator.outputs[2].full_name],
                           name=scope.get_unique_operator_name("Identity"))
    offset = add_constant(scope, container, "offset", [model.offset_], proto)
    decision = operator.outputs[1].full_name
    container.add_node("Sub", [scores, offset], [decision],
                       name=scope.get_unique_operator_name("Sub"))
    zero = add_constant(scope, container, "zero", [0.0], proto)
    inlier = add_node(scope, container, "GreaterOrEqual", [decision, zero], "inlier")
    plus = add_constant(scope, container, "plus_one", [1], TensorProto.INT64)
    minus = add_constant(scope, container, "minus_one", [-1], TensorProto.INT64)
    container.add_node("Where", [inlier, plus, minus], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("Where"))


def register() -> bool:
    """Register the converter unless skl2onnx already has one; return whether it did."""
    if EllipticEnvelope in sklearn_operator_name_map:
        return False
    update_registered_converter(
        EllipticEnvelope, ALIAS, elliptic_envelope_shape_calculator, convert_elliptic_envelope,
        parser=elliptic_envelope_parser, options={"score_samples": [False, True]},
    )
    return True
