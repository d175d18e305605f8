"""Language-model building blocks beside Attention: SwiGLU, TensorScatter (KV-cache
writes), CausalConvWithState and LinearAttention (recurrent linear / gated / delta rules)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import Converted, converter


class OnnxSwiGLU(nn.Module):
    """``a * sigmoid(alpha * a) * b``: a Swish-gated linear unit."""

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * torch.sigmoid(self.alpha * a) * b


@converter("SwiGLU", versions=(28,))
def convert_swiglu(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxSwiGLU(float(node.attribute("alpha", 1.0)))


class OnnxTensorScatter(nn.Module):
    """Writes ``update`` into a copy of ``past_cache`` along ``axis`` from each batch row's
    write index (``linear``), or wrapping around the cache length (``circular``)."""

    def __init__(self, axis: int, circular: bool):
        super().__init__()
        self.axis = axis
        self.circular = circular

    def forward(self, past_cache: torch.Tensor, update: torch.Tensor,
                write_indices: torch.Tensor | None = None) -> torch.Tensor:
        axis = self.axis % past_cache.dim()
        batch, length = past_cache.shape[0], update.shape[axis]
        starts = torch.zeros(batch, dtype=torch.int64, device=past_cache.device) \
            if write_indices is None else write_indices.to(torch.int64)
        positions = starts.reshape(-1, 1) + torch.arange(length, device=past_cache.device)
        if self.circular:
            positions = positions % past_cache.shape[axis]
        shape = [1] * past_cache.dim()
        shape[0], shape[axis] = batch, length
        index = positions.reshape(shape).expand(update.shape)
        return past_cache.scatter(axis, index, update)


@converter("TensorScatter", versions=(24,))
def convert_tensor_scatter(node: OnnxNode, context: ConversionContext) -> Converted:
    mode = node.attribute("mode", "linear")
    if mode not in ("linear", "circular"):
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"attribute mode={mode!r} is not supported; supported: 'linear', 'circular'",
        )
    write_indices = node.inputs[2] if len(node.inputs) > 2 else ""
    return Converted(OnnxTensorScatter(int(node.attribute("axis", -2)), mode == "circular"),
                     inputs=[node.inputs[0], node.inputs[1], write_indices])


class OnnxCausalConvWithState(nn.Module):
    """Depthwise causal 1-D convolution over ``(batch, channels, length)`` that carries the
    last ``kernel - 1`` inputs as state; returns ``(output, present_state)``."""

    def __init__(self, silu: bool):
        super().__init__()
        self.silu = silu

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                past_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        history = weight.shape[2] - 1
        if past_state is None:
            past_state = torch.zeros((x.shape[0], x.shape[1], history), dtype=x.dtype,
                                     device=x.device)
        padded = torch.cat([past_state.to(x.dtype), x], dim=2)
        y = F.conv1d(padded, weight, bias, groups=x.shape[1])
        if self.silu:
            y = F.silu(y.float()).to(x.dtype)
        return y, padded[:, :, padded.shape[2] - history:]


class _CausalConvOutput(nn.Module):
    """Keeps the output of CausalConvWithState (the node has no state output)."""

    def __init__(self, inner: OnnxCausalConvWithState):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                past_state: torch.Tensor | None = None) -> torch.Tensor:
        return self.inner(x, weight, bias, past_state)[0]


@converter("CausalConvWithState", versions=(27,))
def convert_causal_conv_with_state(node: OnnxNode, context: ConversionContext) -> Converted:
    activation = node.attribute("activation", "none")
    if activation not in ("none", "silu", "swish"):
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"attribute activation={activation!r} is not supported; supported: 'none', "
            "'silu', 'swish'",
        )
    inputs = list(node.inputs) + [""] * (4 - len(node.inputs))
    module = OnnxCausalConvWithState(activation != "none")
    if len(node.outputs) == 1:
        return Converted(_CausalConvOutput(module), inputs=inputs)
    return Converted(module, inputs=inputs)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(batch, time, heads * size)`` → ``(batch, heads, time, size)`` in float32."""
    return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2).float()


