"""CUDA-graph replay (bridge/sklearn/replay.py).

The bookkeeping (one capture per method and input signature, recapture when the model's
tensors change, copies out, least-recently-used eviction, failures run eagerly) is
tested on CPU with ``capture_in_place``: a stand-in for the CUDA capture with the same
contract (static buffers in, outputs refreshed in place by ``replay``). The real capture
runs in the CUDA tests at the end (skipped without a GPU).
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import bridge
from bridge.onnx.plans import plan_for
from bridge.sklearn.replay import CudaGraphs


def capture_in_place(run, device):
    """What a CUDA graph does, on CPU: replay recomputes from the static inputs into the
    static outputs (the tensors returned at capture)."""
    outputs = run()

    def replay():
        for static, fresh in zip(outputs, run()):
            static.copy_(fresh)

    return replay, outputs


@pytest.fixture
def fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.4)
    estimator = LogisticRegression().fit(X, y)
    return estimator, bridge.from_sklearn(estimator), X


def method_function(model, method):
    output = model._method_outputs[method]
    graph = model.graph_modules[output.graph]
    plan = plan_for(graph, (output.output,))
    return lambda *inputs: plan(graph, *inputs)


def eager(model, method, X):
    with torch.no_grad():
        return method_function(model, method)(X)[0]


def test_one_capture_per_method_and_shape(fitted):
    _, model, X = fitted
    graphs = CudaGraphs(model, capture=capture_in_place)
    proba = method_function(model, "predict_proba")
    labels = method_function(model, "predict")
    for rows in (5, 5, 7, 5, 7):
        batch = torch.from_numpy(X[rows:2 * rows])
        torch.testing.assert_close(graphs.run("predict_proba", proba, [batch])[0],
                                   eager(model, "predict_proba", batch), rtol=0, atol=0)
    assert graphs.captures == 2
    graphs.run("predict", labels, [torch.from_numpy(X[:5])])
    assert graphs.captures == 3 and len(graphs.graphs) == 3


def test_new_data_of_a_captured_shape_is_never_answered_stale(fitted):
    _, model, X = fitted
    graphs = CudaGraphs(model, capture=capture_in_place)
    proba = method_function(model, "predict_proba")
    first = graphs.run("predict_proba", proba, [torch.from_numpy(X[:4])])[0]
    second = graphs.run("predict_proba", proba, [torch.from_numpy(X[4:8])])[0]
    torch.testing.assert_close(second, eager(model, "predict_proba", torch.from_numpy(X[4:8])))
    torch.testing.assert_close(first, eager(model, "predict_proba", torch.from_numpy(X[:4])))
    second.zero_()  # results are copies: the next call is unaffected
    again = graphs.run("predict_proba", proba, [torch.from_numpy(X[4:8])])[0]
    assert again.sum() > 0


@pytest.mark.parametrize("change", ["in place", "replaced", "load_state_dict"])
def test_changed_parameters_recapture(fitted, change):
    _, model, X = fitted
    graphs = CudaGraphs(model, capture=capture_in_place)
    proba = method_function(model, "predict_proba")
    batch = torch.from_numpy(X[:6])
    before = graphs.run("predict_proba", proba, [batch])[0]
    classifier = model.graph_modules[model._method_outputs["predict_proba"].graph].LinearClassifier
    if change == "in place":
        with torch.no_grad():
            classifier.coefficients.mul_(-1.0)
    elif change == "replaced":
        classifier.coefficients = -classifier.coefficients
    else:
        state = {k: -v if k.endswith("coefficients") else v
                 for k, v in model.state_dict().items()}
        model.load_state_dict(state)
    after = graphs.run("predict_proba", proba, [batch])[0]
    assert graphs.captures == 2
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, eager(model, "predict_proba", batch), rtol=0, atol=0)


def test_least_recently_used_capture_is_dropped(fitted):
    _, model, X = fitted
    graphs = CudaGraphs(model, max_graphs=2, capture=capture_in_place)
    proba = method_function(model, "predict_proba")
    for rows in (2, 3, 2, 4):
        graphs.run("predict_proba", proba, [torch.from_numpy(X[:rows])])
    assert [key[1][0][0] for key in graphs.graphs] == [2, 4]  # 3 was least recently used


def test_failed_capture_runs_eagerly_and_says_why_once(fitted):
    _, model, X = fitted

    def refuse(run, device):
        raise RuntimeError("operation not permitted when stream is capturing")

    graphs = CudaGraphs(model, capture=refuse)
    proba = method_function(model, "predict_proba")
    batch = torch.from_numpy(X[:3])
    with pytest.warns(RuntimeWarning, match="capture of predict_proba .* not permitted"):
        result = graphs.run("predict_proba", proba, [batch])[0]
    torch.testing.assert_close(result, eager(model, "predict_proba", batch))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: the repeat neither warns nor retries
        graphs.run("predict_proba", proba, [batch])
    assert len(graphs.failures) == 1 and graphs.captures == 0


def test_bad_max_graphs_is_named(fitted):
    with pytest.raises(ValueError, match="max_graphs must be a positive int; got 0"):
        CudaGraphs(fitted[1], max_graphs=0)


def test_converted_model_switch_pickles_without_graphs(fitted):
    estimator, model, X = fitted
    assert model.enable_cuda_graphs(max_graphs=3) is model
    assert model.cuda_graphs.max_graphs == 3
    np.testing.assert_allclose(model.predict_proba(X), estimator.predict_proba(X), rtol=1e-5)
    assert model.cuda_graphs.captures == 0  # CPU calls never capture
    copied = pickle.loads(pickle.dumps(model))
    assert copied.cuda_graphs is None
    model.disable_cuda_graphs()
    assert model.cuda_graphs is None


@pytest.mark.cuda
def test_cuda_replay_matches_eager_and_follows_moves(fitted):
    estimator, model, X = fitted
    model = model.to("cuda").enable_cuda_graphs()
    for rows in (1, 1, 9, 1):
        np.testing.assert_allclose(model.predict_proba(X[:rows]),
                                   estimator.predict_proba(X[:rows]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.predict(X[:9]), estimator.predict(X[:9]))
    assert model.cuda_graphs.captures == 3
    model.to("cpu").to("cuda")  # new storage: every capture is stale
    np.testing.assert_allclose(model.predict_proba(X[:1]), estimator.predict_proba(X[:1]),
                               rtol=1e-5, atol=1e-6)
    assert model.cuda_graphs.captures == 4
    tensor = torch.from_numpy(X[:2]).cuda().requires_grad_(True)
    model.predict_proba(tensor).sum().backward()  # autograd calls run eagerly
    assert tensor.grad is not None
