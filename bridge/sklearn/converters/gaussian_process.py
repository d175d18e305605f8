"""skl2onnx support for a multiclass ``GaussianProcessClassifier`` (one-vs-rest; skl2onnx
converts binary problems only).

Each class's binary Laplace classifier gives its positive-class probability as scikit-learn's
``_BinaryGaussianProcessClassifierLaplace.predict_proba`` does: the latent mean
``K* (y - pi)``, its variance ``k(x, x) - k*^T W^1/2 (L L^T)^-1 W^1/2 k*`` (the inverse
precomputed once at conversion, in float64), and the erf-series approximation of the
integral (scikit-learn's LAMBDAS and COEFS). Probabilities are the one-vs-rest columns over
their sum; labels the last largest column, as ``OneVsRestClassifier.predict`` picks. Kernels
are written by skl2onnx's own kernel converter. Binary problems go through the same graph
(labels from the latent mean's sign), as skl2onnx's own uses com.microsoft::Solve.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from scipy.linalg import cho_solve
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.algebra.onnx_ops import (
    OnnxAdd,
    OnnxArgMax,
    OnnxCast,
    OnnxConcat,
    OnnxDiv,
    OnnxErf,
    OnnxGather,
    OnnxGreater,
    OnnxIdentity,
    OnnxMatMul,
    OnnxMul,
    OnnxReduceSumApi11,
    OnnxReshape,
    OnnxSqrt,
    OnnxSub,
)
from skl2onnx.common._registration import get_converter, get_shape_calculator
from skl2onnx.operator_converters._gp_kernels import convert_kernel, convert_kernel_diag
from sklearn.gaussian_process import GaussianProcessClassifier

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._responses import numpy_float_of

_state: dict[str, object] = {}


def _positive_probability(binary, x, dtype, version: int):
    """``(N, 1)`` positive-class probability and latent mean of one binary Laplace
    classifier."""
    from sklearn.gaussian_process._gpc import COEFS, LAMBDAS

    train = np.asarray(binary.X_train_, dtype=np.float64)
    k_star_t = convert_kernel(binary.kernel_, x, x_train=train.astype(dtype), dtype=dtype,
                              op_version=version)  # (N, n_train)
    residual = (binary.y_train_ - binary.pi_).reshape(-1, 1)
    f_star = OnnxMatMul(k_star_t, residual.astype(dtype), op_version=version)
    w_sr = np.asarray(binary.W_sr_, dtype=np.float64)
    # v^T v = k*^T W^1/2 (L L^T)^-1 W^1/2 k*
    middle = w_sr[:, None] * cho_solve((binary.L_, True), np.diag(w_sr))
    quadratic = OnnxReduceSumApi11(
        OnnxMul(OnnxMatMul(k_star_t, middle.astype(dtype), op_version=version), k_star_t,
                op_version=version),
        axes=[1], keepdims=1, op_version=version)
    diagonal = OnnxReshape(
        convert_kernel_diag(binary.kernel_, x, dtype=dtype, op_version=version),
        np.array([-1, 1], dtype=np.int64), op_version=version)
    variance = OnnxSub(diagonal, quadratic, op_version=version)
    lambdas = LAMBDAS.reshape(1, -1).astype(np.float64)
    # alpha = 1 / (2 var); sqrt(pi / alpha) = sqrt(2 pi var); the erf argument is
    # lambda f sqrt(alpha / (alpha + lambda^2)) = lambda f / sqrt(1 + 2 var lambda^2)
    two_var = OnnxMul(variance, np.array([2.0], dtype=dtype), op_version=version)
    scale = OnnxSqrt(OnnxAdd(np.array([1.0], dtype=dtype), OnnxMul(
        two_var, (lambdas ** 2).astype(dtype), op_version=version), op_version=version),
        op_version=version)
    erf = OnnxErf(OnnxDiv(OnnxMul(f_star, lambdas.astype(dtype), op_version=version), scale,
                          op_version=version), op_version=version)
    # sqrt(pi / alpha) / (2 sqrt(2 pi var)) = 1/2: each integral is erf(...) / 2
    weighted = OnnxMatMul(erf, (0.5 * COEFS.reshape(-1, 1)).astype(dtype),
                          op_version=version)
    probability = OnnxAdd(weighted, np.array([0.5 * COEFS.sum()], dtype=dtype),
                          op_version=version)
    return probability, f_star


def _integer_classes(model) -> np.ndarray:
    classes = np.asarray(model.classes_)
    if classes.dtype.kind not in "iub":
        raise UnsupportedEstimatorError(
            f"GaussianProcessClassifier with {classes.dtype} classes {list(classes)[:3]!r} "
            "has no ONNX conversion; supported: integer labels (see SUPPORTED.md)")
    return classes.astype(np.int64)


def convert_binary_gaussian_process(scope, operator, container) -> None:
    """Labels from the latent mean's sign, probabilities ``(1 - p, p)``."""
    model = operator.raw_operator
    version = container.target_opset
    dtype = numpy_float_of(operator)
    classes = _integer_classes(model)
    probability, f_star = _positive_probability(model.base_estimator_, operator.inputs[0],
                                                dtype, version)
    OnnxConcat(OnnxSub(np.array([1.0], dtype=dtype), probability, op_version=version),
               probability, axis=1, op_version=version,
               output_names=[operator.outputs[1]]).add_to(scope, container)
    positive = OnnxCast(OnnxGreater(OnnxReshape(f_star, np.array([-1], dtype=np.int64),
                                                op_version=version),
                                    np.array([0.0], dtype=dtype), op_version=version),
                        to=TensorProto.INT64, op_version=version)
    OnnxGather(classes, positive, axis=0, op_version=version,
               output_names=[operator.outputs[0]]).add_to(scope, container)


