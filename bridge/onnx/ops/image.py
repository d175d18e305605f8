"""Spatial image operators: GridSample, AffineGrid, Col2Im, CenterCropPad, MaxUnpool
and DeformConv."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.ops.conv import read_pads, read_spatial_ints
from bridge.onnx.registry import Converted, converter

_GRID_MODES = {"linear": "bilinear", "bilinear": "bilinear", "nearest": "nearest",
               "cubic": "bicubic", "bicubic": "bicubic"}
_PADDING_MODES = ("zeros", "border", "reflection")


class OnnxGridSample(nn.Module):
    """Samples ``x`` at the normalized ``grid`` locations (``F.grid_sample``)."""

    def __init__(self, mode: str, padding_mode: str, align_corners: bool):
        super().__init__()
        self.mode = mode
        self.padding_mode = padding_mode
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(x, grid.to(x.dtype), mode=self.mode,
                             padding_mode=self.padding_mode, align_corners=self.align_corners)


@converter("GridSample", versions=(16, 20, 22))
def convert_grid_sample(node: OnnxNode, context: ConversionContext) -> nn.Module:
    mode = node.attribute("mode", "bilinear" if node.since_version < 20 else "linear")
    padding_mode = node.attribute("padding_mode", "zeros")
    if mode not in _GRID_MODES or padding_mode not in _PADDING_MODES:
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"mode={mode!r}, padding_mode={padding_mode!r} is not supported; supported "
            f"modes: {', '.join(_GRID_MODES)}; padding modes: {', '.join(_PADDING_MODES)}",
        )
    x_type = context.type_of(node.inputs[0])
    rank = len(x_type.shape) if x_type is not None and x_type.shape is not None else None
    if rank is not None and (rank not in (4, 5) or (rank == 5 and _GRID_MODES[mode] == "bicubic")):
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"a rank-{rank} input with mode={mode!r} is not supported; supported: "
            "rank 4 (linear, nearest, cubic) and rank 5 (linear, nearest)",
        )
    return OnnxGridSample(_GRID_MODES[mode], padding_mode, bool(node.attribute("align_corners", 0)))


class OnnxAffineGrid(nn.Module):
    """The sampling grid of affine transforms ``theta`` for an output ``size`` (N, C, *spatial)."""

    def __init__(self, align_corners: bool):
        super().__init__()
        self.align_corners = align_corners

    def forward(self, theta: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        sizes: list[int] = [int(s) for s in size.tolist()]
        return F.affine_grid(theta, sizes, align_corners=self.align_corners)


@converter("AffineGrid", versions=(20,))
def convert_affine_grid(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxAffineGrid(bool(node.attribute("align_corners", 0)))


def col2im_targets(image_shape: list[int], block_shape: list[int], strides: list[int],
                   dilations: list[int], pads: list[int], device: torch.device) -> torch.Tensor:
    """Flat padded-image index of every (block element, block position) pair, flattened."""
    rank = len(image_shape)
    padded = [image_shape[i] + pads[i] + pads[rank + i] for i in range(rank)]
    element_grid = torch.stack(torch.meshgrid(
        [torch.arange(b, device=device) for b in block_shape], indexing="ij"), -1).reshape(-1, rank)
    positions = [(padded[i] - (dilations[i] * (block_shape[i] - 1) + 1)) // strides[i] + 1
                 for i in range(rank)]
    position_grid = torch.stack(torch.meshgrid(
        [torch.arange(p, device=device) for p in positions], indexing="ij"), -1).reshape(-1, rank)
    flat_strides = [math.prod(padded[i + 1:]) for i in range(rank)]
    coordinates = (element_grid[:, None, :] * torch.tensor(dilations, device=device)
                   + position_grid[None, :, :] * torch.tensor(strides, device=device))
    return (coordinates * torch.tensor(flat_strides, device=device)).sum(-1).reshape(-1)


class OnnxCol2Im(nn.Module):
    """Sums sliding blocks back into an image (the adjoint of im2col), any number of axes:
    one ``index_add`` into the padded image, then the pads are cropped."""

    def __init__(self, strides: list[int] | None, dilations: list[int] | None,
                 pads: list[int] | None):
        super().__init__()
        self.strides = strides
        self.dilations = dilations
        self.pads = pads

    def forward(self, x: torch.Tensor, image_shape: torch.Tensor, block_shape: torch.Tensor
                ) -> torch.Tensor:
        image = [int(v) for v in image_shape.tolist()]
        block = [int(v) for v in block_shape.tolist()]
        rank = len(image)
        strides = self.strides or [1] * rank
        dilations = self.dilations or [1] * rank
        pads = self.pads or [0] * (2 * rank)
        padded = [image[i] + pads[i] + pads[rank + i] for i in range(rank)]
        targets = col2im_targets(image, block, strides, dilations, pads, x.device)
        batch, block_elements = x.shape[0], math.prod(block)
        channels = x.shape[1] // block_elements
        flat = x.reshape(batch, channels, block_elements * x.shape[2])
        result = torch.zeros((batch, channels, math.prod(padded)), dtype=x.dtype, device=x.device)
        result = result.index_add(2, targets, flat).reshape([batch, channels] + padded)
        for axis in range(rank):
            result = result.narrow(axis + 2, pads[axis], image[axis])
        return result


@converter("Col2Im", versions=(18,))
def convert_col2im(node: OnnxNode, context: ConversionContext) -> nn.Module:
    def optional_ints(name: str) -> list[int] | None:
        values = node.attribute(name)
        return [int(v) for v in values] if values else None

    return OnnxCol2Im(optional_ints("strides"), optional_ints("dilations"), optional_ints("pads"))


class OnnxCenterCropPad(nn.Module):
    """Center-crops or zero-pads the given axes to the target sizes (extra goes to the end)."""

    def __init__(self, axes: list[int]):
        super().__init__()
        self.axes = axes

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        targets: list[int] = [int(s) for s in shape.tolist()]
        axes = self.axes if len(self.axes) > 0 else list(range(x.dim()))
        for axis, target in zip(axes, targets):
            axis = axis if axis >= 0 else axis + x.dim()
            size = x.shape[axis]
            if target < size:
                x = x.narrow(axis, (size - target) // 2, target)
            elif target > size:
                before = (target - size) // 2
                padding = [0] * (2 * (x.dim() - axis))
                padding[-2] = before
                padding[-1] = target - size - before
                x = F.pad(x, padding)
        return x


@converter("CenterCropPad", versions=(18,))
def convert_center_crop_pad(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxCenterCropPad([int(a) for a in node.attribute("axes", [])])


class OnnxMaxUnpool(nn.Module):
    """Scatters pooled values back to the flat positions MaxPool's indices name.

    The indices address the unpooled tensor of the inferred size; a larger
    ``output_shape`` extends it with zeros at the end of each spatial axis.
    """

    def __init__(self, kernel: list[int], strides: list[int], pads: list[int]):
        super().__init__()
        self.kernel = kernel
        self.strides = strides
        self.pads = pads

    def forward(self, x: torch.Tensor, indices: torch.Tensor,
                output_shape: torch.Tensor | None = None) -> torch.Tensor:
        rank = len(self.kernel)
        inferred: list[int] = [x.shape[0], x.shape[1]]
        for i in range(rank):
            inferred.append((x.shape[i + 2] - 1) * self.strides[i] - self.pads[i]
                            - self.pads[rank + i] + self.kernel[i])
        size = 1
        for extent in inferred:
            size *= extent
        y = torch.zeros(size, dtype=x.dtype, device=x.device)
        y = y.scatter(0, indices.reshape(-1).to(torch.int64), x.reshape(-1)).reshape(inferred)
        if output_shape is not None:
            target: list[int] = [int(s) for s in output_shape.tolist()]
            padding: list[int] = []
            for i in range(len(target) - 1, 1, -1):
                padding.append(0)
                padding.append(target[i] - inferred[i])
            y = F.pad(y, padding)
        return y


@converter("MaxUnpool", versions=(9, 11, 22))
def convert_max_unpool(node: OnnxNode, context: ConversionContext) -> Converted:
    kernel = [int(k) for k in node.attribute("kernel_shape", [])]
    if not kernel:
        raise ConversionError(f"MaxUnpool node {node.name!r}: the kernel_shape attribute is missing")
    rank = len(kernel)
    module = OnnxMaxUnpool(kernel, read_spatial_ints(node, "strides", rank, 1),
                           read_pads(node, rank))
    output_shape = node.inputs[2] if len(node.inputs) > 2 else ""
    return Converted(module, inputs=[node.inputs[0], node.inputs[1], output_shape])


def bilinear_zero_padded(image: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor
                         ) -> torch.Tensor:
    """Bilinear samples of ``image`` (N, C, H, W) at pixel coordinates (N, P) → (N, C, P).

    Corners outside the image count as zero (deformable convolution's convention).
    """
    batch, channels, height, width = image.shape
    flat = image.reshape(batch, channels, height * width)
    top, left = torch.floor(rows), torch.floor(columns)
    result = torch.zeros((batch, channels, rows.shape[1]), dtype=image.dtype, device=image.device)
    for row_step in (0, 1):
        for column_step in (0, 1):
            row, column = top + row_step, left + column_step
            weight = (1 - torch.abs(rows - row)) * (1 - torch.abs(columns - column))
            inside = (row >= 0) & (row < height) & (column >= 0) & (column < width)
            index = (row.clamp(0, height - 1) * width + column.clamp(0, width - 1)).to(torch.int64)
            values = torch.gather(flat, 2, index.unsqueeze(1).expand(batch, channels, -1))
            result = result + values * (weight * inside.to(image.dtype)).unsqueeze(1)
    return result


class OnnxDeformConv(nn.Module):
    """2-D deformable convolution (v1 without ``mask``, v2 with it)."""

    def __init__(self, kernel: list[int], strides: list[int], dilations: list[int],
                 pads: list[int], group: int, offset_group: int):
        super().__init__()
        self.kernel = kernel
        self.strides = strides
        self.dilations = dilations
        self.pads = pads
        self.group = group
        self.offset_group = offset_group

    def forward(self, x: torch.Tensor, weight: torch.Tensor, offset: torch.Tensor,
                bias: torch.Tensor | None = None, mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        batch, channels = x.shape[0], x.shape[1]
        out_height, out_width = offset.shape[2], offset.shape[3]
        kernel_size = self.kernel[0] * self.kernel[1]
        positions = out_height * out_width
        device, dtype = x.device, x.dtype
        kernel_rows = torch.arange(self.kernel[0], device=device, dtype=dtype).repeat_interleave(
            self.kernel[1]) * self.dilations[0]
        kernel_columns = torch.arange(self.kernel[1], device=device, dtype=dtype).repeat(
            self.kernel[0]) * self.dilations[1]
        output_rows = torch.arange(out_height, device=device, dtype=dtype) * self.strides[0] \
            - self.pads[0]
        output_columns = torch.arange(out_width, device=device, dtype=dtype) * self.strides[1] \
            - self.pads[1]
        base_rows = (kernel_rows.reshape(-1, 1, 1) + output_rows.reshape(1, -1, 1)).expand(
            kernel_size, out_height, out_width)
        base_columns = (kernel_columns.reshape(-1, 1, 1) + output_columns.reshape(1, 1, -1)).expand(
            kernel_size, out_height, out_width)
        offsets = offset.reshape(batch, self.offset_group, kernel_size, 2, out_height, out_width)
        group_channels = channels // self.offset_group
        sampled: list[torch.Tensor] = []
        for g in range(self.offset_group):
            rows = (base_rows + offsets[:, g, :, 0]).reshape(batch, -1)
            columns = (base_columns + offsets[:, g, :, 1]).reshape(batch, -1)
            image = x[:, g * group_channels:(g + 1) * group_channels]
            values = bilinear_zero_padded(image, rows, columns).reshape(
                batch, group_channels, kernel_size, positions)
            if mask is not None:
                weights = mask.reshape(batch, self.offset_group, kernel_size, positions)[:, g]
                values = values * weights.unsqueeze(1)
            sampled.append(values)
        columns_matrix = torch.cat(sampled, 1).reshape(
            batch, self.group, (channels // self.group) * kernel_size, positions)
        kernels = weight.reshape(self.group, weight.shape[0] // self.group, -1)
        y = torch.einsum("gok,ngkl->ngol", kernels, columns_matrix).reshape(
            batch, weight.shape[0], out_height, out_width)
        if bias is not None:
            y = y + bias.reshape(1, -1, 1, 1)
        return y


@converter("DeformConv", versions=(19, 22))
def convert_deform_conv(node: OnnxNode, context: ConversionContext) -> Converted:
    kernel = [int(k) for k in node.attribute("kernel_shape", [])]
    if not kernel:
        weight = context.constant(node.inputs[1])
        weight_type = context.type_of(node.inputs[1])
        if weight is not None:
            kernel = [int(s) for s in weight.shape[2:]]
        elif weight_type is not None and weight_type.shape is not None and all(
                isinstance(d, int) for d in weight_type.shape[2:]):
            kernel = [int(d) for d in weight_type.shape[2:]]
    if len(kernel) != 2:
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"kernel shape {kernel or 'unknown'} is not supported; supported: 2-D kernels "
            "(given by kernel_shape or a weight of static shape)",
        )
    module = OnnxDeformConv(
        kernel, read_spatial_ints(node, "strides", 2, 1), read_spatial_ints(node, "dilations", 2, 1),
        read_pads(node, 2), int(node.attribute("group", 1)), int(node.attribute("offset_group", 1)),
    )
    inputs = list(itertools.islice(itertools.chain(node.inputs, itertools.repeat("")), 5))
    return Converted(module, inputs=inputs)
