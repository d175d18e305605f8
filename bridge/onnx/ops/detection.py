"""Object-detection operators: RoiAlign and NonMaxSuppression.

Both have data-dependent shapes or per-region sample counts, so their forwards loop in
Python over regions / classes; they run eagerly and under ``torch.jit.trace`` for fixed
inputs, not under ``torch.jit.script``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import Converted, converter


def _axis_samples(start: float, bin_size: float, bins: int, grid: int, extent: int,
                  device: torch.device, dtype: torch.dtype):
    """Sample positions along one axis with their two neighbours and weights.

    Positions outside ``[-1, extent]`` get zero weights; inside, they are clamped at 0
    and at the last pixel, as RoiAlign defines.
    """
    steps = torch.arange(bins * grid, device=device, dtype=dtype)
    bin_index = torch.div(steps, grid, rounding_mode="floor")
    within = steps - bin_index * grid
    position = start + bin_index * bin_size + (within + 0.5) * bin_size / grid
    valid = (position >= -1.0) & (position <= extent)
    position = position.clamp(min=0.0)
    low = torch.floor(position).clamp(max=extent - 1)
    at_edge = low >= extent - 1
    high = torch.where(at_edge, low, low + 1)
    position = torch.where(at_edge, low, position)
    fraction = position - low
    valid_weight = valid.to(dtype)
    return (low.to(torch.int64), high.to(torch.int64), (1 - fraction) * valid_weight,
            fraction * valid_weight)


class OnnxRoiAlign(nn.Module):
    """Region-of-interest align: bilinear samples averaged (or maxed) per output bin."""

    def __init__(self, output_height: int, output_width: int, sampling_ratio: int,
                 spatial_scale: float, half_pixel: bool, max_mode: bool):
        super().__init__()
        self.output_height = output_height
        self.output_width = output_width
        self.sampling_ratio = sampling_ratio
        self.spatial_scale = spatial_scale
        self.half_pixel = half_pixel
        self.max_mode = max_mode

    def forward(self, x: torch.Tensor, rois: torch.Tensor, batch_indices: torch.Tensor
                ) -> torch.Tensor:
        height, width = x.shape[2], x.shape[3]
        offset = 0.5 if self.half_pixel else 0.0
        outputs = []
        for roi, batch_index in zip(rois.tolist(), batch_indices.tolist()):
            start_w = roi[0] * self.spatial_scale - offset
            start_h = roi[1] * self.spatial_scale - offset
            roi_width = roi[2] * self.spatial_scale - offset - start_w
            roi_height = roi[3] * self.spatial_scale - offset - start_h
            if not self.half_pixel:
                roi_width, roi_height = max(roi_width, 1.0), max(roi_height, 1.0)
            bin_h, bin_w = roi_height / self.output_height, roi_width / self.output_width
            grid_h = self.sampling_ratio or math.ceil(roi_height / self.output_height)
            grid_w = self.sampling_ratio or math.ceil(roi_width / self.output_width)
            y_low, y_high, y_low_weight, y_high_weight = _axis_samples(
                start_h, bin_h, self.output_height, grid_h, height, x.device, x.dtype)
            x_low, x_high, x_low_weight, x_high_weight = _axis_samples(
                start_w, bin_w, self.output_width, grid_w, width, x.device, x.dtype)
            image = x[int(batch_index)]
            corners = [
                image[:, y_low][:, :, x_low] * (y_low_weight[:, None] * x_low_weight[None, :]),
                image[:, y_low][:, :, x_high] * (y_low_weight[:, None] * x_high_weight[None, :]),
                image[:, y_high][:, :, x_low] * (y_high_weight[:, None] * x_low_weight[None, :]),
                image[:, y_high][:, :, x_high] * (y_high_weight[:, None] * x_high_weight[None, :]),
            ]
            shape = (x.shape[1], self.output_height, grid_h, self.output_width, grid_w)
            if self.max_mode:
                samples = torch.stack(corners).amax(0).reshape(shape)
                outputs.append(samples.amax(dim=(2, 4)))
            else:
                samples = (corners[0] + corners[1] + corners[2] + corners[3]).reshape(shape)
                outputs.append(samples.sum(dim=(2, 4)) / max(grid_h * grid_w, 1))
        if not outputs:
            return x.new_zeros((0, x.shape[1], self.output_height, self.output_width))
        return torch.stack(outputs)


@converter("RoiAlign", versions=(10, 16, 22))
def convert_roi_align(node: OnnxNode, context: ConversionContext) -> nn.Module:
    mode = node.attribute("mode", "avg")
    default_transform = "output_half_pixel" if node.since_version < 16 else "half_pixel"
    transform = node.attribute("coordinate_transformation_mode", default_transform)
    if mode not in ("avg", "max") or transform not in ("half_pixel", "output_half_pixel"):
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"mode={mode!r}, coordinate_transformation_mode={transform!r} is not "
            "supported; supported: mode avg/max, half_pixel/output_half_pixel",
        )
    sampling_ratio = int(node.attribute("sampling_ratio", 0))
    if sampling_ratio < 0:
        raise ConversionError(
            f"RoiAlign node {node.name!r}: sampling_ratio={sampling_ratio}; expected >= 0"
        )
    return OnnxRoiAlign(int(node.attribute("output_height", 1)),
                        int(node.attribute("output_width", 1)), sampling_ratio,
                        float(node.attribute("spatial_scale", 1.0)),
                        transform == "half_pixel", mode == "max")


def _corner_boxes(boxes: torch.Tensor, center_point: bool) -> torch.Tensor:
    """Boxes as (y1, x1, y2, x2) with y1 <= y2, x1 <= x2."""
    if center_point:
        x, y, w, h = boxes.unbind(-1)
        return torch.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], -1)
    y1, x1, y2, x2 = boxes.unbind(-1)
    return torch.stack([torch.minimum(y1, y2), torch.minimum(x1, x2),
                        torch.maximum(y1, y2), torch.maximum(x1, x2)], -1)


def _intersection_over_union(box: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    top = torch.maximum(box[0], others[:, 0])
    left = torch.maximum(box[1], others[:, 1])
    bottom = torch.minimum(box[2], others[:, 2])
    right = torch.minimum(box[3], others[:, 3])
    intersection = (bottom - top).clamp(min=0) * (right - left).clamp(min=0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    other_areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + other_areas - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1e-30),
                       torch.zeros_like(union))


class OnnxNonMaxSuppression(nn.Module):
    """Greedy per-(batch, class) non-maximum suppression; returns ``(k, 3)`` int64 rows
    ``[batch, class, box]`` in batch, class, descending-score order."""

    def __init__(self, center_point_box: bool):
        super().__init__()
        self.center_point_box = center_point_box

    def forward(self, boxes: torch.Tensor, scores: torch.Tensor,
                max_output_boxes_per_class: torch.Tensor | None = None,
                iou_threshold: torch.Tensor | None = None,
                score_threshold: torch.Tensor | None = None) -> torch.Tensor:
        limit = 0 if max_output_boxes_per_class is None else int(
            max_output_boxes_per_class.reshape(-1)[0])
        overlap = 0.0 if iou_threshold is None else float(iou_threshold.reshape(-1)[0])
        corners = _corner_boxes(boxes, self.center_point_box)
        selected: list[list[int]] = []
        for batch in range(scores.shape[0]):
            for klass in range(scores.shape[1]):
                class_scores = scores[batch, klass]
                candidates = torch.argsort(class_scores, descending=True, stable=True)
                if score_threshold is not None:
                    threshold = score_threshold.reshape(-1)[0]
                    candidates = candidates[class_scores[candidates] > threshold]
                kept: list[int] = []
                while candidates.numel() > 0 and len(kept) < limit:
                    best = int(candidates[0])
                    kept.append(best)
                    rest = candidates[1:]
                    ious = _intersection_over_union(corners[batch, best], corners[batch, rest])
                    candidates = rest[ious <= overlap]
                selected.extend([batch, klass, index] for index in kept)
        if not selected:
            return torch.zeros((0, 3), dtype=torch.int64, device=boxes.device)
        return torch.tensor(selected, dtype=torch.int64, device=boxes.device)


@converter("NonMaxSuppression", versions=(10, 11))
def convert_non_max_suppression(node: OnnxNode, context: ConversionContext) -> Converted:
    inputs = list(node.inputs) + [""] * (5 - len(node.inputs))
    return Converted(OnnxNonMaxSuppression(bool(node.attribute("center_point_box", 0))),
                     inputs=inputs)
