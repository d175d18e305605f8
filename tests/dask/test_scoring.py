"""Converted models and nets score Dask arrays and DataFrames on a real LocalCluster with worker
processes: the same results as in memory, lazily, the model loaded at most once per worker."""

from __future__ import annotations

import os
import pickle
import signal
import time

import numpy as np
import pytest
import torch
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

import bridge
import bridge.dask
from bridge import NeuralNetClassifier
from bridge.dask import ModelPayload, load_counts
from bridge.dask.scoring import model_key
from bridge.errors import ChunkingError
from tests.dask.conftest import TIMEOUT

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

#: Uneven row chunks: a long one, an empty one, a short last one.
ROW_CHUNKS = (150, 300, 0, 149, 1)


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(600, 6, n_informative=4, n_classes=3, random_state=0)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def models(data):
    X, y = data
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    net = NeuralNetClassifier(module, criterion=torch.nn.CrossEntropyLoss, max_epochs=3,
                              verbose=0, train_split=None).fit(X, y)
    return {
        "forest": bridge.from_sklearn(RandomForestClassifier(8, max_depth=5,
                                                             random_state=0).fit(X, y)),
        "svc": bridge.from_sklearn(SVC(probability=True, random_state=0).fit(X, y)),
        "net": net,
    }


def _compute(client, collection):
    return client.compute(collection).result(timeout=TIMEOUT)


def _tokens(collection) -> set[str]:
    """The tokens of the model payloads a collection's graph carries."""
    prefix = "bridge-model-"
    names = [key[0] if isinstance(key, tuple) else key
             for key in dict(collection.__dask_graph__())]
    return {name[len(prefix):] for name in names if name.startswith(prefix)}


def _assert_loaded_at_most_once(client, tokens: set[str]) -> None:
    """No worker process has unpickled any of these payloads more than once."""
    assert tokens
    counts = client.run(load_counts)
    for worker, loads in counts.items():
        for token in tokens:
            assert loads.get(token, 0) <= 1, (worker, token, loads)


def _methods(name):
    return {"forest": ("predict", "predict_proba"),
            "svc": ("predict", "predict_proba", "decision_function"),
            "net": ("predict", "predict_proba")}[name]


@pytest.mark.parametrize("name", ["forest", "svc", "net"])
def test_arrays_with_uneven_chunks_score_as_in_memory(client, data, models, name):
    X = data[0]
    model = models[name]
    dX = da.from_array(X, chunks=(ROW_CHUNKS, 6))
    tokens = set()
    for method in _methods(name):
        lazy = getattr(model, method)(dX)
        tokens |= _tokens(lazy)
        expected = getattr(model, method)(X)
        assert isinstance(lazy, da.Array) and lazy.chunks[0] == ROW_CHUNKS
        assert lazy.dtype == expected.dtype and lazy.shape == expected.shape
        result = _compute(client, lazy)
        np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-6, err_msg=method)
    _assert_loaded_at_most_once(client, tokens)


@pytest.mark.parametrize("name", ["forest", "net"])
def test_dataframes_with_uneven_and_empty_partitions_score_as_in_memory(client, data, models,
                                                                        name):
    X = data[0]
    model = models[name]
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    frame.index = frame.index * 10  # results keep the partition's index
    ddf = dd.from_pandas(frame, npartitions=4)
    ddf = ddf[ddf.f0 < 1.5]  # uneven partitions of unknown length, some rows dropped
    ddf = dd.concat([ddf, ddf.head(0, compute=False)])  # plus one empty partition
    kept = frame[frame.f0 < 1.5]
    labels = model.predict(ddf)
    assert isinstance(labels, dd.Series) and labels.name == "predict"
    computed = _compute(client, labels)
    pd.testing.assert_index_equal(computed.index, kept.index)
    np.testing.assert_array_equal(computed.to_numpy(), model.predict(kept.to_numpy()))
    lazy_probabilities = model.predict_proba(ddf)
    probabilities = _compute(client, lazy_probabilities)
    assert list(probabilities.columns) == [0, 1, 2]
    np.testing.assert_allclose(probabilities.to_numpy(), model.predict_proba(kept.to_numpy()),
                               rtol=1e-6, atol=1e-6)
    _assert_loaded_at_most_once(client, _tokens(labels) | _tokens(lazy_probabilities))


