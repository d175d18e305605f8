"""bridge.doctor: activations, gradients and updates of every layer are recorded for training batches only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bridge import NeuralNetRegressor
from bridge.doctor import NetDoctor
from bridge.helper import SkorchDoctor


class TwoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.first = torch.nn.Linear(3, 4)
        self.second = torch.nn.Linear(4, 1)

    def forward(self, X):
        return self.second(torch.relu(self.first(X)))


@pytest.fixture
def fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    y = X.sum(axis=1, keepdims=True).astype(np.float32)
    net = NeuralNetRegressor(TwoLayers, max_epochs=2, batch_size=16, lr=0.1, verbose=0,
                             train_split=lambda ds, y=None: (torch.utils.data.Subset(ds, range(32)),
                                                             torch.utils.data.Subset(ds, range(32, 40))))
    return NetDoctor(net).fit(X, y), X


def test_records_training_batches_only(fitted):
    doctor, X = fitted
    assert SkorchDoctor is NetDoctor
    assert len(doctor.activation_recs_["module"]) == 4  # 2 epochs x 2 training batches
    first = doctor.activation_recs_["module"][0]
    assert list(first) == ["first", "second"] and first["first"].shape == (16, 4)
    assert doctor.get_param_names()["module"] == ["first.weight", "first.bias", "second.weight", "second.bias"]
    grads = doctor.gradient_recs_["module"][0]
    assert grads["second.weight"].shape == (1, 4) and np.abs(grads["second.weight"]).sum() > 0
    updates = doctor.param_update_recs_["module"]
    assert all(value > 0 for batch in updates for value in batch.values())  # lr 0.1 moves every parameter


def test_hooks_and_callback_removed(fitted):
    doctor, X = fitted
    count = len(doctor.activation_recs_["module"])
    doctor.net.partial_fit(X, X.sum(axis=1, keepdims=True))
    assert len(doctor.activation_recs_["module"]) == count
    assert all(name != "bridge_doctor" for name, _ in doctor.net.callbacks_)


def test_match_fn_matching_nothing_raises():
    net = NeuralNetRegressor(TwoLayers, max_epochs=1, verbose=0)
    with pytest.raises(ValueError, match="match_fn"):
        NetDoctor(net, match_fn=lambda name: False).fit(np.zeros((8, 3), np.float32), np.zeros((8, 1), np.float32))


def test_plots(fitted):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("agg")
    doctor, _ = fitted
    assert doctor.plot_activations().shape == (1, 1)
    assert doctor.plot_param_updates().shape == (1, 1)
    doctor.plot_gradient_over_time("first.weight")
    with pytest.raises(ValueError, match="'nope'"):
        doctor.plot_activations_over_time("nope")
