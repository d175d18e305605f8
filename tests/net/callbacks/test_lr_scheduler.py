"""LRScheduler and WarmRestartLR on a real net: learning rates per epoch and per batch as
recorded in the history, ReduceLROnPlateau, resuming a schedule, and routed parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from torch.optim.lr_scheduler import CyclicLR, StepLR

from bridge import NeuralNetClassifier
from bridge.callbacks.checkpoint import LoadInitState, TrainEndCheckpoint
from bridge.callbacks.lr_scheduler import LRScheduler, WarmRestartLR
from tests.net.callbacks.conftest import MLP, ScriptedScore


def make_net(callbacks, max_epochs=4, lr=1.0, **kwargs):
    params = dict(batch_size=50, verbose=0, train_split=None)  # iris: 3 batches per epoch
    params.update(kwargs)
    return NeuralNetClassifier(MLP, lr=lr, max_epochs=max_epochs, callbacks=callbacks, **params)


@pytest.mark.parametrize("policy", ["StepLR", StepLR])
def test_step_lr_per_epoch(iris, policy):
    net = make_net([LRScheduler(policy, step_size=2, gamma=0.1)], max_epochs=5).fit(*iris)
    np.testing.assert_allclose(net.history[:, "event_lr"], [1.0, 1.0, 0.1, 0.1, 0.01])
    np.testing.assert_allclose(net.optimizer_.param_groups[0]["lr"], 0.01)  # for epoch 6


def test_step_lr_per_batch(iris):
    sched = LRScheduler("StepLR", step_size=2, gamma=0.5, step_every="batch")
    net = make_net([sched], max_epochs=2).fit(*iris)
    lrs = net.history[:, "batches", :, "event_lr"]
    assert lrs == [[1.0, 1.0, 0.5], [0.5, 0.25, 0.25]]
    assert sched.batch_idx_ == 6
    assert "event_lr" not in net.history[-1]


def test_cyclic_lr_per_batch_matches_simulate(iris):
    sched = LRScheduler(
        CyclicLR, base_lr=0.01, max_lr=0.1, step_size_up=2, cycle_momentum=False, step_every="batch"
    )
    net = make_net([sched], max_epochs=3, lr=0.05).fit(*iris)
    recorded = [lr for epoch in net.history[:, "batches", :, "event_lr"] for lr in epoch]
    np.testing.assert_allclose(recorded, sched.simulate(9, initial_lr=0.05))
    np.testing.assert_allclose(recorded[:5], [0.01, 0.055, 0.1, 0.055, 0.01])


def test_reduce_on_plateau_with_monitor(iris):
    scores = [1.0, 0.5, 0.6, 0.7, 0.8, 0.9]
    sched = LRScheduler("ReduceLROnPlateau", monitor="score", patience=1, factor=0.5)
    net = make_net([ScriptedScore(scores), sched], max_epochs=6).fit(*iris)
    # best at epoch 2; epochs 3 and 4 are bad -> halve after epoch 4, again after epoch 6
    np.testing.assert_allclose(net.history[:, "event_lr"], [1.0, 1.0, 1.0, 1.0, 0.5, 0.5])


def test_reduce_on_plateau_with_callable_monitor(iris):
    sched = LRScheduler("ReduceLROnPlateau", monitor=lambda net: 1.0, patience=0, factor=0.1)
    net = make_net([sched], max_epochs=4).fit(*iris)
    # epoch 1 sets the best score; every later epoch fails to beat it and cuts the rate
    np.testing.assert_allclose(net.history[:, "event_lr"], [1.0, 1.0, 0.1, 0.01])


def test_reduce_on_plateau_missing_monitor(iris):
    sched = LRScheduler("ReduceLROnPlateau", monitor="valid_f1")
    with pytest.raises(ValueError, match="valid_f1"):
        make_net([sched], max_epochs=1).fit(*iris)


def test_warm_restart_lr_schedule():
    sched = LRScheduler("WarmRestartLR", min_lr=0.0, max_lr=1.0, base_period=2, period_mult=2)
    lrs = sched.simulate(10, initial_lr=1.0)
    # first period: t = 0, 1, 2 of P = 2; then t = 0..4 of P = 4
    cosine = [
        (1 + math.cos(math.pi * t / p)) / 2
        for t, p in [(0, 2), (1, 2), (2, 2), (0, 4), (1, 4), (2, 4), (3, 4), (4, 4), (0, 8), (1, 8)]
    ]
    np.testing.assert_allclose(lrs, cosine, atol=1e-12)


def test_warm_restart_lr_per_group_bounds():
    params = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
    optimizer = torch.optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=1.0)
    sched = WarmRestartLR(optimizer, min_lr=[0.0, 0.1], max_lr=[1.0, 0.5], base_period=1)
    assert [g["lr"] for g in optimizer.param_groups] == [1.0, 0.5]
    with pytest.raises(ValueError, match="parameter groups"):
        WarmRestartLR(optimizer, min_lr=[0.0, 0.1, 0.2])
    with pytest.raises(ValueError, match="base_period"):
        WarmRestartLR(optimizer, base_period=0)
    assert sched.last_epoch == 0


def test_default_policy_on_a_net(iris):
    net = make_net([LRScheduler()], max_epochs=3, lr=0.05).fit(*iris)
    expected = LRScheduler().simulate(3, initial_lr=0.05)
    np.testing.assert_allclose(net.history[:, "event_lr"], expected)


def test_invalid_policy_and_step_every():
    with pytest.raises(ValueError, match="NoSuchLR"):
        LRScheduler("NoSuchLR").initialize()
    with pytest.raises(ValueError, match="step_every"):
        LRScheduler("StepLR", step_size=1, step_every="iteration").initialize()


def test_policy_kwargs_are_parameters():
    sched = LRScheduler("StepLR", step_size=3, gamma=0.5)
    assert sched.get_params()["gamma"] == 0.5
    assert sched.kwargs == {"step_size": 3, "gamma": 0.5}
    copy = clone(sched)
    assert copy.kwargs == {"step_size": 3, "gamma": 0.5}
    sched.initialize()
    assert sched.kwargs == {"step_size": 3, "gamma": 0.5}  # fitted state is not a kwarg


def test_routed_params_set_params_and_grid_search(iris):
    X, y = iris
    net = make_net([("sched", LRScheduler("StepLR", step_size=1, gamma=0.5))], max_epochs=2)
    net.set_params(callbacks__sched__gamma=0.1)
    net.fit(X, y)
    np.testing.assert_allclose(net.history[:, "event_lr"], [1.0, 0.1])

    net.set_params(lr=0.1)
    search = GridSearchCV(net, {"callbacks__sched__gamma": [0.0, 1.0]}, cv=2, refit=True)
    search.fit(X, y)
    assert search.best_params_ == {"callbacks__sched__gamma": 1.0}  # gamma=0 stops learning
    np.testing.assert_allclose(search.best_estimator_.history[:, "event_lr"], [0.1, 0.1])


@pytest.mark.parametrize("order", ["scheduler_first", "scheduler_last"])
@pytest.mark.parametrize("step_every", ["epoch", "batch"])
def test_resumed_schedule_matches_uninterrupted(tmp_path, iris, order, step_every):
    def run(folder, epochs):
        cp = TrainEndCheckpoint(dirname=str(folder))
        sched = LRScheduler("StepLR", step_size=2, gamma=0.1, step_every=step_every)
        callbacks = [sched, cp, LoadInitState(cp)]
        if order == "scheduler_last":
            callbacks = callbacks[::-1]
        return make_net(callbacks, max_epochs=epochs).fit(*iris)

    def lrs(net):
        if step_every == "epoch":
            return net.history[:, "event_lr"]
        return [lr for epoch in net.history[:, "batches", :, "event_lr"] for lr in epoch]

    uninterrupted = run(tmp_path / "full", 4)
    run(tmp_path / "split", 2)
    resumed = run(tmp_path / "split", 2)
    assert resumed.history[:, "epoch"] == [1, 2, 3, 4]
    np.testing.assert_allclose(lrs(resumed), lrs(uninterrupted))


def test_resumed_plateau_replays_scores(tmp_path, iris):
    scores = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]

    def run(folder, epochs):
        cp = TrainEndCheckpoint(dirname=str(folder))
        sched = LRScheduler("ReduceLROnPlateau", monitor="score", patience=1, factor=0.5)
        return make_net(
            [ScriptedScore(scores), sched, cp, LoadInitState(cp)], max_epochs=epochs
        ).fit(*iris)

    uninterrupted = run(tmp_path / "full", 6)
    run(tmp_path / "split", 3)
    resumed = run(tmp_path / "split", 3)
    np.testing.assert_allclose(resumed.history[:, "event_lr"], uninterrupted.history[:, "event_lr"])
    np.testing.assert_allclose(
        uninterrupted.history[:, "event_lr"], [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]
    )


def test_partial_fit_continues_the_schedule(iris):
    uninterrupted = make_net([LRScheduler("StepLR", step_size=1, gamma=0.5)], max_epochs=4).fit(
        *iris
    )
    net = make_net([LRScheduler("StepLR", step_size=1, gamma=0.5)], max_epochs=2).fit(*iris)
    net.partial_fit(*iris)
    np.testing.assert_allclose(net.history[:, "event_lr"], uninterrupted.history[:, "event_lr"])
