"""Hyper-parameter searches over nets under ``joblib.parallel_backend("dask")`` on a real
LocalCluster: the fits run in the worker processes, and nets pickle small."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_val_score

from bridge import NeuralNetClassifier, NeuralNetRegressor
from tests.dask.conftest import TIMEOUT

distributed = pytest.importorskip("distributed")


def _classifier(**kwargs):
    module = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    return NeuralNetClassifier(module, criterion=torch.nn.CrossEntropyLoss, max_epochs=5,
                               lr=0.1, batch_size=16, verbose=0, train_split=None, **kwargs)


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(240, 5, n_informative=3, random_state=0)
    return X.astype(np.float32), y


def _fit_tasks(stream) -> int:
    """How many joblib batches ran on the workers during ``stream``."""
    return sum(1 for task in stream.data if "batch_of" in task["key"] or "fit" in task["key"])


def test_grid_search_runs_its_fits_on_the_workers(client, data):
    X, y = data
    search = GridSearchCV(_classifier(), {"lr": [0.05, 0.2], "max_epochs": [3, 6]}, cv=2,
                          error_score="raise")
    with distributed.get_task_stream(client) as stream, joblib.parallel_backend(
            "dask", wait_for_workers_timeout=TIMEOUT):
        search.fit(X, y)
    assert _fit_tasks(stream) >= 1, [task["key"] for task in stream.data][:10]
    assert len(search.cv_results_["mean_test_score"]) == 4
    assert search.best_score_ > 0.6
    assert search.best_estimator_.predict(X).shape == (240,)


def test_randomized_search_and_cross_val_score(client, data):
    X, y = data
    with joblib.parallel_backend("dask", wait_for_workers_timeout=TIMEOUT):
        search = RandomizedSearchCV(_classifier(), {"lr": [0.01, 0.05, 0.1, 0.2]}, n_iter=3,
                                    cv=2, random_state=0, error_score="raise").fit(X, y)
        Xr, yr = make_regression(200, 4, noise=0.1, random_state=0)
        yr = yr / yr.std()
        regressor = NeuralNetRegressor(
            torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)),
            max_epochs=10, lr=0.05, batch_size=16, verbose=0, train_split=None)
        scores = cross_val_score(regressor, Xr.astype(np.float32),
                                 yr.astype(np.float32), cv=3, error_score="raise")
    assert len(search.cv_results_["params"]) == 3
    assert scores.shape == (3,) and np.all(scores > 0.5), scores  # R^2


def test_nets_pickle_small(data):
    X, y = data
    unfitted = _classifier()
    assert len(pickle.dumps(unfitted)) < 8_000
    fitted = _classifier().fit(X, y)
    parameters = sum(p.numel() * p.element_size() for p in fitted.module_.parameters())
    size = len(pickle.dumps(fitted))
    assert size < 3 * parameters + 40_000, (size, parameters)  # weights, SGD state, history


def _load_and_predict(blob: bytes, X: np.ndarray) -> tuple[str, np.ndarray]:
    """Runs on a worker: unpickle a net saved with device='cuda' where there is no GPU."""
    import warnings

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        net = pickle.loads(blob)
    return str(net.device), net.predict(X)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a worker without CUDA")
def test_a_net_saved_for_cuda_loads_on_a_cpu_worker(client, data):
    X, y = data
    net = _classifier().fit(X, y)
    expected = net.predict(X)
    net.device = "cuda"  # what a net trained on a GPU records in its pickle
    future = client.submit(_load_and_predict, pickle.dumps(net), X, pure=False)
    device, predicted = future.result(timeout=TIMEOUT)
    assert device == "cpu"
    np.testing.assert_array_equal(predicted, expected)
