"""Exactness where scikit-learn is exact: scalers with scikit-learn's own arithmetic (so the
trees after them see the same values), in bridge and in onnxruntime; pipelines that take NaN
where their steps do."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import KNNImputer, SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

import bridge
from tests.parity import run_onnxruntime

SCALERS = {
    "standard": StandardScaler,
    "robust": RobustScaler,
    "maxabs": MaxAbsScaler,
    "minmax": MinMaxScaler,
    "minmax-clip": lambda: MinMaxScaler(feature_range=(-1, 2), clip=True),
    "standard-no-mean": lambda: StandardScaler(with_mean=False),
}


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y


@pytest.mark.parametrize("name", list(SCALERS))
def test_scalers_compute_as_scikit_learn_does_bit_for_bit(name, digits):
    X, _ = digits
    noisy = X + np.random.default_rng(0).normal(scale=0.37, size=X.shape).astype(np.float32)
    scaler = SCALERS[name]().fit(noisy)
    new = noisy[::-1] * np.float32(1.3)
    for dtype, rows in ((np.float32, new), (np.float64, new.astype(np.float64) / 7.0)):
        model = bridge.from_sklearn(scaler, dtype=dtype)
        expected = scaler.transform(rows)
        np.testing.assert_array_equal(model.transform(rows), expected)
        graph = model.onnx_model
        in_onnxruntime = run_onnxruntime(graph, {graph.graph.input[0].name: rows})[0]
        np.testing.assert_array_equal(in_onnxruntime, expected)


@pytest.mark.parametrize("name", ["standard", "robust", "minmax"])
def test_scaler_before_a_forest_on_digits_is_exact(name, digits):
    # skl2onnx's Scaler multiplies by 1/scale: 174 of 1,797 rows had other probabilities
    X, y = digits
    pipeline = make_pipeline(SCALERS[name](), RandomForestClassifier(random_state=0)).fit(X, y)
    expected = pipeline.predict_proba(X)
    model = bridge.from_sklearn(pipeline)
    assert np.abs(model.predict_proba(X) - expected).max() < 1e-6
    np.testing.assert_array_equal(model.predict(X), pipeline.predict(X))
    graphs = model.onnx_model if isinstance(model.onnx_model, dict) else {"": model.onnx_model}
    graph = next(iter(graphs.values()))
    _, probabilities = run_onnxruntime(graph, {graph.graph.input[0].name: X})[:2]
    assert np.abs(probabilities - expected).max() < 1e-6


def _with_missing():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    X[rng.random(X.shape) < 0.1] = np.nan
    return X, y


@pytest.mark.parametrize("steps", [
    lambda: [SimpleImputer(), LogisticRegression()],
    lambda: [KNNImputer(), StandardScaler(), LogisticRegression()],
    lambda: [StandardScaler(), HistGradientBoostingClassifier(max_iter=10, random_state=0)],
], ids=["simple-imputer", "knn-imputer", "scaler-hist-gradient-boosting"])
def test_a_pipeline_whose_steps_take_nan_takes_nan(steps):
    # scikit-learn 1.9 does not pass the first step's allow_nan tag up to the Pipeline
    X, y = _with_missing()
    pipeline = make_pipeline(*steps()).fit(X, y)
    np.testing.assert_array_equal(bridge.from_sklearn(pipeline).predict(X), pipeline.predict(X))


def test_a_pipeline_that_meets_nan_before_an_imputer_refuses_it():
    X, y = _with_missing()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        np.nan_to_num(X), y)
    with pytest.raises(ValueError, match="contains NaN"):
        bridge.from_sklearn(pipeline).predict(X)


@pytest.mark.parametrize("forest", [
    lambda: RandomForestClassifier(random_state=0),
    lambda: GradientBoostingClassifier(n_estimators=20, random_state=0),
], ids=["random-forest", "gradient-boosting"])
def test_float64_graphs_round_tree_inputs_to_float32_as_scikit_learn(forest, digits):
    # scikit-learn's trees compare float32(X); compared in double, 489 of 1,797 rows of
    # scaled digits went the other way at some threshold, in bridge and in onnxruntime
    X, y = digits
    X = X.astype(np.float64)
    pipeline = make_pipeline(StandardScaler(), forest()).fit(X, y)
    expected = pipeline.predict_proba(X)
    model = bridge.from_sklearn(pipeline, dtype=np.float64)
    assert np.abs(model.predict_proba(X) - expected).max() < 1e-6
    graph = model.onnx_model if not isinstance(model.onnx_model, dict) else next(
        iter(model.onnx_model.values()))
    assert "Cast" in {n.op_type for n in graph.graph.node}
    if isinstance(pipeline[-1], GradientBoostingClassifier):
        return  # skl2onnx's double graph for it is typed wrong for onnxruntime (its own bug)
    probabilities = run_onnxruntime(graph, {graph.graph.input[0].name: X})[1]
    assert np.abs(probabilities - expected).max() < 1e-6


def test_hist_gradient_boosting_keeps_float64_inputs():
    # HistGradientBoosting compares float64 values: no rounding there
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] + 1e-9 * rng.normal(size=300) > 0).astype(int)
    model_input = X.copy()
    estimator = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(model_input, y)
    model = bridge.from_sklearn(estimator, dtype=np.float64)
    graph = model.onnx_model if not isinstance(model.onnx_model, dict) else next(
        iter(model.onnx_model.values()))
    assert not any(n.name.startswith("bridge_tree_round") for n in graph.graph.node)
    np.testing.assert_array_equal(model.predict(X), estimator.predict(X))
