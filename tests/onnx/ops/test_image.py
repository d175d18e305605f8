"""GridSample, AffineGrid, Col2Im, CenterCropPad, MaxUnpool and DeformConv against
onnxruntime (the ONNX reference for MaxUnpool's output_shape)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx.reference import ReferenceEvaluator

import bridge
from bridge.onnx.ops.image import OnnxDeformConv, OnnxGridSample
from tests.parity import assert_matches_onnxruntime, assert_parity, run_bridge, single_node_model


def _random(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("mode", ["linear", "nearest", "cubic"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [0, 1])
def test_grid_sample_2d(mode, padding_mode, align_corners):
    x = _random(2, 3, 5, 6)
    grid = np.random.default_rng(1).uniform(-1.3, 1.3, (2, 4, 7, 2)).astype(np.float32)
    model = single_node_model("GridSample", {"x": x, "grid": grid}, opset=20, attributes={
        "mode": mode, "padding_mode": padding_mode, "align_corners": align_corners})
    assert_matches_onnxruntime(model, {"x": x, "grid": grid}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["linear", "nearest"])
def test_grid_sample_3d(mode):
    x = _random(1, 2, 3, 4, 5)
    grid = np.random.default_rng(1).uniform(-1, 1, (1, 2, 3, 4, 3)).astype(np.float32)
    model = single_node_model("GridSample", {"x": x, "grid": grid}, opset=20,
                              attributes={"mode": mode})
    assert_matches_onnxruntime(model, {"x": x, "grid": grid}, rtol=1e-4, atol=1e-5)


def test_grid_sample_has_gradients():
    x = torch.randn(1, 1, 4, 4, requires_grad=True)
    grid = torch.rand(1, 3, 3, 2) * 2 - 1
    OnnxGridSample("bilinear", "zeros", False)(x, grid).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("align_corners", [0, 1])
@pytest.mark.parametrize("size", [[2, 3, 4, 5], [2, 3, 4, 5, 6]])
def test_affine_grid(align_corners, size):
    theta = _random(2, len(size) - 2, len(size) - 1)
    sizes = np.array(size, np.int64)
    model = single_node_model("AffineGrid", {"theta": theta}, opset=20,
                              initializers={"size": sizes},
                              attributes={"align_corners": align_corners})
    assert_matches_onnxruntime(model, {"theta": theta}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attributes", [{}, {"strides": [2, 1]}, {"pads": [1, 0, 1, 2]},
                                        {"dilations": [2, 1]}])
def test_col2im_is_the_adjoint_of_unfold(attributes):
    image_shape, block_shape = [6, 5], [2, 3]
    strides = attributes.get("strides", [1, 1])
    dilations = attributes.get("dilations", [1, 1])
    pads = attributes.get("pads", [0, 0, 0, 0])
    columns = [
        (image_shape[i] + pads[i] + pads[i + 2] - dilations[i] * (block_shape[i] - 1) - 1)
        // strides[i] + 1 for i in range(2)
    ]
    x = _random(2, 3 * 6, columns[0] * columns[1])
    model = single_node_model("Col2Im", {"x": x}, opset=18, attributes=attributes,
                              initializers={"image_shape": np.array(image_shape, np.int64),
                                            "block_shape": np.array(block_shape, np.int64)})
    (actual,) = assert_matches_onnxruntime(model, {"x": x}, rtol=1e-5, atol=1e-5)
    if pads[0] == pads[2] and pads[1] == pads[3]:
        expected = torch.nn.functional.fold(torch.from_numpy(x), image_shape, block_shape,
                                            dilation=dilations, padding=pads[:2], stride=strides)
        assert_parity(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("shape", "axes"), [([4, 9, 3], None), ([12, 3], [0, 1]),
                                             ([5, 2], [-2, -1])])
def test_center_crop_pad(shape, axes):
    x = _random(7, 6, 3)
    attributes = {} if axes is None else {"axes": axes}
    model = single_node_model("CenterCropPad", {"x": x}, opset=18, attributes=attributes,
                              initializers={"shape": np.array(shape, np.int64)})
    assert_matches_onnxruntime(model, {"x": x}, rtol=0, atol=0)


def test_max_unpool_inverts_max_pool():
    x = _random(2, 3, 4, 6)
    pooled, indices = torch.nn.functional.max_pool2d(torch.from_numpy(x), 2, 2,
                                                     return_indices=True)
    # ONNX indices address the whole tensor, torch's one (N, C) plane
    planes = torch.arange(6).reshape(2, 3, 1, 1) * 24
    inputs = {"x": pooled.numpy(), "indices": (indices + planes).numpy()}
    model = single_node_model("MaxUnpool", inputs, opset=11,
                              attributes={"kernel_shape": [2, 2], "strides": [2, 2]})
    (actual,) = assert_matches_onnxruntime(model, inputs, rtol=0, atol=0)
    expected = torch.nn.functional.max_unpool2d(pooled, indices, 2, 2)
    assert_parity(actual, expected, rtol=0, atol=0)


def test_max_unpool_output_shape_matches_reference():
    inputs = {"x": _random(1, 1, 2, 2), "indices": np.array([[[[5, 7], [13, 15]]]], np.int64),
              "output_shape": np.array([1, 1, 5, 5], np.int64)}
    model = single_node_model("MaxUnpool", inputs, opset=11,
                              attributes={"kernel_shape": [2, 2], "strides": [2, 2]})
    expected = ReferenceEvaluator(model).run(None, inputs)[0]
    assert_parity(run_bridge(model, inputs)[0], expected, rtol=0, atol=0)


@pytest.mark.parametrize("attributes", [
    {}, {"pads": [1, 1, 1, 1], "strides": [2, 2]}, {"dilations": [2, 1]},
    {"group": 2, "offset_group": 2},
])
@pytest.mark.parametrize("with_mask", [False, True])
def test_deform_conv(attributes, with_mask):
    x = _random(2, 4, 6, 7)
    weight = _random(6, 4 // attributes.get("group", 1), 3, 2, seed=1)
    strides = attributes.get("strides", [1, 1])
    pads = attributes.get("pads", [0, 0, 0, 0])
    dilations = attributes.get("dilations", [1, 1])
    out = [(x.shape[2 + i] + pads[i] + pads[i + 2] - dilations[i] * (weight.shape[2 + i] - 1)
            - 1) // strides[i] + 1 for i in range(2)]
    groups = attributes.get("offset_group", 1)
    inputs = {"x": x, "w": weight, "offset": _random(2, groups * 6 * 2, *out, seed=2),
              "bias": _random(6, seed=3)}
    if with_mask:
        inputs["mask"] = np.random.default_rng(4).uniform(size=(2, groups * 6, *out)).astype(
            np.float32)
    model = single_node_model("DeformConv", inputs, opset=19,
                              attributes={"kernel_shape": [3, 2], **attributes})
    assert_matches_onnxruntime(model, inputs, rtol=1e-4, atol=1e-4)


def test_deform_conv_with_zero_offsets_is_a_convolution():
    x, weight = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    module = OnnxDeformConv([3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 1, 1)
    offset = torch.zeros(1, 18, 5, 5)
    expected = torch.nn.functional.conv2d(x, weight, padding=1)
    torch.testing.assert_close(module(x, weight, offset), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_image_ops_run_on_cuda():
    x, weight = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    offset = torch.randn(1, 18, 3, 3)
    module = OnnxDeformConv([3, 3], [1, 1], [1, 1], [0, 0, 0, 0], 1, 1)
    on_gpu = module(x.cuda(), weight.cuda(), offset.cuda())
    torch.testing.assert_close(on_gpu.cpu(), module(x, weight, offset), rtol=1e-4, atol=1e-4)
    columns = np.random.default_rng(0).standard_normal((1, 4, 16)).astype(np.float32)
    model = single_node_model("Col2Im", {"x": columns}, opset=18, initializers={
        "image_shape": np.array([5, 5], np.int64), "block_shape": np.array([2, 2], np.int64)})
    converted = bridge.from_onnx(model).cuda()
    assert_parity(converted(torch.from_numpy(columns).cuda()), run_bridge(model, {"x": columns})[0],
                  rtol=1e-5, atol=1e-5)
