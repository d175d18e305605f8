"""Elementwise arithmetic and math: Add, Sub, Mul, Div, Pow, Mod, unary math, variadic Max/Min/Sum/Mean, bitwise ops, Clip.

torch lacks CPU kernels for uint16/uint32/uint64; those are computed exactly in a wider
signed type (uint16, uint32) or on the int64 bit pattern (uint64) and cast back.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import Converted, converter

# ---------------------------------------------------------------- unsigned helpers


def widen_unsigned(x: Tensor) -> Tensor:
    """Return ``x`` in a dtype torch computes with: uint16→int32, uint32→int64, uint64→int64 bits."""
    if x.dtype == torch.uint16:
        return x.to(torch.int32)
    if x.dtype == torch.uint32:
        return x.to(torch.int64)
    if x.dtype == torch.uint64:
        return x.view(torch.int64)
    return x


def narrow_unsigned(y: Tensor, dtype: torch.dtype) -> Tensor:
    """Undo :func:`widen_unsigned`: wrap ``y`` back into ``dtype`` (modulo 2**bits)."""
    if dtype == torch.uint64:
        return y.view(torch.uint64)
    if dtype == torch.uint16 or dtype == torch.uint32:
        return y.to(dtype)
    return y


def is_wide_unsigned(x: Tensor) -> bool:
    """Whether ``x`` is uint16, uint32 or uint64 (dtypes without torch CPU kernels)."""
    return x.dtype == torch.uint16 or x.dtype == torch.uint32 or x.dtype == torch.uint64


def unsigned_order_key(x: Tensor) -> Tensor:
    """Return a tensor that torch orders like ``x`` (uint64 bits with the sign bit flipped)."""
    if x.dtype == torch.uint64:
        return x.view(torch.int64) ^ (-9223372036854775807 - 1)
    return widen_unsigned(x)


def from_order_key(key: Tensor, dtype: torch.dtype) -> Tensor:
    """Invert :func:`unsigned_order_key`."""
    if dtype == torch.uint64:
        return (key ^ (-9223372036854775807 - 1)).view(torch.uint64)
    return narrow_unsigned(key, dtype)


def _logical_shift_right_int64(x: Tensor, shift: Tensor) -> Tensor:
    """Shift the int64 bit pattern ``x`` right by ``shift`` in [0, 63], filling with zeros."""
    once = (x >> 1) & 9223372036854775807
    return torch.where(shift > 0, once >> torch.clamp(shift - 1, min=0), x)


def _divmod_uint64(n: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    """Unsigned 64-bit quotient and remainder of int64 bit patterns, with signed ops only."""
    n, d = torch.broadcast_tensors(n, d)
    large_divisor = d < 0  # d >= 2**63 as unsigned
    divisor = torch.where(large_divisor, torch.ones_like(d), d)
    quotient = torch.div((n >> 1) & 9223372036854775807, divisor, rounding_mode="trunc") << 1
    remainder = n - quotient * divisor
    flip = -9223372036854775807 - 1
    one_more = (remainder ^ flip) >= (divisor ^ flip)
    quotient = quotient + one_more.to(torch.int64)
    remainder = torch.where(one_more, remainder - divisor, remainder)
    at_least = ((n ^ flip) >= (d ^ flip)).to(torch.int64)
    quotient = torch.where(large_divisor, at_least, quotient)
    remainder = torch.where(large_divisor, n - at_least * d, remainder)
    return quotient, remainder


# ---------------------------------------------------------------- binary arithmetic


class LegacyBroadcastBinary(nn.Module):
    """Base of binary ops: aligns ``b`` at ``axis`` for the pre-opset-7 ``broadcast=1, axis`` form."""

    def __init__(self, axis: int | None = None):
        super().__init__()
        self.axis = axis

    def align(self, a: Tensor, b: Tensor) -> Tensor:
        axis = self.axis
        if axis is None:
            return b
        start = axis + a.dim() if axis < 0 else axis
        trailing = a.dim() - start - b.dim()
        if trailing <= 0:
            return b
        return b.reshape(list(b.shape) + [1] * trailing)


class OnnxAdd(LegacyBroadcastBinary):
    """Add: ``a + b`` with numpy broadcasting; integers wrap around."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        b = self.align(a, b)
        if is_wide_unsigned(a):
            return narrow_unsigned(widen_unsigned(a) + widen_unsigned(b), a.dtype)
        return a + b


class OnnxSub(LegacyBroadcastBinary):
    """Sub: ``a - b`` with numpy broadcasting; integers wrap around."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        b = self.align(a, b)
        if is_wide_unsigned(a):
            return narrow_unsigned(widen_unsigned(a) - widen_unsigned(b), a.dtype)
        return a - b


class OnnxMul(LegacyBroadcastBinary):
    """Mul: ``a * b`` with numpy broadcasting; integers wrap around."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        b = self.align(a, b)
        if is_wide_unsigned(a):
            return narrow_unsigned(widen_unsigned(a) * widen_unsigned(b), a.dtype)
        return a * b


