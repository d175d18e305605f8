"""Activation functions and the softmax family."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import converter


class OnnxRelu(nn.Module):
    """Relu: ``max(x, 0)``."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x)


class OnnxSigmoid(nn.Module):
    """Sigmoid: ``1 / (1 + exp(-x))``."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)


class OnnxTanh(nn.Module):
    """Tanh."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x)


class OnnxSoftplus(nn.Module):
    """Softplus: ``log(1 + exp(x))``, computed without overflow."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.logaddexp(x, torch.zeros_like(x))


class OnnxSoftsign(nn.Module):
    """Softsign: ``x / (1 + |x|)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x / (1 + torch.abs(x))


class OnnxMish(nn.Module):
    """Mish: ``x * tanh(softplus(x))``."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.tanh(torch.logaddexp(x, torch.zeros_like(x)))


class OnnxHardSwish(nn.Module):
    """HardSwish: ``x * max(0, min(1, x / 6 + 1 / 2))``."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.clamp(x / 6 + 0.5, 0.0, 1.0)


class OnnxLeakyRelu(nn.Module):
    """LeakyRelu: ``x`` for ``x >= 0``, else ``alpha * x``."""

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.alpha)


class OnnxElu(nn.Module):
    """Elu: ``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``."""

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(x, self.alpha)


