"""Resize and Upsample against onnxruntime across modes and coordinate transformations."""

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


EMPTY = np.array([], np.float32)


def _resize(x, *, scales=None, sizes=None, roi=None, opset=19, **attributes):
    initializers = {"roi": roi if roi is not None else EMPTY,
                    "scales": scales if scales is not None else EMPTY}
    if sizes is not None:
        initializers["sizes"] = sizes
    return single_node_model("Resize", {"x": x}, initializers=initializers, opset=opset,
                             attributes=attributes)


@pytest.mark.parametrize("coordinate_mode", ["half_pixel", "pytorch_half_pixel", "asymmetric",
                                             "tf_half_pixel_for_nn"])
@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor",
                                          "ceil"])
def test_nearest_modes(coordinate_mode, nearest_mode):
    # scales chosen so that no output coordinate lands within float32 rounding of a tie
    x = _random(1, 2, 4, 5)
    model = _resize(x, scales=np.array([1, 1, 1.7, 0.55], np.float32), mode="nearest",
                    coordinate_transformation_mode=coordinate_mode, nearest_mode=nearest_mode)
    assert_matches_onnxruntime(model, {"x": x}, rtol=0, atol=0)


def test_nearest_align_corners_with_sizes():
    # with scales whose output length is fractional onnxruntime divides by the rounded
    # length while the ONNX reference (followed here) uses scale * length; sizes agree
    x = _random(1, 2, 4, 5)
    model = _resize(x, sizes=np.array([1, 2, 7, 3], np.int64), mode="nearest",
                    coordinate_transformation_mode="align_corners")
    assert_matches_onnxruntime(model, {"x": x}, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("coordinate_mode", ["half_pixel", "pytorch_half_pixel", "align_corners",
                                             "asymmetric", "half_pixel_symmetric"])
def test_linear_and_cubic(mode, coordinate_mode):
    x = _random(1, 2, 5, 6)
    model = _resize(x, sizes=np.array([1, 2, 8, 4], np.int64), mode=mode,
                    coordinate_transformation_mode=coordinate_mode)
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-4, atol=1e-5)


def test_cubic_exclude_outside_antialias_and_crop():
    x = _random(1, 1, 8, 8)
    model = _resize(x, scales=np.array([1, 1, 0.5, 0.6], np.float32), mode="cubic",
                    exclude_outside=1, cubic_coeff_a=-0.5)
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-4, atol=1e-5)
    model = _resize(x, scales=np.array([1, 1, 0.5, 0.4], np.float32), mode="linear", antialias=1)
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-4, atol=1e-5)
    roi = np.array([0, 0, 0.2, 0.3, 1, 1, 1.2, 0.9], np.float32)
    model = _resize(x, sizes=np.array([1, 1, 5, 4], np.int64), roi=roi, mode="linear",
                    coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=7.0)
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-4, atol=1e-5)


def test_axes_and_keep_aspect_ratio():
    x = _random(1, 2, 6, 9)
    model = _resize(x, sizes=np.array([4, 4], np.int64), axes=[2, 3], mode="linear",
                    keep_aspect_ratio_policy="not_larger")
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-4, atol=1e-5)


def test_resize_10_and_upsample():
    x = _random(1, 2, 3, 4)
    scales = np.array([1, 1, 2, 1.5], np.float32)
    for op, opset in (("Resize", 10), ("Upsample", 9)):
        for mode in ("nearest", "linear"):
            model = single_node_model(op, {"x": x}, initializers={"scales": scales}, opset=opset,
                                      attributes={"mode": mode})
            assert_matches_onnxruntime(model, {"x": x}, rtol=1e-5, atol=1e-6)


def test_resize_gradient_flows():
    x = _random(1, 1, 3, 3)
    model = _resize(x, scales=np.array([1, 1, 2, 2], np.float32), mode="linear",
                    coordinate_transformation_mode="align_corners")
    tensor = torch.from_numpy(x).requires_grad_()
    bridge.from_onnx(model)(tensor).sum().backward()
    reference = tensor.detach().clone().requires_grad_()
    torch.nn.functional.interpolate(reference, scale_factor=2, mode="bilinear",
                                    align_corners=True).sum().backward()
    torch.testing.assert_close(tensor.grad, reference.grad, rtol=1e-5, atol=1e-6)
