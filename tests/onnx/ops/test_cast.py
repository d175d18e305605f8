"""Cast and CastLike converters against onnxruntime and the ONNX reference evaluator (float8)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import bridge
from bridge.errors import UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxGraph, OnnxNode
from bridge.onnx.ops.cast import (
    OnnxCast,
    OnnxCastLike,
    cast_tensor,
    convert_cast,
    integer_cast_like_cpu,
)
from tests.parity import assert_matches_onnxruntime, assert_parity, run_bridge
from tests.parity import single_node_model as _untyped_model


def single_node_model(*args, **kwargs) -> onnx.ModelProto:
    """``tests.parity.single_node_model`` with output types filled in (onnxruntime needs them)."""
    return onnx.shape_inference.infer_shapes(_untyped_model(*args, **kwargs))


SOURCE = np.array([[-2.7, -0.5, 0.0, 0.49, 1.5], [3.99, 100.2, -128.0, 7.0, 0.25]])

TARGETS = ["FLOAT", "DOUBLE", "FLOAT16", "INT8", "INT16", "INT32", "INT64", "UINT8", "BOOL"]


@pytest.mark.parametrize("source", [np.float32, np.float64, np.int32, np.int64, np.bool_])
@pytest.mark.parametrize("target", TARGETS)
def test_cast_matches_onnxruntime(source, target):
    x = SOURCE.astype(source) if source is not np.bool_ else SOURCE > 0
    if target == "UINT8":
        x = np.abs(x).astype(x.dtype)  # negative → unsigned is implementation-defined
    model = single_node_model("Cast", {"x": x}, attributes={"to": getattr(TensorProto, target)},
                              opset=13)
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-3, atol=0)


@pytest.mark.parametrize("target", ["UINT16", "UINT32", "UINT64", "BFLOAT16"])
def test_cast_to_types_with_few_torch_kernels(target):
    x = np.array([0.0, 1.9, 300.0, 65535.0], dtype=np.float32)
    model = single_node_model("Cast", {"x": x}, attributes={"to": getattr(TensorProto, target)})
    (actual,) = run_bridge(model, {"x": x})
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    assert_parity(actual, np.asarray(expected).astype(np.float64), rtol=1e-2, atol=0)
    if target != "BFLOAT16":
        assert actual.dtype == expected.dtype


FLOAT8 = ["FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ"]


@pytest.mark.parametrize("target", FLOAT8)
@pytest.mark.parametrize("saturate", [0, 1])
def test_cast_to_float8_saturates_like_the_reference(target, saturate):
    x = np.array([0.3, -1.7, 240.0, 300.0, 470.0, 1e5, -1e6, np.inf, -np.inf, np.nan, 1e-9],
                 dtype=np.float32)
    model = single_node_model("Cast", {"x": x}, opset=19, attributes={
        "to": getattr(TensorProto, target), "saturate": saturate})
    module = bridge.from_onnx(model)
    actual = module(torch.from_numpy(x))
    assert actual.dtype == getattr(torch, target.lower().replace("float8", "float8_"))
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_array_equal(actual.float().numpy(), expected.astype(np.float32))


def test_cast_like_takes_the_dtype_of_its_second_input():
    x = np.array([1.7, -2.2, 0.0], dtype=np.float32)
    like = np.array([0], dtype=np.int32)
    model = single_node_model("CastLike", {"x": x, "like": like}, opset=15)
    (actual,) = assert_matches_onnxruntime(model, {"x": x, "like": like})
    assert actual.dtype == np.int32
    scripted = torch.jit.script(OnnxCastLike(True))
    assert scripted(torch.tensor([1.5]), torch.zeros(1, dtype=torch.float64)).dtype == torch.float64


def test_cast_of_opset_1_names_its_target():
    x = np.array([1.5, -2.5], dtype=np.float32)
    node = helper.make_node("Cast", ["x"], ["y"], to="INT32")
    graph = helper.make_graph(
        [node], "cast1", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 1)])
    module = bridge.from_onnx(model)
    assert module(torch.from_numpy(x)).tolist() == [1, -2]


def _strings_to_float_model(labels, to=TensorProto.FLOAT):
    constant = helper.make_node("Constant", [], ["labels"], value=helper.make_tensor(
        "labels", TensorProto.STRING, [len(labels)], [s.encode() for s in labels]))
    gather = helper.make_node("Gather", ["labels", "i"], ["words"])
    cast = helper.make_node("Cast", ["words"], ["y"], to=to)
    graph = helper.make_graph(
        [constant, gather, cast], "parse", [helper.make_tensor_value_info("i", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("y", to, [None])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def test_cast_from_strings_parses_the_vocabulary():
    # the converter is called directly: Gather does not yet pass string vocabularies on
    module = OnnxCast(torch.float32, True)
    assert module(torch.tensor([1, 2])).dtype == torch.float32
    model = _strings_to_float_model(["1.5", "-2e3", "NaN", "INF"])
    context = ConversionContext(OnnxGraph(model.graph), {"": 19})
    context.set_vocabulary("words", ["1.5", "-2e3", "NaN", "INF"])
    node = OnnxNode(model.graph.node[2], 2)
    node.since_version = 19
    parse = convert_cast(node, context)
    result = parse(torch.tensor([0, 1, 3, -1, 2]))
    np.testing.assert_array_equal(result.numpy(), [1.5, -2000.0, np.inf, np.nan, np.nan])
    context.set_vocabulary("words", ["7"])
    node_int = OnnxNode(helper.make_node("Cast", ["words"], ["z"], to=TensorProto.INT64), 3)
    node_int.since_version = 19
    with pytest.raises(UnsupportedOperatorError, match="INT64"):
        convert_cast(node_int, context)


@pytest.mark.parametrize("target", ["STRING", "INT4", "FLOAT4E2M1"])
def test_targets_torch_cannot_hold_are_refused(target):
    x = np.array([1.0, 2.0], dtype=np.float32)
    model = _untyped_model("Cast", {"x": x}, attributes={"to": getattr(TensorProto, target)},
                           opset=21)
    with pytest.raises(UnsupportedOperatorError, match=target if target != "STRING" else "string"):
        bridge.from_onnx(model)


def test_cast_keeps_gradients_between_float_types():
    x = torch.rand(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: cast_tensor(t, torch.float64, True) * 2, (x,))
    y = cast_tensor(x, torch.float32, True)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(4))


UNDEFINED_FOR_INTEGERS = [np.nan, np.inf, -np.inf, 3e9, -3e9, 1e20, -1e20, 300.0, -1.0,
                          70000.0, 2.5, -2.5, -0.7, 0.0]


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.int8,
                                   torch.uint8, torch.uint16])
@pytest.mark.parametrize("source", [torch.float32, torch.float64, torch.float16])
def test_integer_cast_like_cpu_matches_the_cpu(dtype, source):
    # what CUDA runs instead of x.to(dtype): checked here against the CPU's own conversion
    x = torch.tensor(UNDEFINED_FOR_INTEGERS, dtype=source)
    assert integer_cast_like_cpu(x, dtype).tolist() == x.to(dtype).tolist()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cast_runs_on_cuda():
    x = np.array([0.3, 500.0, -1e6, np.nan, 3e9, -np.inf, 300.0], dtype=np.float32)
    for to, saturate in ((TensorProto.FLOAT8E4M3FN, 0), (TensorProto.FLOAT8E5M2, 1),
                         (TensorProto.INT32, 1), (TensorProto.INT64, 1), (TensorProto.INT8, 1),
                         (TensorProto.UINT8, 1), (TensorProto.FLOAT16, 1)):
        model = single_node_model("Cast", {"x": x}, opset=19, attributes={"to": to, "saturate": saturate})
        cpu = bridge.from_onnx(model)(torch.from_numpy(x))
        gpu = bridge.from_onnx(model).cuda()(torch.from_numpy(x).cuda())
        assert gpu.device.type == "cuda"
        np.testing.assert_array_equal(gpu.cpu().float().numpy(), cpu.float().numpy())
