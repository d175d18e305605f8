"""Sequence operators: SequenceConstruct, SequenceEmpty, SequenceAt, SequenceLength,
SequenceInsert, SequenceErase, ConcatFromSequence, SplitToSequence.

An ONNX sequence is a Python list of tensors here (a graph output of sequence type comes
back as a list). Modules that make a list are never folded at import time: the importer
keeps tensors, not lists, as constants.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bridge.onnx.context import ConversionContext
from bridge.onnx.dtypes import torch_dtype
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import converter


def _position(index: Tensor, length: int, allow_end: bool = False) -> int:
    """A sequence position from ONNX's int tensor (negative counts from the end)."""
    position = int(index.reshape(-1)[0])
    limit = length + 1 if allow_end else length
    if position < 0:
        position += length
    if not 0 <= position < limit:
        raise IndexError(f"sequence position {int(index.reshape(-1)[0])} is out of range for "
                         f"a sequence of {length} tensors")
    return position


class OnnxSequenceConstruct(nn.Module):
    """The inputs as one sequence."""

    deterministic = False  # makes a list: never folded

    def forward(self, *tensors: Tensor) -> list[Tensor]:
        return list(tensors)


class OnnxSequenceEmpty(nn.Module):
    """An empty sequence (its element type is recorded, lists carry none)."""

    deterministic = False

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype

    def forward(self) -> list[Tensor]:
        return []


class OnnxSequenceAt(nn.Module):
    """The tensor at a position (negative from the end)."""

    def forward(self, sequence: list[Tensor], index: Tensor) -> Tensor:
        return sequence[_position(index, len(sequence))]


class OnnxSequenceLength(nn.Module):
    """The number of tensors, as an int64 scalar."""

    def forward(self, sequence: list[Tensor]) -> Tensor:
        return torch.tensor(len(sequence), dtype=torch.int64)


class OnnxSequenceInsert(nn.Module):
    """A new sequence with a tensor inserted at a position (default: appended)."""

    deterministic = False

    def forward(self, sequence: list[Tensor], tensor: Tensor,
                index: Tensor | None = None) -> list[Tensor]:
        result = list(sequence)
        position = len(result) if index is None else _position(index, len(result), True)
        result.insert(position, tensor)
        return result


class OnnxSequenceErase(nn.Module):
    """A new sequence without the tensor at a position (default: the last)."""

    deterministic = False

    def forward(self, sequence: list[Tensor], index: Tensor | None = None) -> list[Tensor]:
        result = list(sequence)
        position = len(result) - 1 if index is None else _position(index, len(result))
        del result[position]
        return result


class OnnxConcatFromSequence(nn.Module):
    """The tensors joined along ``axis`` (``new_axis``: stacked along a new axis)."""

    def __init__(self, axis: int, new_axis: bool):
        super().__init__()
        self.axis = axis
        self.new_axis = new_axis

    def forward(self, sequence: list[Tensor]) -> Tensor:
        if self.new_axis:
            return torch.stack(sequence, dim=self.axis)
        return torch.cat(sequence, dim=self.axis)


class OnnxSplitToSequence(nn.Module):
    """The input cut along ``axis``: into pieces of the given sizes, into pieces of one
    size (the last one shorter), or into single slices (``keepdims=0`` drops the axis)."""

    deterministic = False

    def __init__(self, axis: int, keepdims: bool):
        super().__init__()
        self.axis = axis
        self.keepdims = keepdims

    def forward(self, x: Tensor, split: Tensor | None = None) -> list[Tensor]:
        if split is None:
            pieces = list(torch.split(x, 1, dim=self.axis))
            if not self.keepdims:
                pieces = [p.squeeze(self.axis) for p in pieces]
            return pieces
        if split.dim() == 0:
            return list(torch.split(x, int(split), dim=self.axis))
        return list(torch.split(x, [int(s) for s in split.tolist()], dim=self.axis))


@converter("SequenceConstruct", versions=11)
def convert_sequence_construct(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxSequenceConstruct()


@converter("SequenceEmpty", versions=11)
def convert_sequence_empty(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxSequenceEmpty(torch_dtype(node.attribute("dtype", 1)))


@converter("SequenceAt", versions=11)
def convert_sequence_at(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxSequenceAt()


@converter("SequenceLength", versions=11)
def convert_sequence_length(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxSequenceLength()


@converter("SequenceInsert", versions=11)
def convert_sequence_insert(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxSequenceInsert()


@converter("SequenceErase", versions=11)
def convert_sequence_erase(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxSequenceErase()


@converter("ConcatFromSequence", versions=11)
def convert_concat_from_sequence(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxConcatFromSequence(int(node.attribute("axis")),
                                  bool(node.attribute("new_axis", 0)))


@converter("SplitToSequence", versions=(11, 24))
def convert_split_to_sequence(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxSplitToSequence(int(node.attribute("axis", 0)),
                               bool(node.attribute("keepdims", 1)))
