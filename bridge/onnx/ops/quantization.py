"""Linear quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear and the
integer / quantized kernels MatMulInteger, ConvInteger, QLinearMatMul and QLinearConv.

Integer products are computed in float64, which is exact for 8- and 16-bit operands at any
realistic reduction length and runs on every device (CUDA has no integer matmul/conv).
"""

from __future__ import annotations

import torch
from torch import nn

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.dtypes import onnx_type_name, torch_dtype
from bridge.onnx.graph import OnnxNode
from bridge.onnx.ops.conv import OnnxConv, read_auto_pad, read_pads, read_spatial_ints
from bridge.onnx.registry import Converted, converter

_INTEGER_TYPES = (torch.uint8, torch.int8, torch.uint16, torch.int16, torch.int32)


def _integer_range(dtype: torch.dtype) -> tuple[float, float]:
    if dtype == torch.uint8:
        return 0.0, 255.0
    if dtype == torch.int8:
        return -128.0, 127.0
    if dtype == torch.uint16:
        return 0.0, 65535.0
    if dtype == torch.int16:
        return -32768.0, 32767.0
    return -2147483648.0, 2147483647.0


def _float8_max(dtype: torch.dtype) -> float:
    """Largest finite value of a float8 type (e4m3fn 448, e4m3fnuz 240, e5m2* 57344)."""
    if dtype == torch.float8_e4m3fn:
        return 448.0
    if dtype == torch.float8_e4m3fnuz:
        return 240.0
    return 57344.0


def _is_float8(dtype: torch.dtype) -> bool:
    return (dtype == torch.float8_e4m3fn or dtype == torch.float8_e4m3fnuz
            or dtype == torch.float8_e5m2 or dtype == torch.float8_e5m2fnuz)


def broadcast_quantization_parameter(
    value: torch.Tensor, x: torch.Tensor, axis: int, block_size: int
) -> torch.Tensor:
    """Shape a scale or zero point so it broadcasts against ``x``.

    A scalar (or one-element 1-D tensor) is per-tensor; a 1-D tensor is per-axis along
    ``axis``; with ``block_size > 0`` each entry along ``axis`` covers ``block_size``
    consecutive entries of ``x``.
    """
    if value.dim() == 0 or (value.dim() == 1 and value.numel() == 1 and block_size == 0):
        return value.reshape([])
    axis = axis if axis >= 0 else axis + x.dim()
    if block_size > 0:
        repeated = value.repeat_interleave(block_size, dim=axis)
        return repeated.narrow(axis, 0, x.shape[axis])
    shape = [1] * x.dim()
    shape[axis] = value.numel()
    return value.reshape(shape)


class OnnxQuantizeLinear(nn.Module):
    """``y = saturate(round_half_even(x / scale) + zero_point)`` in the zero point's type.

    Float8 outputs are produced by a rounding cast, clamped to the type's finite range
    when ``saturate``.
    """

    def __init__(self, axis: int, block_size: int, output_dtype: torch.dtype, saturate: bool,
                 precision: torch.dtype | None):
        super().__init__()
        self.axis = axis
        self.block_size = block_size
        self.output_dtype = output_dtype
        self.saturate = saturate
        self.precision = precision

    def forward(
        self, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None = None
    ) -> torch.Tensor:
        dtype = self.output_dtype if zero_point is None else zero_point.dtype
        work_dtype = torch.promote_types(x.dtype, scale.dtype)
        if self.precision is not None:
            work_dtype = self.precision
        scale = broadcast_quantization_parameter(scale, x, self.axis, self.block_size)
        scaled = x.to(work_dtype) / scale.to(work_dtype)
        if _is_float8(dtype):  # the zero point of a float8 type is 0 by definition
            if self.saturate:
                largest = _float8_max(dtype)
                scaled = scaled.clamp(-largest, largest)
            return scaled.to(dtype)
        rounded = torch.round(scaled)
        if zero_point is not None:
            rounded = rounded + broadcast_quantization_parameter(
                zero_point, x, self.axis, self.block_size).to(work_dtype)
        low, high = _integer_range(dtype)
        return rounded.clamp(low, high).to(dtype)


