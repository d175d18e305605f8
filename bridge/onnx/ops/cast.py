"""Element type conversion: Cast and CastLike.

Strings are int64 indices into a vocabulary: a cast from a string value with a known
vocabulary parses the labels once at conversion time; casts to strings are not supported.
"""

from __future__ import annotations

import onnx
import torch
from torch import Tensor, nn

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.dtypes import STRING, onnx_type_name, torch_dtype
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import Converted, converter


def float8_limit(dtype: torch.dtype) -> float:
    """Return the largest finite value of a float8 dtype (0.0 for any other dtype)."""
    if dtype == torch.float8_e4m3fn:
        return 448.0
    if dtype == torch.float8_e4m3fnuz:
        return 240.0
    if dtype == torch.float8_e5m2 or dtype == torch.float8_e5m2fnuz:
        return 57344.0
    return 0.0


# Float -> integer casts of NaN, inf and values out of range are undefined in ONNX. On CPU
# (as in onnxruntime and numpy on x86) they give the smallest int64 for int64 and go through
# int32 (the smallest int32, then wrapped) for the narrower types; CUDA gives 0 for NaN and
# saturates. Other devices are made to match the CPU, so a graph's output does not depend on
# where it runs (uint32 and uint64 are left to the device). Written for TorchScript too (no
# dtype tuples, no torch.iinfo).


def converts_like_cpu(dtype: torch.dtype) -> bool:
    """Whether float -> ``dtype`` casts go through :func:`integer_cast_like_cpu` off the CPU."""
    return (dtype == torch.int64 or dtype == torch.int32 or dtype == torch.int16
            or dtype == torch.int8 or dtype == torch.uint8 or dtype == torch.uint16)


def integer_cast_like_cpu(x: Tensor, dtype: torch.dtype) -> Tensor:
    """Convert floating ``x`` to the integer ``dtype`` (see :func:`converts_like_cpu`) with
    the CPU's results for NaN, inf and values out of range, on any device."""
    if dtype == torch.int64:
        wide, bound, smallest = torch.int64, 2.0 ** 63, -(2 ** 63)
    else:  # the narrower types go through int32, then wrap
        wide, bound, smallest = torch.int32, 2.0 ** 31, -(2 ** 31)
    inside = (x >= -bound) & (x < bound)  # false for NaN
    converted = torch.where(inside, x, torch.zeros_like(x)).to(wide)
    return torch.where(inside, converted, torch.full_like(converted, smallest)).to(dtype)


def cast_tensor(x: Tensor, dtype: torch.dtype, saturate: bool) -> Tensor:
    """Convert ``x`` to ``dtype`` the way ONNX Cast does.

    Float → float8 with ``saturate`` clamps to the type's finite range (±inf included,
    NaN kept); without it, values past the range become NaN (inf for float8e5m2). Float →
    integer gives the CPU's results on every device (see :func:`integer_cast_like_cpu`).
    """
    if x.dtype == dtype:
        return x
    limit = float8_limit(dtype)
    if limit > 0.0 and x.is_floating_point():
        wide = x.to(torch.float32)
        if saturate:
            return torch.clamp(wide, -limit, limit).to(dtype)
        if dtype == torch.float8_e4m3fn:
            # torch saturates this type; ONNX maps what rounds past 448 (> 464) to NaN
            overflow = torch.abs(wide) > 464.0
            wide = torch.where(overflow, torch.full_like(wide, float("nan")), wide)
        return wide.to(dtype)
    if x.is_floating_point() and x.device.type != "cpu" and converts_like_cpu(dtype):
        return integer_cast_like_cpu(x, dtype)
    return x.to(dtype)


class OnnxCast(nn.Module):
    """Cast: converts its input to a fixed dtype."""

    def __init__(self, dtype: torch.dtype, saturate: bool):
        super().__init__()
        self.dtype = dtype
        self.saturate = saturate

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}, saturate={self.saturate}"

    def forward(self, x: Tensor) -> Tensor:
        return cast_tensor(x, self.dtype, self.saturate)


class OnnxCastLike(nn.Module):
    """CastLike: converts its first input to the dtype of its second."""

    def __init__(self, saturate: bool):
        super().__init__()
        self.saturate = saturate

    def forward(self, x: Tensor, like: Tensor) -> Tensor:
        return cast_tensor(x, like.dtype, self.saturate)


