"""Shared data and modules of the net tests: small offline data sets (iris, digits), seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_iris
from sklearn.preprocessing import StandardScaler


class IrisMLP(torch.nn.Module):
    """A classifier MLP returning probabilities (for the default NLLLoss)."""

    def __init__(self, num_units: int = 16, n_in: int = 4, n_classes: int = 3):
        super().__init__()
        self.dense = torch.nn.Linear(n_in, num_units)
        self.output = torch.nn.Linear(num_units, n_classes)

    def forward(self, X):
        return torch.softmax(self.output(torch.relu(self.dense(X))), dim=-1)


class LogitMLP(torch.nn.Module):
    """An MLP returning logits (for CrossEntropyLoss, MSELoss or BCEWithLogitsLoss)."""

    def __init__(self, n_in: int = 4, n_out: int = 3, num_units: int = 16):
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(n_in, num_units), torch.nn.ReLU(),
                                          torch.nn.Linear(num_units, n_out))

    def forward(self, X):
        return self.layers(X)


class DictInputModule(torch.nn.Module):
    """Takes two named inputs, as a dict X is passed to forward as keyword arguments."""

    def __init__(self, n_classes: int = 3):
        super().__init__()
        self.a = torch.nn.Linear(2, 8)
        self.b = torch.nn.Linear(2, 8)
        self.output = torch.nn.Linear(16, n_classes)

    def forward(self, first, second):
        hidden = torch.cat([torch.relu(self.a(first)), torch.relu(self.b(second))], dim=1)
        return torch.softmax(self.output(hidden), dim=-1)


@pytest.fixture(scope="session")
def iris_data():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y.astype(np.int64)


@pytest.fixture
def iris(iris_data):
    X, y = iris_data
    return X.copy(), y.copy()


@pytest.fixture(scope="session")
def digits_data():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y.astype(np.int64)


@pytest.fixture
def digits(digits_data):
    X, y = digits_data
    return X.copy(), y.copy()


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models run fastest on one thread (and far faster on a loaded 2-core machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
