"""Shared data, modules and helpers of the training-callback tests (small, offline, seeded)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris

from bridge.callbacks.base import Callback


class MLP(torch.nn.Module):
    """A two-layer classifier whose input size is a constructor argument."""

    def __init__(self, input_dim: int = 4, hidden: int = 16, n_classes: int = 3):
        super().__init__()
        self.dense0 = torch.nn.Linear(input_dim, hidden)
        self.output = torch.nn.Linear(hidden, n_classes)

    def forward(self, X):
        return torch.softmax(self.output(torch.relu(self.dense0(X))), dim=-1)


class PretrainedBody(torch.nn.Module):
    """A 'pretrained' feature extractor (fixed seed) with a fresh head, for transfer learning."""

    def __init__(self, n_classes: int = 3):
        super().__init__()
        generator = torch.Generator().manual_seed(1234)
        self.body = torch.nn.Linear(4, 16)
        with torch.no_grad():
            self.body.weight.copy_(torch.randn(16, 4, generator=generator) * 0.5)
            self.body.bias.copy_(torch.randn(16, generator=generator) * 0.1)
        self.head = torch.nn.Linear(16, n_classes)

    def forward(self, X):
        return torch.softmax(self.head(torch.tanh(self.body(X))), dim=-1)


class ScriptedScore(Callback):
    """Write ``scores[epoch - 1]`` under ``name`` at every epoch end (a deterministic monitor)."""

    def __init__(self, scores=(), name="score"):
        self.scores = scores
        self.name = name

    def on_epoch_end(self, net, **kwargs):
        net.history.record(self.name, float(self.scores[len(net.history) - 1]))


class ParamSnapshots(Callback):
    """Copies of the module's state dict: ``snapshots_[0]`` when training begins, then
    ``snapshots_[e]`` at the end of epoch ``e``."""

    def _snapshot(self, net):
        self.snapshots_.append({k: v.detach().clone() for k, v in net.module_.state_dict().items()})

    def on_train_begin(self, net, **kwargs):
        self.snapshots_ = []
        self._snapshot(net)

    def on_epoch_end(self, net, **kwargs):
        self._snapshot(net)


@pytest.fixture
def iris():
    """Standardised iris (150 x 4 float32, 3 classes), shuffled with a fixed seed."""
    X, y = load_iris(return_X_y=True)
    order = np.random.RandomState(0).permutation(len(X))
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)[order]
    return X, y.astype(np.int64)[order]


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
