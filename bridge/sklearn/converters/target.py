"""skl2onnx converter for ``sklearn.compose.TransformedTargetRegressor`` (skl2onnx has none).

The graph is the inner regressor's own graph followed by the inverse target transform:
a numpy inverse function from a fixed table, or the inverse of a fitted affine scaler.
"""

from __future__ import annotations

import numpy as np
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
from skl2onnx.algebra.onnx_ops import (
    OnnxAdd,
    OnnxExp,
    OnnxIdentity,
    OnnxLog,
    OnnxMul,
    OnnxSqrt,
    OnnxSub,
)
from sklearn.compose import TransformedTargetRegressor
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    RobustScaler,
    StandardScaler,
)

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import float_type_of

ALIAS = "BridgeTransformedTargetRegressor"


def _inverse_functions(version: int) -> dict:
    """numpy inverse functions → a builder of the same function in ONNX."""

    def const(value, dtype):
        return np.array([value], dtype=dtype)

    return {
        None: lambda y, dt: y,
        np.exp: lambda y, dt: OnnxExp(y, op_version=version),
        np.expm1: lambda y, dt: OnnxSub(OnnxExp(y, op_version=version), const(1, dt),
                                        op_version=version),
        np.log: lambda y, dt: OnnxLog(y, op_version=version),
        np.log1p: lambda y, dt: OnnxLog(OnnxAdd(y, const(1, dt), op_version=version),
                                        op_version=version),
        np.sqrt: lambda y, dt: OnnxSqrt(y, op_version=version),
        np.square: lambda y, dt: OnnxMul(y, y, op_version=version),
    }


def _affine_inverse(transformer) -> tuple[np.ndarray, np.ndarray] | None:
    """Return (scale, offset) with ``inverse(y) = y * scale + offset`` for fitted scalers."""
    if isinstance(transformer, StandardScaler):
        scale = transformer.scale_ if transformer.scale_ is not None else 1.0
        offset = transformer.mean_ if transformer.mean_ is not None else 0.0
        return np.asarray(scale, float), np.asarray(offset, float)
    if isinstance(transformer, MinMaxScaler):
        return 1.0 / np.asarray(transformer.scale_), -transformer.min_ / transformer.scale_
    if isinstance(transformer, MaxAbsScaler):
        return np.asarray(transformer.scale_, float), np.zeros_like(transformer.scale_)
    if isinstance(transformer, RobustScaler):
        scale = transformer.scale_ if transformer.scale_ is not None else 1.0
        offset = transformer.center_ if transformer.center_ is not None else 0.0
        return np.asarray(scale, float), np.asarray(offset, float)
    return None


def transformed_target_shape_calculator(operator) -> None:
    """Predictions ``(N, n_targets)`` in the input's float type."""
    operator.outputs[0].type = float_type_of(operator)([None, None])


def convert_transformed_target_regressor(scope, operator, container) -> None:
    """Inner regressor's graph, then the inverse of the target transform."""
    model = operator.raw_operator
    version = container.target_opset
    numpy_dtype = np.float64 if float_type_of(operator).__name__.startswith("Double") else (
        np.float32
    )
    predictions = OnnxSubEstimator(model.regressor_, operator.inputs[0], op_version=version)
    transformer = model.transformer_
    if isinstance(transformer, FunctionTransformer):
        builders = _inverse_functions(version)
        inverse = transformer.inverse_func
        if inverse not in builders:
            raise UnsupportedEstimatorError(
                f"TransformedTargetRegressor(inverse_func={inverse!r}) has no ONNX conversion; "
                "supported inverse functions: None, numpy.exp, numpy.expm1, numpy.log, "
                "numpy.log1p, numpy.sqrt, numpy.square (see SUPPORTED.md)"
            )
        result = builders[inverse](predictions, numpy_dtype)
    else:
        affine = _affine_inverse(transformer)
        if affine is None:
            raise UnsupportedEstimatorError(
                f"TransformedTargetRegressor(transformer={type(transformer).__name__}) has no "
                "ONNX conversion; supported transformers: FunctionTransformer with a listed "
                "inverse function, StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler "
                "(see SUPPORTED.md)"
            )
        scale, offset = (np.asarray(v, dtype=numpy_dtype).reshape(1, -1) for v in affine)
        result = OnnxAdd(OnnxMul(predictions, scale, op_version=version), offset,
                         op_version=version)
    final = OnnxIdentity(result, op_version=version, output_names=[operator.outputs[0]])
    final.add_to(scope, container)


def register() -> bool:
    """Register the converter unless skl2onnx already has one; return whether it did."""
    if TransformedTargetRegressor in sklearn_operator_name_map:
        return False
    update_registered_converter(
        TransformedTargetRegressor, ALIAS, transformed_target_shape_calculator,
        convert_transformed_target_regressor,
    )
    return True
