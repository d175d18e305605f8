"""skl2onnx converter for ``sklearn.preprocessing.SplineTransformer`` (skl2onnx has none).

Every feature's B-spline basis is evaluated at once with the Cox-de Boor recursion from a
one-hot of the knot interval scipy picks (clamped to the base interval, which also gives
scipy's polynomial continuation), then scikit-learn's extrapolation rules are applied.
NaN rows give zeros (``handle_missing="zeros"``; scikit-learn raises with ``"error"``).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from sklearn.preprocessing import SplineTransformer

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import add_constant, add_node, float_type_of, proto_float_of

ALIAS = "BridgeSplineTransformer"


def _output_columns(model: SplineTransformer) -> list[int]:
    n_splines = model.bsplines_[0].c.shape[1]
    total = n_splines * model.n_features_in_
    return [j for j in range(total) if model.include_bias or (j + 1) % n_splines != 0]


def spline_shape_calculator(operator) -> None:
    """Output ``(N, n_features_out_)`` in the input's float type."""
    width = len(_output_columns(operator.raw_operator))
    operator.outputs[0].type = float_type_of(operator)([None, width])


def _check(model: SplineTransformer) -> np.ndarray:
    if model.sparse_output:
        raise UnsupportedEstimatorError(
            "SplineTransformer(sparse_output=True) has no ONNX conversion (graphs hold dense "
            "tensors); use sparse_output=False (see SUPPORTED.md)"
        )
    coefficients = model.bsplines_[0].c
    if any(not np.array_equal(s.c, coefficients) or s.t.shape != model.bsplines_[0].t.shape
           for s in model.bsplines_):
        raise UnsupportedEstimatorError(
            "SplineTransformer whose features have different spline layouts has no ONNX "
            "conversion (see SUPPORTED.md)"
        )
    return np.stack([s.t for s in model.bsplines_])  # (F, m)


def _slice(scope, container, tensor: str, start: int, end: int) -> str:
    starts = add_constant(scope, container, "start", [start], TensorProto.INT64)
    ends = add_constant(scope, container, "end", [end], TensorProto.INT64)
    axes = add_constant(scope, container, "axis", [2], TensorProto.INT64)
    return add_node(scope, container, "Slice", [tensor, starts, ends, axes], "sliced")


def _inverse(width: np.ndarray) -> np.ndarray:
    return np.divide(1.0, width, out=np.zeros_like(width), where=width != 0)


def _basis(scope, container, x3: str, knots: np.ndarray, degree: int, proto: int) -> str:
    """``(N, F, n_basis)`` B-spline values, on the interval scipy's BSpline evaluates."""
    n_features, m = knots.shape
    n_basis = m - degree - 1
    knots_c = add_constant(scope, container, "knots", knots, proto)
    reached = add_node(scope, container, "Cast",
                       [add_node(scope, container, "GreaterOrEqual", [x3, knots_c], "reached")],
                       "reached_int", to=TensorProto.INT64)
    count = add_node(scope, container, "ReduceSum",
                     [reached, add_constant(scope, container, "axis", [2], TensorProto.INT64)],
                     "count", keepdims=1)
    interval = add_node(scope, container, "Clip", [
        add_node(scope, container, "Sub",
                 [count, add_constant(scope, container, "one", [1], TensorProto.INT64)],
                 "last_reached"),
        add_constant(scope, container, "lowest", degree, TensorProto.INT64),
        add_constant(scope, container, "highest", n_basis - 1, TensorProto.INT64)], "interval")
    positions = add_constant(scope, container, "positions", np.arange(m - 1), TensorProto.INT64)
    basis = add_node(scope, container, "Cast",
                     [add_node(scope, container, "Equal", [interval, positions], "one_hot")],
                     "basis0", to=proto)
    for d in range(1, degree + 1):
        width = m - 1 - d
        left_knots = add_constant(scope, container, "left_knots", knots[:, :width], proto)
        left_scale = add_constant(
            scope, container, "left_scale", _inverse(knots[:, d:d + width] - knots[:, :width]),
            proto)
        right_knots = add_constant(scope, container, "right_knots", knots[:, d + 1:], proto)
        right_scale = add_constant(
            scope, container, "right_scale",
            _inverse(knots[:, d + 1:] - knots[:, 1:1 + width]), proto)
        left = add_node(scope, container, "Mul", [
            add_node(scope, container, "Mul", [
                add_node(scope, container, "Sub", [x3, left_knots], "left_offset"),
                left_scale], "left_weight"),
            _slice(scope, container, basis, 0, width)], "left")
        right = add_node(scope, container, "Mul", [
            add_node(scope, container, "Mul", [
                add_node(scope, container, "Sub", [right_knots, x3], "right_offset"),
                right_scale], "right_weight"),
            _slice(scope, container, basis, 1, width + 1)], "right")
        basis = add_node(scope, container, "Add", [left, right], f"basis{d}")
    return basis


def _edge_degrees(model: SplineTransformer) -> list[tuple[int, int]]:
    """Per feature, ``(d, kept)``: the edges are ``t[d]`` and ``t[-d - 1]``, and ``kept``
    columns continue beyond them. scikit-learn's transform raises its running ``degree`` by
    one inside the linear-extrapolation branch while it is at most 1, and later features
    see the raised value; this replays that."""
    degree, result = model.degree, []
    for _ in model.bsplines_:
        edge = degree
        if model.extrapolation == "linear" and degree <= 1:
            degree += 1
        result.append((edge, degree))
    return result


