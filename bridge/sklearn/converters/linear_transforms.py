"""Converters for estimators whose inference is one affine map, which skl2onnx lacks:
``PLSSVD.transform``, ``CCA`` and ``PLSCanonical`` ``predict``, ``FeatureAgglomeration``
(mean pooling), ``SparsePCA`` / ``MiniBatchSparsePCA`` (their ridge solve against fixed
components is a matrix fixed at fit time); and ``GaussianRandomProjection`` /
``SparseRandomProjection`` with ``n_components='auto'``, which skl2onnx 1.20 refuses.

Each writes ``((X - shift) / scale) @ W + b``; ``W`` is computed in float64 before the
graph stores it.
"""

from __future__ import annotations

import copy

import numpy as np
import scipy.sparse
from skl2onnx import to_onnx, update_registered_converter
from skl2onnx._parse import _parse_sklearn_simple_model
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common._registration import get_converter, get_shape_calculator
from sklearn.cluster import FeatureAgglomeration
from sklearn.cross_decomposition import CCA, PLSSVD, PLSCanonical
from sklearn.decomposition import MiniBatchSparsePCA, SparsePCA
from sklearn.random_projection import GaussianRandomProjection, SparseRandomProjection

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import add_constant, add_node, float_type_of, proto_float_of


def _pls_svd(model):
    return model._x_mean, model._x_std, model.x_weights_, None


def _pls_predict(model):
    return model._x_mean, None, np.asarray(model.coef_).T, model.intercept_


def _feature_agglomeration(model):
    if model.pooling_func is not np.mean:
        raise UnsupportedEstimatorError(
            f"FeatureAgglomeration(pooling_func={model.pooling_func!r}) has no conversion; "
            "supported: numpy.mean (the default)")
    labels = np.asarray(model.labels_)
    clusters = np.unique(labels)
    pooling = (labels[:, None] == clusters[None, :]).astype(np.float64)
    return None, None, pooling / pooling.sum(axis=0, keepdims=True), None


def _sparse_pca(model):
    components = np.asarray(model.components_, dtype=np.float64)
    gram = components @ components.T + model.ridge_alpha * np.eye(len(components))
    return model.mean_, None, components.T @ np.linalg.inv(gram), None


# class -> (alias, function giving (shift, scale, weights, bias), each but weights optional)
AFFINE = {
    PLSSVD: ("BridgePLSSVD", _pls_svd),
    CCA: ("BridgeCCA", _pls_predict),
    PLSCanonical: ("BridgePLSCanonical", _pls_predict),
    FeatureAgglomeration: ("BridgeFeatureAgglomeration", _feature_agglomeration),
    SparsePCA: ("BridgeSparsePCA", _sparse_pca),
    MiniBatchSparsePCA: ("BridgeMiniBatchSparsePCA", _sparse_pca),
}


def affine_shape(operator) -> None:
    """``(N, width of W)`` in the input's float type."""
    weights = AFFINE[type(operator.raw_operator)][1](operator.raw_operator)[2]
    operator.outputs[0].type = float_type_of(operator)([None, np.shape(weights)[1]])


def convert_affine(scope, operator, container) -> None:
    """``((X - shift) / scale) @ W + b``, each part only where the model has it."""
    shift, scale, weights, bias = AFFINE[type(operator.raw_operator)][1](operator.raw_operator)
    proto = proto_float_of(operator)
    x = operator.inputs[0].full_name
    if shift is not None:
        x = add_node(scope, container, "Sub", [x, add_constant(
            scope, container, "shift", np.reshape(shift, (1, -1)), proto)], "affine_shifted")
    if scale is not None:
        x = add_node(scope, container, "Div", [x, add_constant(
            scope, container, "scale", np.reshape(scale, (1, -1)), proto)], "affine_scaled")
    matrix = add_constant(scope, container, "weights", np.asarray(weights, dtype=np.float64),
                          proto)
    if bias is None:
        container.add_node("MatMul", [x, matrix], [operator.outputs[0].full_name],
                           name=scope.get_unique_operator_name("MatMul"))
        return
    product = add_node(scope, container, "MatMul", [x, matrix], "affine_product")
    container.add_node("Add", [product, add_constant(
        scope, container, "bias", np.reshape(bias, (1, -1)), proto)],
        [operator.outputs[0].full_name], name=scope.get_unique_operator_name("Add"))


def _with_fitted_width(model):
    """A shallow copy whose ``n_components`` is the fitted width (``'auto'`` resolved)."""
    if model.n_components != "auto":
        return model
    view = copy.copy(model)
    view.n_components = model.n_components_
    view._n_features_out = model.n_components_  # scikit-learn stores 'auto' there
    if scipy.sparse.issparse(model.components_) and not model.dense_output:
        view.dense_output = True  # skl2onnx's graph is dense whatever the setting
    return view


def _resolving_auto(cls):
    """Parse the fitted-width copy (scikit-learn's own ``get_feature_names_out``, which
    skl2onnx's parser calls, fails on ``'auto'``); skl2onnx's converter does the rest."""
    alias = sklearn_operator_name_map[cls]

    def parser(scope, model, inputs, custom_parsers=None):
        return _parse_sklearn_simple_model(scope, _with_fitted_width(model), inputs,
                                           custom_parsers=custom_parsers)

    base_shape, base_converter = get_shape_calculator(alias), get_converter(alias)

    def shape(operator) -> None:
        base_shape(operator)

    def converter(scope, operator, container) -> None:
        base_converter(scope, operator, container)

    update_registered_converter(cls, alias, shape, converter, parser=parser)


def _one_output_parser(scope, model, inputs, custom_parsers=None):
    """One output (a clusterer such as FeatureAgglomeration would get two)."""
    operator = scope.declare_local_operator(AFFINE[type(model)][0], model)
    operator.inputs = inputs
    operator.outputs.append(scope.declare_local_variable("variable",
                                                         inputs[0].type.__class__()))
    return operator.outputs


def skl2onnx_refuses_auto_width() -> bool:
    """Convert a tiny ``n_components='auto'`` projection; report a failure."""
    features = np.random.default_rng(0).normal(size=(10, 120)).astype(np.float32)
    probe = GaussianRandomProjection(eps=0.9, random_state=0).fit(features)
    try:
        to_onnx(probe, features[:1])
    except Exception:  # skl2onnx reads n_components, the string 'auto'
        return True
    return False


def register() -> list[str]:
    """Register what skl2onnx lacks or refuses; return the classes registered."""
    registered = []
    for cls, (alias, _) in AFFINE.items():
        if cls in sklearn_operator_name_map:
            continue
        update_registered_converter(cls, alias, affine_shape, convert_affine,
                                    parser=_one_output_parser)
        registered.append(cls.__name__)
    if GaussianRandomProjection in sklearn_operator_name_map and skl2onnx_refuses_auto_width():
        for cls in (GaussianRandomProjection, SparseRandomProjection):
            if cls in sklearn_operator_name_map:
                _resolving_auto(cls)
                registered.append(cls.__name__)
    return registered