class OnnxDequantizeLinear(nn.Module):
    """``y = (x - zero_point) * scale``, computed in float32 (float64 for double scales)."""

    def __init__(self, axis: int, block_size: int, output_dtype: torch.dtype | None):
        super().__init__()
        self.axis = axis
        self.block_size = block_size
        self.output_dtype = output_dtype

    def forward(
        self, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None = None
    ) -> torch.Tensor:
        output_dtype = scale.dtype if self.output_dtype is None else self.output_dtype
        work_dtype = torch.float64 if scale.dtype == torch.float64 else torch.float32
        shifted = x.to(work_dtype)
        if zero_point is not None and not _is_float8(x.dtype):
            shifted = shifted - broadcast_quantization_parameter(
                zero_point, x, self.axis, self.block_size).to(work_dtype)
        scale = broadcast_quantization_parameter(scale, x, self.axis, self.block_size)
        return (shifted * scale.to(work_dtype)).to(output_dtype)


class OnnxDynamicQuantizeLinear(nn.Module):
    """uint8 quantization with scale and zero point taken from ``x``'s range (incl. 0)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        work = x.float()
        zero = torch.zeros((), dtype=work.dtype, device=x.device)
        largest = torch.maximum(work.max(), zero)
        smallest = torch.minimum(work.min(), zero)
        span = largest - smallest
        scale = torch.where(span == 0, torch.ones_like(span), span) / 255.0
        zero_point = torch.round((-smallest / scale).clamp(0.0, 255.0))
        y = (torch.round(work / scale) + zero_point).clamp(0.0, 255.0)
        return y.to(torch.uint8), scale.to(x.dtype), zero_point.to(torch.uint8)


def _shift(value: torch.Tensor, zero_point: torch.Tensor | None, channel_axis: int) -> torch.Tensor:
    """``value - zero_point`` in float64; a 1-D zero point runs along ``channel_axis``."""
    shifted = value.to(torch.float64)
    if zero_point is None:
        return shifted
    point = zero_point.to(torch.float64)
    if point.dim() == 1 and point.numel() > 1:
        shape = [1] * value.dim()
        shape[channel_axis] = point.numel()
        point = point.reshape(shape)
    elif point.numel() == 1:
        point = point.reshape([])
    return shifted - point


class OnnxMatMulInteger(nn.Module):
    """``(A - a_zero_point) @ (B - b_zero_point)`` as int32; zero points per row of A /
    per column of B when 1-D."""

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, a_zero_point: torch.Tensor | None = None,
        b_zero_point: torch.Tensor | None = None,
    ) -> torch.Tensor:
        product = torch.matmul(_shift(a, a_zero_point, a.dim() - 2),
                               _shift(b, b_zero_point, b.dim() - 1))
        return product.to(torch.int32)


def _requantize(
    accumulated: torch.Tensor, multiplier: torch.Tensor, zero_point: torch.Tensor | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Scale an exact integer accumulation (float64) to ``dtype``, rounding half to even."""
    result = accumulated * multiplier.to(torch.float64)
    if zero_point is not None:
        result = result + zero_point.to(torch.float64).reshape([])
    low, high = _integer_range(dtype)
    return torch.round(result).clamp(low, high).to(dtype)


class OnnxQLinearMatMul(nn.Module):
    """Quantized matmul: integer product rescaled by ``a_scale * b_scale / y_scale``."""

    def forward(
        self, a: torch.Tensor, a_scale: torch.Tensor, a_zero_point: torch.Tensor | None,
        b: torch.Tensor, b_scale: torch.Tensor, b_zero_point: torch.Tensor | None,
        y_scale: torch.Tensor, y_zero_point: torch.Tensor | None = None,
    ) -> torch.Tensor:
        accumulated = torch.matmul(_shift(a, a_zero_point, a.dim() - 2),
                                   _shift(b, b_zero_point, b.dim() - 1))
        # per-row a_scale (M,) and per-column b_scale (N,) broadcast over (..., M, N)
        multiplier = a_scale.reshape(-1, 1) * b_scale.reshape(1, -1) / y_scale.reshape([])
        if multiplier.numel() == 1:
            multiplier = multiplier.reshape([])
        dtype = a.dtype if y_zero_point is None else y_zero_point.dtype
        return _requantize(accumulated, multiplier, y_zero_point, dtype)


