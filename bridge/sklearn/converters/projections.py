"""skl2onnx converters for transforms that are one affine map: ``FactorAnalysis``,
``FastICA``, ``SparseRandomProjection`` (dense output) and ``BernoulliRBM`` (plus a sigmoid).

Each writes ``(X - mean) @ W + b`` with standard ONNX ops; ``W`` folds the fitted matrices
together in float64 before the graph stores it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from sklearn.decomposition import FactorAnalysis, FastICA
from sklearn.neural_network import BernoulliRBM
from sklearn.random_projection import SparseRandomProjection

from bridge.sklearn.converters._graph import add_constant, add_node, float_type_of, proto_float_of


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if scipy.sparse.issparse(matrix) else matrix,
                      dtype=np.float64)


def _factor_analysis(model: FactorAnalysis):
    components = np.asarray(model.components_, dtype=np.float64)
    weighted = components / model.noise_variance_
    covariance = np.linalg.inv(np.eye(len(components)) + weighted @ components.T)
    return model.mean_, weighted.T @ covariance, None, None


def _fast_ica(model: FastICA):
    mean = model.mean_ if model.whiten else None
    return mean, _dense(model.components_).T, None, None


def _sparse_random_projection(model: SparseRandomProjection):
    return None, _dense(model.components_).T, None, None


def _bernoulli_rbm(model: BernoulliRBM):
    return None, _dense(model.components_).T, model.intercept_hidden_, "Sigmoid"


# class -> (alias, function giving (mean or None, weights, bias or None, activation or None))
AFFINE_TRANSFORMS = {
    FactorAnalysis: ("BridgeFactorAnalysis", _factor_analysis),
    FastICA: ("BridgeFastICA", _fast_ica),
    SparseRandomProjection: ("BridgeSparseRandomProjection", _sparse_random_projection),
    BernoulliRBM: ("BridgeBernoulliRBM", _bernoulli_rbm),
}


def _parts(model):
    return AFFINE_TRANSFORMS[type(model)][1](model)


def affine_shape_calculator(operator) -> None:
    """Output ``(N, n_components)`` in the input's float type."""
    weights = _parts(operator.raw_operator)[1]
    operator.outputs[0].type = float_type_of(operator)([None, weights.shape[1]])


def convert_affine(scope, operator, container) -> None:
    """``activation((X - mean) @ W + b)``, each part only where the model has it."""
    mean, weights, bias, activation = _parts(operator.raw_operator)
    proto = proto_float_of(operator)
    x = operator.inputs[0].full_name
    if mean is not None:
        x = add_node(scope, container, "Sub", [
            x, add_constant(scope, container, "mean", np.reshape(mean, (1, -1)), proto)],
            "centered")
    steps = [("MatMul", add_constant(scope, container, "weights", weights, proto))]
    if bias is not None:
        steps.append(("Add", add_constant(scope, container, "bias", np.reshape(bias, (1, -1)),
                                          proto)))
    if activation is not None:
        steps.append((activation, None))
    for position, (op_type, constant) in enumerate(steps):
        inputs = [x] if constant is None else [x, constant]
        if position == len(steps) - 1:
            container.add_node(op_type, inputs, [operator.outputs[0].full_name],
                               name=scope.get_unique_operator_name(op_type))
        else:
            x = add_node(scope, container, op_type, inputs, op_type.lower())


def register() -> list[str]:
    """Register the converters skl2onnx lacks; return the names of those registered."""
    registered = []
    for cls, (alias, _) in AFFINE_TRANSFORMS.items():
        if cls in sklearn_operator_name_map:
            continue
        update_registered_converter(cls, alias, affine_shape_calculator, convert_affine)
        registered.append(cls.__name__)
    return registered