class OnnxDiv(LegacyBroadcastBinary):
    """Div: true division for floats, division truncated toward zero for integers."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        b = self.align(a, b)
        if a.is_floating_point() or a.is_complex():
            return a / b
        if a.dtype == torch.uint64:
            quotient, _ = _divmod_uint64(a.view(torch.int64), b.view(torch.int64))
            return quotient.view(torch.uint64)
        wide = torch.div(widen_unsigned(a), widen_unsigned(b), rounding_mode="trunc")
        return narrow_unsigned(wide, a.dtype)


class OnnxPow(nn.Module):
    """Pow: ``base ** exponent``; the result keeps the base's dtype whatever the exponent's."""

    def forward(self, base: Tensor, exponent: Tensor) -> Tensor:
        if base.is_floating_point():
            if exponent.is_floating_point() and exponent.dtype != base.dtype:
                wide = torch.pow(base.to(torch.float64), exponent.to(torch.float64))
                return wide.to(base.dtype)
            return torch.pow(base, exponent.to(base.dtype))
        if exponent.is_floating_point():
            return torch.pow(base.to(torch.float64), exponent.to(torch.float64)).to(base.dtype)
        return torch.pow(base, exponent.to(base.dtype))


class OnnxMod(nn.Module):
    """Mod: remainder with the divisor's sign (``fmod=0``) or the dividend's (``fmod=1``)."""

    def __init__(self, fmod: bool):
        super().__init__()
        self.fmod = fmod

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if a.dtype == torch.uint64:
            _, remainder = _divmod_uint64(a.view(torch.int64), b.view(torch.int64))
            return remainder.view(torch.uint64)
        wide_a, wide_b = widen_unsigned(a), widen_unsigned(b)
        if self.fmod:
            result = torch.fmod(wide_a, wide_b)
        else:
            result = torch.remainder(wide_a, wide_b)
            if a.is_floating_point():
                # numpy keeps the dividend where the divisor is infinite and the signs agree,
                # and returns the divisor (±inf) where they differ; torch gives nan there.
                same_sign = torch.signbit(a) == torch.signbit(b)
                keep = torch.where(same_sign | (a == 0), a, b)
                result = torch.where(torch.isinf(b) & torch.isfinite(a), keep, result)
        return narrow_unsigned(result, a.dtype)


def _legacy_axis(node: OnnxNode) -> int | None:
    if node.since_version >= 7 or not node.attribute("broadcast", 0):
        return None
    return node.attribute("axis")


@converter("Add", versions=(1, 6, 7, 13, 14))
def convert_add(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxAdd(_legacy_axis(node))


@converter("Sub", versions=(1, 6, 7, 13, 14))
def convert_sub(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxSub(_legacy_axis(node))


@converter("Mul", versions=(1, 6, 7, 13, 14))
def convert_mul(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxMul(_legacy_axis(node))


@converter("Div", versions=(1, 6, 7, 13, 14))
def convert_div(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxDiv(_legacy_axis(node))


@converter("Pow", versions=(1, 7, 12, 13, 15))
def convert_pow(node: OnnxNode, context: ConversionContext) -> nn.Module:
    if node.since_version == 1 and node.attribute("broadcast", 0) and node.has_attribute("axis"):
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"attribute axis={node.attribute('axis')} (legacy broadcasting) is not "
            "supported; supported: numpy-style broadcasting (no axis)",
        )
    return OnnxPow()


@converter("Mod", versions=(10, 13, 28))
def convert_mod(node: OnnxNode, context: ConversionContext) -> nn.Module:
    fmod = node.attribute("fmod", 0)
    if fmod not in (0, 1):
        raise ConversionError(
            f"Mod node {node.name!r}: attribute fmod={fmod} is invalid; accepted: 0 or 1"
        )
    return OnnxMod(bool(fmod))


# ---------------------------------------------------------------- unary math


class OnnxAbs(nn.Module):
    """Abs: ``|x|`` (unsigned inputs are returned unchanged)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.uint8 or is_wide_unsigned(x):
            return x
        return torch.abs(x)


class OnnxNeg(nn.Module):
    """Neg: ``-x``."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.neg(x)


class OnnxSign(nn.Module):
    """Sign: -1, 0 or 1 in the input's dtype."""

    def forward(self, x: Tensor) -> Tensor:
        if is_wide_unsigned(x):
            return narrow_unsigned(torch.sign(widen_unsigned(x)), x.dtype)
        return torch.sign(x)


class OnnxReciprocal(nn.Module):
    """Reciprocal: ``1 / x``."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.reciprocal(x)


class OnnxRound(nn.Module):
    """Round: to the nearest integer, halves to even."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x)


