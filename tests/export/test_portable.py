"""The portability rewrites of lowered graphs keep their results (onnxruntime before and after)
and remove the forms they target; a lowered GaussianNB runs right in OpenVINO where installed."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_wine
from sklearn.naive_bayes import GaussianNB

import bridge
from bridge.export.portable import make_portable

X = np.random.default_rng(0).normal(size=(5, 3, 4)).astype(np.float32)


def run(model: onnx.ModelProto, **feed) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def reduce_model(op_type: str, axes: list[int] | None, opset: int, as_input: bool):
    initializers, inputs, attributes = [], ["x"], {"keepdims": 0}
    if axes is not None and as_input:
        initializers.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
        inputs.append("axes")
    elif axes is not None:
        attributes["axes"] = axes
    graph = helper.make_graph(
        [helper.make_node(op_type, inputs, ["y"], **attributes),
         helper.make_node("Add", ["y", "bias"], ["z"])],
        "reduce", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        initializers + [numpy_helper.from_array(np.float32(0.5), "bias")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


@pytest.mark.parametrize(("op_type", "axes", "opset", "as_input"), [
    ("ReduceSum", [2], 17, True),
    ("ReduceSum", [-1, 1], 18, True),
    ("ReduceMax", [1], 17, False),
    ("ReduceMax", [2], 18, True),
    ("ReduceLogSumExp", [0, 2], 13, False),
    ("ReduceMean", None, 17, False),  # every axis
])
def test_reductions_keep_their_dims_then_squeeze_with_the_same_result(op_type, axes, opset,
                                                                        as_input):
    model = reduce_model(op_type, axes, opset, as_input)
    expected = run(model, x=X)
    assert make_portable(model)["reductions_keeping_dims"] == 1
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    reduce = next(n for n in model.graph.node if n.op_type == op_type)
    assert helper.get_attribute_value(reduce.attribute[-1]) == 1 or any(
        a.name == "keepdims" and a.i == 1 for a in reduce.attribute)
    assert [n.op_type for n in model.graph.node] == [op_type, "Squeeze", "Add"]
    actual = run(model, x=X)
    assert actual[0].shape == expected[0].shape
    np.testing.assert_array_equal(actual[0], expected[0])


def log_of_exp_model(outputs: tuple[str, ...]) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Exp", ["x"], ["p"]), helper.make_node("Log", ["p"], ["log_p"])],
        "log_exp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 3]) for n in outputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def test_log_of_exp_is_its_argument_and_stays_finite():
    x = np.array([[0.0, -50.0, -200.0]], np.float32)
    model = log_of_exp_model(("p", "log_p"))
    assert np.isneginf(run(model, x=x)[1][0, 2])  # exp(-200) is 0 in float32
    assert make_portable(model)["log_of_exp"] == 1
    probabilities, logs = run(model, x=x)
    np.testing.assert_array_equal(logs, x)
    np.testing.assert_allclose(probabilities, np.exp(x))  # the Exp stays: p is an output
    alone = log_of_exp_model(("log_p",))
    make_portable(alone)
    assert [n.op_type for n in alone.graph.node] == ["Identity"]  # the Exp had no other reader


def test_reductions_with_run_time_axes_are_left_alone():
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)], "dynamic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 4]),
         helper.make_tensor_value_info("axes", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    assert make_portable(model)["reductions_keeping_dims"] == 0


@pytest.fixture(scope="module")
def wine_naive_bayes():
    X, y = load_wine(return_X_y=True)
    estimator = GaussianNB().fit(X, y)
    lowered = bridge.to_onnx(bridge.from_sklearn(estimator), lowered=True,
                             method="predict_proba")
    return estimator, X.astype(np.float32), lowered


def test_lowered_naive_bayes_has_no_dropping_reduction_and_agrees(wine_naive_bayes):
    estimator, X, lowered = wine_naive_bayes
    reductions = [n for n in lowered.graph.node if n.op_type.startswith("Reduce")]
    assert reductions and all(
        a.i == 1 for n in reductions for a in n.attribute if a.name == "keepdims")
    labels, probabilities, logs = run(lowered, X=X)
    np.testing.assert_array_equal(labels, estimator.predict(X))
    np.testing.assert_allclose(probabilities, estimator.predict_proba(X), atol=1e-5)
    expected_logs = estimator.predict_log_proba(X)  # finite far below exp's float32 range
    assert np.all(np.isfinite(logs)) and expected_logs.min() < -104
    np.testing.assert_allclose(logs, expected_logs, rtol=1e-4, atol=1e-3)


def test_openvino_runs_the_lowered_naive_bayes_in_f32(wine_naive_bayes):
    openvino = pytest.importorskip("openvino")
    estimator, X, lowered = wine_naive_bayes
    core = openvino.Core()
    compiled = core.compile_model(core.read_model(model=lowered.SerializeToString()), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled({0: X})
    labels, probabilities = (result[output] for output in compiled.outputs[:2])
    np.testing.assert_array_equal(labels, estimator.predict(X))
    np.testing.assert_allclose(probabilities, estimator.predict_proba(X), atol=1e-5)
