"""Catalogue: a fitted net called from a thread pool gives the serial results, also while other
threads pickle, unpickle, clone and deep-copy it (``test_concurrency._run_concurrently``)."""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from bridge import NeuralNetClassifier, NeuralNetRegressor
from tests.reliability.test_concurrency import REPEATS, _batches, _run_concurrently


class MLP(torch.nn.Module):
    def __init__(self, n_out: int = 2):
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, n_out))

    def forward(self, X):
        return self.layers(X)


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.rand(200, 5).astype(np.float32)
    return X, (X[:, 0] + X[:, 2] > 1).astype(np.int64)


@pytest.fixture(scope="module")
def classifier(data):
    torch.manual_seed(0)
    return NeuralNetClassifier(MLP, criterion=torch.nn.CrossEntropyLoss, max_epochs=3, train_split=None,
                               verbose=0).fit(*data)


def _net_disturbances(net, data):
    """What other threads do meanwhile: pickle round trips, clone + a short fit, deep copies."""
    X, y = data
    payload = pickle.dumps(net)

    def disturb(kind: int) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == 0:
                pickle.loads(pickle.dumps(net))
            elif kind == 1:
                pickle.loads(payload).predict(X[:7])
            elif kind == 2:
                clone(net).set_params(max_epochs=1).fit(X[:40], y[:40])
            else:
                copy.deepcopy(net)

    return disturb


@pytest.mark.parametrize("method", ["predict_proba", "predict"])
def test_a_fitted_net_in_a_thread_pool_matches_serial_calls(data, classifier, method):
    batches = _batches(data[0])
    call = getattr(classifier, method)
    serial = [call(b) for b in batches]
    _, parallel = _run_concurrently(call, batches, None, None, None,
                                    disturb=_net_disturbances(classifier, data))
    for got, expected in zip(parallel, serial * REPEATS):
        np.testing.assert_array_equal(got, expected)


def test_a_regressor_with_integer_input_in_a_thread_pool(data):
    X, y = data
    X_int = (X * 10).astype(np.int64)  # cast to the module's dtype in each call
    torch.manual_seed(0)
    net = NeuralNetRegressor(MLP, module__n_out=1, max_epochs=2, train_split=None, verbose=0).fit(X_int, y * 1.0)
    batches = _batches(X_int)
    serial = [net.predict(b) for b in batches]
    _, parallel = _run_concurrently(net.predict, batches, None, None, None, disturb=_net_disturbances(net, data))
    for got, expected in zip(parallel, serial * REPEATS):
        np.testing.assert_array_equal(got, expected)
