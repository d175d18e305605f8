"""skl2onnx converter for ``sklearn.isotonic.IsotonicRegression`` (skl2onnx has none).

Prediction is scipy's linear interpolation between the fitted thresholds, with the same
segment choice (the first threshold not below x) and the same arithmetic; outside the
fitted range it clips (``out_of_bounds="clip"``) or gives NaN (``"nan"``).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from sklearn.isotonic import IsotonicRegression

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import (
    add_constant,
    add_node,
    broadcast_rows,
    float_type_of,
    proto_float_of,
)

ALIAS = "BridgeIsotonicRegression"
OUT_OF_BOUNDS = ("nan", "clip")


def isotonic_shape_calculator(operator) -> None:
    """Predictions ``(N, 1)`` in the input's float type."""
    operator.outputs[0].type = float_type_of(operator)([None, 1])


def convert_isotonic_regression(scope, operator, container) -> None:
    """``y_lo + slope * (x - x_lo)`` on the segment scipy's interp1d picks."""
    model = operator.raw_operator
    if model.out_of_bounds not in OUT_OF_BOUNDS:
        raise UnsupportedEstimatorError(
            f"IsotonicRegression(out_of_bounds={model.out_of_bounds!r}) has no ONNX conversion "
            f"(a graph cannot raise); supported: {', '.join(OUT_OF_BOUNDS)} (see SUPPORTED.md)"
        )
    proto = proto_float_of(operator)
    x = operator.inputs[0].full_name  # (N, 1)
    output = operator.outputs[0].full_name
    thresholds = np.asarray(model.X_thresholds_, dtype=np.float64)
    values = np.asarray(model.y_thresholds_, dtype=np.float64)
    if model.out_of_bounds == "clip":
        low = add_constant(scope, container, "x_min", model.X_min_, proto)
        high = add_constant(scope, container, "x_max", model.X_max_, proto)
        x = add_node(scope, container, "Clip", [x, low, high], "clipped")
    if len(thresholds) == 1:  # scikit-learn predicts its one value everywhere
        broadcast_rows(scope, container, x, values.reshape(1, 1), proto, output)
        return
    # searchsorted(thresholds, x, side="left") = how many thresholds lie below x
    below = add_node(scope, container, "Less",
                     [add_constant(scope, container, "thresholds", thresholds.reshape(1, -1),
                                   proto), x], "below")
    count = add_node(scope, container, "ReduceSum",
                     [add_node(scope, container, "Cast", [below], "below_int",
                               to=TensorProto.INT64),
                      add_constant(scope, container, "axis", [1], TensorProto.INT64)],
                     "count", keepdims=1)
    high = add_node(scope, container, "Clip",
                    [count, add_constant(scope, container, "one", 1, TensorProto.INT64),
                     add_constant(scope, container, "last", len(thresholds) - 1,
                                  TensorProto.INT64)], "high_index")
    low = add_node(scope, container, "Sub",
                   [high, add_constant(scope, container, "step", [1], TensorProto.INT64)],
                   "low_index")
    slopes = np.diff(values) / np.diff(thresholds)
    x_lo = add_node(scope, container, "Gather",
                    [add_constant(scope, container, "x_lo", thresholds, proto), low], "x_lo")
    y_lo = add_node(scope, container, "Gather",
                    [add_constant(scope, container, "y_lo", values, proto), low], "y_lo")
    slope = add_node(scope, container, "Gather",
                     [add_constant(scope, container, "slopes", np.r_[0.0, slopes], proto),
                      high], "slope")
    offset = add_node(scope, container, "Sub", [x, x_lo], "offset")
    rise = add_node(scope, container, "Mul", [slope, offset], "rise")
    interpolated = add_node(scope, container, "Add", [rise, y_lo], "interpolated")
    if model.out_of_bounds == "clip":
        container.add_node("Identity", [interpolated], [output],
                           name=scope.get_unique_operator_name("Identity"))
        return
    low_edge = add_constant(scope, container, "x_min", [thresholds[0]], proto)
    high_edge = add_constant(scope, container, "x_max", [thresholds[-1]], proto)
    outside = add_node(scope, container, "Or", [
        add_node(scope, container, "Less", [x, low_edge], "too_low"),
        add_node(scope, container, "Greater", [x, high_edge], "too_high")], "outside")
    nan = add_constant(scope, container, "nan", [np.nan], proto)
    container.add_node("Where", [outside, nan, interpolated], [output],
                       name=scope.get_unique_operator_name("Where"))


def register() -> bool:
    """Register the converter unless skl2onnx already has one; return whether it did."""
    if IsotonicRegression in sklearn_operator_name_map:
        return False
    update_registered_converter(IsotonicRegression, ALIAS, isotonic_shape_calculator,
                                convert_isotonic_regression)
    return True
