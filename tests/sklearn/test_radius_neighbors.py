"""RadiusNeighbors* on rows without a neighbour inside the radius: scikit-learn's outlier
rule in bridge and in onnxruntime on bridge's graph (skl2onnx's own graph fails there)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.neighbors import (
    RadiusNeighborsClassifier,
    RadiusNeighborsRegressor,
    RadiusNeighborsTransformer,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import bridge
from bridge.errors import InvalidInputError
from tests.parity import assert_parity, run_onnxruntime


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(300, 4, n_informative=3, n_redundant=0, n_classes=3,
                               random_state=0)
    new = X[200:] * 1.5  # spread out: many rows have no neighbour within radius 1
    return X[:200], y[:200], new


def _onnxruntime(model, X, method):
    graph = model.onnx_model
    graph = graph[method] if isinstance(graph, dict) else graph
    return run_onnxruntime(graph, {graph.graph.input[0].name: X.astype(np.float32)})


@pytest.mark.parametrize("options", [
    {"outlier_label": "most_frequent"},
    {"outlier_label": "most_frequent", "weights": "distance"},
    {"outlier_label": 0, "p": 1},
])
def test_outlier_label_in_classes(data, options):
    X, y, new = data
    estimator = RadiusNeighborsClassifier(**options).fit(X, y)
    expected_labels, expected = estimator.predict(new), estimator.predict_proba(new)
    lonely = ~np.isin(np.arange(len(new)), [i for i, n in enumerate(
        estimator.radius_neighbors(new, return_distance=False)) if len(n)])
    assert lonely.sum() > 10  # the test exercises the outlier rule
    model = bridge.from_sklearn(estimator)
    np.testing.assert_array_equal(model.predict(new), expected_labels)
    assert_parity(model.predict_proba(new), expected, rtol=0, atol=1e-5)
    labels, probabilities = _onnxruntime(model, new, "predict_proba")
    np.testing.assert_array_equal(labels, expected_labels)
    assert_parity(probabilities, expected, rtol=0, atol=1e-5)


def test_an_outlier_label_outside_the_classes_gives_that_label_and_zero_probabilities(data):
    X, y, new = data
    estimator = RadiusNeighborsClassifier(outlier_label=7).fit(X, y)
    with pytest.warns(UserWarning, match="not in training classes"):
        expected = estimator.predict_proba(new)
    model = bridge.from_sklearn(estimator)
    with pytest.warns(UserWarning, match="not in training classes"):
        expected_labels = estimator.predict(new)
    assert (expected_labels == 7).any()
    np.testing.assert_array_equal(model.predict(new), expected_labels)
    assert_parity(model.predict_proba(new), expected, rtol=0, atol=1e-5)
    labels, _ = _onnxruntime(model, new, "predict")
    np.testing.assert_array_equal(labels, expected_labels)


def test_without_an_outlier_label_rows_without_neighbours_fail_as_in_sklearn(data):
    X, y, new = data
    estimator = RadiusNeighborsClassifier().fit(X, y)
    model = bridge.from_sklearn(estimator)
    with pytest.raises(ValueError, match="No neighbors found"):
        estimator.predict(new)
    for method in ("predict", "predict_proba"):
        with pytest.raises(InvalidInputError, match=r"No neighbors found within radius=1\.0 "
                           r"for some rows of X \(RadiusNeighborsClassifier, converted") as got:
            getattr(model, method)(new)
        assert isinstance(got.value, ValueError) and isinstance(got.value.__cause__, IndexError)
        with pytest.raises(Exception, match="out of data bounds"):
            _onnxruntime(model, new, method)
    piped = bridge.from_sklearn(make_pipeline(StandardScaler(), RadiusNeighborsClassifier(
        radius=0.5)).fit(X, y))  # a pipeline ending in one says it too
    with pytest.raises(InvalidInputError, match=r"radius=0\.5 .*\(Pipeline, converted"):
        piped.predict(new * 10)
    with pytest.raises(IndexError, match="out of range"):  # the failure under the message
        model.graph_modules[model._method_outputs["predict"].graph](torch.from_numpy(
            new.astype(np.float32)))
    inside = X[:50]  # every row is its own neighbour: no failure
    np.testing.assert_array_equal(model.predict(inside), estimator.predict(inside))
    assert_parity(model.predict_proba(inside), estimator.predict_proba(inside), rtol=0,
                  atol=1e-5)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_regressor_gives_nan_where_there_is_no_neighbour(data, weights):
    X, _, new = data
    target = X[:, 0] * 2.0 - X[:, 1]
    estimator = RadiusNeighborsRegressor(weights=weights).fit(X, target)
    with pytest.warns(UserWarning, match="predicting NaN"):
        expected = estimator.predict(new)
    assert np.isnan(expected).sum() > 10
    model = bridge.from_sklearn(estimator)
    assert_parity(model.predict(new), expected, rtol=1e-5, atol=1e-5)
    (reference,) = _onnxruntime(model, new, "predict")
    assert_parity(reference.ravel(), expected, rtol=1e-5, atol=1e-5)


def test_distance_weights_with_a_neighbour_at_distance_zero(data):
    X, y, _ = data
    estimator = RadiusNeighborsClassifier(radius=1.5, weights="distance").fit(X, y)
    model = bridge.from_sklearn(estimator)  # training rows: each at distance 0 from itself
    assert_parity(model.predict_proba(X), estimator.predict_proba(X), rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["distance", "connectivity"])
def test_transformer_dense_graph(data, mode):
    X, _, new = data
    estimator = RadiusNeighborsTransformer(mode=mode, radius=1.2).fit(X)
    expected = estimator.transform(new).toarray()
    model = bridge.from_sklearn(estimator)
    assert_parity(model.transform(new), expected, rtol=1e-5, atol=1e-5)
    (reference,) = _onnxruntime(model, new, "transform")
    assert_parity(reference, expected, rtol=1e-5, atol=1e-5)


def test_unsupported_metric_is_refused(data):
    from bridge.errors import UnsupportedEstimatorError

    X, y, _ = data
    estimator = RadiusNeighborsRegressor(metric="chebyshev").fit(X, X[:, 0])
    with pytest.raises(UnsupportedEstimatorError, match="metric='chebyshev'"):
        bridge.from_sklearn(estimator)
