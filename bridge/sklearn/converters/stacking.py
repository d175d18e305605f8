"""A ``StackingClassifier`` converter for binary problems whose base estimators mix methods.

skl2onnx 1.20 keeps both columns of every binary base output unless *all* base estimators
stack ``predict_proba``, so e.g. LogisticRegression + SVC (decision_function) feed the
final estimator twice as many columns as it was fitted on. scikit-learn keeps one column
per binary base output (the positive class); this converter does the same, and is
registered only when a probe shows skl2onnx's own converter still gets it wrong.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import to_onnx, update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common.data_types import Int64TensorType
from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
from skl2onnx.operator_converters.stacking import convert_sklearn_stacking_classifier
from sklearn.ensemble import StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from bridge.sklearn.converters._graph import (
    add_class_labels,
    add_constant,
    add_node,
    proto_float_of,
)

OPTIONS = {
    "zipmap": [True, False, "columns"],
    "nocl": [True, False],
    "output_class_labels": [False, True],
    "raw_scores": [True, False],
}


def _scores(scope, container, model, input_variable, raw_scores: bool) -> str:
    """Declare ``model`` as a sub-operator and return the name of its score output."""
    sub = scope.declare_local_operator(sklearn_operator_name_map[type(model)], model)
    if container.has_options(model, "raw_scores"):
        container.add_options(id(model), {"raw_scores": raw_scores})
    sub.inputs.append(input_variable)
    sub.outputs.append(scope.declare_local_variable("stack_label", Int64TensorType()))
    scores = scope.declare_local_variable("stack_scores", input_variable.type.__class__())
    sub.outputs.append(scores)
    proto = proto_float_of(sub)
    return add_node(scope, container, "Cast", [scores.full_name], "stack_cast", to=proto)


def convert_stacking_classifier_binary_safe(scope, operator, container) -> None:
    """Keep column 1 of each binary base output; otherwise defer to skl2onnx."""
    model = operator.raw_operator
    if len(model.classes_) != 2:
        convert_sklearn_stacking_classifier(scope, operator, container)
        return
    options = container.get_options(model, dict(raw_scores=False))
    positive = add_constant(scope, container, "positive_column", [1], TensorProto.INT64)
    columns = []
    for estimator, method in zip(model.estimators_, model.stack_method_):
        if estimator == "drop":
            continue
        scores = _scores(scope, container, estimator, operator.inputs[0],
                         method == "decision_function")
        columns.append(add_node(scope, container, "Gather", [scores, positive],
                                "stack_positive", axis=1))
    if model.passthrough:
        columns.append(operator.inputs[0].full_name)
    merged = add_node(scope, container, "Concat", columns, "stack_merged", axis=1)
    meta = scope.declare_local_variable(
        "stack_meta", operator.inputs[0].type.__class__([None, model.final_estimator_.n_features_in_])
    )
    container.add_node("Identity", [merged], [meta.onnx_name],
                       name=scope.get_unique_operator_name("Identity"))
    final_scores = _scores(scope, container, model.final_estimator_, meta, options["raw_scores"])
    container.add_node("Identity", [final_scores], [operator.outputs[1].full_name],
                       name=scope.get_unique_operator_name("Identity"))
    index = add_node(scope, container, "ArgMax", [final_scores], "stack_index", axis=1,
                     keepdims=0)
    add_class_labels(scope, container, index, model.classes_, operator.outputs[0].full_name)


def skl2onnx_mishandles_binary_mixed_stacking() -> bool:
    """Convert a tiny binary LogisticRegression + LinearSVC stack; report wrong or failing output."""
    import onnxruntime

    features = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.5], [0.5, 2.0],
                         [2.5, 0.0]] * 2, dtype=np.float32)
    labels = np.array([0, 0, 1, 1, 0, 1] * 2)
    probe = StackingClassifier(
        [("lr", LogisticRegression()), ("svm", LinearSVC())], cv=2
    ).fit(features, labels)
    graph = to_onnx(probe, features[:1], options={id(probe): {"zipmap": False}})
    quiet = onnxruntime.SessionOptions()
    quiet.log_severity_level = 4  # the failure is the expected finding, not worth a log line
    session = onnxruntime.InferenceSession(graph.SerializeToString(), quiet,
                                           providers=["CPUExecutionProvider"])
    try:
        probabilities = session.run(None, {session.get_inputs()[0].name: features})[1]
    except Exception:  # onnxruntime rejects the malformed graph: that is the bug
        return True
    return not np.allclose(probabilities, probe.predict_proba(features), atol=1e-4)


def register() -> bool:
    """Register the binary-safe converter when skl2onnx's is wrong; return whether it did."""
    if StackingClassifier not in sklearn_operator_name_map:
        return False
    if not skl2onnx_mishandles_binary_mixed_stacking():
        return False
    update_registered_converter(
        StackingClassifier, sklearn_operator_name_map[StackingClassifier],
        calculate_linear_classifier_output_shapes, convert_stacking_classifier_binary_safe,
        options=OPTIONS,
    )
    return True
