"""MatMul, Gemm, Einsum and Det against onnxruntime, plus trainable Gemm and scripting."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import bridge
from tests.parity import assert_matches_onnxruntime
from tests.parity import single_node_model as _untyped_model


def single_node_model(*args, **kwargs) -> onnx.ModelProto:
    """``tests.parity.single_node_model`` with output types inferred (onnxruntime needs them)."""
    return onnx.shape_inference.infer_shapes(_untyped_model(*args, **kwargs))


def _random(*shape, dtype=np.float32):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4, 3)),
     ((3, 4), (4,)), ((4,), (4,))],
)
def test_matmul_shapes(a_shape, b_shape):
    inputs = {"a": _random(*a_shape), "b": _random(*b_shape)}
    model = single_node_model("MatMul", inputs, opset=13)
    assert_matches_onnxruntime(model, inputs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_matmul_folds_leading_axes_of_a_transposed_view(dtype):
    # a [seq, 1, features] view of a [1, seq, features] tensor, as attention exports make
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
         onnx.helper.make_node("MatMul", ["t", "w"], ["y"])], "fold",
        [onnx.helper.make_tensor_value_info("x", onnx.helper.np_dtype_to_tensor_dtype(
            np.dtype(dtype)), [1, 7, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.helper.np_dtype_to_tensor_dtype(
            np.dtype(dtype)), [7, 1, 3])],
        [onnx.numpy_helper.from_array((_random(4, 3) * 4).astype(dtype), "w")]),
        opset_imports=[onnx.helper.make_opsetid("", 13)])
    model.ir_version = 9
    x = (_random(1, 7, 4) * 4).astype(dtype)
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-5, atol=1e-5)
    x_tensor = torch.from_numpy(x).requires_grad_() if dtype == np.float32 else None
    if x_tensor is not None:
        bridge.from_onnx(model)(x_tensor).sum().backward()
        assert x_tensor.grad.shape == x.shape


def test_matmul_float64():
    inputs = {"a": _random(3, 4, dtype=np.float64), "b": _random(4, 2, dtype=np.float64)}
    assert_matches_onnxruntime(single_node_model("MatMul", inputs), inputs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("trans_a, trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("c_shape", [None, (5,), (1, 5), (3, 5), ()])
def test_gemm_attributes(trans_a, trans_b, c_shape):
    a = _random(4, 3) if trans_a else _random(3, 4)
    b = _random(5, 4) if trans_b else _random(4, 5)
    initializers = {"b": b}
    if c_shape is not None:
        initializers["c"] = _random(*c_shape) if c_shape else np.float32(0.5).reshape(())
    model = single_node_model(
        "Gemm", {"a": a}, initializers=initializers, opset=13,
        attributes={"transA": trans_a, "transB": trans_b, "alpha": 0.5, "beta": 2.0},
    )
    assert_matches_onnxruntime(model, {"a": a}, rtol=1e-5, atol=1e-5)


def test_gemm_trainable_keeps_b_as_a_parameter_in_onnx_layout():
    a, b, c = _random(2, 3), _random(4, 3), _random(4)
    model = single_node_model("Gemm", {"a": a}, initializers={"b": b, "c": c},
                              attributes={"transB": 1})
    module = bridge.from_onnx(model, trainable=True)
    parameters = dict(module.named_parameters())
    assert sorted(p.shape for p in parameters.values()) == [torch.Size([4]), torch.Size([4, 3])]
    output = module(torch.from_numpy(a))
    output.sum().backward()
    weight = next(p for p in parameters.values() if p.dim() == 2)
    expected_gradient = np.broadcast_to(a.sum(0), (4, 3))
    np.testing.assert_allclose(weight.grad.numpy(), expected_gradient, rtol=1e-5)


@pytest.mark.parametrize(
    "equation, shapes",
    [("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
     ("ii->i", [(4, 4)]), ("i,i", [(5,), (5,)]), ("...ij->...ji", [(2, 3, 4)]),
     ("ij -> i", [(3, 4)])],
)
def test_einsum(equation, shapes):
    inputs = {f"x{i}": _random(*shape) for i, shape in enumerate(shapes)}
    model = single_node_model("Einsum", inputs, attributes={"equation": equation}, opset=12)
    assert_matches_onnxruntime(model, inputs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 3), (2, 4, 4)])
def test_det(shape):
    inputs = {"x": _random(*shape)}
    assert_matches_onnxruntime(single_node_model("Det", inputs, opset=11), inputs,
                               rtol=1e-4, atol=1e-5)


def test_gemm_scripts_and_traces():
    a, b = _random(2, 3), _random(3, 4)
    model = single_node_model("Gemm", {"a": a}, initializers={"b": b}, attributes={"alpha": 2.0})
    module = bridge.from_onnx(model)
    x = torch.from_numpy(a)
    expected = module(x)
    torch.testing.assert_close(torch.jit.trace(module, (x,))(x), expected)
    torch.testing.assert_close(torch.jit.script(torch.fx.GraphModule(module, module.graph))(x), expected)