class OnnxUnaryMath(nn.Module):
    """One of ONNX's unary float functions (Exp, Log, Sqrt, Sin, ..., Erf), chosen by ``op_type``."""

    def __init__(self, op_type: str):
        super().__init__()
        self.op_type = op_type

    def extra_repr(self) -> str:
        return f"op_type={self.op_type!r}"

    def forward(self, x: Tensor) -> Tensor:
        op = self.op_type
        if op == "Exp":
            return torch.exp(x)
        if op == "Log":
            return torch.log(x)
        if op == "Sqrt":
            return torch.sqrt(x)
        if op == "Ceil":
            return torch.ceil(x)
        if op == "Floor":
            return torch.floor(x)
        if op == "Erf":
            return torch.erf(x)
        if op == "Sin":
            return torch.sin(x)
        if op == "Cos":
            return torch.cos(x)
        if op == "Tan":
            return torch.tan(x)
        if op == "Asin":
            return torch.asin(x)
        if op == "Acos":
            return torch.acos(x)
        if op == "Atan":
            return torch.atan(x)
        if op == "Sinh":
            return torch.sinh(x)
        if op == "Cosh":
            return torch.cosh(x)
        if op == "Asinh":
            return torch.asinh(x)
        if op == "Acosh":
            return torch.acosh(x)
        return torch.atanh(x)  # the converter only builds the ops listed in _UNARY_MATH


_UNARY_MATH = {
    "Exp": (1, 6, 13), "Log": (1, 6, 13), "Sqrt": (1, 6, 13), "Ceil": (1, 6, 13),
    "Floor": (1, 6, 13), "Erf": (9, 13), "Sin": (7, 22), "Cos": (7, 22), "Tan": (7, 22),
    "Asin": (7, 22), "Acos": (7, 22), "Atan": (7, 22), "Sinh": (9, 22), "Cosh": (9, 22),
    "Asinh": (9, 22), "Acosh": (9, 22), "Atanh": (9, 22),
}
_UNARY_CLASSES = {
    "Abs": (OnnxAbs, (1, 6, 13)), "Neg": (OnnxNeg, (1, 6, 13)), "Sign": (OnnxSign, (9, 13)),
    "Reciprocal": (OnnxReciprocal, (1, 6, 13)), "Round": (OnnxRound, (11, 22)),
}


def _register_unary_math(op_type: str, versions: tuple[int, ...]) -> None:
    @converter(op_type, versions=versions)
    def convert(node: OnnxNode, context: ConversionContext) -> nn.Module:
        return OnnxUnaryMath(node.op_type)


def _register_unary_class(op_type: str, module_class: type, versions: tuple[int, ...]) -> None:
    @converter(op_type, versions=versions)
    def convert(node: OnnxNode, context: ConversionContext) -> nn.Module:
        return module_class()


for _op_type, _versions in _UNARY_MATH.items():
    _register_unary_math(_op_type, _versions)
for _op_type, (_class, _versions) in _UNARY_CLASSES.items():
    _register_unary_class(_op_type, _class, _versions)


# ---------------------------------------------------------------- variadic


class OnnxMax(nn.Module):
    """Max: elementwise maximum of any number of broadcast inputs (NaN propagates)."""

    def forward(self, inputs: list[Tensor]) -> Tensor:
        dtype = inputs[0].dtype
        result = unsigned_order_key(inputs[0])
        for x in inputs[1:]:
            result = torch.maximum(result, unsigned_order_key(x))
        return from_order_key(result, dtype)


class OnnxMin(nn.Module):
    """Min: elementwise minimum of any number of broadcast inputs (NaN propagates)."""

    def forward(self, inputs: list[Tensor]) -> Tensor:
        dtype = inputs[0].dtype
        result = unsigned_order_key(inputs[0])
        for x in inputs[1:]:
            result = torch.minimum(result, unsigned_order_key(x))
        return from_order_key(result, dtype)


class OnnxSum(nn.Module):
    """Sum: elementwise sum of any number of broadcast inputs."""

    def forward(self, inputs: list[Tensor]) -> Tensor:
        dtype = inputs[0].dtype
        result = widen_unsigned(inputs[0])
        for x in inputs[1:]:
            result = result + widen_unsigned(x)
        return narrow_unsigned(result, dtype)


class OnnxMean(nn.Module):
    """Mean: elementwise mean of any number of broadcast float inputs."""

    def forward(self, inputs: list[Tensor]) -> Tensor:
        result = inputs[0]
        for x in inputs[1:]:
            result = result + x
        return result / len(inputs)


