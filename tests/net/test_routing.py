"""Metadata routing: requested fit parameters reach forward, groups reach the splitter, others raise."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn
import torch
from sklearn.base import clone
from sklearn.model_selection import GroupKFold

from bridge import NeuralNetClassifier
from bridge.dataset import ValidSplit


class Recording(torch.nn.Module):
    seen: list = []

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, X, **kwargs):
        Recording.seen.append(sorted(kwargs))
        return torch.softmax(self.linear(X), dim=-1)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(40, 4)).astype(np.float32), np.arange(40) % 2


@pytest.fixture
def routing():
    Recording.seen = []
    with sklearn.config_context(enable_metadata_routing=True):
        yield


def _net(**kwargs):
    return NeuralNetClassifier(Recording, max_epochs=1, batch_size=20, verbose=0, **kwargs)


def test_requests_need_routing_enabled():
    with pytest.raises(RuntimeError, match="enable_metadata_routing"):
        _net().set_fit_request(foo=True)


def test_requested_parameters_reach_forward(routing, data):
    net = _net(train_split=None).set_fit_request(foo=True)
    net.fit(*data, foo=1)
    assert Recording.seen[-1] == ["foo"]
    net.set_partial_fit_request(bar=True).partial_fit(*data, bar=2)
    assert Recording.seen[-1] == ["bar"]
    assert clone(net).get_metadata_routing().consumes("fit", ["foo"]) == {"foo"}


def test_unrequested_parameters_raise(routing, data):
    with pytest.raises(TypeError, match="unknown"):
        _net(train_split=None).fit(*data, unknown=1)


def test_groups_are_routed_to_the_splitter_only(routing, data):
    groups = np.repeat([0, 1], 20)
    net = _net(train_split=ValidSplit(GroupKFold(2))).fit(*data, groups=groups)
    assert all(seen == [] for seen in Recording.seen)  # forward never sees groups
    assert len(net.history) == 1


def test_without_routing_every_parameter_reaches_forward(data):
    Recording.seen = []
    _net(train_split=None).fit(*data, foo=1)
    assert Recording.seen[-1] == ["foo"]
