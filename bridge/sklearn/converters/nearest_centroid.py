"""skl2onnx converter for ``sklearn.neighbors.NearestCentroid`` (skl2onnx has none).

Labels follow scikit-learn: the nearest centroid (euclidean or manhattan) under uniform
priors, else the largest discriminant score; the scores (``-||x/s - c/s||^2 + 2 log prior``,
euclidean metric) give ``decision_function`` and, through Softmax, ``predict_proba``.
"""

from __future__ import annotations

import numpy as np
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common.data_types import Int64TensorType, StringTensorType
from sklearn.neighbors import NearestCentroid

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import (
    add_class_labels,
    add_constant,
    add_node,
    add_pairwise,
    float_type_of,
    proto_float_of,
)

ALIAS = "BridgeNearestCentroid"
METRICS = ("euclidean", "manhattan")
OPTIONS = {
    "zipmap": [True, False, "columns"],
    "nocl": [True, False],
    "output_class_labels": [False, True],
    "raw_scores": [False, True],
}


def _string_classes(classes) -> bool:
    return np.asarray(classes).dtype.kind in "OUS"


def nearest_centroid_shape_calculator(operator) -> None:
    """Label ``(N,)`` (int64 or string) and scores ``(N, n_classes)``."""
    model = operator.raw_operator
    label_type = StringTensorType if _string_classes(model.classes_) else Int64TensorType
    operator.outputs[0].type = label_type([None])
    if len(operator.outputs) > 1:
        operator.outputs[1].type = float_type_of(operator)([None, len(model.classes_)])


def _discriminant_scores(scope, container, model, x: str, proto: int) -> str:
    deviation = np.asarray(model.within_class_std_dev_, dtype=np.float64)
    divisor = np.where(deviation != 0, deviation, 1.0)
    normalized = add_node(
        scope, container, "Div",
        [x, add_constant(scope, container, "std_dev", divisor.reshape(1, -1), proto)],
        "normalized")
    centroids = np.asarray(model.centroids_, dtype=np.float64) / divisor
    distances = add_pairwise(scope, container, normalized, centroids, proto, "sqeuclidean")
    log_prior = add_constant(scope, container, "two_log_prior",
                             2.0 * np.log(np.asarray(model.class_prior_)).reshape(1, -1), proto)
    return add_node(scope, container, "Sub", [log_prior, distances], "scores")


def convert_nearest_centroid(scope, operator, container) -> None:
    """Labels, then probabilities (or with ``raw_scores`` the decision scores)."""
    model = operator.raw_operator
    if model.metric not in METRICS:
        raise UnsupportedEstimatorError(
            f"NearestCentroid(metric={model.metric!r}) has no ONNX conversion; supported "
            f"metrics: {', '.join(METRICS)} (see SUPPORTED.md)"
        )
    proto = proto_float_of(operator)
    x = operator.inputs[0].full_name
    uniform = bool(np.isclose(model.class_prior_, 1 / len(model.classes_)).all())
    scores = None
    if model.metric == "euclidean":
        scores = _discriminant_scores(scope, container, model, x, proto)
    if uniform or scores is None:
        metric = "sqeuclidean" if model.metric == "euclidean" else "manhattan"
        distances = add_pairwise(scope, container, x, model.centroids_, proto, metric)
        index = add_node(scope, container, "ArgMin", [distances], "nearest", axis=1,
                         keepdims=0)
    else:
        index = add_node(scope, container, "ArgMax", [scores], "best", axis=1, keepdims=0)
    add_class_labels(scope, container, index, model.classes_, operator.outputs[0].full_name)
    if len(operator.outputs) < 2:
        return
    second = operator.outputs[1].full_name
    if scores is None:  # manhattan: no scores in scikit-learn; minus the distances
        container.add_node("Neg", [distances], [second],
                           name=scope.get_unique_operator_name("Neg"))
    elif container.get_options(model, dict(raw_scores=False))["raw_scores"]:
        if len(model.classes_) == 2:  # scikit-learn's binary score: s1 - s0, in column 1
            flip = add_constant(scope, container, "binary", [[1.0, -1.0], [-1.0, 1.0]], proto)
            scores = add_node(scope, container, "MatMul", [scores, flip], "binary_scores")
        container.add_node("Identity", [scores], [second],
                           name=scope.get_unique_operator_name("Identity"))
    else:
        container.add_node("Softmax", [scores], [second], axis=1,
                           name=scope.get_unique_operator_name("Softmax"))


def register() -> bool:
    """Register the converter unless skl2onnx already has one; return whether it did."""
    if NearestCentroid in sklearn_operator_name_map:
        return False
    update_registered_converter(NearestCentroid, ALIAS, nearest_centroid_shape_calculator,
                                convert_nearest_centroid, options=OPTIONS)
    return True
