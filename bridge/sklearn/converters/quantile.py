"""skl2onnx converter for ``QuantileTransformer(output_distribution="uniform")``, small and
quick to build: skl2onnx's own graph for it has some 180 nodes and took minutes to convert.

As scikit-learn's ``_transform_col``: the mean of ``np.interp`` of the value against the
quantiles and of ``-np.interp`` of its negation against the reversed ones (which averages
over repeated quantiles), then 0 and 1 at the first and last quantile. ``np.interp``'s
segment (the last quantile at or below the value) is found by a binary search over the
quantiles, unrolled (``ceil(log2(n_quantiles + 1))`` steps of element-wise ops on ``(N,
n_features)``), so memory does not grow with ``n_quantiles``; in float64 whatever the
graph's type, as numpy interpolates against float64 quantiles. NaN stays NaN.
``output_distribution="normal"`` is refused (skl2onnx refuses it too).
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto, helper
from skl2onnx import update_registered_converter
from sklearn.preprocessing import QuantileTransformer

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import (
    add_constant,
    add_node,
    float_type_of,
    proto_float_of,
)

ALIAS = "BridgeQuantileTransformer"


def _interp(scope, container, x: str, points: np.ndarray, values: np.ndarray, proto: int) -> str:
    """``np.interp(x[:, f], points[:, f], values)`` for every feature ``f`` at once
    (``points``: ``(n_quantiles, n_features)``, increasing down each column)."""
    count, width = points.shape

    def const(stem, value, kind=proto):
        return add_constant(scope, container, stem, value, kind)

    flat = const("points_flat", points.T.ravel())  # feature-major
    offsets = const("feature_offsets", (np.arange(width) * count).reshape(1, -1),
                    TensorProto.INT64)
    zeros = add_node(scope, container, "ConstantOfShape", [
        add_node(scope, container, "Shape", [x], "x_shape")], "zeros",
        value=helper.make_tensor("int_zero", TensorProto.INT64, [1], [0]))
    low = add_node(scope, container, "Add", [zeros, const("minus_one", [-1],
                                                          TensorProto.INT64)], "low")
    high = add_node(scope, container, "Add", [zeros, const("count", [count],
                                                           TensorProto.INT64)], "high")
    one = const("int_one", [1], TensorProto.INT64)
    two = const("int_two", [2], TensorProto.INT64)
    for _ in range(math.ceil(math.log2(count + 1)) + 1):
        # mid = floor((low + high) / 2), kept non-negative for ONNX's truncating Div
        middle = add_node(scope, container, "Sub", [add_node(scope, container, "Div", [
            add_node(scope, container, "Add", [add_node(scope, container, "Add", [
                low, high], "sum"), two], "sum_plus_two"), two], "half"), one], "middle")
        index = add_node(scope, container, "Clip", [middle, const(
            "first", np.int64(0), TensorProto.INT64), const(
            "last", np.int64(count - 1), TensorProto.INT64)], "clipped")
        point = add_node(scope, container, "Gather", [flat, add_node(
            scope, container, "Add", [index, offsets], "flat_index")], "point", axis=0)
        active = add_node(scope, container, "Greater", [add_node(
            scope, container, "Sub", [high, low], "gap"), one], "active")
        below = add_node(scope, container, "LessOrEqual", [point, x], "below")
        raise_low = add_node(scope, container, "And", [active, below], "raise_low")
        lower_high = add_node(scope, container, "And", [active, add_node(
            scope, container, "Not", [below], "above")], "lower_high")
        low = add_node(scope, container, "Where", [raise_low, middle, low], "low")
        high = add_node(scope, container, "Where", [lower_high, middle, high], "high")
    segment = add_node(scope, container, "Clip", [low, const(
        "segment_first", np.int64(0), TensorProto.INT64), const(
        "segment_last", np.int64(max(count - 2, 0)), TensorProto.INT64)], "segment")
    left = add_node(scope, container, "Add", [segment, offsets], "left_index")
    right = add_node(scope, container, "Add", [left, one], "right_index")
    x0 = add_node(scope, container, "Gather", [flat, left], "x0", axis=0)
    x1 = add_node(scope, container, "Gather", [flat, right], "x1", axis=0)
    table = const("values", values)
    y0 = add_node(scope, container, "Gather", [table, segment], "y0", axis=0)
    y1 = add_node(scope, container, "Gather", [table, add_node(
        scope, container, "Add", [segment, one], "next")], "y1", axis=0)
    slope = add_node(scope, container, "Div", [add_node(scope, container, "Sub", [y1, y0], "rise"),
                                                add_node(scope, container, "Sub", [x1, x0], "run")],
                     "slope")
    inside = add_node(scope, container, "Add", [add_node(scope, container, "Mul", [
        slope, add_node(scope, container, "Sub", [x, x0], "offset")], "step"), y0], "inside")
    first = const("first_points", points[:1])
    last = const("last_points", points[-1:])
    result = add_node(scope, container, "Where", [
        add_node(scope, container, "GreaterOrEqual", [x, last], "at_or_after"),
        const("last_value", [values[-1]]), inside], "right_clamped")
    return add_node(scope, container, "Where", [
        add_node(scope, container, "Less", [x, first], "before"),
        const("first_value", [values[0]]), result], "interpolated")


def convert_quantile_uniform(scope, operator, container) -> None:
    """Write scikit-learn's uniform quantile transform (see the module docstring)."""
    model = operator.raw_operator
    # in double whatever the graph's type, as np.interp computes against float64 quantiles
    # (float32 would merge quantiles that differ by an ulp and move values across them)
    proto = TensorProto.DOUBLE
    x = operator.inputs[0].full_name
    single = proto_float_of(operator) == TensorProto.FLOAT
    if single:
        x = add_node(scope, container, "Cast", [x], "x_double", to=TensorProto.DOUBLE)
    quantiles = np.asarray(model.quantiles_, dtype=np.float64)
    references = np.asarray(model.references_, dtype=np.float64)
    forward = _interp(scope, container, x, quantiles, references, proto)
    negated = add_node(scope, container, "Neg", [x], "negated")
    backward = _interp(scope, container, negated, -quantiles[::-1], -references[::-1], proto)
    mean = add_node(scope, container, "Mul", [
        add_node(scope, container, "Sub", [forward, backward], "difference"),
        add_constant(scope, container, "half", [0.5], proto)], "mean")
    upper = add_node(scope, container, "Where", [
        add_node(scope, container, "Equal", [x, add_constant(
            scope, container, "upper_bound", quantiles[-1:], proto)], "at_upper"),
        add_constant(scope, container, "one", [1.0], proto), mean], "upper_set")
    result = add_node(scope, container, "Where", [
        add_node(scope, container, "Equal", [x, add_constant(
            scope, container, "lower_bound", quantiles[:1], proto)], "at_lower"),
        add_constant(scope, container, "zero_value", [0.0], proto), upper], "transformed")
    container.add_node("Cast", [result], [operator.outputs[0].full_name],
                       to=TensorProto.FLOAT if single else TensorProto.DOUBLE,
                       name=scope.get_unique_operator_name("Cast"))


def quantile_shape_calculator(operator) -> None:
    """The input's width, in its float type."""
    width = np.asarray(operator.raw_operator.quantiles_).shape[1]
    operator.outputs[0].type = float_type_of(operator)([None, width])


def convert_quantile(scope, operator, container) -> None:
    """The uniform transform; ``output_distribution="normal"`` is refused by name."""
    model = operator.raw_operator
    if model.output_distribution != "uniform":
        raise UnsupportedEstimatorError(
            f"QuantileTransformer(output_distribution={model.output_distribution!r}) has no "
            "ONNX conversion (no standard op gives the normal ppf, and skl2onnx refuses it "
            "too); supported: 'uniform' (see SUPPORTED.md)")
    convert_quantile_uniform(scope, operator, container)


def register() -> bool:
    """Register the converter over skl2onnx's slow one; return True."""
    update_registered_converter(QuantileTransformer, ALIAS, quantile_shape_calculator,
                                convert_quantile, overwrite=True)
    return True