class OnnxCelu(nn.Module):
    """Celu: ``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        return F.celu(x, self.alpha)


class OnnxSelu(nn.Module):
    """Selu: ``gamma * x`` for ``x > 0``, else ``gamma * alpha * (exp(x) - 1)``."""

    def __init__(self, alpha: float, gamma: float):
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, x: Tensor) -> Tensor:
        return self.gamma * F.elu(x, self.alpha)


class OnnxHardSigmoid(nn.Module):
    """HardSigmoid: ``max(0, min(1, alpha * x + beta))``."""

    def __init__(self, alpha: float, beta: float):
        super().__init__()
        self.alpha = alpha
        self.beta = beta

    def forward(self, x: Tensor) -> Tensor:
        return torch.clamp(self.alpha * x + self.beta, 0.0, 1.0)


class OnnxThresholdedRelu(nn.Module):
    """ThresholdedRelu: ``x`` where ``x > alpha``, else 0."""

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        return torch.where(x > self.alpha, x, torch.zeros_like(x))


class OnnxShrink(nn.Module):
    """Shrink: ``x + bias`` below ``-lambd``, ``x - bias`` above ``lambd``, else 0."""

    def __init__(self, bias: float, lambd: float):
        super().__init__()
        self.bias = bias
        self.lambd = lambd

    def forward(self, x: Tensor) -> Tensor:
        zero = torch.zeros_like(x)
        shifted_up = (x.double() + self.bias).to(x.dtype)
        shifted_down = (x.double() - self.bias).to(x.dtype)
        return torch.where(x < -self.lambd, shifted_up,
                           torch.where(x > self.lambd, shifted_down, zero))


class OnnxGelu(nn.Module):
    """Gelu: exact (``approximate='none'``) or its tanh approximation."""

    def __init__(self, approximate: str):
        super().__init__()
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate=self.approximate)


class OnnxSwish(nn.Module):
    """Swish: ``x * sigmoid(alpha * x)``."""

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.alpha * x)


class OnnxPRelu(nn.Module):
    """PRelu: ``x`` for ``x >= 0``, else ``slope * x`` with ``slope`` broadcast to ``x``.

    Before opset 7 a 1-D slope holds one value per channel (axis 1) rather than
    broadcasting numpy-style against the last axis; ``per_channel`` selects that reading.
    """

    def __init__(self, per_channel: bool = False):
        super().__init__()
        self.per_channel = per_channel

    def forward(self, x: Tensor, slope: Tensor) -> Tensor:
        if self.per_channel and slope.dim() == 1 and x.dim() > 2:
            slope = slope.reshape([-1] + [1] * (x.dim() - 2))
        return torch.where(x < 0, slope * x, x)


class OnnxSoftmaxFamily(nn.Module):
    """Softmax / LogSoftmax / Hardmax along ``axis``, chosen by ``op_type``.

    With ``coerce_2d`` (opsets before 13) the input is read as a 2-D matrix
    ``[prod(shape[:axis]), prod(shape[axis:])]`` and normalised along its rows.
    """

    def __init__(self, op_type: str, axis: int, coerce_2d: bool):
        super().__init__()
        self.op_type = op_type
        self.axis = axis
        self.coerce_2d = coerce_2d

    def extra_repr(self) -> str:
        return f"op_type={self.op_type!r}, axis={self.axis}, coerce_2d={self.coerce_2d}"

    def forward(self, x: Tensor) -> Tensor:
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        if self.coerce_2d:
            flat = x.reshape(1, -1) if axis == 0 else x.flatten(0, axis - 1).flatten(1)
            return self._normalise(flat, 1).reshape(x.shape)
        return self._normalise(x, axis)

    def _normalise(self, x: Tensor, axis: int) -> Tensor:
        if self.op_type == "Softmax":
            if x.dtype == torch.float16 or x.dtype == torch.bfloat16:
                # ONNX's formula step by step in the half type, rounding where the ONNX
                # reference rounds (torch's fused kernel rounds once, at the end)
                exponentials = torch.exp(x - torch.amax(x, axis, keepdim=True))
                return exponentials / exponentials.sum(axis, keepdim=True)
            return torch.softmax(x, axis)
        if self.op_type == "LogSoftmax":
            return torch.log_softmax(x, axis)
        if x.numel() == 0:
            return x
        first_max = torch.argmax(x, dim=axis, keepdim=True)
        return torch.zeros_like(x).scatter(axis, first_max, 1.0)


def _simple(op_type: str, module_class: type, versions: tuple[int, ...]) -> None:
    @converter(op_type, versions=versions)
    def convert(node: OnnxNode, context: ConversionContext) -> nn.Module:
        return module_class()


for _op_type, _class, _versions in (
    ("Relu", OnnxRelu, (1, 6, 13, 14)), ("Sigmoid", OnnxSigmoid, (1, 6, 13)),
    ("Tanh", OnnxTanh, (1, 6, 13)), ("Softplus", OnnxSoftplus, (1, 22)),
    ("Softsign", OnnxSoftsign, (1, 22)), ("Mish", OnnxMish, (18, 22)),
    ("HardSwish", OnnxHardSwish, (14, 22)),
):
    _simple(_op_type, _class, _versions)


@converter("PRelu", versions=(1, 6, 7, 9, 16))
def convert_prelu(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxPRelu(per_channel=node.since_version < 7)


@converter("LeakyRelu", versions=(1, 6, 16))
def convert_leaky_relu(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxLeakyRelu(node.attribute("alpha", 0.01))


@converter("Elu", versions=(1, 6, 22))
def convert_elu(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxElu(node.attribute("alpha", 1.0))


@converter("Celu", versions=(12, 28))
def convert_celu(node: OnnxNode, context: ConversionContext) -> nn.Module:
    alpha = node.attribute("alpha", 1.0)
    if alpha == 0:
        raise ConversionError(f"Celu node {node.name!r}: attribute alpha=0 is invalid (x / alpha)")
    return OnnxCelu(alpha)


@converter("Selu", versions=(1, 6, 22))
def convert_selu(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxSelu(
        node.attribute("alpha", 1.67326319217681884765625),
        node.attribute("gamma", 1.05070102214813232421875),
    )


@converter("HardSigmoid", versions=(1, 6, 22))
def convert_hard_sigmoid(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxHardSigmoid(node.attribute("alpha", 0.2), node.attribute("beta", 0.5))


@converter("ThresholdedRelu", versions=(10, 22))
def convert_thresholded_relu(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxThresholdedRelu(node.attribute("alpha", 1.0))


@converter("Shrink", versions=9)
def convert_shrink(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxShrink(node.attribute("bias", 0.0), node.attribute("lambd", 0.5))


@converter("Gelu", versions=20)
def convert_gelu(node: OnnxNode, context: ConversionContext) -> nn.Module:
    approximate = node.attribute("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"attribute approximate={approximate!r} is not supported; "
            "supported: 'none', 'tanh'",
        )
    return OnnxGelu(approximate)


@converter("Swish", versions=24)
def convert_swish(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxSwish(node.attribute("alpha", 1.0))


def _softmax_family(op_type: str) -> None:
    @converter(op_type, versions=(1, 11, 13))
    def convert(node: OnnxNode, context: ConversionContext) -> nn.Module:
        coerce_2d = node.since_version < 13
        return OnnxSoftmaxFamily(op_type, node.attribute("axis", 1 if coerce_2d else -1), coerce_2d)


for _op_type in ("Softmax", "LogSoftmax", "Hardmax"):
    _softmax_family(_op_type)
