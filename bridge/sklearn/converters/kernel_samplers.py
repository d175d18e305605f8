"""skl2onnx converters for the random-feature kernel samplers skl2onnx lacks.

``RBFSampler``, ``SkewedChi2Sampler``, ``AdditiveChi2Sampler`` and ``PolynomialCountSketch``
are written with standard ONNX ops (MatMul, Cos, Sin, Log, Where); the count sketch's FFT
becomes two MatMuls against the discrete Fourier basis.
"""

from __future__ import annotations

import numpy as np
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from sklearn.kernel_approximation import (
    AdditiveChi2Sampler,
    PolynomialCountSketch,
    RBFSampler,
    SkewedChi2Sampler,
)

from bridge.sklearn.converters._graph import add_constant, add_node, float_type_of, proto_float_of

# scikit-learn's default sample_interval for sample_steps 1, 2 and 3
_CHI2_INTERVALS = {1: 0.8, 2: 0.5, 3: 0.4}


def _output_width(model) -> int:
    if isinstance(model, AdditiveChi2Sampler):
        return model.n_features_in_ * (2 * model.sample_steps - 1)
    return int(model.n_components)


def sampler_shape_calculator(operator) -> None:
    """Output shape ``(N, width)`` in the input's float type."""
    operator.outputs[0].type = float_type_of(operator)([None, _output_width(operator.raw_operator)])


def _random_cosines(scope, container, operator, x: str) -> None:
    """``cos(x @ random_weights_ + random_offset_) * sqrt(2 / n_components)`` into the output."""
    model = operator.raw_operator
    proto = proto_float_of(operator)
    weights = add_constant(scope, container, "random_weights", model.random_weights_, proto)
    offset = add_constant(scope, container, "random_offset",
                          np.asarray(model.random_offset_).reshape(1, -1), proto)
    projection = add_node(scope, container, "MatMul", [x, weights], "projection")
    shifted = add_node(scope, container, "Add", [projection, offset], "shifted")
    cosine = add_node(scope, container, "Cos", [shifted], "cosine")
    scale = add_constant(scope, container, "scale", [np.sqrt(2.0 / model.n_components)], proto)
    container.add_node("Mul", [cosine, scale], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("Mul"))


def convert_rbf_sampler(scope, operator, container) -> None:
    """Random Fourier features of the RBF kernel."""
    _random_cosines(scope, container, operator, operator.inputs[0].full_name)


def convert_skewed_chi2_sampler(scope, operator, container) -> None:
    """Random Fourier features of ``log(X + skewedness)``."""
    proto = proto_float_of(operator)
    skewedness = add_constant(scope, container, "skewedness",
                              [operator.raw_operator.skewedness], proto)
    shifted = add_node(scope, container, "Add", [operator.inputs[0].full_name, skewedness],
                       "shifted_input")
    _random_cosines(scope, container, operator, add_node(scope, container, "Log", [shifted],
                                                         "log_input"))


def convert_additive_chi2_sampler(scope, operator, container) -> None:
    """Vedaldi-Zisserman sampling: ``sqrt(x L)`` then ``sqrt(2 x L / cosh(pi j L))`` times
    cos/sin of ``j L log x`` for each step ``j``; zero where ``x == 0`` (as scikit-learn)."""
    model = operator.raw_operator
    proto = proto_float_of(operator)
    steps = int(model.sample_steps)
    interval = model.sample_interval if model.sample_interval is not None else (
        _CHI2_INTERVALS[steps])
    x = operator.inputs[0].full_name
    zero = add_constant(scope, container, "zero", [0.0], proto)
    one = add_constant(scope, container, "one", [1.0], proto)
    nonzero = add_node(scope, container, "Not",
                       [add_node(scope, container, "Equal", [x, zero], "is_zero")], "nonzero")
    # log of 1 where x == 0 keeps every intermediate finite; Where zeroes those entries
    safe = add_node(scope, container, "Where", [nonzero, x, one], "safe_x")
    interval_c = add_constant(scope, container, "interval", [interval], proto)
    scaled = add_node(scope, container, "Mul", [safe, interval_c], "scaled_x")
    columns = [add_node(scope, container, "Sqrt", [scaled], "step0")]
    log_step = add_node(scope, container, "Mul",
                        [add_node(scope, container, "Log", [safe], "log_x"), interval_c],
                        "log_step")
    for j in range(1, steps):
        factor = 2.0 / np.cosh(np.pi * j * interval)
        factor_c = add_constant(scope, container, "factor", [factor], proto)
        amplitude = add_node(scope, container, "Sqrt",
                             [add_node(scope, container, "Mul", [scaled, factor_c], "step")],
                             "amplitude")
        j_c = add_constant(scope, container, "j", [float(j)], proto)
        angle = add_node(scope, container, "Mul", [log_step, j_c], "angle")
        for op in ("Cos", "Sin"):
            wave = add_node(scope, container, op, [angle], op.lower())
            columns.append(add_node(scope, container, "Mul", [amplitude, wave], "component"))
    masked = [add_node(scope, container, "Where", [nonzero, c, zero], "masked")
              for c in columns]
    container.add_node("Concat", masked, [operator.outputs[0].full_name], axis=1,
                       name=scope.get_unique_operator_name("Concat"))


