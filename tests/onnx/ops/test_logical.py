"""Comparison, boolean and selection converters against onnxruntime (or numpy where it lacks a kernel)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

import bridge
from bridge.errors import ConversionError
from bridge.onnx.ops.logical import OnnxCompare, OnnxIsInf, OnnxWhere
from tests.parity import assert_matches_onnxruntime, run_bridge
from tests.parity import single_node_model as _untyped_model


def single_node_model(*args, **kwargs) -> onnx.ModelProto:
    """``tests.parity.single_node_model`` with output types filled in (onnxruntime needs them)."""
    return onnx.shape_inference.infer_shapes(_untyped_model(*args, **kwargs))


COMPARISONS = ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"]


@pytest.mark.parametrize("op", COMPARISONS)
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64])
def test_comparisons_match_onnxruntime(op, dtype):
    rng = np.random.default_rng(0)
    a = rng.integers(-3, 3, (3, 4)).astype(dtype)
    b = rng.integers(-3, 3, (4,)).astype(dtype)
    assert_matches_onnxruntime(single_node_model(op, {"a": a, "b": b}), {"a": a, "b": b})


@pytest.mark.parametrize("op, function", [
    ("Equal", np.equal), ("Less", np.less), ("Greater", np.greater),
    ("LessOrEqual", np.less_equal), ("GreaterOrEqual", np.greater_equal),
])
@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64])
def test_comparisons_of_wide_unsigned_types_match_numpy(op, function, dtype):
    top = np.iinfo(dtype).max
    a = np.array([top, 1, top // 2 + 1, 7], dtype=dtype)
    b = np.array([1, top, top // 2, 7], dtype=dtype)
    (actual,) = run_bridge(single_node_model(op, {"a": a, "b": b}), {"a": a, "b": b})
    np.testing.assert_array_equal(actual, function(a, b))


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_boolean_logic_broadcasts(op):
    rng = np.random.default_rng(1)
    a = rng.random((2, 3, 4)) > 0.5
    b = rng.random((3, 1)) > 0.5
    assert_matches_onnxruntime(single_node_model(op, {"a": a, "b": b}), {"a": a, "b": b})


def test_not_isnan_and_where():
    flags = np.array([True, False, True])
    assert_matches_onnxruntime(single_node_model("Not", {"x": flags}), {"x": flags})
    x = np.array([1.0, np.nan, -np.inf, np.inf], dtype=np.float32)
    assert_matches_onnxruntime(single_node_model("IsNaN", {"x": x}), {"x": x})
    inputs = {
        "condition": np.array([[True], [False]]),
        "x": np.arange(6, dtype=np.float32).reshape(2, 3),
        "z": np.float32(-1) * np.ones(3, dtype=np.float32),
    }
    assert_matches_onnxruntime(single_node_model("Where", inputs), inputs)


def test_where_on_uint64_and_uint16():
    for dtype in (np.uint16, np.uint64):
        top = np.iinfo(dtype).max
        inputs = {"c": np.array([True, False]), "x": np.array([top, 1], dtype=dtype),
                  "z": np.array([2, top - 1], dtype=dtype)}
        (actual,) = run_bridge(single_node_model("Where", inputs), inputs)
        np.testing.assert_array_equal(actual, np.array([top, top - 1], dtype=dtype))


@pytest.mark.parametrize("positive, negative", [(1, 1), (1, 0), (0, 1), (0, 0)])
def test_isinf_detect_flags(positive, negative):
    x = np.array([np.inf, -np.inf, 0.0, np.nan], dtype=np.float32)
    attributes = {"detect_positive": positive, "detect_negative": negative}
    model = single_node_model("IsInf", {"x": x}, attributes=attributes)
    assert_matches_onnxruntime(model, {"x": x})


def _string_model(op_type: str, constant_labels: list[str], extra: list[str] | None = None):
    constant = helper.make_node(
        "Constant", [], ["labels"],
        value=helper.make_tensor("labels", onnx.TensorProto.STRING, [len(constant_labels)],
                                 [s.encode() for s in constant_labels]),
    )
    nodes = [constant]
    inputs = [helper.make_tensor_value_info("words", onnx.TensorProto.STRING, [None])]
    if op_type == "Equal":
        nodes.append(helper.make_node("Equal", ["words", "labels"], ["y"]))
        output = helper.make_tensor_value_info("y", onnx.TensorProto.BOOL, None)
    else:
        other = helper.make_node(
            "Constant", [], ["others"],
            value=helper.make_tensor("others", onnx.TensorProto.STRING, [len(extra)],
                                     [s.encode() for s in extra]),
        )
        nodes += [other, helper.make_node("Where", ["flags", "labels", "others"], ["y"])]
        inputs = [helper.make_tensor_value_info("flags", onnx.TensorProto.BOOL, [None])]
        output = helper.make_tensor_value_info("y", onnx.TensorProto.STRING, None)
    graph = helper.make_graph(nodes, "strings", inputs, [output])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_string_equal_against_a_constant_uses_its_vocabulary():
    module = bridge.from_onnx(_string_model("Equal", ["cat", "dog", "eel"]))
    vocabulary = module.input_vocabularies["words"]
    assert vocabulary == ["cat", "dog", "eel"]
    words = ["dog", "dog", "owl"]
    indices = torch.tensor([vocabulary.index(w) if w in vocabulary else -1 for w in words])
    np.testing.assert_array_equal(module(indices).numpy(), [False, True, False])


def test_string_where_merges_vocabularies():
    module = bridge.from_onnx(_string_model("Where", ["a", "b"], extra=["c", "d"]))
    labels = np.asarray(module.output_vocabularies["y"], dtype=object)
    result = module(torch.tensor([True, False]))
    np.testing.assert_array_equal(labels[result.numpy()], ["a", "d"])


def test_string_equal_of_two_graph_inputs_is_refused():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.STRING, [2])
    y = helper.make_tensor_value_info("z", onnx.TensorProto.STRING, [2])
    out = helper.make_tensor_value_info("y", onnx.TensorProto.BOOL, [2])
    graph = helper.make_graph([helper.make_node("Equal", ["x", "z"], ["y"])], "g", [x, y], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    with pytest.raises(ConversionError, match="vocabulary"):
        bridge.from_onnx(model)


def test_legacy_broadcast_comparison_and_gradients_through_where():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    b = np.array([3.0, 15.0, 20.0], dtype=np.float32)
    model = single_node_model("Greater", {"a": a, "b": b}, attributes={"broadcast": 1, "axis": 1},
                              opset=1)
    (actual,) = run_bridge(model, {"a": a, "b": b})
    np.testing.assert_array_equal(actual, a > b[None, :, None])
    x = torch.rand(5, dtype=torch.float64, requires_grad=True)
    y = torch.rand(5, dtype=torch.float64, requires_grad=True)
    where = OnnxWhere()
    assert torch.autograd.gradcheck(lambda p, q: where(p > q, p, q), (x, y))


def test_modules_script():
    less = torch.jit.script(OnnxCompare("Less"))
    assert less(torch.tensor([1, 5]), torch.tensor([2, 2])).tolist() == [True, False]
    isinf = torch.jit.script(OnnxIsInf(True, False))
    assert isinf(torch.tensor([float("inf"), -float("inf")])).tolist() == [True, False]
    torch.jit.script(OnnxWhere())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ops_run_on_cuda():
    a = np.array([2**64 - 1, 1], dtype=np.uint64)
    b = np.array([2, 2**63], dtype=np.uint64)
    module = bridge.from_onnx(single_node_model("Less", {"a": a, "b": b})).cuda()
    np.testing.assert_array_equal(
        module(torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()).cpu().numpy(), a < b
    )
    module = bridge.from_onnx(_string_model("Equal", ["cat", "dog"])).cuda()
    result = module(torch.tensor([0, -1], device="cuda"))
    assert result.device.type == "cuda"
    assert result.cpu().tolist() == [True, False]
