"""Freezer, Unfreezer, Initializer and ParamMapper on a real net: which parameters change,
and when."""

from __future__ import annotations

import functools

import pytest
import torch

from bridge import NeuralNetClassifier
from bridge.callbacks.parameters import (
    Freezer,
    Initializer,
    ParamMapper,
    Unfreezer,
    freeze_parameter,
    unfreeze_parameter,
)
from tests.net.callbacks.conftest import MLP, ParamSnapshots


def fit(iris, callbacks, max_epochs=3, **kwargs):
    X, y = iris
    snapshots = ParamSnapshots()
    params = dict(lr=0.1, batch_size=32, max_epochs=max_epochs, verbose=0, train_split=None)
    params.update(kwargs)
    net = NeuralNetClassifier(MLP, callbacks=[*callbacks, ("snap", snapshots)], **params)
    net.fit(X, y)
    return net, snapshots.snapshots_


def changed(states, key, epoch):
    """Whether parameter ``key`` changed during (1-based) ``epoch``."""
    return not torch.equal(states[epoch - 1][key], states[epoch][key])


@pytest.mark.parametrize(
    "patterns",
    ["dense0.*", ["dense0.weight", "dense0.b*"], lambda name: name.startswith("dense0")],
)
def test_freezer_keeps_matching_parameters(iris, patterns):
    net, states = fit(iris, [Freezer(patterns)])
    for epoch in (1, 2, 3):
        assert not changed(states, "dense0.weight", epoch)
        assert not changed(states, "dense0.bias", epoch)
        assert changed(states, "output.weight", epoch)
    assert not net.module_.dense0.weight.requires_grad
    assert net.module_.output.weight.requires_grad


def test_patterns_matching_nothing_warn(iris):
    with pytest.warns(UserWarning, match=r"match none of the net's learnable parameters \(dense0"):
        _, states = fit(iris, [Freezer("dense_0.*")], max_epochs=1)
    assert changed(states, "dense0.weight", 1)


def test_unfreezer_at_epoch(iris):
    _, states = fit(iris, [Freezer("dense0.*"), Unfreezer("dense0.*", at=3)], max_epochs=4)
    assert [changed(states, "dense0.weight", e) for e in (1, 2, 3, 4)] == [False, False, True, True]


def test_freezer_at_callable(iris):
    _, states = fit(iris, [Freezer("output.*", at=lambda net: len(net.history) >= 2)])
    assert [changed(states, "output.bias", e) for e in (1, 2, 3)] == [True, False, False]


def test_initializer(iris):
    constant = functools.partial(torch.nn.init.constant_, val=0.25)
    net, states = fit(iris, [Initializer("output.weight", fn=constant)], max_epochs=1, lr=0.0)
    assert torch.all(net.module_.output.weight == 0.25)
    assert torch.equal(states[1]["dense0.weight"], states[0]["dense0.weight"])


def test_param_mapper_schedule(iris):
    def every_other_epoch(net):
        return freeze_parameter if len(net.history) % 2 else unfreeze_parameter

    _, states = fit(iris, [ParamMapper("dense0.weight", schedule=every_other_epoch)], max_epochs=4)
    assert [changed(states, "dense0.weight", e) for e in (1, 2, 3, 4)] == [False, True, False, True]


@pytest.mark.parametrize("at", [0, -1, 1.5, True])
def test_invalid_at(at):
    with pytest.raises(ValueError, match="at="):
        Freezer("*", at=at).initialize()


def test_invalid_pattern():
    with pytest.raises(ValueError, match="pattern"):
        Freezer(["dense0.*", 3]).initialize()


def test_get_params_roundtrip():
    freezer = Freezer("dense0.*", at=2)
    params = freezer.get_params()
    assert params["patterns"] == "dense0.*" and params["at"] == 2
    freezer.initialize()
    assert freezer.get_params()["patterns"] == "dense0.*"  # initialize does not rewrite params


def test_freezing_holds_in_a_resumed_run_but_initializing_does_not_repeat(iris):
    X, y = iris
    constant = functools.partial(torch.nn.init.constant_, val=0.25)
    net, _ = fit(iris, [Freezer("dense0.*"), Initializer("output.bias", fn=constant)], max_epochs=2)
    net.module_.dense0.weight.requires_grad_(True)  # as after loading a checkpoint into a new net
    with torch.no_grad():
        net.module_.output.bias.fill_(-1.0)
    frozen = net.module_.dense0.weight.detach().clone()
    net.partial_fit(X, y)  # epoch 3: past both `at`s
    assert not net.module_.dense0.weight.requires_grad
    assert torch.equal(net.module_.dense0.weight, frozen)
    assert not torch.any(net.module_.output.bias == 0.25)


def test_patterns_match_names_of_a_compiled_module():
    """torch.compile prefixes parameter names with '_orig_mod.'; patterns ignore the prefix."""
    params = [("_orig_mod.dense0.weight", 1), ("_orig_mod.output.weight", 2), ("dense0.bias", 3)]
    mapper = ParamMapper(["dense0.*"]).initialize()
    assert [value for _, value in mapper.filter_parameters(mapper.patterns_, params)] == [1, 3]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_freezer_on_cuda(iris):
    net, states = fit(iris, [Freezer("dense0.*")], max_epochs=2, device="cuda")
    assert net.module_.dense0.weight.is_cuda
    assert not changed(states, "dense0.weight", 2) and changed(states, "output.weight", 2)