def _fourier_bases(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(cos, sin)`` of ``2 pi j k / n``: the real and minus the imaginary DFT basis."""
    angles = 2.0 * np.pi * np.outer(np.arange(n), np.arange(n)) / n
    return np.cos(angles), np.sin(angles)


def convert_polynomial_count_sketch(scope, operator, container) -> None:
    """Each degree's count sketch is a MatMul by a signed one-hot hashing matrix; their FFTs
    (MatMuls by the Fourier basis) are multiplied as complex numbers, and the real part of
    the inverse FFT is one more pair of MatMuls."""
    model = operator.raw_operator
    proto = proto_float_of(operator)
    n = int(model.n_components)
    n_features = model.n_features_in_
    x = operator.inputs[0].full_name
    cosines, sines = _fourier_bases(n)
    real = imaginary = None
    for d in range(model.degree):
        hashing = np.zeros((model.indexHash_.shape[1], n))
        for j in range(model.indexHash_.shape[1]):
            hashing[j, model.indexHash_[d, j]] += model.bitHash_[d, j]
        # X_gamma = [sqrt(gamma) X, sqrt(coef0)]: the constant column becomes a bias row
        weights = np.sqrt(model.gamma) * hashing[:n_features]
        sketch = add_node(scope, container, "MatMul",
                          [x, add_constant(scope, container, "hashing", weights, proto)],
                          "sketch")
        if model.coef0 != 0:
            bias = np.sqrt(model.coef0) * hashing[n_features:n_features + 1]
            sketch = add_node(scope, container, "Add",
                              [sketch, add_constant(scope, container, "bias", bias, proto)],
                              "sketch_biased")
        # fft: re = s @ cos, im = -(s @ sin)
        re = add_node(scope, container, "MatMul",
                      [sketch, add_constant(scope, container, "cos", cosines, proto)], "re")
        im = add_node(scope, container, "Neg", [add_node(
            scope, container, "MatMul",
            [sketch, add_constant(scope, container, "sin", sines, proto)], "sin_part")], "im")
        if real is None:
            real, imaginary = re, im
            continue
        rr = add_node(scope, container, "Mul", [real, re], "rr")
        ii = add_node(scope, container, "Mul", [imaginary, im], "ii")
        ri = add_node(scope, container, "Mul", [real, im], "ri")
        ir = add_node(scope, container, "Mul", [imaginary, re], "ir")
        real = add_node(scope, container, "Sub", [rr, ii], "product_re")
        imaginary = add_node(scope, container, "Add", [ri, ir], "product_im")
    # real(ifft(z))_k = (sum_m re_m cos(2 pi m k / n) - im_m sin(2 pi m k / n)) / n
    inverse_re = add_node(scope, container, "MatMul",
                          [real, add_constant(scope, container, "icos", cosines / n, proto)],
                          "inverse_re")
    inverse_im = add_node(scope, container, "MatMul",
                          [imaginary, add_constant(scope, container, "isin", sines / n, proto)],
                          "inverse_im")
    container.add_node("Sub", [inverse_re, inverse_im], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("Sub"))


_CONVERTERS = {
    RBFSampler: ("BridgeRBFSampler", convert_rbf_sampler),
    SkewedChi2Sampler: ("BridgeSkewedChi2Sampler", convert_skewed_chi2_sampler),
    AdditiveChi2Sampler: ("BridgeAdditiveChi2Sampler", convert_additive_chi2_sampler),
    PolynomialCountSketch: ("BridgePolynomialCountSketch", convert_polynomial_count_sketch),
}


def register() -> list[str]:
    """Register the converters skl2onnx lacks; return the names of those registered."""
    registered = []
    for cls, (alias, converter) in _CONVERTERS.items():
        if cls in sklearn_operator_name_map:
            continue
        update_registered_converter(cls, alias, sampler_shape_calculator, converter)
        registered.append(cls.__name__)
    return registered

