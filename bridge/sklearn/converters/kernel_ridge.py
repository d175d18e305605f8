"""skl2onnx converter for ``sklearn.kernel_ridge.KernelRidge`` (skl2onnx has none).

Predictions are ``kernel(X, X_fit_) @ dual_coef_``, the kernel written with the standard ONNX
ops of the Nystroem converter (linear, rbf, laplacian, poly, sigmoid, cosine).
"""

from __future__ import annotations

import numpy as np
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from sklearn.kernel_ridge import KernelRidge

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import add_constant, float_type_of, proto_float_of
from bridge.sklearn.converters.kernel_approximation import SUPPORTED_KERNELS, kernel_matrix

ALIAS = "BridgeKernelRidge"


def _dual_coefficients(model: KernelRidge) -> np.ndarray:
    coefficients = np.asarray(model.dual_coef_, dtype=np.float64)
    return coefficients.reshape(len(coefficients), -1)


def kernel_ridge_shape_calculator(operator) -> None:
    """Predictions ``(N, n_targets)`` in the input's float type."""
    width = _dual_coefficients(operator.raw_operator).shape[1]
    operator.outputs[0].type = float_type_of(operator)([None, width])


def convert_kernel_ridge(scope, operator, container) -> None:
    """Write ``kernel(X, X_fit_) @ dual_coef_``."""
    model = operator.raw_operator
    if callable(model.kernel) or model.kernel not in SUPPORTED_KERNELS:
        raise UnsupportedEstimatorError(
            f"KernelRidge(kernel={model.kernel!r}) has no ONNX conversion; supported kernels: "
            f"{', '.join(SUPPORTED_KERNELS)} (see SUPPORTED.md)"
        )
    proto = proto_float_of(operator)
    gram = kernel_matrix(scope, container, model, operator.inputs[0].full_name, proto,
                         components=model.X_fit_)
    coefficients = add_constant(scope, container, "dual_coef", _dual_coefficients(model), proto)
    container.add_node("MatMul", [gram, coefficients], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("MatMul"))


def register() -> bool:
    """Register the converter unless skl2onnx already has one; return whether it did."""
    if KernelRidge in sklearn_operator_name_map:
        return False
    update_registered_converter(KernelRidge, ALIAS, kernel_ridge_shape_calculator,
                                convert_kernel_ridge)
    return True
