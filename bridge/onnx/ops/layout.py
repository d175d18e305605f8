"""Padding and block rearrangement: Pad, DepthToSpace, SpaceToDepth."""

import torch
from torch import Tensor, nn

from bridge.errors import ConversionError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.ops.shape import optional_int_input, tensor_to_ints, unsupported
from bridge.onnx.registry import Converted, converter

_PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad_source_index(mode: str, begin: int, end: int, length: int, device: torch.device) -> Tensor:
    """Indices into an axis of ``length`` that produce it padded by ``begin``/``end`` in ``mode``."""
    positions = torch.arange(-begin, length + end, device=device)
    if mode == "edge":
        return positions.clamp(0, length - 1)
    if mode == "wrap":
        return torch.remainder(positions, length)
    if length == 1:  # reflect of a single element repeats it
        return torch.zeros_like(positions)
    period = 2 * (length - 1)
    folded = torch.remainder(positions, period)
    return torch.where(folded < length, folded, period - folded)


class OnnxPad(nn.Module):
    """Pad the listed axes in constant/reflect/edge/wrap mode; negative pads crop before padding."""

    pads: list[int] | None
    axes: list[int] | None

    def __init__(self, mode: str, pads: list[int] | None, axes: list[int] | None, value: float):
        super().__init__()
        self.mode = mode
        self.pads = pads
        self.axes = axes
        self.value = value

    def forward(
        self,
        x: Tensor,
        pads: Tensor | None = None,
        value: Tensor | None = None,
        axes: Tensor | None = None,
    ) -> Tensor:
        amounts = tensor_to_ints(pads) if pads is not None else self.pads
        if amounts is None:
            raise ValueError("Pad needs pads")
        rank = x.dim()
        listed = tensor_to_ints(axes) if axes is not None else self.axes
        if listed is None:
            listed = list(range(rank))
        if len(amounts) != 2 * len(listed):
            raise ValueError(f"Pad: {len(amounts)} pads for {len(listed)} axes")
        begins = [0] * rank
        ends = [0] * rank
        for position, axis in enumerate(listed):
            axis = axis + rank if axis < 0 else axis
            begins[axis] = amounts[position]
            ends[axis] = amounts[position + len(listed)]
        for axis in range(rank):  # negative pads crop first, in every mode
            start = -begins[axis] if begins[axis] < 0 else 0
            stop = x.shape[axis] + ends[axis] if ends[axis] < 0 else x.shape[axis]
            if start != 0 or stop != x.shape[axis]:
                x = x.narrow(axis, start, max(stop - start, 0))
            begins[axis] = max(begins[axis], 0)
            ends[axis] = max(ends[axis], 0)
        if self.mode != "constant":
            for axis in range(rank):
                if begins[axis] != 0 or ends[axis] != 0:
                    index = _pad_source_index(self.mode, begins[axis], ends[axis],
                                              x.shape[axis], x.device)
                    x = x.index_select(axis, index)
            return x
        shape = [x.shape[a] + begins[a] + ends[a] for a in range(rank)]
        if value is not None:
            out = value.to(device=x.device, dtype=x.dtype).reshape(()).expand(shape).clone()
        else:
            out = torch.full(shape, self.value, dtype=x.dtype, device=x.device)
        window = out
        for axis in range(rank):
            window = window.narrow(axis, begins[axis], x.shape[axis])
        window.copy_(x)
        return out


@converter("Pad", versions=(1, 2, 11, 13, 18, 19, 21, 23, 24, 25))
def convert_pad(node: OnnxNode, context: ConversionContext) -> Converted:
    mode = node.attribute("mode", "constant")
    allowed = _PAD_MODES if node.since_version >= 19 else _PAD_MODES[:3]
    if mode not in allowed:
        raise unsupported(node, f"attribute mode={mode!r} is not supported; supported: "
                          + ", ".join(allowed))
    if node.since_version < 11:
        pads = node.attribute("pads" if node.since_version >= 2 else "paddings")
        module = OnnxPad(mode, pads, None, float(node.attribute("value", 0.0)))
        return Converted(module, inputs=[node.inputs[0], None, None, None])
    pads, runtime_pads = optional_int_input(node, context, 1)
    axes, runtime_axes = optional_int_input(node, context, 3)
    value = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    module = OnnxPad(mode, pads, axes, 0.0)
    return Converted(module, inputs=[node.inputs[0], runtime_pads, value, runtime_axes])


class OnnxDepthToSpace(nn.Module):
    """Move blocks of channels into ``blocksize``×``blocksize`` spatial tiles (DCR or CRD order)."""

    def __init__(self, blocksize: int, column_row_depth: bool):
        super().__init__()
        self.blocksize = blocksize
        self.column_row_depth = column_row_depth

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
        b = self.blocksize
        depth = c // (b * b)
        if self.column_row_depth:
            tiles = x.reshape(n, depth, b, b, h, w).permute(0, 1, 4, 2, 5, 3)
        else:
            tiles = x.reshape(n, b, b, depth, h, w).permute(0, 3, 4, 1, 5, 2)
        return tiles.reshape(n, depth, h * b, w * b)


class OnnxSpaceToDepth(nn.Module):
    """Move ``blocksize``×``blocksize`` spatial tiles into channels (DCR or CRD order)."""

    def __init__(self, blocksize: int, column_row_depth: bool):
        super().__init__()
        self.blocksize = blocksize
        self.column_row_depth = column_row_depth

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
        b = self.blocksize
        tiles = x.reshape(n, c, h // b, b, w // b, b)
        if self.column_row_depth:
            tiles = tiles.permute(0, 1, 3, 5, 2, 4)
        else:
            tiles = tiles.permute(0, 3, 5, 1, 2, 4)
        return tiles.reshape(n, c * b * b, h // b, w // b)


def _block_mode(node: OnnxNode) -> bool:
    mode = node.attribute("mode", "DCR")
    if mode not in ("DCR", "CRD"):
        raise unsupported(node, f"attribute mode={mode!r} is not supported; supported: DCR, CRD")
    blocksize = node.attribute("blocksize")
    if blocksize is None or blocksize < 1:
        raise ConversionError(
            f"{node.op_type} node {node.name!r}: blocksize must be a positive int, got {blocksize!r}"
        )
    return mode == "CRD"


@converter("DepthToSpace", versions=(1, 11, 13, 28))
def convert_depth_to_space(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxDepthToSpace(node.attribute("blocksize"), _block_mode(node))


@converter("SpaceToDepth", versions=(1, 13, 28))
def convert_space_to_depth(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxSpaceToDepth(node.attribute("blocksize"), _block_mode(node))
