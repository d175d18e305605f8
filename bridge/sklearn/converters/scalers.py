"""skl2onnx converters for ``StandardScaler``, ``RobustScaler``, ``MaxAbsScaler`` and
``MinMaxScaler`` with scikit-learn's own arithmetic, in standard ops.

skl2onnx writes them as ai.onnx.ml ``Scaler``, ``(x - offset) * (1 / scale)``: a product by
the reciprocal where scikit-learn divides, so results differ by an ulp now and then, and an
ulp is enough to cross a tree threshold downstream (``StandardScaler`` before a random
forest on digits: 174 of 1,797 rows with other probabilities). Here each step is the
operation scikit-learn performs in the precision numpy performs it in: ``x - mean_`` then
``/ scale_`` (MinMaxScaler: ``* scale_`` then ``+ min_``, then the clip), each rounded to the
input's type, which is what scikit-learn computes for float32 input in a float32 graph and
for float64 input in a float64 graph.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

from bridge.sklearn.converters._graph import add_constant, add_node, float_type_of, proto_float_of

_ALIASES = {StandardScaler: "BridgeStandardScaler", RobustScaler: "BridgeRobustScaler",
            MaxAbsScaler: "BridgeMaxAbsScaler", MinMaxScaler: "BridgeMinMaxScaler"}


def scaler_steps(model) -> list[tuple[str, np.ndarray, bool]]:
    """The (ONNX op, parameter row, in float64) steps scikit-learn's ``transform`` applies,
    in order. ``in float64``: numpy computes ``x32 op= p64`` in float64 and rounds back to
    float32 (StandardScaler casts its parameters to the input's type first; RobustScaler,
    MaxAbsScaler and MinMaxScaler keep the type they were fitted in)."""
    def step(op_type, values, cast_to_input=False):
        values = np.asarray(values)
        wide = values.dtype == np.float64 and not cast_to_input
        return op_type, np.asarray(values, dtype=np.float64).reshape(1, -1), wide

    steps = []
    if isinstance(model, StandardScaler):
        if model.mean_ is not None and model.with_mean:
            steps.append(step("Sub", model.mean_, cast_to_input=True))
        if model.scale_ is not None and model.with_std:
            steps.append(step("Div", model.scale_, cast_to_input=True))
    elif isinstance(model, RobustScaler):
        if model.center_ is not None and model.with_centering:
            steps.append(step("Sub", model.center_))
        if model.scale_ is not None and model.with_scaling:
            steps.append(step("Div", model.scale_))
    elif isinstance(model, MaxAbsScaler):
        steps.append(step("Div", model.scale_))
    else:  # MinMaxScaler
        steps += [step("Mul", model.scale_), step("Add", model.min_)]
        if model.clip:
            low, high = model.feature_range
            steps += [step("Max", [low], cast_to_input=True),
                      step("Min", [high], cast_to_input=True)]
    return steps


def scaler_shape_calculator(operator) -> None:
    """The input's width, in its float type."""
    width = operator.inputs[0].get_second_dimension()
    operator.outputs[0].type = float_type_of(operator)([None, width])


def convert_scaler(scope, operator, container) -> None:
    """Write scikit-learn's steps one operation each (through float64 where numpy computes
    a float32 input's step in float64)."""
    proto = proto_float_of(operator)
    current = operator.inputs[0].full_name
    for op_type, values, wide in scaler_steps(operator.raw_operator):
        if wide and proto == TensorProto.FLOAT:
            widened = add_node(scope, container, "Cast", [current], "widened",
                               to=TensorProto.DOUBLE)
            result = add_node(scope, container, op_type, [widened, add_constant(
                scope, container, op_type.lower(), values, TensorProto.DOUBLE)], "scaled_64")
            current = add_node(scope, container, "Cast", [result], "scaled",
                               to=TensorProto.FLOAT)
        else:
            current = add_node(scope, container, op_type, [current, add_constant(
                scope, container, op_type.lower(), values, proto)], "scaled")
    container.add_node("Identity", [current], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("Identity"))


def register() -> list[str]:
    """Register scikit-learn's arithmetic for the four scalers (over skl2onnx's reciprocal
    products); return the names registered."""
    for cls, alias in _ALIASES.items():
        update_registered_converter(cls, alias, scaler_shape_calculator, convert_scaler,
                                    overwrite=True)
    return [cls.__name__ for cls in _ALIASES]