def _register_variadic(op_type: str, module_class: type, versions: tuple[int, ...]) -> None:
    @converter(op_type, versions=versions)
    def convert(node: OnnxNode, context: ConversionContext) -> Converted:
        present = [name for name in node.inputs if name]
        if not present:
            raise ConversionError(f"{node.op_type} node {node.name!r} has no inputs; needs one or more")
        return Converted(module_class(), inputs=[present])


for _op_type, _class, _versions in (
    ("Max", OnnxMax, (1, 6, 8, 12, 13)), ("Min", OnnxMin, (1, 6, 8, 12, 13)),
    ("Sum", OnnxSum, (1, 6, 8, 13)), ("Mean", OnnxMean, (1, 6, 8, 13)),
):
    _register_variadic(_op_type, _class, _versions)


# ---------------------------------------------------------------- bitwise and Clip


class OnnxBitShift(nn.Module):
    """BitShift: shifts by amounts outside [0, bits) give 0 (or -1 for negative signed right shifts)."""

    def __init__(self, left: bool):
        super().__init__()
        self.left = left

    def forward(self, x: Tensor, shift: Tensor) -> Tensor:
        bits = x.element_size() * 8
        dtype = x.dtype
        wide_x, wide_shift = widen_unsigned(x), widen_unsigned(shift)
        valid = (wide_shift >= 0) & (wide_shift < bits)
        amount = torch.where(valid, wide_shift, torch.zeros_like(wide_shift))
        if self.left:
            shifted = wide_x << amount
            return narrow_unsigned(torch.where(valid, shifted, torch.zeros_like(shifted)), dtype)
        if dtype == torch.uint64:
            shifted = _logical_shift_right_int64(wide_x, amount)
        else:
            shifted = wide_x >> amount
        if dtype == torch.uint8 or is_wide_unsigned(x):
            fill = torch.zeros_like(wide_x)
        else:
            fill = -(wide_x < 0).to(wide_x.dtype)  # an arithmetic shift by >= bits: all sign bits
        return narrow_unsigned(torch.where(valid, shifted, fill), dtype)


class OnnxBitwise(nn.Module):
    """BitwiseAnd / BitwiseOr / BitwiseXor of two broadcast integer tensors, chosen by ``op_type``."""

    def __init__(self, op_type: str):
        super().__init__()
        self.op_type = op_type

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        wide_a, wide_b = widen_unsigned(a), widen_unsigned(b)
        if self.op_type == "BitwiseAnd":
            result = torch.bitwise_and(wide_a, wide_b)
        elif self.op_type == "BitwiseOr":
            result = torch.bitwise_or(wide_a, wide_b)
        else:
            result = torch.bitwise_xor(wide_a, wide_b)
        return narrow_unsigned(result, a.dtype)


class OnnxBitwiseNot(nn.Module):
    """BitwiseNot: flips every bit."""

    def forward(self, x: Tensor) -> Tensor:
        return narrow_unsigned(torch.bitwise_not(widen_unsigned(x)), x.dtype)


class OnnxClip(nn.Module):
    """Clip: clamps to optional ``[low, high]``; where ``low > high`` every value becomes ``high``."""

    def __init__(self, low: float | None = None, high: float | None = None):
        super().__init__()
        self.low = low  # the attribute form (opset < 11)
        self.high = high

    def forward(self, x: Tensor, low: Tensor | None = None, high: Tensor | None = None) -> Tensor:
        if low is None and high is None:
            if self.low is None and self.high is None:
                return x
            return torch.clamp(x, self.low, self.high)
        wide_low = None if low is None else unsigned_order_key(low.to(x.dtype))
        wide_high = None if high is None else unsigned_order_key(high.to(x.dtype))
        result = torch.clamp(unsigned_order_key(x), wide_low, wide_high)
        return from_order_key(result, x.dtype)


@converter("BitShift", versions=(11, 28))
def convert_bitshift(node: OnnxNode, context: ConversionContext) -> nn.Module:
    direction = node.attribute("direction")
    if direction not in ("LEFT", "RIGHT"):
        raise ConversionError(
            f"BitShift node {node.name!r}: attribute direction={direction!r} is invalid; "
            "accepted: 'LEFT' or 'RIGHT'"
        )
    return OnnxBitShift(direction == "LEFT")


def _register_bitwise(op_type: str) -> None:
    @converter(op_type, versions=18)
    def convert(node: OnnxNode, context: ConversionContext) -> nn.Module:
        return OnnxBitwise(node.op_type)


for _op_type in ("BitwiseAnd", "BitwiseOr", "BitwiseXor"):
    _register_bitwise(_op_type)


@converter("BitwiseNot", versions=18)
def convert_bitwise_not(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxBitwiseNot()


@converter("Clip", versions=(1, 6, 11, 12, 13))
def convert_clip(node: OnnxNode, context: ConversionContext) -> nn.Module:
    if node.since_version < 11:
        return OnnxClip(node.attribute("min"), node.attribute("max"))
    return OnnxClip()
