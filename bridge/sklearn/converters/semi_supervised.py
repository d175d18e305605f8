"""skl2onnx converters for ``LabelPropagation`` and ``LabelSpreading`` (rbf kernel).

``predict_proba`` is ``exp(-gamma |x - X_|^2) @ label_distributions_`` normalised per row;
the kernel row is shifted by its smallest distance first (the shift cancels in the
normalisation), so float32 does not underflow to 0/0 far from the training points.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common.data_types import Int64TensorType, StringTensorType
from sklearn.semi_supervised import LabelPropagation, LabelSpreading

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import (
    add_class_labels,
    add_constant,
    add_node,
    add_pairwise,
    float_type_of,
    proto_float_of,
)

OPTIONS = {
    "zipmap": [True, False, "columns"],
    "nocl": [True, False],
    "output_class_labels": [False, True],
}


def label_propagation_shape_calculator(operator) -> None:
    """Label ``(N,)`` (int64 or string) and probabilities ``(N, n_classes)``."""
    model = operator.raw_operator
    strings = np.asarray(model.classes_).dtype.kind in "OUS"
    operator.outputs[0].type = (StringTensorType if strings else Int64TensorType)([None])
    if len(operator.outputs) > 1:
        operator.outputs[1].type = float_type_of(operator)([None, len(model.classes_)])


def convert_label_propagation(scope, operator, container) -> None:
    """Normalised rbf weights times the fitted label distributions; the label of the largest."""
    model = operator.raw_operator
    if model.kernel != "rbf":
        raise UnsupportedEstimatorError(
            f"{type(model).__name__}(kernel={model.kernel!r}) has no ONNX conversion; "
            "supported kernel: rbf (see SUPPORTED.md)"
        )
    proto = proto_float_of(operator)
    distances = add_pairwise(scope, container, operator.inputs[0].full_name, model.X_, proto,
                             "sqeuclidean")
    axis = add_constant(scope, container, "axis", [1], TensorProto.INT64)
    nearest = add_node(scope, container, "ReduceMin", [distances, axis], "nearest", keepdims=1)
    shifted = add_node(scope, container, "Sub", [distances, nearest], "shifted")
    weights = add_node(scope, container, "Exp", [add_node(
        scope, container, "Mul",
        [shifted, add_constant(scope, container, "minus_gamma", [-float(model.gamma)], proto)],
        "scaled")], "weights")
    mass = add_node(scope, container, "MatMul", [weights, add_constant(
        scope, container, "label_distributions", model.label_distributions_, proto)], "mass")
    total = add_node(scope, container, "ReduceSum", [mass, axis], "total", keepdims=1)
    probabilities = operator.outputs[1].full_name
    container.add_node("Div", [mass, total], [probabilities],
                       name=scope.get_unique_operator_name("Div"))
    index = add_node(scope, container, "ArgMax", [probabilities], "best", axis=1, keepdims=0)
    add_class_labels(scope, container, index, model.classes_, operator.outputs[0].full_name)


_ALIASES = {LabelPropagation: "BridgeLabelPropagation", LabelSpreading: "BridgeLabelSpreading"}


def register() -> list[str]:
    """Register the converters skl2onnx lacks; return the names of those registered."""
    registered = []
    for cls, alias in _ALIASES.items():
        if cls in sklearn_operator_name_map:
            continue
        update_registered_converter(cls, alias, label_propagation_shape_calculator,
                                    convert_label_propagation, options=OPTIONS)
        registered.append(cls.__name__)
    return registered
