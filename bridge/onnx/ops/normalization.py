"""Normalization layers and Dropout.

BatchNormalization, InstanceNormalization, LayerNormalization, GroupNormalization,
RMSNormalization, LpNormalization, MeanVarianceNormalization, LRN and Dropout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import Converted, converter


def _channel_shape(x: torch.Tensor) -> list[int]:
    return [1, -1] + [1] * (x.dim() - 2)


class OnnxBatchNormalization(nn.Module):
    """Batch normalization with the running statistics (inference)."""

    def __init__(self, epsilon: float):
        super().__init__()
        self.epsilon = epsilon

    def forward(
        self, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor,
        mean: torch.Tensor, var: torch.Tensor,
    ) -> torch.Tensor:
        dtype = x.dtype
        return F.batch_norm(x, mean.to(dtype), var.to(dtype), scale.to(dtype), bias.to(dtype),
                            False, 0.0, self.epsilon)


class OnnxBatchNormalizationTraining(nn.Module):
    """Batch normalization with the batch's statistics (``training_mode=1``).

    Returns ``(y, running_mean, running_var)`` with the running statistics updated by
    ``momentum`` as ONNX specifies (the batch variance is the population variance).
    """

    def __init__(self, epsilon: float, momentum: float):
        super().__init__()
        self.epsilon = epsilon
        self.momentum = momentum

    def forward(
        self, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor,
        mean: torch.Tensor, var: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dtype = x.dtype
        scale, bias = scale.to(dtype), bias.to(dtype)
        axes = [0] + list(range(2, x.dim()))
        batch_var, batch_mean = torch.var_mean(x, dim=axes, correction=0)
        y = (x - batch_mean.reshape(_channel_shape(x))) * torch.rsqrt(
            batch_var.reshape(_channel_shape(x)) + self.epsilon
        ) * scale.reshape(_channel_shape(x)) + bias.reshape(_channel_shape(x))
        running_mean = mean * self.momentum + batch_mean.to(mean.dtype) * (1 - self.momentum)
        running_var = var * self.momentum + batch_var.to(var.dtype) * (1 - self.momentum)
        return y, running_mean, running_var


class OnnxInstanceNormalization(nn.Module):
    """Instance normalization: per-sample, per-channel statistics over spatial axes."""

    def __init__(self, epsilon: float):
        super().__init__()
        self.epsilon = epsilon

    def forward(self, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=scale, bias=bias, eps=self.epsilon)


class OnnxLayerNormalization(nn.Module):
    """Layer normalization over axes ``[axis, rank)``; also returns Mean and InvStdDev."""

    def __init__(self, axis: int, epsilon: float, stash_float32: bool):
        super().__init__()
        self.axis = axis
        self.epsilon = epsilon
        self.stash_float32 = stash_float32

    def forward(
        self, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        axis = self.axis if self.axis >= 0 else self.axis + x.dim()
        axes = list(range(axis, x.dim()))
        dtype = x.dtype
        work = x.float() if self.stash_float32 and dtype != torch.float64 else x
        var, mean = torch.var_mean(work, dim=axes, correction=0, keepdim=True)
        inverse_std = torch.rsqrt(var + self.epsilon)
        y = ((work - mean) * inverse_std).to(dtype) * scale
        if bias is not None:
            y = y + bias
        return y, mean.to(dtype), inverse_std.to(dtype)


class OnnxGroupNormalization(nn.Module):
    """Group normalization; scale/bias per channel (opset 21) or per group (opset 18)."""

    def __init__(self, groups: int, epsilon: float, per_group_affine: bool, stash_float32: bool):
        super().__init__()
        self.groups = groups
        self.epsilon = epsilon
        self.per_group_affine = per_group_affine
        self.stash_float32 = stash_float32

    def forward(self, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        work = x.float() if self.stash_float32 and dtype != torch.float64 else x
        channels = x.shape[1]
        grouped = work.reshape(x.shape[0], self.groups, -1)
        var, mean = torch.var_mean(grouped, dim=2, correction=0, keepdim=True)
        y = ((grouped - mean) * torch.rsqrt(var + self.epsilon)).reshape(x.shape).to(dtype)
        if self.per_group_affine:
            scale = scale.repeat_interleave(channels // self.groups)
            bias = bias.repeat_interleave(channels // self.groups)
        return y * scale.reshape(_channel_shape(x)) + bias.reshape(_channel_shape(x))


class OnnxRMSNormalization(nn.Module):
    """RMS normalization over axes ``[axis, rank)`` times ``scale``."""

    def __init__(self, axis: int, epsilon: float, stash_float32: bool):
        super().__init__()
        self.axis = axis
        self.epsilon = epsilon
        self.stash_float32 = stash_float32

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        axis = self.axis if self.axis >= 0 else self.axis + x.dim()
        axes = list(range(axis, x.dim()))
        dtype = x.dtype
        work = x.float() if self.stash_float32 and dtype != torch.float64 else x
        mean_square = work.pow(2).mean(dim=axes, keepdim=True)
        return (work * torch.rsqrt(mean_square + self.epsilon)).to(dtype) * scale


class OnnxLpNormalization(nn.Module):
    """Divides by the L1 or L2 norm along one axis; an all-zero slice stays zero."""

    def __init__(self, axis: int, p: int):
        super().__init__()
        self.axis = axis
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, ord=float(self.p), dim=self.axis, keepdim=True)
        safe = torch.where(norm == 0, torch.ones_like(norm), norm)
        return torch.where(norm == 0, torch.zeros_like(x), x / safe)


class OnnxMeanVarianceNormalization(nn.Module):
    """``(x - mean) / (std + 1e-9)`` over the given axes, as the ONNX function defines."""

    def __init__(self, axes: list[int]):
        super().__init__()
        self.axes = axes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=self.axes, keepdim=True)
        variance = x.pow(2).mean(dim=self.axes, keepdim=True) - mean.pow(2)
        return (x - mean) / (variance.sqrt() + 1e-9)


class OnnxLRN(nn.Module):
    """Local response normalization across channels (ONNX's window placement)."""

    def __init__(self, size: int, alpha: float, beta: float, bias: float):
        super().__init__()
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before = (self.size - 1) // 2
        after = self.size - 1 - before
        squares = x.pow(2).movedim(1, -1)
        squares = F.pad(squares, [before, after])
        window_sums = squares.unfold(-1, self.size, 1).sum(-1).movedim(-1, 1)
        return x / (self.bias + self.alpha / self.size * window_sums).pow(self.beta)


class OnnxDropout(nn.Module):
    """Dropout: identity with an all-true mask in inference; random when training.

    ``ratio`` and ``training_mode`` are run-time inputs (opset 12+) when the graph
    computes them; a module built for training is marked ``deterministic = False`` so
    the importer never folds it.
    """

    def __init__(self, ratio: float, training: bool, bool_mask: bool):
        super().__init__()
        self.ratio = ratio
        self.training_mode = training
        self.bool_mask = bool_mask
        self.deterministic = not training

    def forward(
        self, x: torch.Tensor, ratio: torch.Tensor | None = None,
        training_mode: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        training = self.training_mode
        if training_mode is not None:
            training = bool(training_mode.item())
        probability = self.ratio if ratio is None else float(ratio.item())
        if not training or probability == 0.0:
            keep = torch.ones(x.shape, dtype=torch.bool, device=x.device)
            y = x
        else:
            keep = torch.rand(x.shape, device=x.device) >= probability
            y = x * keep.to(x.dtype) / (1.0 - probability)
        return y, keep if self.bool_mask else keep.to(x.dtype)


class _FirstOfFive(nn.Module):
    """Keeps output 0 of a multi-output module taking up to five inputs."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(
        self, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
        d: torch.Tensor,
    ) -> torch.Tensor:
        return self.inner(x, a, b, c, d)[0]


class _FirstOfLayerNormalization(nn.Module):
    """Keeps output Y of LayerNormalization."""

    def __init__(self, inner: OnnxLayerNormalization):
        super().__init__()
        self.inner = inner

    def forward(
        self, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        # torch's fused kernel when scale and bias cover the normalized axes exactly (no
        # broadcasting) and no float32 stash is at stake
        axis = self.inner.axis if self.inner.axis >= 0 else self.inner.axis + x.dim()
        shape = list(x.shape[axis:])
        if (x.dtype == torch.float32 or x.dtype == torch.float64) and scale.dtype == x.dtype \
                and list(scale.shape) == shape \
                and (bias is None or (list(bias.shape) == shape and bias.dtype == x.dtype)):
            return F.layer_norm(x, shape, scale, bias, self.inner.epsilon)
        return self.inner(x, scale, bias)[0]


class _FirstOfDropout(nn.Module):
    """Keeps output 0 of Dropout (the node has no mask output)."""

    def __init__(self, inner: OnnxDropout):
        super().__init__()
        self.inner = inner
        self.deterministic = inner.deterministic

    def forward(
        self, x: torch.Tensor, ratio: torch.Tensor | None = None,
        training_mode: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.inner(x, ratio, training_mode)[0]


def _stash_float32(node: OnnxNode) -> bool:
    stash_type = int(node.attribute("stash_type", 1))
    if stash_type not in (1, 11):
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"attribute stash_type={stash_type} is not supported; supported: 1 "
            "(float32), 11 (float64)",
        )
    return stash_type == 1


@converter("BatchNormalization", versions=(1, 6, 7, 9, 14, 15))
def convert_batch_normalization(node: OnnxNode, context: ConversionContext) -> nn.Module:
    epsilon = float(node.attribute("epsilon", 1e-5))
    momentum = float(node.attribute("momentum", 0.9))
    if node.since_version < 9 and node.attribute("spatial", 1) != 1:
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason="attribute spatial=0 is not supported; supported: spatial=1",
        )
    training = node.since_version >= 14 and bool(node.attribute("training_mode", 0))
    if not training:
        if len([name for name in node.outputs if name]) > 1:
            raise UnsupportedOperatorError(
                node.domain, node.op_type, node.since_version,
                reason="running-statistics outputs are supported only with training_mode=1 "
                "(opset 14+); this node asks for them in inference mode",
            )
        return OnnxBatchNormalization(epsilon)
    module = OnnxBatchNormalizationTraining(epsilon, momentum)
    return module if len(node.outputs) > 1 else _FirstOfFive(module)


@converter("InstanceNormalization", versions=(1, 6, 22))
def convert_instance_normalization(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxInstanceNormalization(float(node.attribute("epsilon", 1e-5)))


@converter("LayerNormalization", versions=(17,))
def convert_layer_normalization(node: OnnxNode, context: ConversionContext) -> nn.Module:
    module = OnnxLayerNormalization(
        int(node.attribute("axis", -1)), float(node.attribute("epsilon", 1e-5)),
        _stash_float32(node),
    )
    return module if len(node.outputs) > 1 else _FirstOfLayerNormalization(module)


@converter("GroupNormalization", versions=(18, 21))
def convert_group_normalization(node: OnnxNode, context: ConversionContext) -> nn.Module:
    groups = node.attribute("num_groups")
    if groups is None or groups < 1:
        raise ConversionError(
            f"GroupNormalization node {node.name!r}: num_groups={groups}; expected an int >= 1"
        )
    return OnnxGroupNormalization(
        int(groups), float(node.attribute("epsilon", 1e-5)),
        per_group_affine=node.since_version < 21,
        stash_float32=_stash_float32(node) if node.since_version >= 21 else False,
    )


@converter("RMSNormalization", versions=(23,))
def convert_rms_normalization(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxRMSNormalization(
        int(node.attribute("axis", -1)), float(node.attribute("epsilon", 1e-5)),
        _stash_float32(node),
    )


@converter("LpNormalization", versions=(1, 22))
def convert_lp_normalization(node: OnnxNode, context: ConversionContext) -> nn.Module:
    p = int(node.attribute("p", 2))
    if p not in (1, 2):
        raise ConversionError(f"LpNormalization node {node.name!r}: p={p}; expected 1 or 2")
    return OnnxLpNormalization(int(node.attribute("axis", -1)), p)


@converter("MeanVarianceNormalization", versions=(9, 13))
def convert_mean_variance_normalization(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxMeanVarianceNormalization([int(a) for a in node.attribute("axes", [0, 2, 3])])


@converter("LRN", versions=(1, 13))
def convert_lrn(node: OnnxNode, context: ConversionContext) -> nn.Module:
    size = node.attribute("size")
    if size is None or size < 1:
        raise ConversionError(f"LRN node {node.name!r}: size={size}; expected an int >= 1")
    return OnnxLRN(int(size), float(node.attribute("alpha", 1e-4)),
                   float(node.attribute("beta", 0.75)), float(node.attribute("bias", 1.0)))


@converter("Dropout", versions=(1, 6, 7, 10, 12, 13, 22))
def convert_dropout(node: OnnxNode, context: ConversionContext) -> Converted:
    ratio = float(node.attribute("ratio", 0.5))
    training = False  # opsets < 12: ONNX runtimes run Dropout as inference (identity)
    runtime_inputs: list = [node.inputs[0], None, None]
    if node.since_version >= 12:
        if len(node.inputs) > 1 and node.inputs[1]:
            constant_ratio = context.constant(node.inputs[1])
            if constant_ratio is None:
                runtime_inputs[1] = node.inputs[1]
            else:
                ratio = float(constant_ratio.reshape(-1)[0])
        if len(node.inputs) > 2 and node.inputs[2]:
            constant_mode = context.constant(node.inputs[2])
            if constant_mode is None:
                runtime_inputs[2] = node.inputs[2]
                training = True
            else:
                training = bool(constant_mode.reshape(-1)[0])
    if not 0.0 <= ratio < 1.0:
        raise ConversionError(f"Dropout node {node.name!r}: ratio={ratio}; expected 0 <= ratio < 1")
    module = OnnxDropout(ratio, training, bool_mask=node.since_version >= 10)
    if len(node.outputs) > 1 and node.outputs[1]:
        return Converted(module, inputs=runtime_inputs)
    return Converted(_FirstOfDropout(module), inputs=runtime_inputs)
