"""skl2onnx converter for ``sklearn.manifold.Isomap``'s ``transform`` (skl2onnx has none).

As scikit-learn does: the ``n_neighbors`` nearest training points (``TopK`` of the euclidean
distances), the geodesic distance to every training point through them
(``min_m dist_matrix_[neighbor_m] + distance_m``), then the fitted kernel PCA of
``-0.5 * G**2`` (kernel centering and the scaled eigenvectors).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from sklearn.manifold import Isomap

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import (
    add_constant,
    add_node,
    add_pairwise,
    float_type_of,
    proto_float_of,
)

ALIAS = "BridgeIsomap"


def _projection(model: Isomap) -> np.ndarray:
    """The kernel PCA's eigenvectors scaled by 1/sqrt(eigenvalue) (zero eigenvalues: 0)."""
    kernel_pca = model.kernel_pca_
    eigenvalues = np.asarray(kernel_pca.eigenvalues_, dtype=np.float64)
    vectors = np.asarray(kernel_pca.eigenvectors_, dtype=np.float64)
    scaled = np.zeros_like(vectors)
    nonzero = np.flatnonzero(eigenvalues)
    scaled[:, nonzero] = vectors[:, nonzero] / np.sqrt(eigenvalues[nonzero])
    return scaled


def isomap_shape_calculator(operator) -> None:
    """The embedding ``(N, n_components)`` in the input's float type."""
    width = _projection(operator.raw_operator).shape[1]
    operator.outputs[0].type = float_type_of(operator)([None, width])


def _check(model: Isomap) -> None:
    if model.n_neighbors is None:
        raise UnsupportedEstimatorError(
            f"Isomap(radius={model.radius!r}) has no ONNX conversion (a varying number of "
            "neighbours per row); supported: n_neighbors (see SUPPORTED.md)")
    metric, p = model.nbrs_.effective_metric_, model.nbrs_.effective_metric_params_.get("p")
    if metric != "euclidean" and not (metric == "minkowski" and p == 2):
        raise UnsupportedEstimatorError(
            f"Isomap(metric={model.metric!r}, p={model.p!r}) has no ONNX conversion; "
            "supported: the euclidean metric (see SUPPORTED.md)")


def convert_isomap(scope, operator, container) -> None:
    """Write the geodesic distances and their kernel PCA projection."""
    model = operator.raw_operator
    _check(model)
    proto = proto_float_of(operator)
    train = np.asarray(model.nbrs_._fit_X, dtype=np.float64)
    squared = add_pairwise(scope, container, operator.inputs[0].full_name, train, proto,
                           "sqeuclidean")
    k = add_constant(scope, container, "n_neighbors", [int(model.n_neighbors)],
                     TensorProto.INT64)
    nearest_squared = scope.get_unique_variable_name("nearest_squared")
    indices = scope.get_unique_variable_name("neighbors")
    container.add_node("TopK", [squared, k], [nearest_squared, indices], axis=1, largest=0,
                       sorted=1, name=scope.get_unique_operator_name("TopK"))
    distances = add_node(scope, container, "Sqrt", [nearest_squared], "nearest")
    # (N, k, n_train): each neighbour's geodesic distances plus the distance to it
    through = add_node(scope, container, "Gather", [
        add_constant(scope, container, "dist_matrix", model.dist_matrix_, proto), indices],
        "through", axis=0)
    to_3d = add_constant(scope, container, "shape_nk1", [0, 0, 1], TensorProto.INT64)
    paths = add_node(scope, container, "Add", [
        through, add_node(scope, container, "Reshape", [distances, to_3d], "distances_3d")],
        "paths")
    axis = add_constant(scope, container, "axis", [1], TensorProto.INT64)
    geodesic = add_node(scope, container, "ReduceMin", [paths, axis], "geodesic", keepdims=0)
    kernel = add_node(scope, container, "Mul", [
        add_node(scope, container, "Mul", [geodesic, geodesic], "geodesic_squared"),
        add_constant(scope, container, "minus_half", [-0.5], proto)], "kernel")
    # KernelCenterer.transform: K - K_fit_rows_ - row means of K + K_fit_all_
    centerer = model.kernel_pca_._centerer
    row_means = add_node(scope, container, "ReduceMean", [kernel, axis], "row_means",
                         keepdims=1)
    centered = add_node(scope, container, "Add", [
        add_node(scope, container, "Sub", [
            add_node(scope, container, "Sub", [kernel, add_constant(
                scope, container, "fit_rows", np.asarray(centerer.K_fit_rows_).reshape(1, -1),
                proto)], "minus_rows"), row_means], "minus_means"),
        add_constant(scope, container, "fit_all", [float(centerer.K_fit_all_)], proto)],
        "centered")
    container.add_node("MatMul", [centered, add_constant(scope, container, "projection",
                                                         _projection(model), proto)],
                       [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("MatMul"))


def register() -> bool:
    """Register the converter unless skl2onnx already has one; return whether it did."""
    if Isomap in sklearn_operator_name_map:
        return False
    update_registered_converter(Isomap, ALIAS, isomap_shape_calculator, convert_isomap)
    return True
