"""skl2onnx converter for ``sklearn.kernel_approximation.Nystroem`` (skl2onnx has none).

The transform is ``kernel(X, components_) @ normalization_.T``; every string kernel
scikit-learn accepts except the chi2 family is written with standard ONNX ops.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from sklearn.kernel_approximation import Nystroem

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import add_constant, add_node, float_type_of, proto_float_of

ALIAS = "BridgeNystroem"
SUPPORTED_KERNELS = ("linear", "rbf", "laplacian", "poly", "polynomial", "sigmoid", "cosine")


def nystroem_shape_calculator(operator) -> None:
    """Output shape ``(N, n_components)`` in the input's float type."""
    model = operator.raw_operator
    operator.outputs[0].type = float_type_of(operator)([None, model.components_.shape[0]])


def _kernel_params(model: Nystroem) -> dict:
    params = dict(model.kernel_params or {})
    for name in ("gamma", "degree", "coef0"):
        if getattr(model, name) is not None:
            params[name] = getattr(model, name)
    return params


def _squared_distances(scope, container, x, components, proto):
    # |x|^2 - 2 x.c + |c|^2, clipped at 0 (as scikit-learn's euclidean_distances does)
    n_features = components.shape[1]
    ones = add_constant(scope, container, "ones", np.ones((n_features, 1)), proto)
    x_squared = add_node(scope, container, "Mul", [x, x], "x_squared")
    x_norms = add_node(scope, container, "MatMul", [x_squared, ones], "x_norms")
    minus_two_ct = add_constant(scope, container, "minus_two_ct", -2.0 * components.T, proto)
    cross = add_node(scope, container, "MatMul", [x, minus_two_ct], "cross")
    c_norms = add_constant(
        scope, container, "c_norms", (components**2).sum(axis=1).reshape(1, -1), proto
    )
    partial = add_node(scope, container, "Add", [cross, x_norms], "partial")
    distances = add_node(scope, container, "Add", [partial, c_norms], "distances")
    zero = add_constant(scope, container, "zero", np.zeros(1), proto)
    return add_node(scope, container, "Max", [distances, zero], "distances_clipped")


def _manhattan_distances(scope, container, x, components, proto):
    # (n, 1, d) - (m, d) -> (n, m, d); |.| summed over d with a MatMul against ones
    n_features = components.shape[1]
    to_3d = add_constant(scope, container, "shape_n1d", [0, 1, -1], TensorProto.INT64)
    x3 = add_node(scope, container, "Reshape", [x, to_3d], "x_3d")
    c = add_constant(scope, container, "components", components, proto)
    diff = add_node(scope, container, "Sub", [x3, c], "differences")
    absolute = add_node(scope, container, "Abs", [diff], "abs_differences")
    ones = add_constant(scope, container, "ones", np.ones((n_features, 1)), proto)
    summed = add_node(scope, container, "MatMul", [absolute, ones], "l1_3d")
    to_2d = add_constant(scope, container, "shape_nm", [0, -1], TensorProto.INT64)
    return add_node(scope, container, "Reshape", [summed, to_2d], "l1")


def kernel_matrix(scope, container, model, x: str, proto: int, components=None) -> str:
    """``kernel(x, components)`` for a model with Nystroem's kernel attributes (kernel,
    gamma, degree, coef0, kernel_params); ``components`` defaults to its ``components_``."""
    components = np.asarray(model.components_ if components is None else components,
                            dtype=np.float64)
    params = _kernel_params(model)
    kernel = model.kernel
    gamma = params.get("gamma")
    gamma = 1.0 / components.shape[1] if gamma is None else float(gamma)
    if kernel == "linear":
        ct = add_constant(scope, container, "ct", components.T, proto)
        return add_node(scope, container, "MatMul", [x, ct], "gram")
    if kernel in ("rbf", "laplacian"):
        if kernel == "rbf":
            distances = _squared_distances(scope, container, x, components, proto)
        else:
            distances = _manhattan_distances(scope, container, x, components, proto)
        scale = add_constant(scope, container, "minus_gamma", [-gamma], proto)
        scaled = add_node(scope, container, "Mul", [distances, scale], "scaled")
        return add_node(scope, container, "Exp", [scaled], "kernel")
    if kernel in ("poly", "polynomial", "sigmoid"):
        coef0 = float(params.get("coef0", 1))
        gamma_ct = add_constant(scope, container, "gamma_ct", gamma * components.T, proto)
        product = add_node(scope, container, "MatMul", [x, gamma_ct], "product")
        offset = add_constant(scope, container, "coef0", [coef0], proto)
        shifted = add_node(scope, container, "Add", [product, offset], "shifted")
        if kernel == "sigmoid":
            return add_node(scope, container, "Tanh", [shifted], "kernel")
        degree = add_constant(scope, container, "degree", [float(params.get("degree", 3))], proto)
        return add_node(scope, container, "Pow", [shifted, degree], "kernel")
    if kernel == "cosine":
        norms = np.linalg.norm(components, axis=1, keepdims=True)
        unit_ct = add_constant(
            scope, container, "unit_ct", (components / np.where(norms == 0, 1, norms)).T, proto
        )
        n_features = components.shape[1]
        ones = add_constant(scope, container, "ones", np.ones((n_features, 1)), proto)
        squared = add_node(scope, container, "Mul", [x, x], "x_squared")
        x_norms = add_node(
            scope, container, "Sqrt", [add_node(scope, container, "MatMul", [squared, ones], "ss")],
            "x_norms",
        )
        tiny = add_constant(scope, container, "tiny", [np.finfo(np.float32).tiny], proto)
        safe = add_node(scope, container, "Max", [x_norms, tiny], "x_norms_safe")
        unit_x = add_node(scope, container, "Div", [x, safe], "unit_x")
        return add_node(scope, container, "MatMul", [unit_x, unit_ct], "kernel")
    raise UnsupportedEstimatorError(
        f"{type(model).__name__}(kernel={kernel!r}) has no ONNX conversion; supported kernels: "
        f"{', '.join(SUPPORTED_KERNELS)} (see SUPPORTED.md)"
    )


def convert_nystroem(scope, operator, container) -> None:
    """Write ``kernel(X, components_) @ normalization_.T`` with standard ONNX ops."""
    model = operator.raw_operator
    proto = proto_float_of(operator)
    gram = kernel_matrix(scope, container, model, operator.inputs[0].full_name, proto)
    normalization_t = add_constant(
        scope, container, "normalization_t", np.asarray(model.normalization_).T, proto
    )
    container.add_node(
        "MatMul", [gram, normalization_t], [operator.outputs[0].full_name],
        name=scope.get_unique_operator_name("MatMul"),
    )


def register() -> bool:
    """Register the converter unless skl2onnx already has one; return whether it did."""
    if Nystroem in sklearn_operator_name_map:
        return False
    update_registered_converter(Nystroem, ALIAS, nystroem_shape_calculator, convert_nystroem)
    return True