def _edges(model, knots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(F, 1)`` left and right edges of the range scikit-learn evaluates inside."""
    degrees = [d for d, _ in _edge_degrees(model)]
    low = np.array([[knots[f, d]] for f, d in enumerate(degrees)])
    high = np.array([[knots[f, -d - 1]] for f, d in enumerate(degrees)])
    return low, high


def _edge_rows(model, knots: np.ndarray, side: str, derivative: int) -> np.ndarray:
    """``(F, n_splines)``: scikit-learn's constant/linear continuation at one edge."""
    n_splines = model.bsplines_[0].c.shape[1]
    rows = np.zeros((len(model.bsplines_), n_splines))
    low, high = _edges(model, knots)
    for f, (spline, (_, kept)) in enumerate(zip(model.bsplines_, _edge_degrees(model))):
        if model.extrapolation == "constant":
            kept = model.degree
        edge = low[f, 0] if side == "min" else high[f, 0]
        values = spline(edge, nu=derivative)
        columns = slice(0, kept) if side == "min" else slice(n_splines - kept, n_splines)
        rows[f, columns] = values[columns]
    return rows


def convert_spline_transformer(scope, operator, container) -> None:
    """Basis values, the extrapolation rule beyond the knots, zeros for NaN."""
    model = operator.raw_operator
    knots = _check(model)
    proto = proto_float_of(operator)
    degree = model.degree
    x3 = add_node(scope, container, "Unsqueeze",
                  [operator.inputs[0].full_name,
                   add_constant(scope, container, "axis", [2], TensorProto.INT64)], "x_3d")
    nan_mask = add_node(scope, container, "IsNaN", [x3], "missing")
    low, high = _edges(model, knots) if model.extrapolation in ("constant", "linear") else (
        knots[:, degree:degree + 1], knots[:, -degree - 1:-degree])
    x_min = add_constant(scope, container, "x_min", low, proto)
    x_max = add_constant(scope, container, "x_max", high, proto)
    source = x3
    if model.extrapolation == "periodic":  # x -> t_k + (x - t_k) mod period (floor mod)
        period = high - low
        offset = add_node(scope, container, "Sub", [x3, x_min], "from_start")
        period_c = add_constant(scope, container, "period", np.where(period > 0, period, 1.0),
                                proto)
        turns = add_node(scope, container, "Floor",
                         [add_node(scope, container, "Div", [offset, period_c], "turns_raw")],
                         "turns")
        wrapped = add_node(scope, container, "Sub", [
            offset, add_node(scope, container, "Mul", [turns, period_c], "whole")], "wrapped")
        # a feature with one distinct value has no period: scikit-learn evaluates at 0
        source = add_node(scope, container, "Mul", [
            add_node(scope, container, "Add", [wrapped, x_min], "periodic_x"),
            add_constant(scope, container, "has_period", (period > 0).astype(float), proto)],
            "periodic_source")
    values = _basis(scope, container, source, knots, degree, proto)
    coefficients = model.bsplines_[0].c
    if not np.array_equal(coefficients, np.eye(len(coefficients))):
        values = add_node(scope, container, "MatMul", [
            values, add_constant(scope, container, "coefficients", coefficients, proto)],
            "spline_values")
    below = add_node(scope, container, "Less", [x3, x_min], "below")
    above = add_node(scope, container, "Greater", [x3, x_max], "above")
    if model.extrapolation in ("constant", "linear"):
        rows = {}
        for side, edge, mask in (("min", x_min, below), ("max", x_max, above)):
            row = add_constant(scope, container, f"f_{side}",
                               _edge_rows(model, knots, side, 0), proto)
            if model.extrapolation == "linear":
                slope = add_constant(scope, container, f"slope_{side}",
                                     _edge_rows(model, knots, side, 1), proto)
                row = add_node(scope, container, "Add", [row, add_node(
                    scope, container, "Mul",
                    [add_node(scope, container, "Sub", [x3, edge], "beyond"), slope],
                    "continuation")], f"linear_{side}")
            rows[side] = (row, mask)
        values = add_node(scope, container, "Where", [rows["max"][1], rows["max"][0], values],
                          "above_filled")
        values = add_node(scope, container, "Where", [rows["min"][1], rows["min"][0], values],
                          "below_filled")
    elif model.extrapolation == "error":  # scikit-learn raises there; the graph gives NaN
        outside = add_node(scope, container, "Or", [below, above], "outside")
        values = add_node(scope, container, "Where", [
            outside, add_constant(scope, container, "nan", [np.nan], proto), values], "checked")
    zero = add_constant(scope, container, "zero", [0.0], proto)
    values = add_node(scope, container, "Where", [nan_mask, zero, values], "no_missing")
    flat = add_node(scope, container, "Reshape", [
        values, add_constant(scope, container, "shape_n", [0, -1], TensorProto.INT64)], "flat")
    columns = _output_columns(model)
    if len(columns) == len(model.bsplines_) * coefficients.shape[1]:
        container.add_node("Identity", [flat], [operator.outputs[0].full_name],
                           name=scope.get_unique_operator_name("Identity"))
        return
    container.add_node("Gather", [flat, add_constant(scope, container, "columns", columns,
                                                     TensorProto.INT64)],
                       [operator.outputs[0].full_name], axis=1,
                       name=scope.get_unique_operator_name("Gather"))


def register() -> bool:
    """Register the converter unless skl2onnx already has one; return whether it did."""
    if SplineTransformer in sklearn_operator_name_map:
        return False
    update_registered_converter(SplineTransformer, ALIAS, spline_shape_calculator,
                                convert_spline_transformer)
    return True
