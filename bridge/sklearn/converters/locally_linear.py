"""``LocallyLinearEmbedding.transform``, which skl2onnx lacks: each new row as the barycentre of
its ``n_neighbors`` nearest training rows, placed in the fitted embedding.

As scikit-learn's ``barycenter_weights``: the neighbours' local Gram matrix ``G = Z Z^T``
(``Z``: neighbours minus the row), regularised by ``reg * trace(G)`` (``reg`` where the
trace is 0), solved for ``G w = 1`` and normalised to sum 1. The small solve is a Cholesky
factorisation unrolled over the fixed ``n_neighbors`` (scikit-learn solves with
``assume_a='pos'``, a Cholesky too), on every row at once.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from sklearn.manifold import LocallyLinearEmbedding

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import (
    add_constant,
    add_node,
    add_pairwise,
    float_type_of,
    proto_float_of,
)

ALIAS = "BridgeLocallyLinearEmbedding"


def embedding_shape(operator) -> None:
    """``(N, n_components)`` in the input's float type."""
    width = np.shape(operator.raw_operator.embedding_)[1]
    operator.outputs[0].type = float_type_of(operator)([None, width])


def _cholesky_solve_ones(scope, container, entry, k: int, proto: int) -> list[str]:
    """Solve ``G w = 1`` for each row; ``entry(i, j)`` names ``G[:, i, j]`` as (N, 1)."""
    def op(kind, inputs, stem):
        return add_node(scope, container, kind, inputs, stem)

    lower: dict[tuple[int, int], str] = {}
    for j in range(k):
        value = entry(j, j)
        for m in range(j):
            value = op("Sub", [value, op("Mul", [lower[j, m], lower[j, m]], "lle_sq")], "lle_d")
        lower[j, j] = op("Sqrt", [value], "lle_ljj")
        for i in range(j + 1, k):
            value = entry(i, j)
            for m in range(j):
                value = op("Sub", [value, op("Mul", [lower[i, m], lower[j, m]], "lle_p")],
                           "lle_o")
            lower[i, j] = op("Div", [value, lower[j, j]], "lle_lij")
    one = add_constant(scope, container, "lle_one", [1.0], proto)
    forward: list[str] = []
    for i in range(k):  # L y = 1
        value = one
        for m in range(i):
            value = op("Sub", [value, op("Mul", [lower[i, m], forward[m]], "lle_fy")], "lle_f")
        forward.append(op("Div", [value, lower[i, i]], "lle_y"))
    solution: list[str | None] = [None] * k
    for i in reversed(range(k)):  # L^T w = y
        value = forward[i]
        for m in range(i + 1, k):
            value = op("Sub", [value, op("Mul", [lower[m, i], solution[m]], "lle_bw")],
                       "lle_b")
        solution[i] = op("Div", [value, lower[i, i]], "lle_w")
    return solution


def convert_locally_linear(scope, operator, container) -> None:
    """Barycentre weights of the nearest training rows, times their embedding."""
    model = operator.raw_operator
    neighbours = model.nbrs_
    if neighbours.effective_metric_ not in ("euclidean", "minkowski") or (
            neighbours.effective_metric_ == "minkowski"
            and neighbours.effective_metric_params_.get("p", 2) != 2):
        raise UnsupportedEstimatorError(
            "LocallyLinearEmbedding with a non-euclidean neighbour metric has no conversion")
    proto = proto_float_of(operator)
    k = int(model.n_neighbors)
    fitted = np.asarray(neighbours._fit_X, dtype=np.float64)
    x = operator.inputs[0].full_name
    distances = add_pairwise(scope, container, x, fitted, proto, "sqeuclidean")
    count = add_constant(scope, container, "lle_k", [k], TensorProto.INT64)
    nearest = scope.get_unique_variable_name("lle_nearest_distances")
    index = scope.get_unique_variable_name("lle_index")
    container.add_node("TopK", [distances, count], [nearest, index], axis=1, largest=0,
                       sorted=1, name=scope.get_unique_operator_name("TopK"))
    rows = add_node(scope, container, "Gather", [
        add_constant(scope, container, "lle_fit_x", fitted, proto), index], "lle_rows", axis=0)
    unsqueeze_axis = add_constant(scope, container, "lle_axis1", [1], TensorProto.INT64)
    centered = add_node(scope, container, "Sub", [rows, add_node(
        scope, container, "Unsqueeze", [x, unsqueeze_axis], "lle_x3")], "lle_z")
    gram = add_node(scope, container, "MatMul", [centered, add_node(
        scope, container, "Transpose", [centered], "lle_zt", perm=[0, 2, 1])], "lle_gram")
    eye = add_constant(scope, container, "lle_eye", np.eye(k).reshape(1, k, k), proto)
    trace = add_node(scope, container, "ReduceSum", [
        add_node(scope, container, "Mul", [gram, eye], "lle_diag"),
        add_constant(scope, container, "lle_axes", [1, 2], TensorProto.INT64)], "lle_trace",
        keepdims=1)
    reg = add_constant(scope, container, "lle_reg", [float(model.reg)], proto)
    shift = add_node(scope, container, "Where", [
        add_node(scope, container, "Greater", [trace, add_constant(
            scope, container, "lle_zero", [0.0], proto)], "lle_positive"),
        add_node(scope, container, "Mul", [trace, reg], "lle_scaled"), reg], "lle_shift")
    gram = add_node(scope, container, "Add", [gram, add_node(
        scope, container, "Mul", [shift, eye], "lle_ridge")], "lle_regularised")
    flat = add_node(scope, container, "Reshape", [gram, add_constant(
        scope, container, "lle_flat_shape", [0, k * k], TensorProto.INT64)], "lle_flat")

    def entry(i: int, j: int) -> str:
        return add_node(scope, container, "Gather", [flat, add_constant(
            scope, container, "lle_entry", [i * k + j], TensorProto.INT64)], "lle_g", axis=1)

    weights = add_node(scope, container, "Concat",
                       _cholesky_solve_ones(scope, container, entry, k, proto), "lle_weights",
                       axis=1)
    weights = add_node(scope, container, "Div", [weights, add_node(
        scope, container, "ReduceSum", [weights, unsqueeze_axis], "lle_total", keepdims=1)],
        "lle_normalised")
    embedded = add_node(scope, container, "Gather", [add_constant(
        scope, container, "lle_embedding", model.embedding_, proto), index], "lle_embedded",
        axis=0)
    placed = add_node(scope, container, "MatMul", [add_node(
        scope, container, "Unsqueeze", [weights, unsqueeze_axis], "lle_w3"), embedded],
        "lle_placed")
    container.add_node("Reshape", [placed, add_constant(
        scope, container, "lle_out_shape", [0, -1], TensorProto.INT64)],
        [operator.outputs[0].full_name], name=scope.get_unique_operator_name("Reshape"))


def register() -> bool:
    """Register the converter where skl2onnx lacks one; return whether it did."""
    if LocallyLinearEmbedding in sklearn_operator_name_map:
        return False
    update_registered_converter(LocallyLinearEmbedding, ALIAS, embedding_shape,
                                convert_locally_linear)
    return True
