"""RoiAlign and NonMaxSuppression against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from tests.parity import assert_matches_onnxruntime, single_node_model


def _rois():
    return np.array([[0.0, 0.0, 7.0, 6.0], [2.5, 1.2, 9.0, 9.5], [1.0, 3.0, 4.0, 4.5]],
                    np.float32)


@pytest.mark.parametrize("transform", ["half_pixel", "output_half_pixel"])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_roi_align(transform, sampling_ratio, mode):
    x = np.random.default_rng(0).standard_normal((2, 3, 10, 10)).astype(np.float32)
    inputs = {"x": x, "rois": _rois(), "batch_indices": np.array([0, 1, 1], np.int64)}
    model = single_node_model("RoiAlign", inputs, opset=16, attributes={
        "coordinate_transformation_mode": transform, "sampling_ratio": sampling_ratio,
        "mode": mode, "output_height": 3, "output_width": 4, "spatial_scale": 0.9})
    assert_matches_onnxruntime(model, inputs, rtol=1e-4, atol=1e-5)


def _boxes(count, seed):
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 10, (2, count, 2))
    size = rng.uniform(1, 5, (2, count, 2))
    return np.concatenate([corner, corner + size], -1).astype(np.float32)


@pytest.mark.parametrize("center_point_box", [0, 1])
@pytest.mark.parametrize(("limit", "iou", "score"), [(3, 0.3, 0.2), (10, 0.5, 0.0), (0, 0.5, 0.0)])
def test_non_max_suppression(center_point_box, limit, iou, score):
    boxes = _boxes(12, 0)
    scores = np.random.default_rng(1).uniform(size=(2, 3, 12)).astype(np.float32)
    model = single_node_model("NonMaxSuppression", {"boxes": boxes, "scores": scores}, opset=11,
                              attributes={"center_point_box": center_point_box},
                              initializers={"limit": np.array([limit], np.int64),
                                            "iou": np.array([iou], np.float32),
                                            "score": np.array([score], np.float32)})
    assert_matches_onnxruntime(model, {"boxes": boxes, "scores": scores}, rtol=0, atol=0)


def test_non_max_suppression_without_optional_inputs_selects_nothing():
    boxes, scores = _boxes(4, 2), np.ones((2, 1, 4), np.float32)
    model = single_node_model("NonMaxSuppression", {"boxes": boxes, "scores": scores}, opset=11)
    (selected,) = assert_matches_onnxruntime(model, {"boxes": boxes, "scores": scores},
                                             rtol=0, atol=0)
    assert selected.shape == (0, 3)
