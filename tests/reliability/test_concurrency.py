"""Catalogue: converted models and imported modules called from a thread pool give the serial
results, also while other threads unpickle, convert and deep-copy models.

Unpickling an ``fx.GraphModule`` the default way traces its code, which patches
``nn.Module.__call__`` for the whole process and broke calls running in other threads
(``bridge.onnx.pickling`` rebuilds graphs node by node instead); these tests keep it fixed.
"""

from __future__ import annotations

import copy
import io
import pickle
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import bridge

CALLS = 48  # distinct batches per test, each called REPEATS times from the pool
REPEATS = 4
WORKERS = 3


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.rand(200, 5).astype(np.float32)
    return X, (X[:, 0] + X[:, 2] > 1).astype(np.int64)


@pytest.fixture(scope="module")
def converted(data):
    X, y = data
    return bridge.from_sklearn(make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y))


@pytest.fixture(scope="module")
def onnx_bytes():
    torch.manual_seed(0)
    layers = [torch.nn.Sequential(torch.nn.Linear(5, 5), torch.nn.Tanh()) for _ in range(12)]
    mlp = torch.nn.Sequential(*layers, torch.nn.Linear(5, 3))  # deep: a long unpickling
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(mlp, (torch.randn(2, 5),), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    return buffer.getvalue()


def _batches(X):
    return [X[(7 * i) % 150:(7 * i) % 150 + 10 + i % 40] for i in range(CALLS)]


def _disturb(kind: int, converted, imported, data):
    """One of the things other threads do meanwhile; returns nothing worth checking here."""
    X, y = data
    if kind == 0:
        pickle.loads(pickle.dumps(imported))
    elif kind == 1:
        pickle.loads(pickle.dumps(converted))
    elif kind == 2:
        bridge.from_sklearn(RandomForestClassifier(n_estimators=3, max_depth=3,
                                                   random_state=0).fit(X, y))
    else:
        copy.deepcopy(imported)


def _run_concurrently(call, batches, converted, imported, data, disturb=None):
    """``call`` on every batch from a pool, while two threads keep unpickling, converting
    and copying models until the calls are done (each does every kind at least once).
    ``disturb(kind)`` for kinds 0-3 replaces what they do (the nets' test passes its own)."""
    done = threading.Event()
    disturb = disturb or (lambda kind: _disturb(kind, converted, imported, data))

    def disturber(start: int) -> int:
        rounds = 0
        while not done.is_set() or rounds < 4:
            disturb((start + rounds) % 4)
            rounds += 1
        return rounds

    with ThreadPoolExecutor(WORKERS + 2) as pool:
        disturbers = [pool.submit(disturber, start) for start in (0, 2)]
        try:
            results = list(pool.map(call, batches * REPEATS))
        finally:
            done.set()
        for future in disturbers:
            future.result()  # a disturber that failed fails the test too
    return results[:len(batches)], results


def test_converted_model_in_a_thread_pool_matches_serial_calls(data, converted, onnx_bytes):
    X, _ = data
    batches = _batches(X)
    serial = [converted.predict_proba(b) for b in batches]
    _, parallel = _run_concurrently(converted.predict_proba, batches, converted,
                                    bridge.from_onnx(onnx_bytes), data)
    for got, expected in zip(parallel, serial * REPEATS):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_imported_module_in_a_thread_pool_matches_serial_calls(data, converted, onnx_bytes):
    X, _ = data
    module = bridge.from_onnx(onnx_bytes)
    batches = [torch.from_numpy(b) for b in _batches(X)]

    def call(batch):
        with torch.no_grad():
            return module(batch)

    serial = [call(b) for b in batches]
    _, parallel = _run_concurrently(call, batches, converted, module, data)
    for got, expected in zip(parallel, serial * REPEATS):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def test_modules_unpickled_while_others_run_keep_working(data, onnx_bytes):
    X, _ = data
    module = bridge.from_onnx(onnx_bytes)
    payload = pickle.dumps(module)
    x = torch.from_numpy(X[:16])
    with torch.no_grad():
        expected = module(x)

    def unpickle_and_call(_):
        loaded = pickle.loads(payload)
        with torch.no_grad():
            return loaded(x)

    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(unpickle_and_call, range(16)))
    for got in results:
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
