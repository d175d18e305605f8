"""Converters for the decision-threshold classifiers: ``FixedThresholdClassifier`` and
``TunedThresholdClassifierCV``.

skl2onnx 1.20 converts ``TunedThresholdClassifierCV`` as its inner estimator alone, so labels
come from the inner ``predict`` and ignore the tuned threshold (on a plain logistic
regression about 1% of the labels differ from scikit-learn), and it has no converter for
``FixedThresholdClassifier``. These run the inner estimator, take the positive class's
score (probability or decision value, as the classifier's ``response_method`` resolves) and
compare it with the threshold, as scikit-learn's ``predict`` does. The tuned one replaces
skl2onnx's only while a probe shows its labels ignoring the threshold.
"""

from __future__ import annotations

import copy

import numpy as np
from onnx import TensorProto
from skl2onnx import to_onnx, update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common.data_types import Int64TensorType
from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import FixedThresholdClassifier, TunedThresholdClassifierCV

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import add_class_labels, add_constant, add_node

OPTIONS = {"zipmap": [True, False, "columns"], "nocl": [True, False],
           "output_class_labels": [False, True], "raw_scores": [False, True]}
ALIAS = "BridgeFixedThresholdClassifier"


def response_method(model) -> str:
    """The inner method whose scores are thresholded (``"auto"`` resolved as scikit-learn
    does: probabilities when the estimator has them)."""
    if model.response_method != "auto":
        return model.response_method
    return "predict_proba" if hasattr(model.estimator_, "predict_proba") else "decision_function"


def threshold(model, method: str) -> float:
    """The tuned threshold, the fixed one, or ``"auto"``'s (0.5 on probabilities, else 0)."""
    if hasattr(model, "best_threshold_"):
        return float(model.best_threshold_)
    if isinstance(model.threshold, str):  # "auto"
        return 0.5 if method == "predict_proba" else 0.0
    return float(model.threshold)


def positive_label(model, classes: list):
    """The class whose score is thresholded: ``pos_label``, for the tuned classifier its
    scorer's (scikit-learn reads it there too), else the second class."""
    label = getattr(model, "pos_label", None)
    scorer = getattr(model, "_curve_scorer", None)
    if label is None and scorer is not None:
        label = scorer._get_pos_label()
    return classes[1] if label is None else label


def convert_threshold_classifier(scope, operator, container) -> None:
    """Label = the positive class where its score reaches the threshold, else the other
    class; the second output is the inner estimator's probabilities (or decision values),
    its decision values with ``raw_scores=True`` (scikit-learn's ``decision_function``)."""
    model = operator.raw_operator
    estimator = model.estimator_
    name = type(model).__name__
    method = response_method(model)
    if method == "decision_function" and hasattr(estimator, "predict_proba"):
        raise UnsupportedEstimatorError(
            f"{name}(response_method='decision_function') over an estimator with "
            "predict_proba has no conversion (its graph would need both outputs); use "
            "response_method='auto' or 'predict_proba'"
        )
    if method not in ("predict_proba", "decision_function") or (
            method == "decision_function" and not container.has_options(estimator, "raw_scores")):
        raise UnsupportedEstimatorError(
            f"{name} thresholds {type(estimator).__name__}.{method}, which has no ONNX "
            "conversion; supported: predict_proba, or decision_function of estimators with "
            "raw scores (linear models, SVC)"
        )
    if container.has_options(estimator, "zipmap"):
        container.add_options(id(estimator), {"zipmap": False})
    if method == "decision_function":
        container.add_options(id(estimator), {"raw_scores": True})
    inner = scope.declare_local_operator(sklearn_operator_name_map[type(estimator)], estimator)
    inner.inputs = operator.inputs
    inner.outputs.append(scope.declare_local_variable("threshold_inner_label",
                                                      Int64TensorType()))
    scores = scope.declare_local_variable("threshold_scores",
                                          operator.outputs[1].type.__class__())
    inner.outputs.append(scores)
    second = scores.onnx_name
    if container.get_options(model, dict(raw_scores=False))["raw_scores"] and (
            method == "predict_proba"):
        second = _decision_values(scope, container, estimator, operator)
    container.add_node("Identity", [second], [operator.outputs[1].full_name],
                       name=scope.get_unique_operator_name("Identity"))
    # binary scores come as two columns (probabilities, or -s / s): the positive class's
    classes = list(model.classes_)
    positive = positive_label(model, classes)
    column = add_constant(scope, container, "positive_column", [classes.index(positive)],
                          TensorProto.INT64)
    score = add_node(scope, container, "Gather", [scores.onnx_name, column], "positive_score",
                     axis=1)
    flat = add_node(scope, container, "Flatten", [score], "positive_score_flat", axis=0)
    level = add_constant(scope, container, "threshold", [threshold(model, method)],
                         TensorProto.DOUBLE)
    wide = add_node(scope, container, "Cast", [flat], "positive_score_double",
                    to=TensorProto.DOUBLE)
    reached = add_node(scope, container, "GreaterOrEqual", [wide, level], "threshold_reached")
    index = add_node(scope, container, "Cast", [reached], "threshold_index",
                     to=TensorProto.INT64)
    index = add_node(scope, container, "Reshape", [index, add_constant(
        scope, container, "flat_shape", [-1], TensorProto.INT64)], "threshold_index_flat")
    other = classes[0] if positive == classes[1] else classes[1]
    add_class_labels(scope, container, index, [other, positive],  # reached: the positive
                     operator.outputs[0].full_name)


