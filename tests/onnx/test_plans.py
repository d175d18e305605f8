"""Serving plans (bridge/onnx/plans.py): a graph's forward pruned to some outputs.

A plan must give what the full graph gives for those outputs (exactly, apart from a fused
dense layer: ``addmm`` rounds once where MatMul + Add round twice, rtol 1e-6), never a
stale result after the module's tensors change, and never hide a forward hook.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

import bridge
from bridge.onnx.importer import _GraphBuilder
from bridge.onnx.plans import build_plan, call_plan, matmul_add, plan_for
from tests.parity import assert_parity, run_onnxruntime


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)
    return X, y


@pytest.fixture(scope="module")
def logreg_graph(data):
    X, y = data
    model = bridge.from_sklearn(LogisticRegression(max_iter=300).fit(X, y))
    return model.graph_modules[model._method_outputs["predict_proba"].graph]


def called_modules(plan) -> str:
    return plan.__code__.co_names.__repr__()


def test_plan_gives_each_output_of_the_full_graph(logreg_graph, data):
    X = torch.from_numpy(data[0])
    with torch.no_grad():
        full = logreg_graph(X)
        for position in range(len(full)):  # (probabilities: ulps, see the next test)
            (value,) = build_plan(logreg_graph, [position])(logreg_graph, X)
            tolerance = 0 if position == 0 else 1e-6
            torch.testing.assert_close(value, full[position], rtol=tolerance, atol=tolerance)
        both = build_plan(logreg_graph, [2, 0])(logreg_graph, X)
    torch.testing.assert_close(both[0], full[2], rtol=1e-6, atol=1e-6)
    assert torch.equal(both[1], full[0])


def test_plan_drops_what_its_outputs_do_not_need(logreg_graph):
    code = logreg_graph.code
    assert "bridge_log" in code
    probabilities = build_plan(logreg_graph, [1])
    source = probabilities.__code__.co_consts + probabilities.__code__.co_names
    assert "bridge_log" not in str(source)
    assert "forward_scores" in str(source)  # LinearClassifier's scores-only method
    labels = build_plan(logreg_graph, [0])
    assert "forward_scores" not in str(labels.__code__.co_names)


def test_softmax_scores_are_not_renormalised(logreg_graph, data):
    """The L1 Normalizer after a SOFTMAX LinearClassifier is dropped (for the probabilities
    and their log alike): its rows already sum to one, so only ulps change (rtol 1e-6)."""
    plan = build_plan(logreg_graph, [1])
    assert "Normalizer" not in str(plan.__code__.co_names)
    X = torch.from_numpy(data[0])
    with torch.no_grad():
        torch.testing.assert_close(plan(logreg_graph, X)[0], logreg_graph(X)[1],
                                   rtol=1e-6, atol=1e-7)


def test_plan_reads_the_module_live(logreg_graph, data):
    """Moved, edited or replaced tensors are what the next call sees: no copy is kept."""
    module = pickle.loads(pickle.dumps(logreg_graph))
    X = torch.from_numpy(data[0][:5])
    plan = plan_for(module, (1,))
    before = plan(module, X)[0]
    classifier = module.LinearClassifier
    with torch.no_grad():
        classifier.coefficients.mul_(2.0)  # in place
    assert not torch.allclose(plan(module, X)[0], before)
    classifier.coefficients = torch.zeros_like(classifier.coefficients)  # replaced
    classifier.intercepts = torch.zeros_like(classifier.intercepts)
    uniform = plan_for(module, (1,))(module, X)[0]
    torch.testing.assert_close(uniform, torch.full_like(uniform, 1 / 3))


def test_plan_reads_tables_directly_and_follows_replaced_submodules(logreg_graph, data):
    """Submodules and tensors are read from nn.Module's tables (no __getattr__), at call
    time: a submodule replaced after the plan was built is the one that runs."""
    module = pickle.loads(pickle.dumps(logreg_graph))
    X = torch.from_numpy(data[0][:5])
    plan = plan_for(module, (1,))
    assert "_modules" in plan.__code__.co_names and "LinearClassifier" not in plan.__code__.co_names
    assert plan.layout["LinearClassifier"] == "_modules"
    replacement = pickle.loads(pickle.dumps(module.LinearClassifier))
    with torch.no_grad():
        replacement.intercepts.add_(5.0)
    module.LinearClassifier = replacement
    with torch.no_grad():
        torch.testing.assert_close(call_plan(module, (1,), [X])[0], module(X)[1])


def test_plan_rebuilds_itself_when_a_buffer_becomes_a_parameter(data):
    """A name moving to another table (fine-tuning turns buffers into parameters) is
    followed by building the plan again, not answered with a KeyError."""
    X, y = data
    model = bridge.from_sklearn(MLPClassifier((8,), max_iter=50, random_state=0).fit(X, y))
    output = model._method_outputs["predict_proba"]
    module = model.graph_modules[output.graph]
    inputs = torch.from_numpy(X[:5])
    first = plan_for(module, (output.output,))
    weights = [name for name, table in first.layout.items() if table == "_buffers"]
    assert weights  # the fused dense layers read the root's buffers directly
    tensor = module._buffers.pop(weights[0])
    module.register_parameter(weights[0], torch.nn.Parameter(tensor * 2))
    with torch.no_grad():
        value = call_plan(module, (output.output,), [inputs])[0]
        torch.testing.assert_close(value, module(inputs)[output.output], rtol=1e-6, atol=1e-6)
    assert plan_for(module, (output.output,)) is not first


def test_a_plan_raises_its_own_key_errors_when_nothing_moved(logreg_graph, data):
    module = pickle.loads(pickle.dumps(logreg_graph))

    def fail(x):
        raise KeyError("inside the operator")

    module.LinearClassifier.forward_scores = fail
    with pytest.raises(KeyError, match="inside the operator"):
        call_plan(module, (1,), [torch.from_numpy(data[0][:2])])


def test_identity_operators_are_not_called(data):
    X, y = data
    model = bridge.from_sklearn(MLPClassifier((8,), max_iter=50, random_state=0).fit(X, y))
    output = model._method_outputs["predict_proba"]
    graph = model.graph_modules[output.graph]
    assert any(type(m).__name__ == "OnnxIdentity" for m in graph.modules())
    plan = plan_for(graph, (output.output,))
    assert "'Identity'" not in repr(plan.__code__.co_consts)
    with torch.no_grad():
        inputs = torch.from_numpy(X[:7])
        torch.testing.assert_close(plan(graph, inputs)[0], graph(inputs)[output.output])


def test_plan_runs_forward_hooks(logreg_graph, data):
    module = pickle.loads(pickle.dumps(logreg_graph))
    seen = []
    module.Normalizer.register_forward_hook(lambda *args: seen.append("hooked"))
    plan_for(module, (1,))(module, torch.from_numpy(data[0][:2]))
    assert seen == ["hooked"]


def test_recompiled_graph_gets_a_new_plan(logreg_graph, data):
    module = pickle.loads(pickle.dumps(logreg_graph))
    first = plan_for(module, (1,))
    assert plan_for(module, (1,)) is first
    module.recompile()
    assert plan_for(module, (1,)) is not first


def test_modules_with_plans_still_copy_and_pickle(logreg_graph, data):
    plan_for(logreg_graph, (1,))
    X = torch.from_numpy(data[0][:3])
    copied = pickle.loads(pickle.dumps(logreg_graph))
    torch.testing.assert_close(copied(X)[1], logreg_graph(X)[1])


def test_bad_output_position_is_named(logreg_graph):
    with pytest.raises(IndexError, match="has 3 output"):
        build_plan(logreg_graph, [3])


def dense_layer_model(bias_shape, x_shape):
    rng = np.random.default_rng(2)
    weight = rng.normal(size=(x_shape[-1], 5)).astype(np.float32)
    bias = rng.normal(size=bias_shape).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["p"]),
             helper.make_node("Add", ["b", "p"], ["y"]),  # bias first: either order fuses
             helper.make_node("Relu", ["y"], ["z"])]
    graph = helper.make_graph(
        nodes, "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


@pytest.mark.parametrize("bias_shape", [(5,), (1, 5)])
@pytest.mark.parametrize("x_shape", [(7, 4), (2, 3, 4), (4,)])
def test_dense_layer_fuses_and_matches_onnxruntime(bias_shape, x_shape):
    model = dense_layer_model(bias_shape, x_shape)
    # without the import's passes, which make such a layer F.linear already (bridge.onnx.fusion)
    module = _GraphBuilder.for_model(model, False, {"fuse_graph": False}).build()
    plan = build_plan(module, [0])
    assert "matmul_add" in str(plan.__code__.co_names) or "matmul_add" in str(
        plan.__globals__)
    x = np.random.default_rng(3).normal(size=x_shape).astype(np.float32)
    (actual,) = plan(module, torch.from_numpy(x))
    (expected,) = run_onnxruntime(model, {"x": x})
    assert_parity(actual, expected, rtol=1e-6, atol=1e-6)


def test_matmul_add_falls_back_for_other_dtypes():
    x = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    weight, bias = torch.ones(3, 2), torch.ones(2)
    torch.testing.assert_close(matmul_add(x.float(), weight, bias), x.float() @ weight + bias)
    with pytest.raises(RuntimeError):  # dtypes that differ fail as MatMul itself would
        matmul_add(x, weight, bias)


def test_converted_model_serves_through_plans(data):
    """The estimator's methods use plans (the log of predict_log_proba is not computed for
    predict_proba) and agree with scikit-learn."""
    X, y = data
    estimator = MLPClassifier((8,), max_iter=300, random_state=0).fit(X, y)
    model = bridge.from_sklearn(estimator)
    assert_parity(model.predict_proba(X), estimator.predict_proba(X), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(model.predict(X), estimator.predict(X))
    graph = model.graph_modules[model._method_outputs["predict_proba"].graph]
    assert plan_for(graph, (model._method_outputs["predict_proba"].output,)) is not None


@pytest.mark.parametrize(("metric", "p", "weights"), [("minkowski", 2, "uniform"),
                                                       ("minkowski", 2, "distance"),
                                                       ("manhattan", 1, "uniform"),
                                                       ("minkowski", 3, "distance")])
def test_neighbour_search_runs_in_blocks_and_equals_the_graph(metric, p, weights):
    """skl2onnx's kNN (distance Scan, Transpose, Sqrt, TopK) runs as blocked_nearest in the
    plan: the full graph's neighbours, ties and blocks included. (Its Euclidean distances
    are rooted in C, correctly rounded as in onnxruntime; torch's vectorized float32 sqrt
    in the full graph can be 1 ulp off, hence rtol 1e-6 on distance-weighted values.)"""
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    rng = np.random.default_rng(4)
    train = rng.normal(size=(300, 5)).astype(np.float32)
    train[7] = train[2]  # duplicate rows: equal distances, the lower index first
    target = train[:, 0] + train[:, 1]
    queries = rng.normal(size=(600, 5)).astype(np.float32)  # more than one block of 256
    queries[3] = train[2]
    for estimator in (KNeighborsClassifier(4, metric=metric, p=p, weights=weights)
                      .fit(train, target > 0),
                      KNeighborsRegressor(4, metric=metric, p=p, weights=weights)
                      .fit(train, target)):
        model = bridge.from_sklearn(estimator)
        output = model._method_outputs["predict"]
        graph = model.graph_modules[output.graph]
        plan = build_plan(graph, [output.output])
        assert "blocked_nearest" in str(plan.__globals__)
        x = torch.from_numpy(queries)
        with torch.no_grad():
            full = graph(x)
            full = full[output.output] if isinstance(full, tuple) else full
            (planned,) = plan(graph, x)
        torch.testing.assert_close(planned, full, rtol=1e-6, atol=0)
        graph_file = model.onnx_model  # its first output: the labels or the values
        expected = run_onnxruntime(graph_file, {graph_file.graph.input[0].name: queries})[0]
        assert_parity(model.predict(queries), expected.reshape(-1), rtol=1e-5, atol=1e-5)
        if weights == "uniform":
            # (skl2onnx's distance weighting disagrees with scikit-learn on these rows, in
            # onnxruntime as in bridge: up to 0.3 for the regressor, 8% of the labels)
            assert_parity(model.predict(queries), estimator.predict(queries), rtol=1e-4,
                          atol=1e-5)


def test_the_neighbour_search_keeps_the_training_rows_float64_copy_until_they_change():
    """The widened training rows (float64 copy and norms) are kept between eager calls
    and made again when the training tensor is edited in place or replaced."""
    from sklearn.neighbors import KNeighborsRegressor

    from bridge.onnx.ops.control_flow import OnnxScan

    rng = np.random.default_rng(5)
    train = rng.normal(size=(50, 4)).astype(np.float32)
    queries = rng.normal(size=(7, 4)).astype(np.float32)
    model = bridge.from_sklearn(KNeighborsRegressor(3).fit(train, train[:, 0]))
    first = model.predict(queries)
    scan = next(m for m in model.modules() if isinstance(m, OnnxScan))
    kept = scan.__dict__["_widened"]._state
    assert kept is not None
    np.testing.assert_array_equal(model.predict(queries), first)
    assert scan.__dict__["_widened"]._state[3] is kept[3]  # not made again
    graph = model.graph_modules[model._method_outputs["predict"].graph]
    rows = next(t for t in graph.buffers() if tuple(t.shape) == (50, 4))
    with torch.no_grad():
        rows.mul_(-1.0)  # every training row moved: other neighbours
    moved = KNeighborsRegressor(3).fit(-train, train[:, 0])
    assert_parity(model.predict(queries), moved.predict(queries), rtol=1e-5, atol=1e-6)
    assert scan.__dict__["_widened"]._state[3] is not kept[3]
