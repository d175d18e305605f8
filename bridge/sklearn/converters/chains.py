"""skl2onnx converters for ``sklearn.multioutput.ClassifierChain`` and ``RegressorChain``
(skl2onnx has neither).

Each link reads the features joined with the earlier links' responses (``chain_method_``:
labels, positive-class probabilities or decision values), as scikit-learn's
``_BaseChain._get_predictions`` does, and the columns come back in label order
(``order_`` undone). A ClassifierChain graph has three outputs: the predictions (0/1 floats,
in double like scikit-learn's), the probabilities and the decision values (zeros when the
links have no ``decision_function``).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.algebra.onnx_ops import OnnxCast, OnnxConcat, OnnxGather, OnnxIdentity, OnnxMul
from skl2onnx.common.data_types import DoubleTensorType, guess_tensor_type
from sklearn.multioutput import ClassifierChain, RegressorChain

from bridge.sklearn.converters._graph import float_type_of
from bridge.sklearn.converters._responses import numpy_float_of, response_column

_ALIASES = {ClassifierChain: "BridgeClassifierChain", RegressorChain: "BridgeRegressorChain"}
CLASSIFIER_OUTPUTS = ("predictions", "probabilities", "decision")


def binary_links(model) -> bool:
    """Whether every link of a ClassifierChain is binary (scikit-learn's predict_proba and
    decision_function fail on a chain with a multiclass link; predict works)."""
    return all(len(getattr(e, "classes_", ())) == 2 for e in model.estimators_)


def classifier_chain_parser(scope, model, inputs, custom_parsers=None):
    """Declare the chain's three outputs (predictions, probabilities, decision values)."""
    operator = scope.declare_local_operator(_ALIASES[ClassifierChain], model)
    operator.inputs = inputs
    for name in CLASSIFIER_OUTPUTS:
        operator.outputs.append(scope.declare_local_variable(
            name, guess_tensor_type(inputs[0].type)))
    return operator.outputs


def chain_shape_calculator(operator) -> None:
    """``(N, n_outputs)`` per output; a ClassifierChain's predictions in double."""
    width = len(operator.raw_operator.estimators_)
    float_type = float_type_of(operator)
    for index, output in enumerate(operator.outputs):
        output.type = (DoubleTensorType if index == 0 and isinstance(
            operator.raw_operator, ClassifierChain) else float_type)([None, width])


def _chain_columns(model, x, methods, dtype, version: int, owner: str, container) -> dict:
    """Each link's column for each of ``methods``, in chain order; each link reads the
    features and the earlier links' ``chain_method_`` columns."""
    chain_method = getattr(model, "chain_method_", "predict")
    features, columns, shared = [], {method: [] for method in methods}, {}
    for index, estimator in enumerate(model.estimators_):
        augmented = x if index == 0 else OnnxConcat(x, *features, axis=1, op_version=version)
        feature = response_column(estimator, augmented, chain_method, dtype, version, owner,
                                  container, shared)
        features.append(feature)
        for method in methods:
            columns[method].append(feature if method == chain_method else response_column(
                estimator, augmented, method, dtype, version, owner, container, shared))
    return columns


def _in_label_order(model, columns: list, version: int):
    joined = columns[0] if len(columns) == 1 else OnnxConcat(*columns, axis=1,
                                                             op_version=version)
    inverse = np.empty_like(np.asarray(model.order_))
    inverse[np.asarray(model.order_)] = np.arange(len(model.order_))
    return OnnxGather(joined, inverse.astype(np.int64), axis=1, op_version=version)


def convert_chain(scope, operator, container) -> None:
    """Write the chain link by link; see the module docstring for the outputs."""
    model = operator.raw_operator
    version = container.target_opset
    dtype = numpy_float_of(operator)
    x = operator.inputs[0]
    owner = type(model).__name__
    if isinstance(model, RegressorChain):
        columns = _chain_columns(model, x, ("predict",), dtype, version, owner, container)
        result = _in_label_order(model, columns["predict"], version)
        OnnxIdentity(result, op_version=version, output_names=[operator.outputs[0]]).add_to(
            scope, container)
        return
    methods = ("predict",) + tuple(m for m in ("predict_proba", "decision_function")
                                   if hasattr(model, m) and binary_links(model))
    columns = _chain_columns(model, x, methods, dtype, version, owner, container)
    predictions = _in_label_order(model, columns["predict"], version)
    OnnxCast(predictions, to=TensorProto.DOUBLE, op_version=version,
             output_names=[operator.outputs[0]]).add_to(scope, container)
    for position, method in ((1, "predict_proba"), (2, "decision_function")):
        if method in columns:
            result = _in_label_order(model, columns[method], version)
        else:  # scikit-learn's chain has no such method here: zeros in its place
            result = OnnxMul(OnnxCast(predictions, to=_proto(dtype), op_version=version),
                             np.array([0], dtype=dtype), op_version=version)
        OnnxIdentity(result, op_version=version,
                     output_names=[operator.outputs[position]]).add_to(scope, container)


def _proto(dtype) -> int:
    return TensorProto.DOUBLE if np.dtype(dtype) == np.float64 else TensorProto.FLOAT


def register() -> list[str]:
    """Register the converters skl2onnx lacks; return the names of those registered."""
    registered = []
    for cls, alias in _ALIASES.items():
        if cls in sklearn_operator_name_map:
            continue
        parser = classifier_chain_parser if cls is ClassifierChain else None
        update_registered_converter(cls, alias, chain_shape_calculator, convert_chain,
                                    parser=parser)
        registered.append(cls.__name__)
    return registered
