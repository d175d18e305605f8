"""bridge.scoring.loss_scoring follows the criterion's reduction; bridge.setter changes optimizers in place."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bridge import NeuralNetRegressor
from bridge.errors import NotFittedError
from bridge.scoring import loss_scoring
from bridge.setter import optimizer_setter
from bridge.toy import make_regressor


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4)).astype(np.float32)
    return X, (X @ np.ones(4, dtype=np.float32)).reshape(-1, 1)


def _net(**kwargs):
    return NeuralNetRegressor(make_regressor(input_units=4), max_epochs=2, batch_size=16, train_split=None,
                              verbose=0, **kwargs)


def test_loss_scoring_matches_the_criterion(data):
    X, y = data
    net = _net().fit(X, y)
    expected = torch.nn.functional.mse_loss(torch.as_tensor(net.predict(X)), torch.as_tensor(y)).item()
    assert loss_scoring(net, X, y) == pytest.approx(expected, rel=1e-5)
    net.set_params(criterion__reduction="sum")
    total = loss_scoring(net, X, y)
    net.set_params(criterion__reduction="none")
    per_row = loss_scoring(net, X, y)
    assert per_row.shape == (50,) and per_row.sum() == pytest.approx(total, rel=1e-4)


def test_loss_scoring_errors(data):
    X, y = data
    with pytest.raises(NotFittedError):
        loss_scoring(_net(), X, y)
    net = _net().fit(X, y)
    with pytest.raises(NotImplementedError, match="sample_weight"):
        loss_scoring(net, X, y, sample_weight=np.ones(50))
    net.set_params(criterion__reduction="bogus")
    with pytest.raises(ValueError, match="'bogus'"):
        loss_scoring(net, X, y)


def test_optimizer_setter_in_place(data):
    net = _net(optimizer__param_groups=[("sequential.0.*", {"lr": 0.5})]).initialize()
    optimizer = net.optimizer_
    optimizer_setter(net, "optimizer__param_groups__1__momentum", 0.3)
    assert [g["momentum"] for g in optimizer.param_groups] == [0, 0.3]
    optimizer_setter(net, "lr", 0.2)
    assert net.lr == 0.2 and [g["lr"] for g in optimizer.param_groups] == [0.2, 0.2]
    assert net.optimizer_ is optimizer  # state kept: the same optimizer object
    with pytest.raises(AttributeError, match="optimizer__param_group__0__lr"):
        optimizer_setter(net, "optimizer__param_group__0__lr", 0.1)
