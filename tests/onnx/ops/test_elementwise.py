"""Elementwise arithmetic converters against onnxruntime (or numpy where onnxruntime lacks a kernel)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import bridge
from bridge.onnx.ops.elementwise import OnnxBitShift, OnnxClip, OnnxDiv, OnnxMax, OnnxUnaryMath
from tests.parity import assert_matches_onnxruntime, assert_parity, run_bridge
from tests.parity import single_node_model as _untyped_model

RNG_SEED = 0


def single_node_model(*args, **kwargs) -> onnx.ModelProto:
    """``tests.parity.single_node_model`` with output types filled in (onnxruntime needs them)."""
    return onnx.shape_inference.infer_shapes(_untyped_model(*args, **kwargs))


def _rng():
    return np.random.default_rng(RNG_SEED)


def _ints(dtype, shape, low=-50, high=50):
    info = np.iinfo(dtype)
    return _rng().integers(max(low, info.min), min(high, info.max), size=shape).astype(dtype)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_binary_arithmetic_matches_onnxruntime(op, dtype):
    if np.issubdtype(dtype, np.integer):
        a = _ints(dtype, (3, 4))
        b = _ints(dtype, (4,), 1, 9) * np.where(np.arange(4) % 2, 1, -1).astype(dtype)
    else:
        a = _rng().standard_normal((3, 4)).astype(dtype)
        b = _rng().uniform(0.5, 2.0, (4,)).astype(dtype)
    model = single_node_model(op, {"a": a, "b": b})
    assert_matches_onnxruntime(model, {"a": a, "b": b}, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op, function", [
    ("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply),
])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.uint16, np.uint32, np.uint64])
def test_integer_arithmetic_wraps_like_numpy(op, function, dtype):
    info = np.iinfo(dtype)
    a = np.array([info.max, info.min, 7, info.max // 2 + 3], dtype=dtype)
    b = np.array([3, 2, 5, info.max // 2 + 9], dtype=dtype)
    model = single_node_model(op, {"a": a, "b": b})
    with np.errstate(over="ignore"):
        expected = function(a, b)
    (actual,) = run_bridge(model, {"a": a, "b": b})
    assert actual.dtype == dtype
    np.testing.assert_array_equal(actual, expected)


def test_integer_division_truncates_toward_zero():
    a = np.array([7, -7, 7, -7, 0], dtype=np.int32)
    b = np.array([2, 2, -2, -2, 3], dtype=np.int32)
    (actual,) = assert_matches_onnxruntime(single_node_model("Div", {"a": a, "b": b}),
                                           {"a": a, "b": b})
    np.testing.assert_array_equal(actual, [3, -3, -3, 3, 0])


def test_uint64_division_and_mod_are_exact_above_two_to_the_63():
    a = np.array([2**64 - 1, 2**63 + 5, 2**64 - 2, 12345, 2**63], dtype=np.uint64)
    b = np.array([3, 2**63 + 1, 2**63 + 7, 2**64 - 1, 2**63], dtype=np.uint64)
    (quotient,) = run_bridge(single_node_model("Div", {"a": a, "b": b}), {"a": a, "b": b})
    (remainder,) = run_bridge(single_node_model("Mod", {"a": a, "b": b}), {"a": a, "b": b})
    np.testing.assert_array_equal(quotient, a // b)
    np.testing.assert_array_equal(remainder, a % b)


@pytest.mark.parametrize("base_dtype, exponent_dtype", [
    (np.float32, np.float32), (np.float32, np.int64), (np.float32, np.int32),
    (np.int64, np.float32), (np.int32, np.int32), (np.int64, np.int64), (np.float64, np.float32),
])
def test_pow_keeps_the_base_dtype(base_dtype, exponent_dtype):
    base = np.array([[1, 2, 3], [4, 5, 6]], dtype=base_dtype)
    exponent = np.array([2, 3, 1], dtype=exponent_dtype)
    (actual,) = assert_matches_onnxruntime(
        single_node_model("Pow", {"base": base, "e": exponent}), {"base": base, "e": exponent},
        rtol=1e-6, atol=0,
    )
    assert actual.dtype == base_dtype


@pytest.mark.parametrize("fmod, dtype", [
    (0, np.int32), (0, np.int64), (1, np.int32), (1, np.int64), (1, np.float32),
])  # before opset 28, floats require fmod=1
def test_mod_follows_the_divisor_or_the_dividend_sign(fmod, dtype):
    a = np.array([-4, 7, 5, 4, -7, 8], dtype=dtype)
    b = np.array([2, -3, 8, -2, 3, 5], dtype=dtype)
    model = single_node_model("Mod", {"a": a, "b": b}, attributes={"fmod": fmod})
    assert_matches_onnxruntime(model, {"a": a, "b": b}, rtol=0, atol=0)


UNARY = ["Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Sin", "Cos", "Tan", "Asin", "Acos",
         "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Ceil", "Floor", "Round", "Sign",
         "Erf"]


@pytest.mark.parametrize("op", UNARY)
def test_unary_math_matches_onnxruntime(op):
    x = _rng().uniform(-0.95, 0.95, (2, 5)).astype(np.float32)
    if op in ("Log", "Sqrt", "Reciprocal"):
        x = np.abs(x) + 0.05
    if op == "Acosh":
        x = np.abs(x) + 1.0
    model = single_node_model(op, {"x": x}, opset=13 if op != "Round" else 11)
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-5, atol=1e-6)


def test_round_halves_to_even_and_sign_of_integers():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, -2.6], dtype=np.float32)
    (rounded,) = run_bridge(single_node_model("Round", {"x": x}), {"x": x})
    np.testing.assert_array_equal(rounded, [0, 2, 2, -0, -2, 2, -3])
    ints = np.array([-3, 0, 9], dtype=np.int64)
    assert_matches_onnxruntime(single_node_model("Sign", {"x": ints}), {"x": ints})
    unsigned = np.array([0, 2**40], dtype=np.uint64)
    (signs,) = run_bridge(single_node_model("Sign", {"x": unsigned}), {"x": unsigned})
    np.testing.assert_array_equal(signs, np.array([0, 1], dtype=np.uint64))


@pytest.mark.parametrize("op", ["Max", "Min", "Sum", "Mean"])
def test_variadic_ops_broadcast_over_three_inputs(op):
    rng = _rng()
    inputs = {
        "a": rng.standard_normal((2, 3, 4)).astype(np.float32),
        "b": rng.standard_normal((3, 1)).astype(np.float32),
        "c": rng.standard_normal((4,)).astype(np.float32),
    }
    assert_matches_onnxruntime(single_node_model(op, inputs), inputs, rtol=1e-6, atol=1e-6)


def test_max_min_of_uint64_order_values_above_two_to_the_63():
    a = np.array([2**64 - 1, 1, 2**63], dtype=np.uint64)
    b = np.array([5, 2**63 + 1, 2**63 - 1], dtype=np.uint64)
    (largest,) = run_bridge(single_node_model("Max", {"a": a, "b": b}), {"a": a, "b": b})
    (smallest,) = run_bridge(single_node_model("Min", {"a": a, "b": b}), {"a": a, "b": b})
    np.testing.assert_array_equal(largest, np.maximum(a, b))
    np.testing.assert_array_equal(smallest, np.minimum(a, b))


@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint32, np.uint64])
def test_bitshift_matches_onnxruntime(direction, dtype):
    x = np.array([16, 4, 1, 255], dtype=dtype)
    shift = np.array([1, 2, 3, 7], dtype=dtype)
    model = single_node_model("BitShift", {"x": x, "s": shift}, attributes={"direction": direction})
    assert_matches_onnxruntime(model, {"x": x, "s": shift})


def test_bitshift_out_of_range_shifts_follow_opset_28():
    x = np.array([-128, -1, 64, 3], dtype=np.int8)
    shift = np.array([8, 9, -1, 1], dtype=np.int8)
    right = bridge.from_onnx(single_node_model(
        "BitShift", {"x": x, "s": shift}, attributes={"direction": "RIGHT"}, opset=28))
    left = bridge.from_onnx(single_node_model(
        "BitShift", {"x": x, "s": shift}, attributes={"direction": "LEFT"}, opset=28))
    tx, ts = torch.from_numpy(x), torch.from_numpy(shift)
    np.testing.assert_array_equal(right(tx, ts).numpy(), [-1, -1, 0, 1])
    np.testing.assert_array_equal(left(tx, ts).numpy(), [0, 0, 0, 6])
    big = np.array([2**63 + 8], dtype=np.uint64)
    by = np.array([3], dtype=np.uint64)
    np.testing.assert_array_equal(OnnxBitShift(False)(torch.from_numpy(big), torch.from_numpy(by)),
                                  big >> by)


@pytest.mark.parametrize("op", ["BitwiseAnd", "BitwiseOr", "BitwiseXor"])
@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.uint64])
def test_bitwise_binary_ops(op, dtype):
    a = np.array([[12, 10, 255]], dtype=dtype)
    b = np.array([[10], [3]], dtype=dtype)
    assert_matches_onnxruntime(single_node_model(op, {"a": a, "b": b}), {"a": a, "b": b})


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.uint64])
def test_bitwise_not(dtype):
    x = np.array([0, 5, 77], dtype=dtype)
    (actual,) = run_bridge(single_node_model("BitwiseNot", {"x": x}), {"x": x})
    np.testing.assert_array_equal(actual, np.invert(x))


def test_clip_input_form_with_optional_bounds():
    x = _rng().standard_normal((3, 4)).astype(np.float32) * 3
    for bounds in ({"low": np.float32(-1), "high": np.float32(1)}, {"low": np.float32(-0.5)}):
        initializers = {k: np.asarray(v) for k, v in bounds.items()}
        model = single_node_model("Clip", {"x": x}, initializers=initializers, opset=13)
        assert_matches_onnxruntime(model, {"x": x}, rtol=0, atol=0)
    model = single_node_model("Clip", {"x": x}, opset=13)
    assert_matches_onnxruntime(model, {"x": x}, rtol=0, atol=0)


def test_clip_max_only_and_min_greater_than_max():
    x = np.array([-5, 0, 5, 120], dtype=np.int8)
    high = np.array(3, dtype=np.int8)
    model = single_node_model("Clip", {"x": x}, initializers={"high": high}, opset=13)
    model.graph.node[0].input[:] = ["x", "", "high"]  # "" omits the optional min
    (actual,) = run_bridge(model, {"x": x})
    np.testing.assert_array_equal(actual, [-5, 0, 3, 3])
    clip = OnnxClip()
    y = clip(torch.arange(5.0), torch.tensor(3.0), torch.tensor(1.0))
    np.testing.assert_array_equal(y.numpy(), [1.0] * 5)


def test_clip_attribute_form_of_opset_6():
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    model = single_node_model("Clip", {"x": x}, attributes={"min": -1.0, "max": 2.0}, opset=6)
    (actual,) = run_bridge(model, {"x": x})
    np.testing.assert_array_equal(actual, np.clip(x, -1, 2))


def test_legacy_broadcast_with_axis():
    a = _rng().standard_normal((2, 3, 4)).astype(np.float32)
    b = _rng().standard_normal((3,)).astype(np.float32)
    model = single_node_model("Add", {"a": a, "b": b}, attributes={"broadcast": 1, "axis": 1},
                              opset=6)
    (actual,) = run_bridge(model, {"a": a, "b": b})
    assert_parity(actual, a + b[None, :, None], rtol=0, atol=0)


def test_gradients_flow_through_arithmetic():
    x = torch.rand(3, 4, dtype=torch.float64) + 0.5
    y = torch.rand(4, dtype=torch.float64) + 0.5
    for op in ("Add", "Sub", "Mul", "Div", "Pow"):
        model = single_node_model(op, {"a": x.numpy(), "b": y.numpy()})
        module = bridge.from_onnx(model)
        assert torch.autograd.gradcheck(module, (x.clone().requires_grad_(), y.clone().requires_grad_()))
    for op in ("Exp", "Sqrt", "Sin", "Erf"):
        module = bridge.from_onnx(single_node_model(op, {"x": x.numpy()}))
        assert torch.autograd.gradcheck(module, (x.clone().requires_grad_(),))
    module = bridge.from_onnx(single_node_model("Max", {"a": x.numpy(), "b": y.numpy()}))
    assert torch.autograd.gradcheck(module, (x.clone().requires_grad_(), y.clone().requires_grad_()))


def test_modules_script_and_trace():
    scripted_div = torch.jit.script(OnnxDiv())
    a, b = torch.tensor([7, -7]), torch.tensor([2, 2])
    np.testing.assert_array_equal(scripted_div(a, b).numpy(), [3, -3])
    scripted_max = torch.jit.script(OnnxMax())
    assert scripted_max([torch.tensor([1.0, 5.0]), torch.tensor([3.0, 2.0])]).tolist() == [3.0, 5.0]
    scripted_exp = torch.jit.script(OnnxUnaryMath("Exp"))
    assert torch.allclose(scripted_exp(torch.zeros(2)), torch.ones(2))
    torch.jit.script(OnnxClip())
    torch.jit.script(OnnxBitShift(True))
    x = np.ones((2, 3), dtype=np.float32)
    module = bridge.from_onnx(single_node_model("Add", {"a": x, "b": x}))
    traced = torch.jit.trace(module, (torch.ones(2, 3), torch.ones(2, 3)))
    assert torch.equal(traced(torch.ones(2, 3), torch.full((2, 3), 2.0)), torch.full((2, 3), 3.0))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ops_run_on_cuda():
    a = np.array([2**64 - 1, 9, 2**63], dtype=np.uint64)
    b = np.array([3, 2, 2**63 + 1], dtype=np.uint64)
    module = bridge.from_onnx(single_node_model("Div", {"a": a, "b": b})).cuda()
    result = module(torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda())
    np.testing.assert_array_equal(result.cpu().numpy(), a // b)
    x = np.linspace(-3, 3, 8, dtype=np.float32)
    low = np.array(-1, dtype=np.float32)
    module = bridge.from_onnx(single_node_model("Clip", {"x": x}, initializers={"low": low})).cuda()
    np.testing.assert_array_equal(module(torch.from_numpy(x).cuda()).cpu().numpy(), np.clip(x, -1, None))
    for op in ("Mod", "Pow", "Max", "Sum", "BitShift"):
        ints = np.array([5, 9, 12], dtype=np.int64)
        attributes = {"direction": "LEFT"} if op == "BitShift" else None
        model = single_node_model(op, {"a": ints, "b": np.array([2, 3, 1], dtype=np.int64)},
                                  attributes=attributes)
        cpu = bridge.from_onnx(model)(torch.from_numpy(ints), torch.tensor([2, 3, 1]))
        gpu = bridge.from_onnx(model).cuda()(torch.from_numpy(ints).cuda(), torch.tensor([2, 3, 1]).cuda())
        assert torch.equal(cpu, gpu.cpu())
