"""Checkpoint, TrainEndCheckpoint and LoadInitState on a real net: when files are written,
that each save is atomic (a failure leaves the previous checkpoint), and resuming training."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
import torch

from bridge import NeuralNetClassifier
from bridge.callbacks import EpochScoring
from bridge.callbacks.checkpoint import Checkpoint, LoadInitState, TrainEndCheckpoint
from bridge.callbacks.lr_scheduler import LRScheduler
from bridge.callbacks.parameters import Freezer
from tests.net.callbacks.conftest import MLP, ParamSnapshots, PretrainedBody, states_equal


def make_net(callbacks, max_epochs=3, **kwargs):
    params = dict(lr=0.1, batch_size=32, max_epochs=max_epochs, verbose=0, callbacks=callbacks)
    params.update(kwargs)
    return NeuralNetClassifier(MLP, **params)


def read_all(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in os.listdir(folder)}


def test_checkpoint_files_follow_valid_loss_best(tmp_path, iris):
    X, y = iris
    cp = Checkpoint(dirname=str(tmp_path), f_params="params_{last_epoch[epoch]}.pt")
    net = make_net([cp], max_epochs=6).fit(X, y)

    best = net.history[:, "valid_loss_best"]
    assert net.history[:, "event_cp"] == best
    expected = {f"params_{epoch}.pt" for epoch, flag in zip(range(1, 7), best) if flag}
    params_files = {name for name in os.listdir(tmp_path) if name.startswith("params_")}
    assert params_files == expected
    assert {"optimizer.pt", "criterion.pt", "history.json"} <= set(os.listdir(tmp_path))
    # Loading picks the last checkpointed epoch's file through the saved history.
    last = max(epoch for epoch, flag in zip(range(1, 7), best) if flag)
    files = cp.get_formatted_files(net)
    assert files["f_params"] == os.path.join(str(tmp_path), f"params_{last}.pt")


def test_monitor_none_and_callable(tmp_path, iris):
    X, y = iris
    every = Checkpoint(
        monitor=None, dirname=str(tmp_path / "every"), f_params="p{last_epoch[epoch]}.pt"
    )
    second = Checkpoint(
        monitor=lambda net: len(net.history) == 2,
        dirname=str(tmp_path / "second"),
        f_params="p{last_epoch[epoch]}.pt",
        event_name="event_second",
    )
    net = make_net([("every", every), ("second", second)], max_epochs=3).fit(X, y)
    assert sorted(n for n in os.listdir(tmp_path / "every") if n.startswith("p")) == [
        "p1.pt",
        "p2.pt",
        "p3.pt",
    ]
    assert [n for n in os.listdir(tmp_path / "second") if n.startswith("p")] == ["p2.pt"]
    assert net.history[:, "event_second"] == [False, True, False]


def test_load_best_restores_best_epoch(tmp_path, iris):
    X, y = iris
    snapshots = ParamSnapshots()
    cp = Checkpoint(
        monitor=lambda net: len(net.history) == 2, dirname=str(tmp_path), load_best=True
    )
    net = make_net([snapshots, cp], max_epochs=4).fit(X, y)
    assert states_equal(net.module_.state_dict(), snapshots.snapshots_[2])
    assert not states_equal(snapshots.snapshots_[2], snapshots.snapshots_[4])


def test_saved_params_load_with_weights_only(tmp_path, iris):
    X, y = iris
    net = make_net([Checkpoint(monitor=None, dirname=str(tmp_path))], max_epochs=2).fit(X, y)
    state = torch.load(tmp_path / "params.pt", weights_only=True)
    assert states_equal(state, net.module_.state_dict())
    fresh = make_net([], max_epochs=2).initialize()
    fresh.load_params(checkpoint=Checkpoint(dirname=str(tmp_path)))
    np.testing.assert_allclose(fresh.predict_proba(X), net.predict_proba(X), rtol=0, atol=0)
    assert len(fresh.history) == 2


def _failing_save(fail_on_call):
    """A torch.save that writes part of its output and then raises on call ``fail_on_call``."""
    real_save = torch.save
    calls = {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] != fail_on_call:
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer)
        half = buffer.getvalue()[: len(buffer.getvalue()) // 2]
        if isinstance(f, (str, os.PathLike)):
            with open(f, "wb") as handle:
                handle.write(half)
        else:
            f.write(half)
        raise OSError(28, "No space left on device (simulated)")

    return save


@pytest.mark.parametrize("fail_on_call", [1, 2, 3])
def test_failed_save_keeps_previous_checkpoint(tmp_path, iris, monkeypatch, fail_on_call):
    X, y = iris
    cp = Checkpoint(monitor=None, dirname=str(tmp_path), f_pickle="net.pkl")
    net = make_net([cp], max_epochs=1).fit(X, y)
    before = read_all(tmp_path)
    assert set(before) == {"params.pt", "optimizer.pt", "criterion.pt", "history.json", "net.pkl"}

    with torch.no_grad():  # the next save would differ
        net.module_.dense0.weight.add_(1.0)
    monkeypatch.setattr(torch, "save", _failing_save(fail_on_call))
    with pytest.raises(OSError, match="simulated"):
        cp.save_model(net)
    assert read_all(tmp_path) == before  # same names (no stray temp file), same bytes

    monkeypatch.undo()
    cp.save_model(net)
    after = read_all(tmp_path)
    assert set(after) == set(before) and after["params.pt"] != before["params.pt"]


def test_failed_pickle_keeps_previous_checkpoint(tmp_path, iris):
    X, y = iris

    class Unpicklable:
        def __reduce__(self):
            raise pickle.PicklingError("cannot pickle this (simulated)")

    cp = Checkpoint(monitor=None, dirname=str(tmp_path), f_pickle="net.pkl")
    net = make_net([cp], max_epochs=1).fit(X, y)
    before = read_all(tmp_path)
    with torch.no_grad():
        net.module_.dense0.weight.add_(1.0)
    net.unpicklable_ = Unpicklable()
    with pytest.raises(pickle.PicklingError, match="simulated"):
        cp.save_model(net)
    assert read_all(tmp_path) == before


def test_pickle_target_roundtrip(tmp_path, iris):
    X, y = iris
    net = make_net(
        [Checkpoint(monitor=None, dirname=str(tmp_path), f_pickle="net.pkl")], max_epochs=1
    )
    net.fit(X, y)
    with open(tmp_path / "net.pkl", "rb") as handle:  # trusted: written by this test
        loaded = pickle.load(handle)
    np.testing.assert_allclose(loaded.predict_proba(X), net.predict_proba(X))


def test_safetensors(tmp_path, iris):
    X, y = iris
    with pytest.raises(ValueError, match="safetensors"):
        Checkpoint(use_safetensors=True).initialize()
    cp = Checkpoint(monitor=None, dirname=str(tmp_path), use_safetensors=True, f_optimizer=None)
    net = make_net([cp], max_epochs=1).fit(X, y)
    fresh = make_net([]).initialize()
    fresh.load_params(checkpoint=cp, use_safetensors=True)
    np.testing.assert_allclose(fresh.predict_proba(X), net.predict_proba(X))


def test_invalid_arguments(tmp_path, iris):
    with pytest.raises(TypeError, match="f_params"):
        Checkpoint(params="x.pt")
    with pytest.raises(TypeError, match="f_module"):
        Checkpoint(f_module="m.pt")
    with pytest.raises(ValueError, match="dirname"):
        Checkpoint(dirname=str(tmp_path), f_params=io.BytesIO()).initialize()
    X, y = iris
    with pytest.raises(KeyError, match="no_such_key"):
        make_net([Checkpoint(monitor="no_such_key", dirname=str(tmp_path))]).fit(X, y)
    with pytest.warns(UserWarning, match="valid_loss_best"):
        make_net([Checkpoint(monitor="valid_loss", dirname=str(tmp_path))], max_epochs=1).fit(X, y)


def test_extra_targets_are_parameters(tmp_path):
    cp = Checkpoint(f_module="m.pt", f_params=None, dirname=str(tmp_path))
    assert cp.get_params()["f_module"] == "m.pt"
    cp.set_params(f_module="other.pt")
    assert cp.f_module == "other.pt"


def test_train_end_checkpoint(tmp_path, iris):
    X, y = iris
    cp = TrainEndCheckpoint(dirname=str(tmp_path))
    net = make_net([cp], max_epochs=2).fit(X, y)
    assert sorted(os.listdir(tmp_path)) == [
        "train_end_criterion.pt",
        "train_end_history.json",
        "train_end_optimizer.pt",
        "train_end_params.pt",
    ]
    assert "event_cp" not in net.history[-1]
    fresh = make_net([]).initialize()
    fresh.load_params(checkpoint=cp)
    np.testing.assert_allclose(fresh.predict_proba(X), net.predict_proba(X))


def _resumable(tmp_path, max_epochs, checkpoint=None):
    cp = checkpoint or Checkpoint(monitor=None, dirname=str(tmp_path))
    return make_net(
        [cp, LoadInitState(cp)],
        max_epochs=max_epochs,
        optimizer=torch.optim.Adam,
        lr=0.01,
        train_split=None,
    )


def test_load_init_state_resumes_where_training_stopped(tmp_path, iris):
    X, y = iris
    torch.manual_seed(0)
    uninterrupted = _resumable(tmp_path / "full", 6).fit(X, y)

    torch.manual_seed(0)
    first = _resumable(tmp_path / "split", 3).fit(X, y)
    assert len(first.history) == 3
    torch.manual_seed(1)  # a different init: everything must come from the checkpoint
    second = _resumable(tmp_path / "split", 3).fit(X, y)

    assert second.history[:, "epoch"] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(
        second.history[:, "train_loss"], uninterrupted.history[:, "train_loss"], rtol=1e-5
    )
    for key, value in uninterrupted.module_.state_dict().items():
        torch.testing.assert_close(second.module_.state_dict()[key], value, rtol=1e-5, atol=1e-6)


def test_load_init_state_with_train_end_checkpoint(tmp_path, iris):
    X, y = iris
    cp = TrainEndCheckpoint(dirname=str(tmp_path))
    _resumable(tmp_path, 2, checkpoint=cp).fit(X, y)
    resumed = _resumable(tmp_path, 2, checkpoint=TrainEndCheckpoint(dirname=str(tmp_path))).fit(
        X, y
    )
    assert resumed.history[:, "epoch"] == [1, 2, 3, 4]


def test_load_init_state_refuses_incomplete_checkpoint(tmp_path, iris):
    X, y = iris
    _resumable(tmp_path, 1).fit(X, y)
    os.remove(tmp_path / "params.pt")
    with pytest.raises(FileNotFoundError):
        _resumable(tmp_path, 1).fit(X, y)


def test_transfer_learning_workflow(tmp_path, iris):
    """The seeds' workflow: a frozen pretrained body, a StepLR schedule, an accuracy-monitoring
    Checkpoint and LoadInitState continuing from the best epoch in a second run."""
    X, y = iris
    pretrained = PretrainedBody().body.state_dict()

    def run(epochs):
        checkpoint = Checkpoint(dirname=str(tmp_path), monitor="valid_acc_best")
        return NeuralNetClassifier(
            PretrainedBody,
            lr=0.5,
            batch_size=32,
            max_epochs=epochs,
            verbose=0,
            callbacks=[
                Freezer(lambda name: not name.startswith("head")),
                LRScheduler(policy="StepLR", step_size=2, gamma=0.5),
                EpochScoring("accuracy", name="valid_acc", lower_is_better=False),
                checkpoint,
                LoadInitState(checkpoint),
            ],
        ).fit(X, y)

    first = run(4)
    best_epoch = max(e for e, flag in zip(range(1, 5), first.history[:, "valid_acc_best"]) if flag)
    second = run(3)

    assert second.history[:, "epoch"] == list(range(1, best_epoch + 4))
    expected_lrs = [0.5 * 0.5 ** ((epoch - 1) // 2) for epoch in range(1, best_epoch + 4)]
    np.testing.assert_allclose(second.history[:, "event_lr"], expected_lrs)
    assert states_equal(second.module_.body.state_dict(), pretrained)
    assert not second.module_.body.weight.requires_grad
    assert second.module_.head.weight.requires_grad
    assert not states_equal(second.module_.head.state_dict(), first.module_.head.state_dict())


def test_load_init_state_with_epoch_in_file_names(tmp_path, iris):
    """Templated names resolve through the saved history, before it is loaded into a new net."""
    X, y = iris

    def run(epochs):
        cp = Checkpoint(
            dirname=str(tmp_path),
            monitor=lambda net: len(net.history) in (1, 2),
            f_params="params_{last_epoch[epoch]}.pt",
            f_optimizer="optimizer_{last_epoch[epoch]}.pt",
        )
        return make_net([cp, LoadInitState(cp)], max_epochs=epochs, train_split=None).fit(X, y)

    first = run(3)
    assert {"params_1.pt", "params_2.pt"} <= set(os.listdir(tmp_path))
    assert "params_3.pt" not in os.listdir(tmp_path)
    epoch_2 = torch.load(tmp_path / "params_2.pt", weights_only=True)
    assert not states_equal(epoch_2, first.module_.state_dict())

    snapshots = ParamSnapshots()  # after LoadInitState: snapshots_[0] is what epoch 3 starts from
    checkpoint = Checkpoint(
        dirname=str(tmp_path),
        f_params="params_{last_epoch[epoch]}.pt",
        f_optimizer="optimizer_{last_epoch[epoch]}.pt",
    )
    second = make_net([LoadInitState(checkpoint), snapshots], max_epochs=1, train_split=None)
    second.fit(X, y)
    assert second.history[:, "epoch"] == [1, 2, 3]  # the saved history ends at epoch 2
    assert states_equal(snapshots.snapshots_[0], epoch_2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_checkpoint_resumes_on_cpu_and_cuda(tmp_path, iris):
    X, y = iris
    cp = Checkpoint(monitor=None, dirname=str(tmp_path))
    trained = make_net([cp], max_epochs=2, device="cuda", train_split=None).fit(X, y)
    assert trained.module_.dense0.weight.is_cuda
    on_cpu = make_net([], device="cpu").initialize()
    on_cpu.load_params(checkpoint=cp)
    np.testing.assert_allclose(
        on_cpu.predict_proba(X), trained.predict_proba(X), rtol=1e-5, atol=1e-6
    )
    resumed = make_net([LoadInitState(cp)], max_epochs=1, device="cuda", train_split=None).fit(X, y)
    assert resumed.history[:, "epoch"] == [1, 2, 3]


def test_skorch_style_imports():
    import bridge.callbacks as callbacks
    from bridge.callbacks import (
        checkpoint,
        early_stopping,
        lr_scheduler,
        parameters,
        regularization,
        shape,
    )

    for module in (checkpoint, early_stopping, lr_scheduler, parameters, regularization, shape):
        for name in module.__all__:
            if name[0].isupper():
                assert getattr(callbacks, name) is getattr(module, name), name
