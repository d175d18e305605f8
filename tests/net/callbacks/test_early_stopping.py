"""EarlyStopping on a real net with scripted scores: the epoch it stops at, thresholds,
the direction of improvement, restoring the best weights and routed parameters."""

from __future__ import annotations

import pickle

import pytest

from bridge import NeuralNetClassifier
from bridge.callbacks.early_stopping import EarlyStopping
from tests.net.callbacks.conftest import MLP, ParamSnapshots, ScriptedScore, states_equal


def fit_with_scores(iris, scores, stopper, extra=(), max_epochs=None, **net_kwargs):
    X, y = iris
    net = NeuralNetClassifier(
        MLP,
        lr=0.1,
        batch_size=64,
        max_epochs=max_epochs or len(scores),
        verbose=0,
        train_split=None,
        callbacks=[("score", ScriptedScore(scores)), *extra, ("stopper", stopper)],
        **net_kwargs,
    )
    return net.fit(X, y)


@pytest.mark.parametrize(
    "scores, patience, stop_epoch",
    [
        ([5, 4, 3, 3.5, 3.2, 3.1, 2.0, 1.0], 3, 6),  # best at 3, three misses: 4, 5, 6
        ([5, 4, 3, 3.5, 2.0, 3.1, 3.0, 2.9, 1.0], 3, 8),  # a new best at 5 resets the count
        ([5, 4, 3, 2, 1], 2, 5),  # always improving: runs to max_epochs
        ([1, 2], 1, 2),
    ],
)
def test_stops_at_the_right_epoch(iris, scores, patience, stop_epoch):
    stopper = EarlyStopping(monitor="score", patience=patience, sink=lambda text: None)
    net = fit_with_scores(iris, scores, stopper)
    assert len(net.history) == stop_epoch
    assert stopper.best_epoch_ == scores.index(min(scores[:stop_epoch])) + 1


def test_threshold_modes(iris):
    scores = [1.0, 0.9995, 0.999, 0.9985, 0.998, 0.5]
    rel = EarlyStopping(monitor="score", patience=2, threshold=1e-2, threshold_mode="rel")
    assert len(fit_with_scores(iris, scores, rel).history) == 3  # 0.05 % steps are below 1 %
    abs_ = EarlyStopping(monitor="score", patience=2, threshold=1e-4, threshold_mode="abs")
    assert len(fit_with_scores(iris, scores, abs_).history) == 6  # 5e-4 steps beat 1e-4
    with pytest.raises(ValueError, match="threshold_mode"):
        fit_with_scores(iris, scores, EarlyStopping(monitor="score", threshold_mode="relative"))


def test_higher_is_better_and_negative_scores(iris):
    scores = [-3.0, -2.0, -2.5, -2.2, -2.1, -1.0]
    stopper = EarlyStopping(monitor="score", patience=3, lower_is_better=False)
    net = fit_with_scores(iris, scores, stopper)
    assert len(net.history) == 5 and stopper.best_epoch_ == 2


def test_load_best_restores_module_weights(iris):
    snapshots = ParamSnapshots()
    stopper = EarlyStopping(monitor="score", patience=2, load_best=True)
    net = fit_with_scores(iris, [3, 1, 2, 2.5, 0.5], stopper, extra=[("snap", snapshots)])
    assert len(net.history) == 4
    assert states_equal(net.module_.state_dict(), snapshots.snapshots_[2])
    assert not states_equal(snapshots.snapshots_[2], snapshots.snapshots_[4])


def test_missing_monitor_key_names_it(iris):
    with pytest.raises(KeyError, match="valid_f1"):
        fit_with_scores(iris, [1, 2], EarlyStopping(monitor="valid_f1"))


def test_patience_routed_through_set_params(iris):
    scores = [5, 4, 4.5, 4.4, 4.3, 4.2, 1.0]
    net = fit_with_scores(iris, scores, EarlyStopping(monitor="score", patience=5))
    assert len(net.history) == 7
    net.set_params(callbacks__stopper__patience=2)
    net.fit(*iris)
    assert len(net.history) == 4


def test_stops_on_real_validation_loss(iris):
    """With lr=0 the validation loss never improves after epoch 1: stop after 1 + patience."""
    X, y = iris
    stopper = EarlyStopping(patience=3, sink=lambda text: None)
    net = NeuralNetClassifier(
        MLP, lr=0.0, max_epochs=20, batch_size=32, verbose=0, callbacks=[stopper]
    ).fit(X, y)
    assert len(net.history) == 4
    assert stopper.best_epoch_ == 1


def test_keeps_training_while_validation_loss_improves(iris):
    X, y = iris
    stopper = EarlyStopping(patience=2, sink=lambda text: None)
    net = NeuralNetClassifier(
        MLP, lr=0.05, max_epochs=8, batch_size=32, verbose=0, callbacks=[stopper]
    ).fit(X, y)
    losses = net.history[:, "valid_loss"]
    assert all(b < a for a, b in zip(losses, losses[1:]))  # small lr: steady descent
    assert len(net.history) == 8


def test_pickled_net_drops_the_best_weights_copy(iris):
    stopper = EarlyStopping(monitor="score", patience=2, load_best=True)
    net = fit_with_scores(iris, [3, 1, 2, 2.5], stopper)
    assert stopper.best_model_weights_ is not None
    copy = pickle.loads(pickle.dumps(net))
    copied_stopper = dict(copy.callbacks_)["stopper"]
    assert copied_stopper.best_model_weights_ is None and copied_stopper.best_epoch_ == 2