class OnnxParseStrings(nn.Module):
    """Cast from strings: looks string indices up in the numbers their labels parse to.

    An index of -1 (a string outside the vocabulary) gives NaN.
    """

    def __init__(self, parsed: Tensor):
        super().__init__()
        self.register_buffer("parsed", parsed)

    def forward(self, indices: Tensor) -> Tensor:
        table = self.parsed
        nan = torch.full((1,), float("nan"), dtype=table.dtype, device=table.device)
        extended = torch.cat([table, nan])
        return extended[torch.where(indices >= 0, indices, table.shape[0])]


def _target_dtype(node: OnnxNode, elem_type: int) -> torch.dtype:
    try:
        return torch_dtype(elem_type)
    except ConversionError:
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"target type {onnx_type_name(elem_type)} has no torch dtype; supported: "
            "the float, int, uint, bool and torch float8 types",
        ) from None


def _parse_label(node: OnnxNode, label, elem_type: int) -> float:
    text = label.decode() if isinstance(label, bytes) else str(label)
    try:
        return float(text)
    except ValueError:
        raise ConversionError(
            f"{node.op_type} node {node.name!r}: string {text!r} cannot be cast to "
            f"{onnx_type_name(elem_type)}; accepted: decimal or scientific numbers, 'NaN', "
            "'INF', '-INF'"
        ) from None


def _convert_to(
    node: OnnxNode, context: ConversionContext, elem_type: int, saturate: bool
) -> nn.Module:
    """The module that casts ``node``'s first input to ``elem_type`` (strings via vocabularies)."""
    source = node.inputs[0]
    labels = context.vocabulary(source)
    source_type = context.type_of(source)
    is_string = labels is not None or (
        source_type is not None and source_type.elem_type == STRING
    )
    if is_string and labels is None:
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"input {source!r} is a string tensor without a known vocabulary; "
            "supported: strings that come from a constant or an operator with known labels",
        )
    if elem_type == STRING:
        if labels is None:
            raise UnsupportedOperatorError(
                node.domain, node.op_type, node.since_version,
                reason="casting numbers to strings is not supported (a string is an index "
                "into a vocabulary fixed at conversion time); supported: string to string, "
                "string to float types",
            )
        context.set_vocabulary(node.outputs[0], labels)
        return OnnxCast(torch.int64, saturate)
    dtype = _target_dtype(node, elem_type)
    if labels is None:
        return OnnxCast(dtype, saturate)
    if not dtype.is_floating_point:
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"casting strings to {onnx_type_name(elem_type)} is not supported (a string "
            "outside the vocabulary has no integer value); supported: float types",
        )
    parsed = torch.tensor([_parse_label(node, label, elem_type) for label in labels],
                          dtype=torch.float64)
    return OnnxParseStrings(cast_tensor(parsed, dtype, saturate))


def _saturate(node: OnnxNode) -> bool:
    saturate = node.attribute("saturate", 1)
    if saturate not in (0, 1):
        raise ConversionError(
            f"{node.op_type} node {node.name!r}: attribute saturate={saturate} is invalid; "
            "accepted: 0 or 1"
        )
    return bool(saturate)


@converter("Cast", versions=(1, 6, 9, 13, 19, 21, 23, 24, 25, 28))
def convert_cast(node: OnnxNode, context: ConversionContext) -> nn.Module:
    to = node.attribute("to")
    if to is None:
        raise ConversionError(f"Cast node {node.name!r} has no 'to' attribute; it is required")
    if isinstance(to, str):  # opset 1 names the type: to="FLOAT"
        try:
            to = onnx.TensorProto.DataType.Value(to.upper())
        except ValueError:
            raise ConversionError(
                f"Cast node {node.name!r}: to={to!r} is not an ONNX element type name; "
                f"accepted: {', '.join(onnx.TensorProto.DataType.keys())}"
            ) from None
    return _convert_to(node, context, int(to), _saturate(node))


@converter("CastLike", versions=(15, 19, 21, 23, 24, 25))
def convert_cast_like(node: OnnxNode, context: ConversionContext) -> Converted | nn.Module:
    saturate = _saturate(node)
    like = node.inputs[1]
    like_type = context.type_of(like)
    source_type = context.type_of(node.inputs[0])
    involves_strings = context.vocabulary(node.inputs[0]) is not None or any(
        t is not None and t.elem_type == STRING for t in (like_type, source_type)
    )
    if context.vocabulary(like) is not None:
        elem_type: int | None = STRING
    else:
        elem_type = like_type.elem_type if like_type is not None else None
    if involves_strings and elem_type is not None:
        return Converted(_convert_to(node, context, elem_type, saturate), inputs=[node.inputs[0]])
    if involves_strings:
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"the element type of {like!r} is unknown at conversion time and strings "
            "are involved; supported: string casts whose target type the graph declares",
        )
    return OnnxCastLike(saturate)
