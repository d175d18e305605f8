"""bridge/sklearn/threads.py: small calls run on one CPU thread, and put threads back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import bridge
from bridge.sklearn import threads


@pytest.fixture
def model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    return bridge.from_sklearn(LogisticRegression().fit(X, X[:, 0] > 0))


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def threads_seen_during(model, X) -> int:
    seen = []
    graph = model.graph_modules[model._method_outputs["predict_proba"].graph]
    handle = graph.LinearClassifier.register_forward_hook(
        lambda *args: seen.append(torch.get_num_threads()))
    try:
        model.predict_proba(X)
    finally:
        handle.remove()
    return seen[0]


def test_small_call_runs_on_one_thread_and_restores(model, two_threads):
    assert threads_seen_during(model, np.zeros((10, 4), np.float32)) == 1
    assert torch.get_num_threads() == 2


def test_large_call_keeps_torchs_setting(model, two_threads, monkeypatch):
    monkeypatch.setattr(threads, "SINGLE_THREAD_ELEMENTS", 39)
    assert threads_seen_during(model, np.zeros((10, 4), np.float32)) == 2
    monkeypatch.setattr(threads, "SINGLE_THREAD_ELEMENTS", 0)  # 0: never switch
    assert threads_seen_during(model, np.zeros((1, 4), np.float32)) == 2


def test_threads_are_restored_when_the_call_fails(model, two_threads):
    graph = model.graph_modules[model._method_outputs["predict_proba"].graph]

    def fail(*args):
        raise RuntimeError("inside the graph")

    handle = graph.LinearClassifier.register_forward_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="inside the graph"):
            model.predict_proba(np.zeros((3, 4), np.float32))
    finally:
        handle.remove()
    assert torch.get_num_threads() == 2


def test_non_cpu_or_empty_inputs_change_nothing(two_threads):
    assert threads.enter_single_thread([]) == 0
    assert threads.enter_single_thread([torch.zeros(2, 2, device="meta")]) == 0
    assert torch.get_num_threads() == 2


def test_calls_with_much_arithmetic_per_row_keep_torchs_setting(model, two_threads, monkeypatch):
    """The model's constants count towards the work: 10 rows against 4 weights and 1
    intercept per class row are 10 x 5 = 50 units; a limit below that keeps both threads."""
    graph = model.graph_modules[model._method_outputs["predict_proba"].graph]
    assert threads.constant_values(graph) >= 5
    monkeypatch.setattr(threads, "SINGLE_THREAD_WORK", 10 * threads.constant_values(graph) - 1)
    assert threads_seen_during(model, np.zeros((10, 4), np.float32)) == 2
    assert threads_seen_during(model, np.zeros((9, 4), np.float32)) == 1


def test_knn_queries_against_many_training_rows_use_the_thread_team(two_threads, monkeypatch):
    """With the work limit on (it is off by default: see bridge/sklearn/threads.py)."""
    from sklearn.neighbors import KNeighborsClassifier

    monkeypatch.setattr(threads, "SINGLE_THREAD_WORK", 1 << 22)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 20)).astype(np.float32)
    knn = bridge.from_sklearn(KNeighborsClassifier().fit(X, X[:, 0] > 0))
    graph = knn.graph_modules[knn._method_outputs["predict_proba"].graph]
    rows = threads.SINGLE_THREAD_WORK // threads.constant_values(graph) + 1
    assert rows < 100  # a 100-row query is not a small call for kNN
    assert threads.enter_single_thread([torch.zeros(rows, 20)], graph) == 0
    assert threads.enter_single_thread([torch.zeros(1, 20)], graph) == 2
    threads.leave_single_thread(2)


def test_the_work_limit_is_off_by_default(model, two_threads):
    assert threads.SINGLE_THREAD_WORK == 0
    graph = model.graph_modules[model._method_outputs["predict_proba"].graph]
    assert threads.enter_single_thread([torch.zeros(10_000, 4)], graph) == 2
    threads.leave_single_thread(2)
