"""skl2onnx converters for the clusterers skl2onnx lacks: ``Birch``, ``BisectingKMeans``,
``MeanShift`` and ``AffinityPropagation``.

Outputs follow skl2onnx's clusterer layout: the label, then the euclidean distances to the
centers (``transform``; MeanShift and AffinityPropagation have none in scikit-learn). Distances are taken from the
broadcast differences, and BisectingKMeans descends its tree: at each split a row goes to
the nearer child (the left one on a tie), as scikit-learn does.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common.data_types import Int64TensorType
from sklearn.cluster import AffinityPropagation, Birch, BisectingKMeans, MeanShift

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import (
    add_constant,
    add_node,
    add_pairwise,
    float_type_of,
    proto_float_of,
)


def _centers(model) -> np.ndarray:
    if isinstance(model, Birch):
        if model.subcluster_centers_ is None or not hasattr(model, "subcluster_labels_"):
            raise UnsupportedEstimatorError(
                "Birch fitted with partial_fit and no global step has no ONNX conversion "
                "(see SUPPORTED.md)")
        return np.asarray(model.subcluster_centers_, dtype=np.float64)
    if isinstance(model, AffinityPropagation) and (
            getattr(model, "cluster_centers_", None) is None or len(model.cluster_centers_) == 0):
        raise UnsupportedEstimatorError(
            "AffinityPropagation without cluster centers (affinity='precomputed', or a fit "
            "that did not converge) has no ONNX conversion (see SUPPORTED.md)")
    return np.asarray(model.cluster_centers_, dtype=np.float64)


def cluster_shape_calculator(operator) -> None:
    """Label ``(N,)`` int64 and distances ``(N, n_centers)``."""
    operator.outputs[0].type = Int64TensorType([None])
    if len(operator.outputs) > 1:
        width = len(_centers(operator.raw_operator))
        operator.outputs[1].type = float_type_of(operator)([None, width])


def _bisecting_leaves(model: BisectingKMeans):
    """Internal nodes' (left, right) centers and, per leaf, its label and path of
    ``(internal node, went right)`` steps."""
    offset = getattr(model, "_X_mean", 0.0)
    splits, leaves = [], []

    def walk(node, path):
        if node.left is None:
            leaves.append((node.label, path))
            return
        index = len(splits)
        splits.append((node.left.center + offset, node.right.center + offset))
        walk(node.left, path + [(index, False)])
        walk(node.right, path + [(index, True)])

    walk(model._bisecting_tree, [])
    return splits, leaves


def _bisecting_labels(scope, container, model, x: str, proto: int, output: str) -> None:
    splits, leaves = _bisecting_leaves(model)
    if not splits:
        index = add_node(scope, container, "ArgMin", [add_pairwise(
            scope, container, x, model.cluster_centers_, proto, "sqeuclidean")], "only",
            axis=1, keepdims=0)
        container.add_node("Gather", [add_constant(scope, container, "labels", [leaves[0][0]],
                                                   TensorProto.INT64), index], [output],
                           axis=0, name=scope.get_unique_operator_name("Gather"))
        return
    lefts = add_pairwise(scope, container, x, np.array([s[0] for s in splits]), proto,
                         "sqeuclidean")
    rights = add_pairwise(scope, container, x, np.array([s[1] for s in splits]), proto,
                          "sqeuclidean")
    went_right = add_node(scope, container, "Cast", [
        add_node(scope, container, "Less", [rights, lefts], "nearer_right")],
        "went_right", to=proto)
    # a leaf's score: its path's right turns taken plus left turns taken, minus its depth;
    # 0 exactly on the leaf the row reaches, negative elsewhere
    turns = np.zeros((len(splits), len(leaves)))
    base = np.zeros((1, len(leaves)))
    for column, (_, path) in enumerate(leaves):
        for node, right in path:
            turns[node, column] = 1.0 if right else -1.0
            base[0, column] += 0.0 if right else 1.0
        base[0, column] -= len(path)
    scores = add_node(scope, container, "Add", [
        add_node(scope, container, "MatMul", [
            went_right, add_constant(scope, container, "turns", turns, proto)], "taken"),
        add_constant(scope, container, "depths", base, proto)], "leaf_scores")
    leaf = add_node(scope, container, "ArgMax", [scores], "leaf", axis=1, keepdims=0)
    labels = add_constant(scope, container, "leaf_labels", [int(label) for label, _ in leaves],
                          TensorProto.INT64)
    container.add_node("Gather", [labels, leaf], [output], axis=0,
                       name=scope.get_unique_operator_name("Gather"))


def convert_clusterer(scope, operator, container) -> None:
    """Labels as scikit-learn assigns them; euclidean distances to the centers."""
    model = operator.raw_operator
    proto = proto_float_of(operator)
    x = operator.inputs[0].full_name
    centers = _centers(model)
    squared = add_pairwise(scope, container, x, centers, proto, "sqeuclidean")
    label = operator.outputs[0].full_name
    if isinstance(model, BisectingKMeans):
        _bisecting_labels(scope, container, model, x, proto, label)
    else:
        nearest = add_node(scope, container, "ArgMin", [squared], "nearest", axis=1,
                           keepdims=0)
        if isinstance(model, Birch):
            labels = add_constant(scope, container, "subcluster_labels",
                                  np.asarray(model.subcluster_labels_), TensorProto.INT64)
            container.add_node("Gather", [labels, nearest], [label], axis=0,
                               name=scope.get_unique_operator_name("Gather"))
        else:
            container.add_node("Identity", [nearest], [label],
                               name=scope.get_unique_operator_name("Identity"))
    if len(operator.outputs) > 1:
        container.add_node("Sqrt", [squared], [operator.outputs[1].full_name],
                           name=scope.get_unique_operator_name("Sqrt"))


_ALIASES = {Birch: "BridgeBirch", BisectingKMeans: "BridgeBisectingKMeans",
            MeanShift: "BridgeMeanShift", AffinityPropagation: "BridgeAffinityPropagation"}


def register() -> list[str]:
    """Register the converters skl2onnx lacks; return the names of those registered."""
    registered = []
    for cls, alias in _ALIASES.items():
        if cls in sklearn_operator_name_map:
            continue
        update_registered_converter(cls, alias, cluster_shape_calculator, convert_clusterer)
        registered.append(cls.__name__)
    return registered