def convert_multiclass_gaussian_process(scope, operator, container) -> None:
    """Write labels and one-vs-rest probabilities (see the module docstring)."""
    model = operator.raw_operator
    ovr = model.base_estimator_
    if model.multi_class != "one_vs_rest" or not hasattr(ovr, "estimators_"):
        raise UnsupportedEstimatorError(
            f"GaussianProcessClassifier(multi_class={model.multi_class!r}) has no ONNX "
            "conversion for more than two classes; supported: 'one_vs_rest' (scikit-learn "
            "gives no probabilities for 'one_vs_one') (see SUPPORTED.md)")
    version = container.target_opset
    dtype = numpy_float_of(operator)
    x = operator.inputs[0]
    classes = _integer_classes(model)
    columns = [_positive_probability(binary, x, dtype, version)[0]
               for binary in ovr.estimators_]
    scores = OnnxConcat(*columns, axis=1, op_version=version)
    total = OnnxReduceSumApi11(scores, axes=[1], keepdims=1, op_version=version)
    OnnxDiv(scores, total, op_version=version,
            output_names=[operator.outputs[1]]).add_to(scope, container)
    # the last of equal maxima, as OneVsRestClassifier.predict: ArgMax over reversed columns
    reversed_scores = OnnxConcat(*columns[::-1], axis=1, op_version=version)
    last = OnnxSub(np.array([len(columns) - 1], dtype=np.int64), OnnxArgMax(
        reversed_scores, axis=1, keepdims=0, op_version=version), op_version=version)
    OnnxIdentity(OnnxGather(classes, last, axis=0, op_version=version),
                 op_version=version, output_names=[operator.outputs[0]]).add_to(
        scope, container)


def _wrapped():
    def convert(scope, operator, container) -> None:
        if hasattr(operator.raw_operator.base_estimator_, "X_train_"):  # binary
            convert_binary_gaussian_process(scope, operator, container)
            return
        convert_multiclass_gaussian_process(scope, operator, container)

    return convert


def register() -> bool:
    """Extend skl2onnx's GaussianProcessClassifier converter to several classes where it
    converts binary problems only; return whether it did."""
    if "registered" in _state:
        return bool(_state["registered"])
    alias = sklearn_operator_name_map.get(GaussianProcessClassifier)
    needed = False
    if alias is not None:
        original = get_converter(alias)
        function = getattr(original, "_fct", original)
        needed = not skl2onnx_converts_multiclass(function)
        if needed:
            update_registered_converter(
                GaussianProcessClassifier, alias, get_shape_calculator(alias),
                _wrapped(), overwrite=True,
                options=original.get_allowed_options()
                if hasattr(original, "get_allowed_options") else None)
    _state["registered"] = needed
    return needed


def skl2onnx_converts_multiclass(function) -> bool:
    """Whether skl2onnx's converter takes a three-class model (it refuses one before
    writing any node when it does not)."""
    from skl2onnx.common._container import ModelComponentContainer
    from skl2onnx.common._topology import Scope

    X = np.array([[0.0], [0.1], [1.0], [1.1], [2.0], [2.1]])
    model = GaussianProcessClassifier(optimizer=None).fit(X, np.array([0, 0, 1, 1, 2, 2]))

    class _Probe:
        raw_operator = model
        inputs = outputs = (None,)

    try:
        function(Scope("probe"), _Probe(), ModelComponentContainer(21))
    except NotImplementedError:
        return False
    except Exception:  # noqa: BLE001 - it got past the refusal
        return True
    return True
