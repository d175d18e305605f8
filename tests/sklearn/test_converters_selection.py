"""Dense outputs of RandomTreesEmbedding and KBinsDiscretizer(encode="onehot"), and
SequentialFeatureSelector's transform: new data, float64, pipelines, onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomTreesEmbedding
from sklearn.feature_selection import SequentialFeatureSelector
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import KBinsDiscretizer

import bridge
from tests.parity import assert_parity, run_onnxruntime
from tests.sklearn.cases import get_dataset


def _new_rows(width: int, rows: int = 2000) -> np.ndarray:
    return np.random.default_rng(4).normal(scale=2.5, size=(rows, width))


def _in_onnxruntime(model, X):
    graph = model.onnx_model
    return run_onnxruntime(graph, {graph.graph.input[0].name: X.astype(model._input_spec.dtype)})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_trees_embedding_is_its_sparse_output_densified(dtype):
    X = get_dataset("features").X
    embedding = RandomTreesEmbedding(n_estimators=6, max_depth=4, random_state=0).fit(X)
    assert embedding.sparse_output
    new = _new_rows(X.shape[1])
    expected = embedding.transform(new).toarray()
    model = bridge.from_sklearn(embedding, dtype=dtype)
    np.testing.assert_array_equal(model.transform(new), expected)
    np.testing.assert_array_equal(_in_onnxruntime(model, new)[0], expected)
    assert (expected.sum(axis=1) == 6).all()  # one leaf per tree


@pytest.mark.parametrize("sparse_output", [True, False])
def test_random_trees_embedding_feeding_a_classifier(sparse_output):
    # skl2onnx's own parser made the embedding an extra graph output here, whatever
    # sparse_output said
    data = get_dataset("multiclass")
    pipeline = make_pipeline(RandomTreesEmbedding(n_estimators=5, max_depth=3, random_state=0,
                                                  sparse_output=sparse_output),
                             LogisticRegression()).fit(data.X, data.y)
    new = _new_rows(data.X.shape[1])
    model = bridge.from_sklearn(pipeline)
    np.testing.assert_array_equal(model.predict(new), pipeline.predict(new))
    assert_parity(model.predict_proba(new), pipeline.predict_proba(new), rtol=0, atol=1e-5,
                  what="predict_proba")


@pytest.mark.parametrize("strategy", ["quantile", "uniform", "kmeans"])
def test_kbins_onehot_outside_the_edges(strategy):
    X = get_dataset("features").X
    bins = KBinsDiscretizer(5, encode="onehot", strategy=strategy, quantile_method="linear",
                            random_state=0).fit(X)
    new = _new_rows(X.shape[1])  # rows beyond the first and last edges too
    expected = bins.transform(new).toarray()
    model = bridge.from_sklearn(bins)
    np.testing.assert_array_equal(model.transform(new), expected)
    np.testing.assert_array_equal(_in_onnxruntime(model, new)[0], expected)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_sequential_selection_takes_the_selected_columns(direction):
    data = get_dataset("multiclass")
    selector = SequentialFeatureSelector(LogisticRegression(), n_features_to_select=2,
                                         direction=direction, cv=2).fit(data.X, data.y)
    new = _new_rows(data.X.shape[1])
    model = bridge.from_sklearn(selector, dtype=np.float64)
    np.testing.assert_array_equal(model.transform(new), selector.transform(new))
    assert {n.op_type for n in model.onnx_model.graph.node} == {"Gather"}
    np.testing.assert_array_equal(_in_onnxruntime(model, new)[0], selector.transform(new))


def test_sequential_selection_in_a_pipeline():
    data = get_dataset("multiclass")
    pipeline = make_pipeline(
        SequentialFeatureSelector(LogisticRegression(), n_features_to_select=3, cv=2),
        LogisticRegression()).fit(data.X, data.y)
    new = _new_rows(data.X.shape[1])
    model = bridge.from_sklearn(pipeline)
    np.testing.assert_array_equal(model.predict(new), pipeline.predict(new))
    assert_parity(model.predict_proba(new), pipeline.predict_proba(new), rtol=0, atol=1e-5,
                  what="predict_proba")
