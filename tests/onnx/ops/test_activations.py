"""Activation and softmax-family converters against onnxruntime, plus autograd and TorchScript checks."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator

import bridge
from bridge.errors import UnsupportedOperatorError
from bridge.onnx.ops.activations import OnnxGelu, OnnxSelu, OnnxSoftmaxFamily
from tests.parity import assert_matches_onnxruntime, assert_parity, run_bridge
from tests.parity import single_node_model as _untyped_model


def single_node_model(*args, **kwargs) -> onnx.ModelProto:
    """``tests.parity.single_node_model`` with output types filled in (onnxruntime needs them)."""
    return onnx.shape_inference.infer_shapes(_untyped_model(*args, **kwargs))


def _x(shape=(3, 5), dtype=np.float32, scale=3.0):
    return (np.random.default_rng(0).standard_normal(shape) * scale).astype(dtype)


ACTIVATIONS = [
    ("Relu", {}, 14), ("LeakyRelu", {"alpha": 0.2}, 16), ("LeakyRelu", {}, 16),
    ("Elu", {"alpha": 0.7}, 6), ("Selu", {}, 6), ("Selu", {"alpha": 1.5, "gamma": 2.0}, 6),
    ("Celu", {"alpha": 0.5}, 12), ("Sigmoid", {}, 13), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, 6),
    ("HardSwish", {}, 14), ("Softplus", {}, 1), ("Softsign", {}, 1), ("Tanh", {}, 13),
    ("Gelu", {}, 20), ("Gelu", {"approximate": "tanh"}, 20), ("Mish", {}, 18),
    ("ThresholdedRelu", {"alpha": 0.5}, 10), ("Shrink", {"bias": 0.5, "lambd": 1.0}, 9),
    ("Shrink", {}, 9),
]


@pytest.mark.parametrize("op, attributes, opset", ACTIVATIONS)
def test_activation_matches_onnxruntime(op, attributes, opset):
    x = _x()
    model = single_node_model(op, {"x": x}, attributes=attributes, opset=opset)
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Elu", "Softplus", "HardSwish", "Mish"])
def test_activation_in_float16_and_float64(op):
    # float64: 1e-7, as the reference evaluator keeps HardSwish's 1/6 as a float32 constant
    for dtype, rtol in ((np.float16, 2e-3), (np.float64, 1e-7)):
        x = _x(dtype=dtype)
        model = single_node_model(op, {"x": x}, opset=18 if op == "Mish" else 14)
        (actual,) = run_bridge(model, {"x": x})
        (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
        assert actual.dtype == dtype
        assert_parity(actual, expected, rtol=rtol, atol=rtol)


def test_swish_against_the_reference_evaluator():
    x = _x()
    model = single_node_model("Swish", {"x": x}, attributes={"alpha": 1.5}, opset=24)
    (actual,) = run_bridge(model, {"x": x})
    assert_parity(actual, x / (1 + np.exp(-1.5 * x)), rtol=1e-5, atol=1e-6)


def test_relu_and_shrink_on_integers():
    x = np.array([-3, -1, 0, 2, 7], dtype=np.int32)
    assert_matches_onnxruntime(single_node_model("Relu", {"x": x}, opset=14), {"x": x})
    model = single_node_model("Shrink", {"x": x}, attributes={"bias": 1.0, "lambd": 1.5}, opset=9)
    (actual,) = run_bridge(model, {"x": x})
    np.testing.assert_array_equal(actual, [-2, 0, 0, 1, 6])


@pytest.mark.parametrize("slope_shape", [(1,), (5,), (3, 1), (3, 5)])
def test_prelu_broadcasts_its_slope(slope_shape):
    x = _x()
    slope = np.random.default_rng(1).uniform(0.1, 0.5, slope_shape).astype(np.float32)
    model = single_node_model("PRelu", {"x": x}, initializers={"slope": slope}, opset=16)
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-6, atol=0)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("opset, axis", [(11, 0), (11, 1), (11, 2), (11, -1), (13, 0), (13, 1),
                                         (13, -1)])
def test_softmax_family_coerces_to_2d_before_opset_13(op, opset, axis):
    x = _x((2, 3, 4))
    model = single_node_model(op, {"x": x}, attributes={"axis": axis}, opset=opset)
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-5, atol=1e-6)


def test_softmax_default_axis_and_hardmax_ties_pick_the_first():
    x = _x((2, 3, 4))
    for opset in (11, 13):
        assert_matches_onnxruntime(single_node_model("Softmax", {"x": x}, opset=opset), {"x": x},
                                   rtol=1e-5, atol=1e-6)
    ties = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], dtype=np.float32)
    (actual,) = assert_matches_onnxruntime(single_node_model("Hardmax", {"x": ties}, opset=13),
                                           {"x": ties})
    np.testing.assert_array_equal(actual, [[0, 1, 0], [1, 0, 0]])


def test_unsupported_gelu_mode_is_refused():
    model = single_node_model("Gelu", {"x": _x()}, attributes={"approximate": "erf"}, opset=20)
    with pytest.raises(UnsupportedOperatorError, match="approximate"):
        bridge.from_onnx(model)


@pytest.mark.parametrize("op, attributes, opset", [
    ("Sigmoid", {}, 13), ("Tanh", {}, 13), ("Elu", {"alpha": 0.5}, 6), ("Selu", {}, 6),
    ("Celu", {}, 12), ("Softplus", {}, 1), ("Gelu", {}, 20), ("Gelu", {"approximate": "tanh"}, 20),
    ("Mish", {}, 18), ("Softmax", {"axis": 1}, 13), ("LogSoftmax", {"axis": 0}, 13),
    ("Softmax", {"axis": 1}, 11), ("LeakyRelu", {}, 16), ("HardSigmoid", {}, 6),
])
def test_gradients_match_finite_differences(op, attributes, opset):
    x = _x((3, 4), dtype=np.float64, scale=1.0) + 0.1  # keep away from kinks at 0
    module = bridge.from_onnx(single_node_model(op, {"x": x}, attributes=attributes, opset=opset))
    assert torch.autograd.gradcheck(module, (torch.from_numpy(x).requires_grad_(),))


def test_prelu_slope_gets_a_gradient_when_trainable():
    x = _x((3, 4), dtype=np.float64)
    slope = np.full((4,), 0.25)
    model = single_node_model("PRelu", {"x": x}, initializers={"slope": slope}, opset=16)
    module = bridge.from_onnx(model, trainable=True)
    module(torch.from_numpy(x)).sum().backward()
    (parameter,) = list(module.parameters())
    expected = np.where(x < 0, x, 0).sum(axis=0)
    np.testing.assert_allclose(parameter.grad.numpy(), expected)


def test_modules_script():
    softmax = torch.jit.script(OnnxSoftmaxFamily("Softmax", 1, True))
    x = torch.randn(2, 3, 4)
    expected = torch.softmax(x.reshape(2, 12), 1).reshape(2, 3, 4)
    assert torch.allclose(softmax(x), expected)
    hardmax = torch.jit.script(OnnxSoftmaxFamily("Hardmax", -1, False))
    assert hardmax(torch.tensor([[1.0, 4.0, 2.0]])).tolist() == [[0.0, 1.0, 0.0]]
    torch.jit.script(OnnxGelu("tanh"))
    torch.jit.script(OnnxSelu(1.0, 2.0))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ops_run_on_cuda():
    x = _x((2, 3, 4))
    for op, opset in (("Softmax", 11), ("Hardmax", 13), ("Gelu", 20), ("Selu", 6)):
        model = single_node_model(op, {"x": x}, opset=opset)
        expected = run_bridge(model, {"x": x})[0]
        actual = bridge.from_onnx(model).cuda()(torch.from_numpy(x).cuda())
        assert actual.device.type == "cuda"
        assert_parity(actual, expected, rtol=1e-5, atol=1e-6)
