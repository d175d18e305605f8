"""bridge's QuantileTransformer converter (uniform output): np.interp's segments by binary
search, repeated quantiles, values outside the range, NaN; float64 exact; onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.preprocessing import QuantileTransformer

import bridge
from bridge.errors import UnsupportedEstimatorError
from tests.parity import assert_parity, run_onnxruntime


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 5))
    X[:, 2] = rng.integers(0, 5, size=600)  # repeated quantiles
    new = rng.normal(scale=2.0, size=(800, 5))
    new[:, 2] = rng.integers(-1, 7, size=800)  # at, between, below and above them
    new[:6, 0] = np.nan
    new[6:12, 1] = X[:6, 1]  # exactly on training values
    return X, new


@pytest.mark.parametrize("n_quantiles", [1000, 37, 2])
def test_uniform_output_matches_scikit_learn(n_quantiles):
    X, new = _data()
    transformer = QuantileTransformer(n_quantiles=n_quantiles).fit(X)
    expected = transformer.transform(new)
    exact = bridge.from_sklearn(transformer, dtype=np.float64)
    np.testing.assert_array_equal(exact.transform(new), expected)  # NaN where NaN
    graph = exact.onnx_model
    np.testing.assert_array_equal(
        run_onnxruntime(graph, {graph.graph.input[0].name: new})[0], expected)
    assert {n.domain for n in graph.graph.node} <= {"", "ai.onnx"}
    single = bridge.from_sklearn(transformer)
    finite = ~np.isnan(expected)
    assert_parity(single.transform(new)[finite], expected[finite], rtol=1e-5, atol=1e-6,
                  what="float32")


def test_normal_output_is_refused_by_name():
    X, _ = _data()
    transformer = QuantileTransformer(n_quantiles=10, output_distribution="normal").fit(X)
    with pytest.raises(UnsupportedEstimatorError, match="output_distribution='normal'"):
        bridge.from_sklearn(transformer)