class OnnxConvInteger(nn.Module):
    """Integer convolution: ``conv(x - x_zero_point, w - w_zero_point)`` as int32."""

    def __init__(self, conv: OnnxConv):
        super().__init__()
        self.conv = conv

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, x_zero_point: torch.Tensor | None = None,
        w_zero_point: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.conv(_shift(x, x_zero_point, 1), _shift(w, w_zero_point, 0)).to(torch.int32)


class OnnxQLinearConv(nn.Module):
    """Quantized convolution; ``w_scale`` / ``w_zero_point`` may be per output channel."""

    def __init__(self, conv: OnnxConv):
        super().__init__()
        self.conv = conv

    def forward(
        self, x: torch.Tensor, x_scale: torch.Tensor, x_zero_point: torch.Tensor | None,
        w: torch.Tensor, w_scale: torch.Tensor, w_zero_point: torch.Tensor | None,
        y_scale: torch.Tensor, y_zero_point: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        accumulated = self.conv(_shift(x, x_zero_point, 1), _shift(w, w_zero_point, 0),
                                None if bias is None else bias.to(torch.float64))
        multiplier = x_scale.reshape([]) * w_scale.reshape(-1) / y_scale.reshape([])
        if multiplier.numel() == 1:
            multiplier = multiplier.reshape([])
        else:
            multiplier = multiplier.reshape([1, -1] + [1] * (accumulated.dim() - 2))
        dtype = x.dtype if y_zero_point is None else y_zero_point.dtype
        return _requantize(accumulated, multiplier, y_zero_point, dtype)


def _input(node: OnnxNode, position: int) -> str:
    return node.inputs[position] if len(node.inputs) > position else ""


def _value_dtype(node: OnnxNode, context: ConversionContext, name: str) -> torch.dtype | None:
    constant = context.constant(name)
    if constant is not None:
        return constant.dtype
    value_type = context.type_of(name)
    if value_type is not None and value_type.elem_type:
        return torch_dtype(value_type.elem_type)
    return None


def _check_quantized_type(node: OnnxNode, context: ConversionContext, name: str) -> None:
    """Reject element types torch has no dtype for (int4, uint4, float4, ...), by name."""
    value_type = context.type_of(name) if name else None
    if value_type is not None and value_type.elem_type:
        try:
            torch_dtype(value_type.elem_type)
        except ConversionError:
            raise UnsupportedOperatorError(
                node.domain, node.op_type, node.since_version,
                reason=f"element type {onnx_type_name(value_type.elem_type)} of {name!r} has no "
                "torch dtype; supported: int8, uint8, int16, uint16, int32 and the float8 types",
            ) from None


def _axis_and_block(node: OnnxNode) -> tuple[int, int]:
    axis = int(node.attribute("axis", 1)) if node.since_version >= 13 else 1
    block_size = int(node.attribute("block_size", 0)) if node.since_version >= 21 else 0
    if block_size < 0:
        raise ConversionError(
            f"{node.op_type} node {node.name!r}: block_size={block_size}; expected >= 0"
        )
    return axis, block_size


@converter("QuantizeLinear", versions=(10, 13, 19, 21, 23, 24, 25, 28))
def convert_quantize_linear(node: OnnxNode, context: ConversionContext) -> Converted:
    for name in (node.inputs[0], _input(node, 2), node.outputs[0]):
        _check_quantized_type(node, context, name)
    axis, block_size = _axis_and_block(node)
    output_type = int(node.attribute("output_dtype", 0)) if node.since_version >= 21 else 0
    output_dtype = torch_dtype(output_type) if output_type else torch.uint8
    zero_point_dtype = _value_dtype(node, context, _input(node, 2)) if _input(node, 2) else None
    if output_type and zero_point_dtype is not None and zero_point_dtype != output_dtype:
        raise ConversionError(
            f"QuantizeLinear node {node.name!r}: output_dtype={onnx_type_name(output_type)} "
            f"differs from the zero point's type {zero_point_dtype}"
        )
    final = zero_point_dtype or output_dtype
    if final not in _INTEGER_TYPES[:4] and not _is_float8(final):
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"output type {final} is not supported; supported: uint8, int8, uint16, "
            "int16 and the float8 types",
        )
    precision = int(node.attribute("precision", 0)) if node.since_version >= 23 else 0
    module = OnnxQuantizeLinear(axis, block_size, output_dtype,
                                bool(node.attribute("saturate", 1)),
                                torch_dtype(precision) if precision else None)
    return Converted(module, inputs=[node.inputs[0], node.inputs[1], _input(node, 2)])


