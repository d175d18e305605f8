"""Resizing: Resize and Upsample.

Resizing is separable: each resized axis is computed on its own, nearest modes by
gathering input indices, linear and cubic modes by multiplying with an
``[output, input]`` interpolation matrix built from ONNX's coordinate transformation,
kernel, ``exclude_outside`` and antialias rules. This covers every mode combination
ONNX defines, on any axis and for any rank.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import Converted, converter

COORDINATE_MODES = (
    "half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
    "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize",
)
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")
MODES = ("nearest", "linear", "cubic")


def _cubic_kernel(t: torch.Tensor, a: float) -> torch.Tensor:
    t = t.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


class OnnxResize(nn.Module):
    """Resize with ONNX semantics; ``roi``/``scales``/``sizes`` constant or run-time."""

    def __init__(
        self, mode: str, coordinate_mode: str, nearest_mode: str, cubic_coeff_a: float,
        exclude_outside: bool, extrapolation_value: float, antialias: bool, axes: list[int],
        aspect_policy: str, roi: list[float] | None, scales: list[float] | None,
        sizes: list[int] | None,
    ):
        super().__init__()
        self.mode = mode
        self.coordinate_mode = coordinate_mode
        self.nearest_mode = nearest_mode
        self.cubic_coeff_a = cubic_coeff_a
        self.exclude_outside = exclude_outside
        self.extrapolation_value = extrapolation_value
        self.antialias = antialias
        self.axes = axes
        self.aspect_policy = aspect_policy
        self.constant_roi = roi
        self.constant_scales = scales
        self.constant_sizes = sizes

    def forward(
        self, x: torch.Tensor, roi: torch.Tensor | None = None,
        scales: torch.Tensor | None = None, sizes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        rank = x.dim()
        axes = [a % rank for a in self.axes] if self.axes else list(range(rank))
        roi_values = self.constant_roi if roi is None else [float(v) for v in roi.tolist()]
        scale_values = self.constant_scales
        if scales is not None and scales.numel() > 0:
            scale_values = [float(v) for v in scales.tolist()]
        size_values = self.constant_sizes
        if sizes is not None and sizes.numel() > 0:
            size_values = [int(v) for v in sizes.tolist()]
        shape = [int(s) for s in x.shape]
        factors, outputs = self._plan(shape, axes, scale_values, size_values)
        result = x
        for position, axis in enumerate(axes):
            start, end = 0.0, 1.0
            if roi_values is not None and len(roi_values) == 2 * len(axes):
                start, end = roi_values[position], roi_values[position + len(axes)]
            trivial_roi = self.coordinate_mode != "tf_crop_and_resize" or (start == 0 and end == 1)
            if factors[position] == 1.0 and outputs[position] == shape[axis] and trivial_roi:
                continue
            result = self._resize_axis(result, axis, factors[position], outputs[position],
                                       start, end)
        return result

    def _plan(
        self, shape: list[int], axes: list[int], scales: list[float] | None,
        sizes: list[int] | None,
    ) -> tuple[list[float], list[int]]:
        if sizes is not None:
            factors = [sizes[i] / shape[axis] for i, axis in enumerate(axes)]
            if self.aspect_policy == "stretch":
                return factors, sizes
            factor = min(factors) if self.aspect_policy == "not_larger" else max(factors)
            return [factor] * len(axes), [int(factor * shape[a] + 0.5) for a in axes]
        if scales is None:
            raise ValueError("Resize needs either scales or sizes")
        return scales, [int(math.floor(shape[a] * scales[i])) for i, a in enumerate(axes)]

    def _coordinates(
        self, out: int, size: int, scale: float, start: float, end: float, device: torch.device
    ) -> torch.Tensor:
        y = torch.arange(out, dtype=torch.float64, device=device)
        width = scale * size
        mode = self.coordinate_mode
        if mode == "align_corners":
            return y * 0.0 if width == 1 else y * (size - 1) / (width - 1)
        if mode == "asymmetric":
            return y / scale
        if mode == "tf_half_pixel_for_nn":
            return (y + 0.5) / scale
        if mode == "tf_crop_and_resize":
            if width == 1:
                return y * 0.0 + (end - start) * (size - 1) / 2 + start * (size - 1)
            return y * (end - start) * (size - 1) / (width - 1) + start * (size - 1)
        if mode == "pytorch_half_pixel":
            return y * 0.0 - 0.5 if width == 1 else (y + 0.5) / scale - 0.5
        if mode == "half_pixel_symmetric":
            offset = size / 2 * (1 - out / width)
            return offset + (y + 0.5) / scale - 0.5
        return (y + 0.5) / scale - 0.5

    def _resize_axis(
        self, x: torch.Tensor, axis: int, scale: float, out: int, start: float, end: float
    ) -> torch.Tensor:
        size = x.shape[axis]
        coordinates = self._coordinates(out, size, scale, start, end, x.device)
        outside = (coordinates < 0) | (coordinates > size - 1)
        if self.mode == "nearest":
            result = x.index_select(axis, self._nearest(coordinates, scale, size))
        else:
            matrix = self._matrix(coordinates, scale, size)
            work_dtype = x.dtype if x.is_floating_point() else torch.float32
            moved = x.to(work_dtype).movedim(axis, -1)
            result = torch.matmul(moved, matrix.to(work_dtype).t()).movedim(-1, axis)
            if not x.is_floating_point():
                result = result.round().clamp(_int_min(x.dtype), _int_max(x.dtype)).to(x.dtype)
        if self.coordinate_mode == "tf_crop_and_resize":
            mask_shape = [1] * x.dim()
            mask_shape[axis] = out
            fill = torch.full_like(result, self.extrapolation_value)
            result = torch.where(outside.reshape(mask_shape), fill, result)
        return result

    def _nearest(self, coordinates: torch.Tensor, scale: float, size: int) -> torch.Tensor:
        mode = self.nearest_mode
        if mode == "simple":  # opset < 11 (Resize-10, Upsample)
            mode = "ceil" if scale < 1 else "floor"
        if mode == "round_prefer_floor":
            index = torch.ceil(coordinates - 0.5)
        elif mode == "round_prefer_ceil":
            index = torch.floor(coordinates + 0.5)
        elif mode == "floor":
            index = torch.floor(coordinates)
        else:
            index = torch.ceil(coordinates)
        return index.clamp(0, size - 1).to(torch.int64)

    def _matrix(self, coordinates: torch.Tensor, scale: float, size: int) -> torch.Tensor:
        support = min(scale, 1.0) if self.antialias else 1.0
        if self.mode == "linear":
            first = int(math.floor(-1 / support)) + 1 if self.antialias else 0
        else:
            first = int(math.floor(-2 / support)) + 1 if self.antialias else -1
        taps = 2 - 2 * first
        base = torch.floor(coordinates)
        ratio = coordinates - base
        offsets = torch.arange(first, first + taps, dtype=torch.float64, device=coordinates.device)
        arguments = (offsets.unsqueeze(0) - ratio.unsqueeze(1)) * support
        if self.mode == "linear":
            weights = (1 - arguments.abs()).clamp(min=0)
        else:
            weights = _cubic_kernel(arguments, self.cubic_coeff_a)
        if self.antialias:
            weights = weights / weights.sum(-1, keepdim=True)
        index = base.to(torch.int64).unsqueeze(1) + offsets.to(torch.int64).unsqueeze(0)
        if self.exclude_outside:
            weights = torch.where((index < 0) | (index >= size), torch.zeros_like(weights), weights)
            total = weights.sum(-1, keepdim=True)
            weights = weights / torch.where(total == 0, torch.ones_like(total), total)
        index = index.clamp(0, size - 1)
        matrix = torch.zeros(coordinates.shape[0], size, dtype=torch.float64,
                             device=coordinates.device)
        return matrix.scatter_add_(1, index, weights)


def _int_min(dtype: torch.dtype) -> int:
    return int(torch.iinfo(dtype).min)


def _int_max(dtype: torch.dtype) -> int:
    return int(torch.iinfo(dtype).max)


def _choice(node: OnnxNode, name: str, default: str, allowed: tuple) -> str:
    value = node.attribute(name, default)
    if value not in allowed:
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"attribute {name}={value!r} is not supported; supported: {', '.join(allowed)}",
        )
    return value


def _optional_input(node: OnnxNode, position: int) -> str:
    return node.inputs[position] if len(node.inputs) > position else ""


def _constant_list(context: ConversionContext, name: str, kind: type) -> list | None:
    if not name:
        return None
    value = context.constant(name)
    if value is None or value.numel() == 0:
        return None
    return [kind(v) for v in value.reshape(-1).tolist()]


@converter("Resize", versions=(10, 11, 13, 18, 19))
def convert_resize(node: OnnxNode, context: ConversionContext) -> Converted:
    mode = _choice(node, "mode", "nearest", MODES)
    if node.since_version == 10:
        if mode == "cubic":
            raise UnsupportedOperatorError(node.domain, node.op_type, node.since_version,
                                           reason="mode='cubic' is not defined at opset 10")
        coordinate_mode, nearest_mode = "asymmetric", "simple"
        roi_name, scales_name, sizes_name = "", node.inputs[1], ""
    else:
        coordinate_mode = _choice(node, "coordinate_transformation_mode", "half_pixel",
                                  COORDINATE_MODES)
        nearest_mode = _choice(node, "nearest_mode", "round_prefer_floor", NEAREST_MODES[:4])
        roi_name = _optional_input(node, 1)
        scales_name = _optional_input(node, 2)
        sizes_name = _optional_input(node, 3)
    policy = _choice(node, "keep_aspect_ratio_policy", "stretch",
                     ("stretch", "not_larger", "not_smaller"))
    roi = _constant_list(context, roi_name, float)
    scales = _constant_list(context, scales_name, float)
    sizes = _constant_list(context, sizes_name, int)
    runtime = [node.inputs[0], None, None, None]
    for slot, (name, value) in enumerate(((roi_name, roi), (scales_name, scales),
                                          (sizes_name, sizes)), start=1):
        if name and value is None and not context.is_constant(name):
            runtime[slot] = name
    if scales is None and sizes is None and runtime[2] is None and runtime[3] is None:
        raise ConversionError(f"Resize node {node.name!r} gives neither scales nor sizes")
    module = OnnxResize(
        mode, coordinate_mode, nearest_mode, float(node.attribute("cubic_coeff_a", -0.75)),
        bool(node.attribute("exclude_outside", 0)),
        float(node.attribute("extrapolation_value", 0.0)), bool(node.attribute("antialias", 0)),
        [int(a) for a in node.attribute("axes", [])], policy, roi, scales, sizes,
    )
    return Converted(module, inputs=runtime)


@converter("Upsample", versions=(1, 7, 9, 10))
def convert_upsample(node: OnnxNode, context: ConversionContext) -> Converted:
    mode = node.attribute("mode", "nearest")
    mode = {"bilinear": "linear"}.get(mode, mode)
    if mode not in ("nearest", "linear"):
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"attribute mode={mode!r} is not supported; supported: nearest, linear",
        )
    runtime = [node.inputs[0], None, None, None]
    if node.since_version == 1:
        scales = [1.0, 1.0, float(node.attribute("height_scale", 1.0)),
                  float(node.attribute("width_scale", 1.0))]
    elif node.since_version == 7:
        scales = [float(s) for s in node.attribute("scales", [])]
    else:
        scales = _constant_list(context, node.inputs[1], float)
        if scales is None:
            runtime[2] = node.inputs[1]
    module = OnnxResize(mode, "asymmetric", "simple", -0.75, False, 0.0, False, [], "stretch",
                        None, scales, None)
    return Converted(module, inputs=runtime)
