"""A ``score_samples`` option for ``PCA`` and ``FactorAnalysis``: their Gaussian log-likelihood.

Both models' ``score_samples`` is ``-0.5 (x - mean) P (x - mean)^T - 0.5 (d log 2 pi -
log det P)`` with the fitted precision ``P``. The registered converter (skl2onnx's PCA,
bridge's FactorAnalysis) still writes ``transform``; with ``options={'score_samples': True}``
a second output carries the scores. Registered only while that converter lacks the option.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common._registration import get_converter
from skl2onnx.common.data_types import guess_tensor_type
from sklearn.decomposition import PCA, FactorAnalysis

from bridge.sklearn.converters._graph import (
    add_constant,
    add_node,
    add_score_samples_option,
    proto_float_of,
)

SCORED = (PCA, FactorAnalysis)


def _write_scores(scope, container, operator) -> None:
    model = operator.raw_operator
    proto = proto_float_of(operator)
    precision = np.asarray(model.get_precision(), dtype=np.float64)
    n_features = precision.shape[0]
    sign, log_det = np.linalg.slogdet(precision)
    if sign <= 0:  # scikit-learn's fast_logdet gives -inf: every score is +inf
        log_det = -np.inf
    centered = add_node(scope, container, "Sub", [
        operator.inputs[0].full_name,
        add_constant(scope, container, "mean", np.reshape(model.mean_, (1, -1)), proto)],
        "centered")
    projected = add_node(scope, container, "MatMul", [
        centered, add_constant(scope, container, "precision", precision, proto)], "projected")
    quadratic = add_node(scope, container, "ReduceSum", [
        add_node(scope, container, "Mul", [projected, centered], "products"),
        add_constant(scope, container, "axis", [1], TensorProto.INT64)], "quadratic",
        keepdims=1)
    half = add_constant(scope, container, "minus_half", [-0.5], proto)
    constant = add_constant(scope, container, "normalizer",
                            [-0.5 * (n_features * np.log(2.0 * np.pi) - log_det)], proto)
    container.add_node("Add", [
        add_node(scope, container, "Mul", [quadratic, half], "half_quadratic"), constant],
        [operator.outputs[1].full_name], name=scope.get_unique_operator_name("Add"))


def _wrap(cls) -> None:
    add_score_samples_option(cls, [("variable", guess_tensor_type)], _write_scores)


def register() -> list[str]:
    """Add the option where the registered converter lacks it; return the classes changed."""
    registered = []
    for cls in SCORED:
        alias = sklearn_operator_name_map.get(cls)
        if alias is None:
            continue  # no transform converter to extend
        allowed = getattr(get_converter(alias), "get_allowed_options", lambda: None)() or {}
        if "score_samples" in allowed:
            continue
        _wrap(cls)
        registered.append(cls.__name__)
    return registered