class OnnxLinearAttention(nn.Module):
    """Recurrent linear attention with a ``(batch, kv_heads, d_k, d_v)`` state.

    Per step: the state decays by ``exp(decay)`` (gated rules), the value is replaced by
    ``beta * (v - stateᵀ k)`` (delta rules), ``k ⊗ v`` is added, and each query head
    reads ``scale * q · state`` from its key/value head. Runs in float32.
    """

    def __init__(self, q_heads: int, kv_heads: int, scale: float, gated: bool, delta: bool):
        super().__init__()
        self.q_heads = q_heads
        self.kv_heads = kv_heads
        self.scale = scale
        self.gated = gated
        self.delta = delta

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                past_state: torch.Tensor | None = None, decay: torch.Tensor | None = None,
                beta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        batch, steps = query.shape[0], query.shape[1]
        q, k, v = _heads(query, self.q_heads), _heads(key, self.kv_heads), \
            _heads(value, self.kv_heads)
        key_size, value_size = k.shape[3], v.shape[3]
        scale = self.scale if self.scale > 0.0 else 1.0 / math.sqrt(key_size)
        if past_state is None:
            state = torch.zeros((batch, self.kv_heads, key_size, value_size),
                                dtype=torch.float32, device=query.device)
            state_dtype = query.dtype
        else:
            state, state_dtype = past_state.float(), past_state.dtype
        decay_heads = torch.zeros(1)
        if decay is not None:
            per_head = decay.shape[2] == self.kv_heads
            decay_heads = decay.reshape(batch, steps, self.kv_heads, 1 if per_head else key_size)
            decay_heads = decay_heads.transpose(1, 2).float()
        beta_heads = torch.zeros(1)
        if beta is not None:
            beta_heads = beta.reshape(batch, steps, beta.shape[2], 1).transpose(1, 2).float()
        group = self.q_heads // self.kv_heads
        outputs: list[torch.Tensor] = []
        for step in range(steps):
            k_t, v_t = k[:, :, step], v[:, :, step]
            if self.gated:
                state = state * torch.exp(decay_heads[:, :, step]).unsqueeze(-1)
            if self.delta:
                retrieved = torch.einsum("bhdm,bhd->bhm", state, k_t)
                v_t = beta_heads[:, :, step] * (v_t - retrieved)
            state = state + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
            read = state if group == 1 else state.repeat_interleave(group, dim=1)
            outputs.append(scale * torch.einsum("bhd,bhdm->bhm", q[:, :, step], read))
        y = torch.stack(outputs, dim=2).transpose(1, 2).reshape(batch, steps, -1)
        return y.to(query.dtype), state.to(state_dtype)


class _LinearAttentionOutput(nn.Module):
    """Keeps the output of LinearAttention (the node has no state output)."""

    def __init__(self, inner: OnnxLinearAttention):
        super().__init__()
        self.inner = inner

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                past_state: torch.Tensor | None = None, decay: torch.Tensor | None = None,
                beta: torch.Tensor | None = None) -> torch.Tensor:
        return self.inner(query, key, value, past_state, decay, beta)[0]


_UPDATE_RULES = {"linear": (False, False), "gated": (True, False), "delta": (False, True),
                 "gated_delta": (True, True)}


@converter("LinearAttention", versions=(27,))
def convert_linear_attention(node: OnnxNode, context: ConversionContext) -> Converted:
    rule = node.attribute("update_rule", "gated_delta")
    if rule not in _UPDATE_RULES:
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"attribute update_rule={rule!r} is not supported; supported: "
            + ", ".join(_UPDATE_RULES),
        )
    gated, delta = _UPDATE_RULES[rule]
    q_heads = int(node.attribute("q_num_heads", 0))
    kv_heads = int(node.attribute("kv_num_heads", 0))
    if q_heads < 1 or kv_heads < 1 or q_heads % kv_heads:
        raise ConversionError(
            f"LinearAttention node {node.name!r}: q_num_heads={q_heads}, kv_num_heads="
            f"{kv_heads}; both are required and q_num_heads must be a multiple of kv_num_heads"
        )
    inputs = list(node.inputs) + [""] * (6 - len(node.inputs))
    if gated != bool(inputs[4]) or delta != bool(inputs[5]):
        raise ConversionError(
            f"LinearAttention node {node.name!r}: update_rule={rule!r} "
            f"{'needs' if gated else 'forbids'} decay and {'needs' if delta else 'forbids'} beta"
        )
    module = OnnxLinearAttention(q_heads, kv_heads, float(node.attribute("scale", 0.0)),
                                 gated, delta)
    if len(node.outputs) == 1:
        return Converted(_LinearAttentionOutput(module), inputs=inputs)
    return Converted(module, inputs=inputs)
