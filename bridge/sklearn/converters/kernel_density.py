"""skl2onnx converter for ``sklearn.neighbors.KernelDensity`` (``score_samples``; skl2onnx
has none).

The log-density is a log-sum-exp over every training row of the log-kernel at the euclidean
distance (plus the log sample weight), the kernel's log normalisation added and the log of
the total weight taken off, as scikit-learn's exact tree sum (``atol=rtol=0``) gives it. The
compact kernels give ``-inf`` outside every training row's support, as scikit-learn does.
Every kernel: gaussian, tophat, epanechnikov, exponential, linear, cosine.
"""

from __future__ import annotations

from math import lgamma, log, pi

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from sklearn.neighbors import KernelDensity

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import (
    add_constant,
    add_node,
    add_pairwise,
    float_type_of,
    proto_float_of,
)

ALIAS = "BridgeKernelDensity"
KERNELS = ("gaussian", "tophat", "epanechnikov", "exponential", "linear", "cosine")


def _log_volume(dimension: int) -> float:
    """log of the unit ball's volume in ``dimension`` dimensions."""
    return 0.5 * dimension * log(pi) - lgamma(0.5 * dimension + 1)


def _log_surface(dimension: int) -> float:
    """log of the unit sphere's surface in ``dimension + 1`` dimensions."""
    return log(2 * pi) + _log_volume(dimension - 1)


def log_kernel_norm(bandwidth: float, dimension: int, kernel: str) -> float:
    """The log normalisation scikit-learn gives ``kernel`` in ``dimension`` dimensions."""
    if kernel == "gaussian":
        factor = 0.5 * dimension * log(2 * pi)
    elif kernel == "tophat":
        factor = _log_volume(dimension)
    elif kernel == "epanechnikov":
        factor = _log_volume(dimension) + log(2.0 / (dimension + 2.0))
    elif kernel == "exponential":
        factor = _log_surface(dimension - 1) + lgamma(dimension)
    elif kernel == "linear":
        factor = _log_volume(dimension) - log(dimension + 1)
    else:  # cosine
        total, term = 0.0, 2.0 / pi
        for k in range(1, dimension + 1, 2):
            total += term
            term *= -(dimension - k) * (dimension - k - 1) * (2.0 / pi) ** 2
        factor = log(total) + _log_surface(dimension - 1)
    return -factor - dimension * log(bandwidth)


def kernel_density_shape_calculator(operator) -> None:
    """Log-densities ``(N, 1)`` in the input's float type."""
    operator.outputs[0].type = float_type_of(operator)([None, 1])


def _log_kernel(scope, container, squared: str, kernel: str, bandwidth: float,
                proto: int) -> str:
    """``(N, n_train)`` log-kernel values from the squared distances."""

    def constant(stem, value):
        return add_constant(scope, container, stem, [value], proto)

    if kernel == "gaussian":
        return add_node(scope, container, "Mul", [
            squared, constant("minus_half_over_h2", -0.5 / bandwidth ** 2)], "log_kernel")
    if kernel == "epanechnikov":
        inside = add_node(scope, container, "Sub", [constant("one", 1.0), add_node(
            scope, container, "Mul", [squared, constant("over_h2", 1.0 / bandwidth ** 2)],
            "scaled")], "inside")
        return add_node(scope, container, "Log", [
            add_node(scope, container, "Relu", [inside], "support")], "log_kernel")
    distance = add_node(scope, container, "Sqrt", [squared], "distance")
    scaled = add_node(scope, container, "Mul", [distance, constant("over_h", 1.0 / bandwidth)],
                      "scaled")
    if kernel == "exponential":
        return add_node(scope, container, "Neg", [scaled], "log_kernel")
    if kernel == "linear":
        inside = add_node(scope, container, "Sub", [constant("one", 1.0), scaled], "inside")
        return add_node(scope, container, "Log", [
            add_node(scope, container, "Relu", [inside], "support")], "log_kernel")
    within = add_node(scope, container, "Less", [scaled, constant("one", 1.0)], "within")
    if kernel == "tophat":
        return add_node(scope, container, "Log", [
            add_node(scope, container, "Cast", [within], "indicator", to=proto)], "log_kernel")
    cosine = add_node(scope, container, "Cos", [
        add_node(scope, container, "Mul", [scaled, constant("half_pi", 0.5 * pi)], "angle")],
        "cosine")
    masked = add_node(scope, container, "Where", [within, cosine, constant("zero", 0.0)],
                      "masked")
    return add_node(scope, container, "Log", [masked], "log_kernel")


def convert_kernel_density(scope, operator, container) -> None:
    """Write the log-density of every input row (see the module docstring)."""
    model = operator.raw_operator
    if model.kernel not in KERNELS:
        raise UnsupportedEstimatorError(
            f"KernelDensity(kernel={model.kernel!r}) has no ONNX conversion; supported: "
            f"{', '.join(KERNELS)} (see SUPPORTED.md)")
    if model.metric != "euclidean" or (model.metric_params or {}):
        raise UnsupportedEstimatorError(
            f"KernelDensity(metric={model.metric!r}) has no ONNX conversion; supported: "
            "metric='euclidean' (see SUPPORTED.md)")
    proto = proto_float_of(operator)
    data = np.asarray(model.tree_.data, dtype=np.float64)
    weights = model.tree_.sample_weight
    total = float(len(data)) if weights is None else float(model.tree_.sum_weight)
    squared = add_pairwise(scope, container, operator.inputs[0].full_name, data, proto,
                           "sqeuclidean")
    log_kernel = _log_kernel(scope, container, squared, model.kernel, float(model.bandwidth_),
                             proto)
    if weights is not None:
        with np.errstate(divide="ignore"):
            log_weights = np.log(np.asarray(weights, dtype=np.float64)).reshape(1, -1)
        log_kernel = add_node(scope, container, "Add", [
            log_kernel, add_constant(scope, container, "log_weights", log_weights, proto)],
            "weighted")
    # log-sum-exp, shifted by the row's largest term unless that is -inf (no support)
    axis = add_constant(scope, container, "axis", [1], TensorProto.INT64)
    largest = add_node(scope, container, "ReduceMax", [log_kernel, axis], "largest",
                       keepdims=1)
    shift = add_node(scope, container, "Where", [
        add_node(scope, container, "IsInf", [largest], "no_support"),
        add_constant(scope, container, "zero", [0.0], proto), largest], "shift")
    summed = add_node(scope, container, "ReduceSum", [
        add_node(scope, container, "Exp", [
            add_node(scope, container, "Sub", [log_kernel, shift], "shifted")], "terms"),
        axis], "summed", keepdims=1)
    offset = log_kernel_norm(float(model.bandwidth_), data.shape[1], model.kernel) - log(total)
    container.add_node("Add", [
        add_node(scope, container, "Add", [
            add_node(scope, container, "Log", [summed], "log_summed"), shift], "log_sum"),
        add_constant(scope, container, "normalisation", [offset], proto)],
        [operator.outputs[0].full_name], name=scope.get_unique_operator_name("Add"))


def register() -> bool:
    """Register the converter unless skl2onnx already has one; return whether it did."""
    if KernelDensity in sklearn_operator_name_map:
        return False
    update_registered_converter(KernelDensity, ALIAS, kernel_density_shape_calculator,
                                convert_kernel_density)
    return True
