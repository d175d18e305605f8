"""If, Loop and Scan against onnxruntime, including bodies that read outer-scope values."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import bridge
from tests.parity import assert_matches_onnxruntime

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "control_flow", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _if_model():
    # then: x * scale (scale from the outer graph, computed at run time); else: x - 1
    then_graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["then_out"])], "then", [],
        [helper.make_tensor_value_info("then_out", F, [None, 3])])
    else_graph = helper.make_graph(
        [helper.make_node("Sub", ["x", "one"], ["else_out"])], "else", [],
        [helper.make_tensor_value_info("else_out", F, [None, 3])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one")])
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["positive"]),
        helper.make_node("Abs", ["x"], ["scale"]),
        helper.make_node("If", ["positive"], ["y"], then_branch=then_graph, else_branch=else_graph),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [None, 3])],
                  [helper.make_tensor_value_info("y", F, [None, 3])],
                  [numpy_helper.from_array(np.array(0.0, np.float32), "zero")])


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_if_picks_the_branch_and_reads_outer_values(sign):
    x = (np.abs(np.random.default_rng(0).normal(size=(4, 3))) * sign).astype(np.float32)
    assert_matches_onnxruntime(_if_model(), {"x": x}, rtol=1e-6, atol=1e-6)


def _loop_model():
    # carried: running sum += x * i; scan output: the running sum at each step
    body = helper.make_graph(
        [
            helper.make_node("Cast", ["i"], ["i_float"], to=F),
            helper.make_node("Mul", ["x", "i_float"], ["term"]),
            helper.make_node("Add", ["total_in", "term"], ["total_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Identity", ["total_out"], ["step_out"]),
        ],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("total_in", F, [3])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("total_out", F, [3]),
         helper.make_tensor_value_info("step_out", F, [3])],
    )
    node = helper.make_node("Loop", ["trips", "", "start"], ["total", "steps"], body=body)
    return _model([node], [helper.make_tensor_value_info("x", F, [3]),
                           helper.make_tensor_value_info("start", F, [3])],
                  [helper.make_tensor_value_info("total", F, [3]),
                   helper.make_tensor_value_info("steps", F, [None, 3])],
                  [numpy_helper.from_array(np.array(5, np.int64), "trips")])


def test_loop_with_trip_count_carried_value_and_scan_output():
    inputs = {"x": np.array([1, 2, 3], np.float32), "start": np.zeros(3, np.float32)}
    total, steps = assert_matches_onnxruntime(_loop_model(), inputs, rtol=0, atol=0)
    assert steps.shape == (5, 3) and total.tolist() == [10, 20, 30]


def _scan_model(reverse: int):
    body = helper.make_graph(
        [helper.make_node("Add", ["state_in", "row"], ["state_out"]),
         helper.make_node("Mul", ["state_out", "weight"], ["scaled"])],
        "body",
        [helper.make_tensor_value_info("state_in", F, [2]),
         helper.make_tensor_value_info("row", F, [2])],
        [helper.make_tensor_value_info("state_out", F, [2]),
         helper.make_tensor_value_info("scaled", F, [2])],
    )
    node = helper.make_node("Scan", ["initial", "rows"], ["final", "scaled_all"], body=body,
                            num_scan_inputs=1, scan_input_directions=[reverse])
    return _model([helper.make_node("Abs", ["w"], ["weight"]), node],
                  [helper.make_tensor_value_info("initial", F, [2]),
                   helper.make_tensor_value_info("rows", F, [None, 2]),
                   helper.make_tensor_value_info("w", F, [2])],
                  [helper.make_tensor_value_info("final", F, [2]),
                   helper.make_tensor_value_info("scaled_all", F, [None, 2])])


@pytest.mark.parametrize("reverse", [0, 1])
def test_scan_accumulates_with_an_outer_value(reverse):
    rng = np.random.default_rng(1)
    inputs = {"initial": np.zeros(2, np.float32),
              "rows": rng.normal(size=(6, 2)).astype(np.float32),
              "w": np.array([-2.0, 0.5], np.float32)}
    assert_matches_onnxruntime(_scan_model(reverse), inputs, rtol=1e-6, atol=1e-6)


def test_scan_is_differentiable():
    module = bridge.from_onnx(_scan_model(0))
    rows = torch.randn(4, 2, requires_grad=True)
    final, _ = module(torch.zeros(2), rows, torch.ones(2))
    final.sum().backward()
    assert torch.allclose(rows.grad, torch.ones(4, 2))


@pytest.mark.parametrize(("metric", "p", "power"), [("minkowski", 2, 2.0), ("manhattan", 1, 1.0),
                                                ("minkowski", 3, 3.0)])
def test_knn_graph_from_skl2onnx_runs_its_distance_scan_as_cdist(metric, p, power):
    from skl2onnx import to_onnx
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3)).astype(np.float32)
    X[10] = X[3]  # duplicate training rows: equal distances must keep the lower index first
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    knn = KNeighborsClassifier(3, metric=metric, p=p).fit(X, y)
    model = to_onnx(knn, X[:1], options={id(knn): {"zipmap": False}})
    scans = [m for m in bridge.from_onnx(model).modules() if type(m).__name__ == "OnnxScan"]
    assert [scan.pairwise_p for scan in scans] == [power]
    label, probabilities = assert_matches_onnxruntime(model, {"X": X[:20]}, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(label, knn.predict(X[:20]))


def test_scan_that_is_a_map_runs_batched_and_matches_onnxruntime():
    # state passed through unchanged, element-wise body: the module batches it with torch.vmap
    body = helper.make_graph(
        [helper.make_node("Identity", ["weights_in"], ["weights_out"]),
         helper.make_node("Mul", ["weights_in", "row"], ["product"]),
         helper.make_node("Tanh", ["product"], ["activated"])],
        "body",
        [helper.make_tensor_value_info("weights_in", F, [4]),
         helper.make_tensor_value_info("row", F, [4])],
        [helper.make_tensor_value_info("weights_out", F, [4]),
         helper.make_tensor_value_info("activated", F, [4])],
    )
    node = helper.make_node("Scan", ["weights", "rows"], ["same", "mapped"], body=body,
                            num_scan_inputs=1, scan_input_directions=[1],
                            scan_output_axes=[1])
    model = _model([node], [helper.make_tensor_value_info("weights", F, [4]),
                            helper.make_tensor_value_info("rows", F, [None, 4])],
                   [helper.make_tensor_value_info("same", F, [4]),
                    helper.make_tensor_value_info("mapped", F, [4, None])])
    scans = [m for m in bridge.from_onnx(model).modules() if type(m).__name__ == "OnnxScan"]
    assert [(scan.mappable, scan.pairwise_p) for scan in scans] == [(True, None)]
    rng = np.random.default_rng(2)
    inputs = {"weights": rng.normal(size=4).astype(np.float32),
              "rows": rng.normal(size=(9, 4)).astype(np.float32)}
    assert_matches_onnxruntime(model, inputs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("query_rows", [3, 700])  # one block, and blocks of 256 rows
def test_squared_distances_are_float64_accurate_and_keep_ties(query_rows):
    from bridge.onnx.ops.control_flow import squared_distances

    rng = np.random.default_rng(7)
    train = rng.normal(size=(50, 6)).astype(np.float32) * 10
    train[20] = train[3]  # a duplicated row: its distances must tie exactly
    queries = rng.normal(size=(query_rows, 6)).astype(np.float32) * 10
    queries[0] = train[5]  # a zero distance
    result = squared_distances(torch.from_numpy(queries), torch.from_numpy(train)).numpy()
    exact = ((queries[:, None, :].astype(np.float64) - train[None, :, :]) ** 2).sum(-1)
    assert result.dtype == np.float32 and result.shape == exact.shape
    # one float32 rounding of a float64 value: within an ulp-scale error of the exact sum
    np.testing.assert_allclose(result, exact, rtol=2e-7, atol=1e-9)
    assert result[0, 5] == 0.0
    np.testing.assert_array_equal(result[:, 3], result[:, 20])
