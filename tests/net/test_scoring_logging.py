"""EpochScoring, BatchScoring, PassthroughScoring, EpochTimer, PrintLog and ProgressBar on real nets."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, make_scorer

from bridge import NeuralNetClassifier
from bridge.callbacks import BatchScoring, EpochScoring, PassthroughScoring, PrintLog, ProgressBar
from bridge.callbacks.scoring import cached_forward_iter
from tests.net.conftest import IrisMLP


def make_net(callbacks=(), **kwargs):
    params = dict(max_epochs=3, lr=0.1, batch_size=50, verbose=0)
    params.update(kwargs)
    return NeuralNetClassifier(IrisMLP, callbacks=list(callbacks), **params)


def test_epoch_scoring_with_custom_scorer_and_caching(iris):
    X, y = iris
    forward_calls = []

    def counting_scorer(net, X_valid, y_valid):
        forward_calls.append(len(y_valid))
        return accuracy_score(y_valid, net.predict(X_valid))

    net = make_net([("my_acc", EpochScoring(counting_scorer, name="my_acc", lower_is_better=False)),
                    ("f1", EpochScoring(make_scorer(accuracy_score), name="acc2", use_caching=False))])
    net.fit(X, y)
    assert forward_calls == [30, 30, 30]
    np.testing.assert_allclose(net.history[:, "my_acc"], net.history[:, "valid_acc"])
    np.testing.assert_allclose(net.history[:, "acc2"], net.history[:, "valid_acc"])
    best = net.history[:, "my_acc_best"]
    assert best[0] is True and len(best) == 3


def test_epoch_scoring_on_train_and_names(iris):
    net = make_net([EpochScoring("accuracy", on_train=True, lower_is_better=False)], train_split=None)
    net.fit(*iris)
    assert 0 <= net.history[-1, "accuracy"] <= 1
    assert EpochScoring(lambda n, X, y: 0.0).initialize().name_ == "<lambda>"
    with pytest.raises(TypeError, match="scoring"):
        EpochScoring(3).initialize()._score(None, None, None)


def test_batch_scoring_averages_per_batch_scores(iris):
    net = make_net([BatchScoring("accuracy", on_train=True, name="batch_acc", lower_is_better=False)], train_split=None)
    net.fit(*iris)
    rows = net.history[-1, "batches"]
    per_batch = [row["batch_acc"] for row in rows]
    assert len(per_batch) == 3
    assert net.history[-1, "batch_acc"] == pytest.approx(np.average(per_batch, weights=[50, 50, 50]))


def test_passthrough_scoring_and_best_flags(iris):
    net = make_net([PassthroughScoring("train_loss", on_train=True)], callbacks__train_loss=None, train_split=None)
    net.fit(*iris)
    losses = net.history[:, "train_loss"]
    assert len(losses) == 3 and net.history[0, "train_loss_best"] is True


def test_cached_forward_iter_respects_net_use_caching(iris):
    net = make_net(use_caching=False).fit(*iris)
    sentinel = []
    with cached_forward_iter(net, True, sentinel):
        assert net.predict(iris[0]).shape == (150,)  # net-level False overrides the callback's True


def test_epoch_timer_and_print_log(iris):
    lines = []
    net = make_net(verbose=1, callbacks__print_log__sink=lines.append).fit(*iris)
    assert all(d > 0 for d in net.history[:, "dur"])
    header = lines[0].split()
    assert header == ["epoch", "train_loss", "valid_acc", "valid_loss", "dur"]
    assert len(lines) == 2 + 3 and lines[2].split()[0] == "1"
    silent = []
    make_net(verbose=0, callbacks__print_log__sink=silent.append).fit(*iris)
    assert silent == []
    ignored = []
    make_net(verbose=1, callbacks__print_log__sink=ignored.append,
             callbacks__print_log__keys_ignored=["valid_acc"]).fit(*iris)
    assert "valid_acc" not in ignored[0]


def test_print_log_highlights_best_values():
    log = PrintLog().initialize()
    columns, cells = log.table_row({"epoch": 2, "train_loss": 0.5, "train_loss_best": True, "valid_loss": 0.7,
                                    "valid_loss_best": False, "event_cp": True, "dur": 0.1, "batches": []})
    assert columns == ["epoch", "train_loss", "valid_loss", "event_cp", "dur"]
    assert "\033[" in cells[1] and "\033[" not in cells[2] and cells[3] == "+"


def test_progress_bar_counts_batches(iris, capsys):
    bar = ProgressBar()
    make_net([bar], batch_size=30).fit(*iris)
    assert bar.seen_batches_ == 5  # 4 training + 1 validation batch
