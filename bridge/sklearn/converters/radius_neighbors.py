"""``RadiusNeighborsClassifier`` and ``RadiusNeighborsRegressor`` with scikit-learn's rule for
rows that have no neighbour inside the radius, and ``RadiusNeighborsTransformer`` (dense).

skl2onnx 1.20 marks every training row outside the radius with index -1 and looks the
labels up with ArrayFeatureExtractor, which onnxruntime (and bridge) refuse to run. These
converters weigh all training rows at once instead: a weight matrix (1 inside the radius,
``1/d`` for ``weights='distance'``, scikit-learn's rule for zero distances), then counts
per class or a weighted mean. A row without neighbours gets, as in scikit-learn:
regressor, NaN; classifier with ``outlier_label``, that label (probability 1 for it when it
is a class, else all zeros); classifier without one, an error: the graph's row lookup fails
for that row in onnxruntime and in torch, where scikit-learn raises ValueError.
Registered only while a probe shows skl2onnx's own graph failing in onnxruntime.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import to_onnx, update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common.shape_calculator import (
    calculate_linear_classifier_output_shapes,
    calculate_linear_regressor_output_shapes,
)
from sklearn.neighbors import (
    RadiusNeighborsClassifier,
    RadiusNeighborsRegressor,
    RadiusNeighborsTransformer,
)

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import (
    add_class_labels,
    add_constant,
    add_node,
    add_pairwise,
    proto_float_of,
)

OPTIONS = {"zipmap": [True, False, "columns"], "nocl": [True, False],
           "output_class_labels": [False, True]}
_ROW_AXIS = [1]


def row_error(estimator) -> str | None:
    """What a converted ``RadiusNeighborsClassifier`` without ``outlier_label`` says when a
    row has no training row within the radius (its graph's row lookup fails there, where
    scikit-learn raises ValueError); None for other estimators. A pipeline ending in one
    says it too."""
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if not isinstance(final, RadiusNeighborsClassifier) or final.outlier_label_ is not None:
        return None
    return (f"No neighbors found within radius={final.radius} for some rows of X "
            f"({type(estimator).__name__}, converted; scikit-learn raises ValueError for such "
            "rows too): use a larger radius, give an outlier_label, or remove those rows")


def _metric(model) -> str:
    """``"euclidean"`` or ``"manhattan"``, as the fitted metric resolves."""
    metric, p = model.effective_metric_, model.effective_metric_params_.get("p", model.p)
    if metric == "euclidean" or (metric == "minkowski" and p == 2):
        return "euclidean"
    if metric in ("manhattan", "cityblock", "l1") or (metric == "minkowski" and p == 1):
        return "manhattan"
    raise UnsupportedEstimatorError(
        f"{type(model).__name__}(metric={model.metric!r}, p={model.p}) has no conversion; "
        "supported: euclidean (minkowski p=2) and manhattan (p=1)")


def _distances(scope, container, operator, proto) -> tuple[str, str]:
    """The (N, n_train) distances and whether each is inside the radius (bool)."""
    model = operator.raw_operator
    x = operator.inputs[0].full_name
    if _metric(model) == "euclidean":
        squared = add_pairwise(scope, container, x, model._fit_X, proto, "sqeuclidean")
        distances = add_node(scope, container, "Sqrt", [squared], "radius_distances")
    else:
        distances = add_pairwise(scope, container, x, model._fit_X, proto, "manhattan")
    radius = add_constant(scope, container, "radius", [model.radius], proto)
    return distances, add_node(scope, container, "LessOrEqual", [distances, radius],
                               "radius_inside")


def _weights(scope, container, operator, proto) -> tuple[str, str]:
    """The (N, n_train) neighbour weights and the (N, 1) neighbour count."""
    model = operator.raw_operator
    if model.weights not in ("uniform", "distance"):
        raise UnsupportedEstimatorError(
            f"{type(model).__name__}(weights={model.weights!r}) has no conversion; "
            "supported: 'uniform', 'distance'")
    distances, inside = _distances(scope, container, operator, proto)
    mask = add_node(scope, container, "Cast", [inside], "radius_mask", to=proto)
    axis = add_constant(scope, container, "row_axis", _ROW_AXIS, TensorProto.INT64)
    count = add_node(scope, container, "ReduceSum", [mask, axis], "radius_count", keepdims=1)
    if model.weights == "uniform":
        return mask, count
    # 1/d; a row with a neighbour at distance 0 weighs those neighbours 1 and the rest 0
    zero = add_constant(scope, container, "zero", [0.0], proto)
    at_zero = add_node(scope, container, "Cast", [
        add_node(scope, container, "Equal", [distances, zero], "radius_at_zero")],
        "radius_at_zero_float", to=proto)
    has_zero = add_node(scope, container, "Cast", [
        add_node(scope, container, "ReduceMax", [at_zero, axis], "radius_has_zero",
                 keepdims=1)], "radius_has_zero_bool", to=TensorProto.BOOL)
    inverse = add_node(scope, container, "Div", [mask, distances], "radius_inverse")
    weights = add_node(scope, container, "Where", [has_zero, at_zero, inverse],
                       "radius_weights")
    return weights, count


def _row_check(scope, container, values: str, count: str, proto: int) -> str:
    """``values`` gathered row by row, with an out-of-range row index for rows that have
    no neighbour: the lookup fails there (scikit-learn raises for such rows)."""
    shape = add_node(scope, container, "Shape", [values], "radius_shape")
    first = add_constant(scope, container, "first", [0], TensorProto.INT64)
    rows = add_node(scope, container, "Gather", [shape, first], "radius_rows", axis=0)
    rows = add_node(scope, container, "Squeeze", [rows], "radius_rows_scalar")
    start = add_constant(scope, container, "start", np.array(0, dtype=np.int64),
                         TensorProto.INT64)
    step = add_constant(scope, container, "step", np.array(1, dtype=np.int64),
                        TensorProto.INT64)
    index = add_node(scope, container, "Range", [start, rows, step], "radius_row_index")
    flat = add_constant(scope, container, "flat", [-1], TensorProto.INT64)
    lonely = add_node(scope, container, "Reshape", [
        add_node(scope, container, "Equal", [count, add_constant(
            scope, container, "none", [0.0], proto)],
            "radius_lonely_2d"), flat], "radius_lonely")
    beyond = add_constant(scope, container, "beyond", [np.iinfo(np.int32).max],
                          TensorProto.INT64)
    checked = add_node(scope, container, "Where", [lonely, beyond, index], "radius_checked")
    return add_node(scope, container, "Gather", [values, checked], "radius_checked_values",
                    axis=0)


def convert_radius_classifier(scope, operator, container) -> None:
    """Class counts (or distance weights) per row, normalised as scikit-learn does."""
    model = operator.raw_operator
    if model.outputs_2d_:
        raise UnsupportedEstimatorError(
            "RadiusNeighborsClassifier fitted on several outputs has no conversion; "
            "supported: one output")
    proto = proto_float_of(operator)
    classes = list(model.classes_)
    weights, count = _weights(scope, container, operator, proto)
    one_hot = np.eye(len(classes))[np.asarray(model._y).ravel()]
    counts = add_node(scope, container, "MatMul", [weights, add_constant(
        scope, container, "class_indicator", one_hot, proto)], "radius_class_counts")
    label = None if model.outlier_label_ is None else model.outlier_label_[0]
    if label is not None and label in classes:  # outliers: probability 1 for that class
        lonely = add_node(scope, container, "Cast", [add_node(scope, container, "Equal", [
            count, add_constant(scope, container, "none", [0.0], proto)], "radius_lonely")],
            "radius_lonely_float", to=proto)
        counts = add_node(scope, container, "Add", [counts, add_node(
            scope, container, "MatMul", [lonely, add_constant(
                scope, container, "outlier_row",
                np.eye(len(classes))[classes.index(label)].reshape(1, -1), proto)],
            "radius_outlier_counts")], "radius_counts_with_outliers")
    axis = add_constant(scope, container, "row_axis", _ROW_AXIS, TensorProto.INT64)
    total = add_node(scope, container, "ReduceSum", [counts, axis], "radius_total",
                     keepdims=1)
    zero = add_constant(scope, container, "zero", [0.0], proto)
    one = add_constant(scope, container, "one", [1.0], proto)
    total = add_node(scope, container, "Where", [add_node(
        scope, container, "Equal", [total, zero], "radius_empty"), one, total],
        "radius_normalizer")
    probabilities = add_node(scope, container, "Div", [counts, total], "radius_probabilities")
    if label is None:
        probabilities = _row_check(scope, container, probabilities, count, proto)
    container.add_node("Identity", [probabilities], [operator.outputs[1].full_name],
                       name=scope.get_unique_operator_name("Identity"))
    index = add_node(scope, container, "ArgMax", [probabilities], "radius_index", axis=1,
                     keepdims=0)
    if label is not None and label not in classes:  # all-zero rows: the outlier label
        empty = add_node(scope, container, "Equal", [add_node(
            scope, container, "ReduceMax", [probabilities, axis], "radius_top", keepdims=0),
            zero], "radius_all_zero")
        index = add_node(scope, container, "Where", [empty, add_constant(
            scope, container, "outlier_index", [len(classes)], TensorProto.INT64), index],
            "radius_index_with_outliers")
        classes = classes + [np.asarray(label).astype(model.classes_.dtype).item()]
    add_class_labels(scope, container, index, classes, operator.outputs[0].full_name)


def convert_radius_regressor(scope, operator, container) -> None:
    """The weighted mean of the neighbours' targets; NaN (0/0) for rows without any."""
    model = operator.raw_operator
    proto = proto_float_of(operator)
    weights, _ = _weights(scope, container, operator, proto)
    targets = np.asarray(model._y, dtype=np.float64)
    targets = targets.reshape(len(targets), -1)
    summed = add_node(scope, container, "MatMul", [weights, add_constant(
        scope, container, "targets", targets, proto)], "radius_weighted_sum")
    axis = add_constant(scope, container, "row_axis", _ROW_AXIS, TensorProto.INT64)
    total = add_node(scope, container, "ReduceSum", [weights, axis], "radius_weight_total",
                     keepdims=1)
    container.add_node("Div", [summed, total], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("Div"))


