"""Conv and ConvTranspose against onnxruntime over pads, strides, groups and auto_pad."""

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

TOLERANCE = dict(rtol=1e-4, atol=1e-4)  # float32 accumulation order differs from onnxruntime


def _random(*shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize(
    "spatial, attributes",
    [
        ((7,), {}),
        ((7,), {"strides": [2], "pads": [1, 2]}),
        ((6, 7), {"pads": [1, 1, 1, 1]}),
        ((6, 7), {"pads": [0, 1, 2, 1], "strides": [2, 1], "dilations": [1, 2]}),
        ((6, 7), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
        ((6, 7), {"auto_pad": "SAME_LOWER", "strides": [2, 3]}),
        ((6, 7), {"auto_pad": "VALID"}),
        ((4, 5, 6), {"pads": [1, 0, 1, 1, 0, 1], "strides": [1, 2, 1]}),
    ],
)
@pytest.mark.parametrize("with_bias", [False, True])
def test_conv(spatial, attributes, with_bias):
    x = _random(2, 4, *spatial)
    initializers = {"w": _random(6, 4, *([3] * len(spatial)))}
    if with_bias:
        initializers["b"] = _random(6)
    model = single_node_model("Conv", {"x": x}, initializers=initializers, opset=11,
                              attributes=attributes)
    assert_matches_onnxruntime(model, {"x": x}, **TOLERANCE)


def test_grouped_conv_with_runtime_weight():
    inputs = {"x": _random(1, 6, 5, 5), "w": _random(6, 2, 3, 3)}
    model = single_node_model("Conv", inputs, attributes={"group": 3, "kernel_shape": [3, 3]})
    assert_matches_onnxruntime(model, inputs, **TOLERANCE)


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"strides": [2, 2]},
        {"strides": [2, 2], "pads": [1, 0, 1, 2]},
        {"strides": [3, 2], "output_padding": [1, 1]},
        {"strides": [2, 2], "output_shape": [10, 8]},
        {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
        {"strides": [2, 2], "dilations": [2, 1], "pads": [1, 1, 1, 1]},
        {"group": 2},
    ],
)
def test_conv_transpose(attributes):
    x = _random(2, 4, 4, 3)
    w = _random(4, 3, 3, 3)
    model = single_node_model("ConvTranspose", {"x": x}, initializers={"w": w, "b": _random(
        3 * attributes.get("group", 1))}, attributes=attributes, opset=11)
    assert_matches_onnxruntime(model, {"x": x}, **TOLERANCE)


def test_conv_transpose_1d_and_3d():
    for spatial in ((5,), (3, 4, 3)):
        x = _random(1, 2, *spatial)
        w = _random(2, 3, *([2] * len(spatial)))
        model = single_node_model("ConvTranspose", {"x": x}, initializers={"w": w},
                                  attributes={"strides": [2] * len(spatial)})
        assert_matches_onnxruntime(model, {"x": x}, **TOLERANCE)


def test_conv_gradient_and_scripting():
    x = _random(1, 2, 6, 6)
    model = single_node_model("Conv", {"x": x}, initializers={"w": _random(3, 2, 3, 3)},
                              attributes={"pads": [0, 1, 1, 0]})
    module = bridge.from_onnx(model)
    tensor = torch.from_numpy(x).requires_grad_()
    module(tensor).sum().backward()
    reference = tensor.detach().clone().requires_grad_()
    weight = torch.from_numpy(_random(3, 2, 3, 3))
    torch.nn.functional.conv2d(torch.nn.functional.pad(reference, [1, 0, 0, 1]), weight).sum().backward()
    torch.testing.assert_close(tensor.grad, reference.grad)
    scripted = torch.jit.script(torch.fx.GraphModule(module, module.graph))
    torch.testing.assert_close(scripted(tensor), module(tensor))


def test_conv_with_four_spatial_axes_is_unsupported():
    x = _random(1, 1, 2, 2, 2, 2)
    model = single_node_model("Conv", {"x": x}, initializers={"w": _random(1, 1, 1, 1, 1, 1)})
    with pytest.raises(bridge.errors.UnsupportedOperatorError, match="4 spatial axes"):
        bridge.from_onnx(model)