def _decision_values(scope, container, estimator, operator) -> str:
    """The inner estimator's decision values, from a second operator over a shallow copy
    (skl2onnx keys options by object, and the first one gives probabilities)."""
    name = type(estimator).__name__
    if not container.has_options(estimator, "raw_scores"):
        raise UnsupportedEstimatorError(
            f"{name}.decision_function has no ONNX conversion; supported: estimators with "
            "raw scores (linear models, SVC)")
    twin = copy.copy(estimator)
    container.add_options(id(twin), {"raw_scores": True, **(
        {"zipmap": False} if container.has_options(twin, "zipmap") else {})})
    inner = scope.declare_local_operator(sklearn_operator_name_map[type(twin)], twin)
    inner.inputs = operator.inputs
    inner.outputs.append(scope.declare_local_variable("threshold_decision_label",
                                                      Int64TensorType()))
    values = scope.declare_local_variable("threshold_decision",
                                          operator.outputs[1].type.__class__())
    inner.outputs.append(values)
    return values.onnx_name


def skl2onnx_ignores_tuned_threshold() -> bool:
    """Convert a tiny tuned classifier whose threshold is far from 0.5; report whether its
    graph's labels ignore it (or the conversion fails)."""
    import onnxruntime

    features = np.linspace(-3, 3, 40, dtype=np.float32).reshape(-1, 1)
    labels = (features[:, 0] > 0).astype(np.int64)
    probe = TunedThresholdClassifierCV(LogisticRegression(), cv=2).fit(features, labels)
    probe.best_threshold_ = 0.9  # a threshold that moves labels
    try:
        graph = to_onnx(probe, features[:1], options={id(probe): {"zipmap": False}})
    except Exception:
        return True
    session = onnxruntime.InferenceSession(graph.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    predicted = session.run(None, {session.get_inputs()[0].name: features})[0]
    return not np.array_equal(predicted, probe.predict(features))


def register() -> list[str]:
    """Register the converters skl2onnx lacks or gets wrong; return their classes' names."""
    registered = []
    if FixedThresholdClassifier not in sklearn_operator_name_map:
        update_registered_converter(
            FixedThresholdClassifier, ALIAS, calculate_linear_classifier_output_shapes,
            convert_threshold_classifier, options=OPTIONS,
        )
        registered.append("FixedThresholdClassifier")
    if (TunedThresholdClassifierCV in sklearn_operator_name_map
            and skl2onnx_ignores_tuned_threshold()):
        update_registered_converter(
            TunedThresholdClassifierCV, sklearn_operator_name_map[TunedThresholdClassifierCV],
            calculate_linear_classifier_output_shapes, convert_threshold_classifier,
            options=OPTIONS,
        )
        registered.append("TunedThresholdClassifierCV")
    return registered
