"""Imported graph modules pickle as nodes and load without fx tracing, so loading in one
thread never disturbs a model called in another (what Dask workers do)."""

from __future__ import annotations

import copy
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC
from torch import fx

import bridge
from bridge.onnx.importer import EDGE_ATTRIBUTES, OnnxGraphModule
from tests.parity import single_node_model


@pytest.fixture(scope="module")
def data():
    return make_classification(300, 5, n_informative=3, random_state=0)


@pytest.fixture(scope="module")
def models(data):
    X, y = data
    return {
        "svc": bridge.from_sklearn(SVC().fit(X, y)),
        "forest": bridge.from_sklearn(RandomForestClassifier(6, max_depth=4,
                                                             random_state=0).fit(X, y)),
        "knn": bridge.from_sklearn(KNeighborsClassifier(3).fit(X, y)),  # Scan subgraphs
    }


@pytest.fixture
def no_tracing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("fx tracing ran while loading a pickle")

    monkeypatch.setattr(fx.Tracer, "trace", refuse)


def _graph_modules(model):
    return [m for m in model.modules() if isinstance(m, OnnxGraphModule)]


@pytest.mark.parametrize("name", ["svc", "forest", "knn"])
def test_a_pickled_model_loads_without_tracing_and_answers_the_same(models, data, name,
                                                                    no_tracing):
    model = models[name]
    loaded = pickle.loads(pickle.dumps(model))
    X = data[0][:40]
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    originals, copies = _graph_modules(model), _graph_modules(loaded)
    assert len(copies) == len(originals) >= 1
    for original, copied in zip(originals, copies):
        assert isinstance(copied, OnnxGraphModule)
        assert copied.code == original.code
        for attribute in EDGE_ATTRIBUTES:
            assert copied.__dict__.get(attribute) == original.__dict__.get(attribute)
        state, copied_state = original.state_dict(), copied.state_dict()
        assert set(state) == set(copied_state)  # lazily built tree tables may differ in order
        for key, tensor in state.items():
            torch.testing.assert_close(copied_state[key], tensor, rtol=0, atol=0, equal_nan=True)


def test_the_input_checks_survive_pickling(models, no_tracing):
    loaded = pickle.loads(pickle.dumps(models["svc"]))
    module = next(iter(loaded.graph_modules.values()))
    with pytest.raises(ValueError, match="graph input 'X' has shape"):
        module(torch.zeros(3, 7))


def test_trainable_parameters_stay_parameters(no_tracing):
    weights = np.arange(6, dtype=np.float32).reshape(3, 2)
    proto = single_node_model("MatMul", {"x": np.ones((4, 3), np.float32)},
                              initializers={"w": weights})
    module = bridge.from_onnx(proto, trainable=True)
    with torch.no_grad():
        next(module.parameters()).add_(1.0)
    loaded = pickle.loads(pickle.dumps(module))
    assert [n for n, _ in loaded.named_parameters()] == [n for n, _ in module.named_parameters()]
    x = torch.randn(4, 3)
    torch.testing.assert_close(loaded(x), module(x))
    copied = copy.deepcopy(module)  # deepcopy still goes through fx's own path
    torch.testing.assert_close(copied(x), module(x))


def test_calls_in_threads_while_other_threads_unpickle(models, data):
    """The Dask worker pattern: one model in use while copies are loaded beside it."""
    X = data[0][:25]
    model = models["svc"]
    blobs = [pickle.dumps(models[name]) for name in ("svc", "forest", "knn")]
    expected = model.predict(X)
    loads_done = threading.Event()
    results: list[np.ndarray] = []

    def call() -> int:
        calls = 0
        while not loads_done.is_set() or calls < 20:
            results.append(model.predict(X))
            calls += 1
        return calls

    def load() -> int:
        for _ in range(8):
            for blob in blobs:
                pickle.loads(blob)
        return 8 * len(blobs)

    with ThreadPoolExecutor(4) as pool:
        callers = [pool.submit(call) for _ in range(2)]
        loaders = [pool.submit(load) for _ in range(2)]
        assert sum(f.result(timeout=120) for f in loaders) == 48
        loads_done.set()
        calls = sum(f.result(timeout=120) for f in callers)
    assert calls == len(results) >= 40
    for result in results:
        np.testing.assert_array_equal(result, expected)
