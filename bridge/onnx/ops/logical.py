"""Comparisons, boolean logic and selection: Equal, Less, Greater, And, Or, Xor, Not, Where, IsNaN, IsInf.

String operands are int64 indices into vocabularies (see ``ConversionContext``): Equal and
Where map them onto one shared vocabulary at conversion time.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bridge.errors import ConversionError
from bridge.onnx.context import ConversionContext
from bridge.onnx.dtypes import STRING
from bridge.onnx.graph import OnnxNode
from bridge.onnx.ops.elementwise import (
    LegacyBroadcastBinary,
    is_wide_unsigned,
    narrow_unsigned,
    unsigned_order_key,
    widen_unsigned,
)
from bridge.onnx.registry import Converted, converter


class OnnxCompare(LegacyBroadcastBinary):
    """Equal / Less / Greater / LessOrEqual / GreaterOrEqual → bool, chosen by ``op_type``."""

    def __init__(self, op_type: str, axis: int | None = None):
        super().__init__(axis)
        self.op_type = op_type

    def extra_repr(self) -> str:
        return f"op_type={self.op_type!r}"

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        b = self.align(a, b)
        a, b = unsigned_order_key(a), unsigned_order_key(b)
        op = self.op_type
        if op == "Equal":
            return torch.eq(a, b)
        if op == "Less":
            return torch.lt(a, b)
        if op == "Greater":
            return torch.gt(a, b)
        if op == "LessOrEqual":
            return torch.le(a, b)
        return torch.ge(a, b)


class OnnxStringEqual(nn.Module):
    """Equal on strings: remaps ``b``'s vocabulary indices onto ``a``'s, then compares.

    An index of -1 (a string outside every vocabulary) on either side compares unequal.
    """

    def __init__(self, b_to_a: Tensor | None):
        super().__init__()
        self.register_buffer("b_to_a", b_to_a)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        table = self.b_to_a
        if table is not None:
            b = torch.where(b >= 0, table.to(b.device)[b.clamp(min=0)], b)
        return torch.eq(a, b) & (a >= 0)


class OnnxLogical(LegacyBroadcastBinary):
    """And / Or / Xor of two broadcast bool tensors, chosen by ``op_type``."""

    def __init__(self, op_type: str, axis: int | None = None):
        super().__init__(axis)
        self.op_type = op_type

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        b = self.align(a, b)
        if self.op_type == "And":
            return torch.logical_and(a, b)
        if self.op_type == "Or":
            return torch.logical_or(a, b)
        return torch.logical_xor(a, b)


class OnnxNot(nn.Module):
    """Not: logical negation of a bool tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.logical_not(x)


class OnnxWhere(nn.Module):
    """Where: ``x`` where ``condition`` else ``y`` (all three broadcast).

    ``y_offset`` shifts string indices of ``y`` past ``x``'s vocabulary (-1 stays -1).
    """

    def __init__(self, y_offset: int = 0):
        super().__init__()
        self.y_offset = y_offset

    def forward(self, condition: Tensor, x: Tensor, y: Tensor) -> Tensor:
        if self.y_offset:
            y = torch.where(y >= 0, y + self.y_offset, y)
        if is_wide_unsigned(x):
            return narrow_unsigned(
                torch.where(condition, widen_unsigned(x), widen_unsigned(y)), x.dtype
            )
        return torch.where(condition, x, y)


class OnnxIsNaN(nn.Module):
    """IsNaN: True where ``x`` is NaN."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.isnan(x)


class OnnxIsInf(nn.Module):
    """IsInf: True where ``x`` is +inf (``detect_positive``) or -inf (``detect_negative``)."""

    def __init__(self, detect_positive: bool, detect_negative: bool):
        super().__init__()
        self.detect_positive = detect_positive
        self.detect_negative = detect_negative

    def forward(self, x: Tensor) -> Tensor:
        if self.detect_positive and self.detect_negative:
            return torch.isinf(x)
        if self.detect_positive:
            return torch.isposinf(x)
        if self.detect_negative:
            return torch.isneginf(x)
        return torch.zeros_like(x, dtype=torch.bool)


def _legacy_axis(node: OnnxNode) -> int | None:
    if node.since_version >= 7 or not node.attribute("broadcast", 0):
        return None
    return node.attribute("axis")


def _is_string(context: ConversionContext, name: str) -> bool:
    if context.vocabulary(name) is not None:
        return True
    value_type = context.type_of(name)
    return value_type is not None and value_type.elem_type == STRING


def _string_vocabularies(node: OnnxNode, context: ConversionContext, first: str, second: str):
    """Return the vocabularies of two string operands, giving a vocabulary-less one the other's."""
    first_labels, second_labels = context.vocabulary(first), context.vocabulary(second)
    if first_labels is None and second_labels is None:
        raise ConversionError(
            f"{node.op_type} node {node.name!r}: string inputs {first!r} and {second!r} both "
            "come from outside the graph without a vocabulary; bridge carries strings as "
            "int64 indices into a vocabulary fixed by the graph, so at least one side must be "
            "a constant or come from an operator with known labels"
        )
    if first_labels is None:
        context.set_vocabulary(first, second_labels)
        first_labels = second_labels
    if second_labels is None:
        context.set_vocabulary(second, first_labels)
        second_labels = first_labels
    return first_labels, second_labels


def _register_compare(op_type: str, versions: tuple[int, ...]) -> None:
    @converter(op_type, versions=versions)
    def convert(node: OnnxNode, context: ConversionContext) -> nn.Module:
        a, b = node.inputs[0], node.inputs[1]
        if op_type == "Equal" and (_is_string(context, a) or _is_string(context, b)):
            labels_a, labels_b = _string_vocabularies(node, context, a, b)
            if labels_a == labels_b:
                return OnnxStringEqual(None)
            position = {label: index for index, label in enumerate(labels_a)}
            table = torch.tensor([position.get(label, -2) for label in labels_b],
                                 dtype=torch.int64)
            return OnnxStringEqual(table)
        return OnnxCompare(op_type, _legacy_axis(node))


for _op_type, _versions in (
    ("Equal", (1, 7, 11, 13, 19)), ("Less", (1, 7, 9, 13)), ("Greater", (1, 7, 9, 13)),
    ("LessOrEqual", (12, 16)), ("GreaterOrEqual", (12, 16)),
):
    _register_compare(_op_type, _versions)


def _register_logical(op_type: str) -> None:
    @converter(op_type, versions=(1, 7))
    def convert(node: OnnxNode, context: ConversionContext) -> nn.Module:
        return OnnxLogical(op_type, _legacy_axis(node))


for _op_type in ("And", "Or", "Xor"):
    _register_logical(_op_type)


@converter("Not", versions=1)
def convert_not(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxNot()


@converter("Where", versions=(9, 16))
def convert_where(node: OnnxNode, context: ConversionContext) -> Converted | nn.Module:
    condition, x, y = node.inputs
    if not (_is_string(context, x) or _is_string(context, y)):
        return OnnxWhere()
    labels_x, labels_y = _string_vocabularies(node, context, x, y)
    if labels_x == labels_y:
        context.set_vocabulary(node.outputs[0], labels_x)
        return OnnxWhere()
    context.set_vocabulary(node.outputs[0], list(labels_x) + list(labels_y))
    return OnnxWhere(len(labels_x))


@converter("IsNaN", versions=(9, 13, 20))
def convert_isnan(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxIsNaN()


@converter("IsInf", versions=(10, 20))
def convert_isinf(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxIsInf(
        bool(node.attribute("detect_positive", 1)), bool(node.attribute("detect_negative", 1))
    )
