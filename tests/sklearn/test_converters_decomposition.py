"""bridge's converters for Isomap's transform (and the iterative decompositions): new data,
float64, onnxruntime, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.manifold import Isomap

import bridge
from bridge.errors import UnsupportedEstimatorError
from tests.parity import assert_parity, run_onnxruntime
from tests.sklearn.cases import get_dataset


def _new_rows(width: int, scale: float = 2.0) -> np.ndarray:
    return np.random.default_rng(7).normal(scale=scale, size=(800, width))


def _in_onnxruntime(model, X):
    graph = model.onnx_model
    return run_onnxruntime(graph, {graph.graph.input[0].name: X.astype(model._input_spec.dtype)})


@pytest.mark.parametrize("n_neighbors", [3, 5, 12])
def test_isomap_new_rows_float64_and_onnxruntime(n_neighbors):
    X = get_dataset("features").X
    isomap = Isomap(n_neighbors=n_neighbors, n_components=3).fit(X)
    new = _new_rows(X.shape[1])
    expected = isomap.transform(new)
    scale = np.abs(expected).max()
    exact = bridge.from_sklearn(isomap, dtype=np.float64)
    assert_parity(exact.transform(new), expected, rtol=1e-10, atol=1e-10 * scale,
                  what="float64")
    assert_parity(_in_onnxruntime(exact, new)[0], expected, rtol=1e-10, atol=1e-10 * scale,
                  what="onnxruntime float64")
    single = bridge.from_sklearn(isomap)
    assert_parity(single.transform(new), expected, rtol=1e-4, atol=1e-5 * scale,
                  what="float32")


def test_isomap_refuses_radius_and_other_metrics_by_name():
    X = get_dataset("features").X
    with pytest.raises(UnsupportedEstimatorError, match="radius=3.0"):
        bridge.from_sklearn(Isomap(n_neighbors=None, radius=3.0).fit(X))
    with pytest.raises(UnsupportedEstimatorError, match="metric='manhattan'"):
        bridge.from_sklearn(Isomap(metric="manhattan").fit(X))