def radius_transformer_shape(operator) -> None:
    """``(N, n_train)`` in the input's float type."""
    operator.outputs[0].type = operator.inputs[0].type.__class__(
        [None, len(operator.raw_operator._fit_X)])


def convert_radius_transformer(scope, operator, container) -> None:
    """The dense form of scikit-learn's sparse graph: the distance (``mode='distance'``) or
    1 (``'connectivity'``) inside the radius, 0 elsewhere."""
    model = operator.raw_operator
    proto = proto_float_of(operator)
    distances, inside = _distances(scope, container, operator, proto)
    target = [operator.outputs[0].full_name]
    if model.mode == "connectivity":
        container.add_node("Cast", [inside], target, to=proto,
                           name=scope.get_unique_operator_name("Cast"))
        return
    zero = add_constant(scope, container, "zero", [0.0], proto)
    container.add_node("Where", [inside, distances, zero], target,
                       name=scope.get_unique_operator_name("Where"))


def skl2onnx_fails_without_neighbours() -> bool:
    """Convert a tiny regressor whose query rows lack neighbours for some training rows;
    report whether onnxruntime fails on skl2onnx's graph or disagrees."""
    import onnxruntime

    features = np.array([[0.0], [0.5], [3.0], [3.2]], dtype=np.float32)
    probe = RadiusNeighborsRegressor(radius=1.0).fit(features, np.arange(4.0))
    try:
        graph = to_onnx(probe, features[:1])
        quiet = onnxruntime.SessionOptions()
        quiet.log_severity_level = 4
        session = onnxruntime.InferenceSession(graph.SerializeToString(), quiet,
                                               providers=["CPUExecutionProvider"])
        predicted = session.run(None, {session.get_inputs()[0].name: features})[0]
    except Exception:  # onnxruntime refuses the -1 index: the bug
        return True
    return not np.allclose(predicted.ravel(), probe.predict(features), atol=1e-5)


def register() -> list[str]:
    """Register the transformer where skl2onnx lacks it, and the classifier and regressor
    while skl2onnx's graph fails; return the names registered."""
    registered = []
    if RadiusNeighborsTransformer not in sklearn_operator_name_map:
        update_registered_converter(RadiusNeighborsTransformer,
                                    "BridgeRadiusNeighborsTransformer",
                                    radius_transformer_shape, convert_radius_transformer)
        registered.append("RadiusNeighborsTransformer")
    if RadiusNeighborsRegressor in sklearn_operator_name_map and (
            not skl2onnx_fails_without_neighbours()):
        return registered
    update_registered_converter(
        RadiusNeighborsClassifier, sklearn_operator_name_map.get(
            RadiusNeighborsClassifier, "BridgeRadiusNeighborsClassifier"),
        calculate_linear_classifier_output_shapes, convert_radius_classifier, options=OPTIONS)
    update_registered_converter(
        RadiusNeighborsRegressor, sklearn_operator_name_map.get(
            RadiusNeighborsRegressor, "BridgeRadiusNeighborsRegressor"),
        calculate_linear_regressor_output_shapes, convert_radius_regressor)
    return registered + ["RadiusNeighborsClassifier", "RadiusNeighborsRegressor"]
