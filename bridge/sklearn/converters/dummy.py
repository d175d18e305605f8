"""skl2onnx converters for ``DummyClassifier`` and ``DummyRegressor`` (skl2onnx has none).

Both ignore the input values and repeat one fitted row per input row (Shape → Expand),
so they are exact; the random strategies (``uniform``, ``stratified``) have no
deterministic graph and are refused.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common.data_types import Int64TensorType, StringTensorType
from sklearn.dummy import DummyClassifier, DummyRegressor

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import (
    add_constant,
    add_node,
    broadcast_rows,
    float_type_of,
    proto_float_of,
)

CLASSIFIER_ALIAS = "BridgeDummyClassifier"
REGRESSOR_ALIAS = "BridgeDummyRegressor"
CLASSIFIER_STRATEGIES = ("prior", "most_frequent", "constant")
CLASSIFIER_OPTIONS = {
    "zipmap": [True, False, "columns"],
    "nocl": [True, False],
    "output_class_labels": [False, True],
}


def _string_classes(classes) -> bool:
    return not all(isinstance(c, (int, np.integer, bool, np.bool_)) or (
        isinstance(c, (float, np.floating)) and float(c).is_integer()) for c in classes)


def _check_single_output(model, name: str) -> None:
    if getattr(model, "n_outputs_", 1) != 1:
        raise UnsupportedEstimatorError(
            f"{name} fitted on {model.n_outputs_} targets has no ONNX conversion; "
            "supported: one target (see SUPPORTED.md)"
        )


def dummy_classifier_shape_calculator(operator) -> None:
    """Label ``(N,)`` (int64 or string) and probabilities ``(N, n_classes)``."""
    model = operator.raw_operator
    label_type = StringTensorType if _string_classes(model.classes_) else Int64TensorType
    operator.outputs[0].type = label_type([None])
    if len(operator.outputs) > 1:
        operator.outputs[1].type = float_type_of(operator)([None, len(model.classes_)])


def _class_probabilities(model: DummyClassifier) -> np.ndarray:
    if model.strategy not in CLASSIFIER_STRATEGIES:
        raise UnsupportedEstimatorError(
            f"DummyClassifier(strategy={model.strategy!r}) is random and has no ONNX "
            f"conversion; supported strategies: {', '.join(CLASSIFIER_STRATEGIES)} "
            "(see SUPPORTED.md)"
        )
    _check_single_output(model, "DummyClassifier")
    prior = np.asarray(model.class_prior_, dtype=np.float64)
    if model.strategy == "prior":
        return prior
    if model.strategy == "most_frequent":
        index = int(np.argmax(prior))
    else:
        index = int(np.flatnonzero(np.asarray(model.classes_) == model.constant)[0])
    one_hot = np.zeros_like(prior)
    one_hot[index] = 1.0
    return one_hot


def convert_dummy_classifier(scope, operator, container) -> None:
    """Probabilities are the fitted row; the label is the class of its first maximum."""
    model = operator.raw_operator
    proto = proto_float_of(operator)
    x = operator.inputs[0].full_name
    probabilities = operator.outputs[1].full_name
    broadcast_rows(scope, container, x, _class_probabilities(model), proto, probabilities)
    index = add_node(
        scope, container, "ArgMax", [probabilities], "class_index", axis=1, keepdims=0
    )
    label = operator.outputs[0].full_name
    classes = list(model.classes_)
    if _string_classes(classes):
        container.add_node(
            "LabelEncoder", [index], [label], op_domain="ai.onnx.ml", op_version=2,
            name=scope.get_unique_operator_name("LabelEncoder"),
            keys_int64s=list(range(len(classes))),
            values_strings=[str(c) for c in classes], default_string="",
        )
        return
    class_values = add_constant(
        scope, container, "classes", [int(c) for c in classes], TensorProto.INT64
    )
    container.add_node(
        "Gather", [class_values, index], [label], axis=0,
        name=scope.get_unique_operator_name("Gather"),
    )


def dummy_regressor_shape_calculator(operator) -> None:
    """Predictions ``(N, n_outputs)`` in the input's float type."""
    model = operator.raw_operator
    operator.outputs[0].type = float_type_of(operator)([None, model.constant_.shape[-1]])


def convert_dummy_regressor(scope, operator, container) -> None:
    """Every strategy of DummyRegressor predicts its fitted ``constant_`` row."""
    model = operator.raw_operator
    broadcast_rows(
        scope, container, operator.inputs[0].full_name,
        np.asarray(model.constant_, dtype=np.float64).reshape(1, -1),
        proto_float_of(operator), operator.outputs[0].full_name,
    )


def register() -> list[str]:
    """Register the converters skl2onnx lacks; return the names of those registered."""
    registered = []
    if DummyClassifier not in sklearn_operator_name_map:
        update_registered_converter(
            DummyClassifier, CLASSIFIER_ALIAS, dummy_classifier_shape_calculator,
            convert_dummy_classifier, options=CLASSIFIER_OPTIONS,
        )
        registered.append("DummyClassifier")
    if DummyRegressor not in sklearn_operator_name_map:
        update_registered_converter(
            DummyRegressor, REGRESSOR_ALIAS, dummy_regressor_shape_calculator,
            convert_dummy_regressor,
        )
        registered.append("DummyRegressor")
    return registered