@converter("DequantizeLinear", versions=(10, 13, 19, 21, 23, 24, 25, 28))
def convert_dequantize_linear(node: OnnxNode, context: ConversionContext) -> Converted:
    for name in (node.inputs[0], _input(node, 2)):
        _check_quantized_type(node, context, name)
    axis, block_size = _axis_and_block(node)
    output_type = int(node.attribute("output_dtype", 0)) if node.since_version >= 23 else 0
    module = OnnxDequantizeLinear(axis, block_size,
                                  torch_dtype(output_type) if output_type else None)
    return Converted(module, inputs=[node.inputs[0], node.inputs[1], _input(node, 2)])


@converter("DynamicQuantizeLinear", versions=(11,))
def convert_dynamic_quantize_linear(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxDynamicQuantizeLinear()


@converter("MatMulInteger", versions=(10,))
def convert_matmul_integer(node: OnnxNode, context: ConversionContext) -> Converted:
    return Converted(OnnxMatMulInteger(),
                     inputs=[node.inputs[0], node.inputs[1], _input(node, 2), _input(node, 3)])


@converter("QLinearMatMul", versions=(10, 21))
def convert_qlinear_matmul(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxQLinearMatMul()


def _integer_conv(node: OnnxNode, context: ConversionContext, weight_name: str) -> OnnxConv:
    kernel = node.attribute("kernel_shape")
    if not kernel:
        weight = context.constant(weight_name)
        weight_type = context.type_of(weight_name)
        if weight is not None:
            kernel = list(weight.shape[2:])
        elif weight_type is not None and weight_type.shape is not None and all(
                isinstance(d, int) for d in weight_type.shape[2:]):
            kernel = list(weight_type.shape[2:])
        else:
            raise ConversionError(
                f"{node.op_type} node {node.name!r}: the kernel shape is unknown (no "
                "kernel_shape attribute, and the weight is neither constant nor of static shape)"
            )
    kernel = [int(k) for k in kernel]
    rank = len(kernel)
    if rank not in (1, 2, 3):
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"a kernel with {rank} spatial axes is not supported; supported: 1, 2, 3",
        )
    auto_pad = read_auto_pad(node)
    pads = [0] * (2 * rank) if auto_pad == "VALID" else read_pads(node, rank)
    return OnnxConv(rank, read_spatial_ints(node, "strides", rank, 1),
                    read_spatial_ints(node, "dilations", rank, 1), pads,
                    int(node.attribute("group", 1)), auto_pad, kernel)


@converter("ConvInteger", versions=(10,))
def convert_conv_integer(node: OnnxNode, context: ConversionContext) -> Converted:
    return Converted(OnnxConvInteger(_integer_conv(node, context, node.inputs[1])),
                     inputs=[node.inputs[0], node.inputs[1], _input(node, 2), _input(node, 3)])


@converter("QLinearConv", versions=(10,))
def convert_qlinear_conv(node: OnnxNode, context: ConversionContext) -> Converted:
    inputs = [_input(node, position) for position in range(9)]
    return Converted(OnnxQLinearConv(_integer_conv(node, context, node.inputs[3])),
                     inputs=inputs)