def test_a_pipeline_with_text_columns_scores_a_dataframe(client):
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"city": rng.choice(["paris", "rome", "oslo"], 400),
                          "x": rng.normal(size=400), "y": rng.normal(size=400)})
    target = ((frame.x + (frame.city == "rome")) > 0.3).astype(int)
    columns = ColumnTransformer([("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                                 ("numbers", StandardScaler(), ["x", "y"])])
    estimator = make_pipeline(columns, LogisticRegression()).fit(frame, target)
    model = bridge.from_sklearn(estimator)
    unseen = frame.copy()
    unseen.loc[:9, "city"] = "tokyo"  # unknown text: as in memory (one-hot of zeros)
    ddf = dd.from_pandas(unseen, npartitions=3)
    labels = _compute(client, model.predict(ddf))
    np.testing.assert_array_equal(labels.to_numpy(), estimator.predict(unseen))
    probabilities = _compute(client, model.predict_proba(ddf))
    np.testing.assert_allclose(probabilities.to_numpy(), estimator.predict_proba(unseen),
                               atol=1e-5)
    with pytest.raises(ValueError) as in_memory:  # the column checks are the in-memory ones
        model.predict(unseen.drop(columns="y"))
    with pytest.raises(ValueError) as lazily:
        model.predict(ddf.drop(columns="y"))
    assert str(lazily.value) == str(in_memory.value)


def _explode():
    raise AssertionError("X was computed")


def test_nothing_is_computed_and_the_model_is_one_key(data, models):
    X = dask.delayed(_explode)()
    dX = da.from_delayed(X, shape=(40, 6), dtype=np.float32)
    model = models["svc"]
    lazy = model.predict_proba(dX)  # would raise if X were computed
    graph = dict(lazy.__dask_graph__())
    payload = ModelPayload(model)
    assert [key for key in graph if "bridge-model" in str(key)] == [model_key(payload)]
    head = payload.data[:256]
    embedded = [key for key, task in graph.items()
                if key != model_key(payload) and head in pickle.dumps(task)]
    assert embedded == []
    assert len(payload) < len(pickle.dumps(model))  # compact: less than the model's pickle
    frame_result = models["net"].predict(dd.from_dask_array(dX))
    assert isinstance(frame_result, dd.Series)


def test_a_killed_worker_loses_and_duplicates_no_rows(client, data, models):
    X = np.tile(data[0], (30, 1))
    model = models["svc"]
    expected = model.predict_proba(X)
    lazy = model.predict_proba(da.from_array(X, chunks=(250, 6)))  # 72 tasks
    persisted = client.persist(lazy)
    futures = distributed.futures_of(persisted)
    deadline = time.monotonic() + TIMEOUT
    while sum(f.done() for f in futures) < 2:  # the computation has started
        assert time.monotonic() < deadline, "no block finished in time"
        time.sleep(0.05)
    assert sum(f.done() for f in futures) < len(futures), "finished before the kill"
    pid = next(iter(client.run(os.getpid).values()))
    os.kill(pid, signal.SIGKILL)
    result = _compute(client, persisted)
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-6)
    client.wait_for_workers(2, timeout=TIMEOUT)
    _assert_loaded_at_most_once(client, _tokens(lazy))


def test_bad_collections_are_refused_with_the_reason(data, models):
    X = data[0]
    model = models["forest"]
    with pytest.raises(ChunkingError, match=r"chunked along its columns .*rechunk\(\{1: -1\}\)"):
        model.predict(da.from_array(X, chunks=(100, 3)))
    unknown = da.from_array(X, chunks=(100, 6))
    unknown._chunks = (unknown.chunks[0], (float("nan"),))
    with pytest.raises(ChunkingError, match="unknown number of columns"):
        model.predict(unknown)
    with pytest.raises(ChunkingError, match="1 dimension"):
        model.predict(da.from_array(X[:, 0], chunks=100))
    with pytest.raises(ChunkingError, match="dtype object"):
        model.predict(da.from_array(X.astype(object), chunks=(100, 6)))
    with pytest.raises(TypeError, match="dask.array.Array or a dask.dataframe.DataFrame"):
        model.predict(dd.from_pandas(pd.Series(X[:, 0]), npartitions=2))
    with pytest.raises(ValueError, match="6 features"):
        model.predict(da.from_array(X[:, :5], chunks=(100, 5)))
    with pytest.raises(AttributeError):
        models["forest"].decision_function(da.from_array(X, chunks=(100, 6)))
    with pytest.raises(RuntimeError, match="gpu7"):
        bridge.dask.score(model, da.from_array(X, chunks=(100, 6)), device="gpu7")


@pytest.mark.cuda
def test_a_worker_with_a_gpu_rebuilds_the_model_there(data, models):
    """``device="auto"``: where the process sees CUDA, the rebuilt model and net run on it."""
    X = data[0][:50]
    for name in ("svc", "net"):
        rebuilt = ModelPayload(models[name]).model("auto")
        device = rebuilt._device() if name == "svc" else next(rebuilt.module_.parameters()).device
        assert device.type == "cuda", name
        np.testing.assert_allclose(rebuilt.predict_proba(X), models[name].predict_proba(X),
                                   rtol=1e-4, atol=1e-5)
