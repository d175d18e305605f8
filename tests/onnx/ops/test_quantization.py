"""Quantization operators against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bridge
from bridge.onnx.ops.quantization import OnnxDequantizeLinear, OnnxQuantizeLinear
from tests.parity import assert_matches_onnxruntime, single_node_model


def _random(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize(("zero_point", "opset"), [
    (np.uint8(128), 13), (np.int8(-3), 13), (np.uint8(128), 21), (np.uint16(1000), 21),
    (np.int16(-7), 21),
])
def test_quantize_dequantize_per_tensor(zero_point, opset):
    x = _random(3, 4) * 20
    scale = np.array(0.25, np.float32)
    zero = np.array(zero_point)
    model = single_node_model("QuantizeLinear", {"x": x},
                              initializers={"scale": scale, "zero": zero}, opset=opset)
    (quantized,) = assert_matches_onnxruntime(model, {"x": x}, rtol=0, atol=0)
    assert quantized.dtype == zero.dtype
    back = single_node_model("DequantizeLinear", {"q": quantized},
                             initializers={"scale": scale, "zero": zero}, opset=opset)
    assert_matches_onnxruntime(back, {"q": quantized}, rtol=1e-6, atol=1e-6)


def test_quantize_rounds_half_to_even_and_saturates():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 1000.0, -1000.0], np.float32)
    model = single_node_model("QuantizeLinear", {"x": x}, opset=13,
                              initializers={"scale": np.array(1.0, np.float32),
                                            "zero": np.array(0, np.int8)})
    (result,) = assert_matches_onnxruntime(model, {"x": x}, rtol=0, atol=0)
    np.testing.assert_array_equal(result, [0, 2, 2, 0, -2, 127, -128])


@pytest.mark.parametrize("axis", [1, -1, 0])
def test_quantize_dequantize_per_axis(axis):
    x = _random(3, 4, 5) * 10
    size = x.shape[axis]
    scale = np.linspace(0.1, 0.5, size).astype(np.float32)
    zero = np.arange(size).astype(np.uint8) * 3
    initializers = {"scale": scale, "zero": zero}
    model = single_node_model("QuantizeLinear", {"x": x}, initializers=initializers, opset=13,
                              attributes={"axis": axis})
    (quantized,) = assert_matches_onnxruntime(model, {"x": x}, rtol=0, atol=0)
    back = single_node_model("DequantizeLinear", {"q": quantized}, initializers=initializers,
                             opset=13, attributes={"axis": axis})
    assert_matches_onnxruntime(back, {"q": quantized}, rtol=1e-6, atol=1e-6)


def test_quantize_dequantize_blocked():
    x = _random(2, 6) * 5
    scale = np.abs(_random(2, 3, seed=1)) + 0.1
    zero = np.full((2, 3), 5, np.int8)
    initializers = {"scale": scale, "zero": zero}
    attributes = {"axis": 1, "block_size": 2}
    model = single_node_model("QuantizeLinear", {"x": x}, initializers=initializers, opset=21,
                              attributes=attributes)
    (quantized,) = assert_matches_onnxruntime(model, {"x": x}, rtol=0, atol=0)
    back = single_node_model("DequantizeLinear", {"q": quantized}, initializers=initializers,
                             opset=21, attributes=attributes)
    assert_matches_onnxruntime(back, {"q": quantized}, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not hasattr(torch, "float8_e4m3fn"), reason="torch lacks float8")
def test_float8_round_trip_saturates():
    module = OnnxQuantizeLinear(1, 0, torch.float8_e4m3fn, True, None)
    x = torch.tensor([0.3, 1000.0, -1000.0])
    quantized = module(x, torch.tensor(1.0))
    assert quantized.dtype == torch.float8_e4m3fn
    back = OnnxDequantizeLinear(1, 0, None)(quantized, torch.tensor(1.0))
    torch.testing.assert_close(back, torch.tensor([0.3125, 448.0, -448.0]))


@pytest.mark.parametrize("values", [[-1.0, 0.5, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0],
                                    [-4.0, -2.0, -1.0, -0.5]])
def test_dynamic_quantize_linear(values):
    x = np.array(values, np.float32)
    model = single_node_model("DynamicQuantizeLinear", {"x": x}, ("y", "scale", "zero"),
                              opset=11)
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_matmul_integer_with_per_row_zero_points(dtype):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    a = rng.integers(info.min, info.max, (2, 3, 5)).astype(dtype)
    b = rng.integers(info.min, info.max, (5, 4)).astype(dtype)
    model = single_node_model("MatMulInteger", {"a": a, "b": b}, opset=10,
                              initializers={"a_zero": np.array(3, dtype),
                                            "b_zero": np.arange(4).astype(dtype)})
    (result,) = assert_matches_onnxruntime(model, {"a": a, "b": b}, rtol=0, atol=0)
    assert result.dtype == np.int32


@pytest.mark.parametrize("scale_dtype", [np.float32])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinear_matmul(dtype, scale_dtype):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    a = rng.integers(info.min, info.max, (2, 3, 4)).astype(dtype)
    b = rng.integers(info.min, info.max, (4, 5)).astype(dtype)
    scales = {name: np.array([value], scale_dtype) for name, value in
              (("a_scale", 0.05), ("b_scale", 0.02), ("y_scale", 0.5))}
    zero = np.array([2], dtype)
    model = single_node_model("QLinearMatMul", {"a": a}, opset=21, initializers={
        "a_scale": scales["a_scale"], "a_zero": zero, "b": b, "b_scale": scales["b_scale"],
        "b_zero": zero, "y_scale": scales["y_scale"], "y_zero": zero})
    # onnxruntime requantizes in float32, bridge in float64: at most 1 step apart on ties
    assert_matches_onnxruntime(model, {"a": a}, rtol=0, atol=1)


@pytest.mark.parametrize("attributes", [{}, {"pads": [1, 1, 1, 1], "strides": [2, 2]}])
def test_conv_integer_and_qlinear_conv(attributes):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (1, 2, 6, 6)).astype(np.uint8)
    w = rng.integers(0, 255, (3, 2, 3, 3)).astype(np.uint8)
    model = single_node_model("ConvInteger", {"x": x}, opset=10, attributes=attributes,
                              initializers={"w": w, "x_zero": np.array(100, np.uint8),
                                            "w_zero": np.array(120, np.uint8)})
    assert_matches_onnxruntime(model, {"x": x}, rtol=0, atol=0)
    quantized = single_node_model("QLinearConv", {"x": x}, opset=10, attributes=attributes,
                                  initializers={
                                      "x_scale": np.array(0.02, np.float32),
                                      "x_zero": np.array(100, np.uint8), "w": w,
                                      "w_scale": np.array([0.01, 0.02, 0.03], np.float32),
                                      "w_zero": np.array([120, 120, 120], np.uint8),
                                      "y_scale": np.array(0.5, np.float32),
                                      "y_zero": np.array(128, np.uint8),
                                      "bias": np.array([10, -20, 30], np.int32)})
    # onnxruntime requantizes in float32, bridge in float64: at most 1 step apart on ties
    assert_matches_onnxruntime(quantized, {"x": x}, rtol=0, atol=1)


def test_sub_byte_types_are_reported_unsupported():
    model = single_node_model("QuantizeLinear", {"x": _random(4)}, opset=21,
                              attributes={"output_dtype": 22})  # INT4
    with pytest.raises(bridge.errors.BridgeError, match="INT4|int4"):
        bridge.from_onnx(model)


def test_quantize_dequantize_script_and_gradient():
    quantize = torch.jit.script(OnnxQuantizeLinear(1, 0, torch.uint8, True, None))
    dequantize = torch.jit.script(OnnxDequantizeLinear(1, 0, None))
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    scale = torch.tensor([0.5, 1.0])
    zero = torch.tensor([10, 0], dtype=torch.uint8)
    torch.testing.assert_close(dequantize(quantize(x, scale, zero), scale, zero), x)
    scale_grad = torch.tensor(0.5, requires_grad=True)
    dequantized = OnnxDequantizeLinear(1, 0, None)(torch.tensor([4], dtype=torch.uint8),
                                                  scale_grad)
    dequantized.sum().backward()
    assert scale_grad.grad == 4.0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_integer_kernels_run_on_cuda():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (3, 4)).astype(np.uint8)
    b = rng.integers(0, 255, (4, 5)).astype(np.uint8)
    model = single_node_model("MatMulInteger", {"a": a, "b": b}, opset=10,
                              initializers={"a_zero": np.array(3, np.uint8)})
    module = bridge.from_onnx(model).cuda()
    result = module(torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda())
    assert result.device.type == "cuda" and result.dtype == torch.int32
    expected = (a.astype(np.int64) - 3) @ b.astype(np.int64)
    np.testing.assert_array_equal(result.cpu().numpy(), expected)
    quantize = OnnxQuantizeLinear(1, 0, torch.uint8, True, None)
    x = torch.randn(10, device="cuda")
    quantized = quantize(x, torch.tensor(0.1, device="cuda"), torch.tensor(128, dtype=torch.uint8,
                                                                          device="cuda"))
    assert quantized.device.type == "cuda"
