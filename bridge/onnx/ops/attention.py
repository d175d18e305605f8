"""Attention and rotary position embedding.

Attention (opsets 23, 24, 25: 3-D or 4-D inputs, grouped-query heads, causal and
sliding-window masks, boolean or additive masks, an internal KV cache, padded external
caches, softcap and the ``qk_matmul_output`` debug output) and RotaryEmbedding (23).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.dtypes import torch_dtype
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import Converted, converter

_SOFTMAX_PRECISIONS = {1: "FLOAT", 10: "FLOAT16", 11: "DOUBLE", 16: "BFLOAT16"}


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(batch, sequence, heads * size)`` → ``(batch, heads, sequence, size)``."""
    return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


class OnnxAttention(nn.Module):
    """Scaled dot-product attention as ONNX Attention defines it.

    Returns ``(Y, present_key, present_value, qk_matmul_output)``; the converter keeps
    only ``Y`` when the node has one output. ``qk_output_mode`` picks what the fourth
    output holds: 0 raw ``Q·Kᵀ``, 1 after softcap, 2 after softcap and mask bias,
    3 the softmax probabilities.
    """

    def __init__(
        self, q_num_heads: int, kv_num_heads: int, scale: float | None, is_causal: bool,
        softcap: float, qk_output_mode: int, softmax_dtype: torch.dtype | None,
        left_window: int, right_window: int,
    ):
        super().__init__()
        self.q_num_heads = q_num_heads
        self.kv_num_heads = kv_num_heads
        self.scale = scale
        self.is_causal = is_causal
        self.softcap = softcap
        self.qk_output_mode = qk_output_mode
        self.softmax_dtype = softmax_dtype
        self.left_window = left_window
        self.right_window = right_window

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
        attn_mask: torch.Tensor | None = None, past_key: torch.Tensor | None = None,
        past_value: torch.Tensor | None = None, nonpad_kv_seqlen: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        dtype = q.dtype
        if dtype == torch.float16 or dtype == torch.bfloat16:
            # half precision: compute in float32 and round the outputs once (rounding
            # after every step, as a literal reading of the graph would, drifts by ulps)
            q, k, v = q.float(), k.float(), v.float()
            if attn_mask is not None and attn_mask.is_floating_point():
                attn_mask = attn_mask.float()
            if past_key is not None:
                past_key = past_key.float()
            if past_value is not None:
                past_value = past_value.float()
        three_d = q.dim() == 3
        if three_d:
            q = _split_heads(q, self.q_num_heads)
            k = _split_heads(k, self.kv_num_heads)
            v = _split_heads(v, self.kv_num_heads)
        if past_key is not None:
            k = torch.cat([past_key, k], dim=2)
        if past_value is not None:
            v = torch.cat([past_value, v], dim=2)
        present_key, present_value = k.to(dtype), v.to(dtype)
        device = q.device
        q_length, kv_length = q.shape[2], k.shape[2]

        bias = self._bias(attn_mask, past_key, nonpad_kv_seqlen, q_length, kv_length, q)
        fully_masked = torch.amax(bias, dim=-1, keepdim=True) == float("-inf")

        q_heads, kv_heads = q.shape[1], k.shape[1]
        if q_heads != kv_heads:
            k = k.repeat_interleave(q_heads // kv_heads, dim=1)
            v = v.repeat_interleave(q_heads // kv_heads, dim=1)
        scale = self.scale if self.scale is not None else 1.0 / math.sqrt(q.shape[3])
        root = math.sqrt(scale)  # ONNX scales Q and K by sqrt(scale) each
        raw = torch.matmul(q * root, (k * root).transpose(-1, -2))
        capped = raw
        if self.softcap > 0.0:
            capped = torch.tanh(raw / self.softcap) * self.softcap
        logits = capped + bias
        softmax_dtype = self.softmax_dtype
        work = logits if softmax_dtype is None else logits.to(softmax_dtype)
        probabilities = torch.softmax(work, dim=-1)
        probabilities = torch.where(
            fully_masked, torch.zeros((), dtype=probabilities.dtype, device=device), probabilities
        ).to(q.dtype)
        y = torch.matmul(probabilities, v)
        if three_d:
            y = y.transpose(1, 2).reshape(y.shape[0], y.shape[2], -1)
        mode = self.qk_output_mode
        qk_output = raw
        if mode == 1:
            qk_output = capped
        elif mode == 2:
            qk_output = logits
        elif mode == 3:
            qk_output = probabilities
        return y.to(dtype), present_key, present_value, qk_output.to(dtype)

    def _bias(
        self, attn_mask: torch.Tensor | None, past_key: torch.Tensor | None,
        nonpad_kv_seqlen: torch.Tensor | None, q_length: int, kv_length: int,
        q: torch.Tensor,
    ) -> torch.Tensor:
        """The additive bias (0 or -inf, plus a float mask), broadcastable to the scores."""
        dtype, device = q.dtype, q.device
        zero = torch.zeros((), dtype=dtype, device=device)
        minus_infinity = torch.full((), float("-inf"), dtype=dtype, device=device)
        bias = torch.zeros((q_length, kv_length), dtype=dtype, device=device)
        if attn_mask is not None:
            missing = kv_length - attn_mask.shape[-1]
            if attn_mask.dtype == torch.bool:
                if missing > 0:
                    attn_mask = torch.cat([attn_mask, torch.zeros(
                        list(attn_mask.shape[:-1]) + [missing], dtype=torch.bool, device=device)], -1)
                bias = bias + torch.where(attn_mask, zero, minus_infinity)
            else:
                mask = attn_mask.to(dtype)
                if missing > 0:
                    mask = torch.cat([mask, torch.full(
                        list(mask.shape[:-1]) + [missing], float("-inf"), dtype=dtype,
                        device=device)], -1)
                bias = bias + mask
        windowed = self.left_window >= 0 or self.right_window >= 0
        if self.is_causal or windowed:
            rows = torch.arange(q_length, device=device).reshape(q_length, 1)
            columns = torch.arange(kv_length, device=device).reshape(1, kv_length)
            if past_key is not None:
                ahead = rows + past_key.shape[2] - columns
            elif nonpad_kv_seqlen is not None:
                offsets = nonpad_kv_seqlen.to(torch.int64).reshape(-1, 1, 1, 1) - q_length
                ahead = rows + offsets - columns
            else:
                ahead = rows - columns
            allowed = torch.ones(ahead.shape, dtype=torch.bool, device=device)
            if self.is_causal:
                allowed = allowed & (ahead >= 0)
            if self.left_window >= 0:
                allowed = allowed & (ahead <= self.left_window)
            if self.right_window >= 0:
                allowed = allowed & (-ahead <= self.right_window)
            bias = bias + torch.where(allowed, zero, minus_infinity)
        if nonpad_kv_seqlen is not None:
            keys = torch.arange(kv_length, device=device).reshape(1, 1, 1, kv_length)
            valid = keys < nonpad_kv_seqlen.to(torch.int64).reshape(-1, 1, 1, 1)
            bias = bias + torch.where(valid, zero, minus_infinity)
        return bias


class _AttentionY(nn.Module):
    """Keeps output ``Y`` of Attention (the node has one output)."""

    def __init__(self, inner: OnnxAttention):
        super().__init__()
        self.inner = inner

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
        attn_mask: torch.Tensor | None = None, past_key: torch.Tensor | None = None,
        past_value: torch.Tensor | None = None, nonpad_kv_seqlen: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.inner(q, k, v, attn_mask, past_key, past_value, nonpad_kv_seqlen)[0]


def _unsupported(node: OnnxNode, reason: str) -> UnsupportedOperatorError:
    return UnsupportedOperatorError(node.domain, node.op_type, node.since_version, reason=reason)


@converter("Attention", versions=(23, 24, 25))
def convert_attention(node: OnnxNode, context: ConversionContext) -> Converted:
    q_num_heads = int(node.attribute("q_num_heads", 0))
    kv_num_heads = int(node.attribute("kv_num_heads", 0))
    q_type = context.type_of(node.inputs[0])
    if q_type is not None and q_type.shape is not None and len(q_type.shape) == 3:
        if q_num_heads < 1 or kv_num_heads < 1:
            raise ConversionError(
                f"Attention node {node.name!r}: 3-D inputs need q_num_heads and kv_num_heads "
                f"(got q_num_heads={q_num_heads}, kv_num_heads={kv_num_heads})"
            )
        if q_num_heads % kv_num_heads:
            raise ConversionError(
                f"Attention node {node.name!r}: q_num_heads={q_num_heads} is not a multiple "
                f"of kv_num_heads={kv_num_heads}"
            )
    mode = int(node.attribute("qk_matmul_output_mode", 0))
    if mode not in (0, 1, 2, 3):
        raise ConversionError(
            f"Attention node {node.name!r}: qk_matmul_output_mode={mode}; expected 0, 1, 2 or 3"
        )
    precision = node.attribute("softmax_precision")
    softmax_dtype = None
    if precision is not None:
        if int(precision) not in _SOFTMAX_PRECISIONS:
            raise _unsupported(
                node, f"attribute softmax_precision={precision} is not supported; supported: "
                + ", ".join(f"{k} ({v})" for k, v in _SOFTMAX_PRECISIONS.items()))
        softmax_dtype = torch_dtype(int(precision))
    left_window = int(node.attribute("left_window_size", -1))
    right_window = int(node.attribute("right_window_size", -1))
    if left_window < -1 or right_window < -1:
        raise ConversionError(
            f"Attention node {node.name!r}: left_window_size={left_window}, "
            f"right_window_size={right_window}; expected -1 (unbounded) or >= 0"
        )
    inputs = list(node.inputs) + [""] * (7 - len(node.inputs))
    if bool(inputs[4]) != bool(inputs[5]):
        raise ConversionError(
            f"Attention node {node.name!r}: past_key and past_value must be given together"
        )
    if inputs[6] and inputs[4]:
        raise ConversionError(
            f"Attention node {node.name!r}: nonpad_kv_seqlen cannot be combined with "
            "past_key/past_value"
        )
    scale = node.attribute("scale")
    module = OnnxAttention(
        q_num_heads, kv_num_heads, None if scale is None else float(scale),
        bool(node.attribute("is_causal", 0)), float(node.attribute("softcap", 0.0)), mode,
        softmax_dtype, left_window, right_window,
    )
    if len(node.outputs) == 1:
        return Converted(_AttentionY(module), inputs=inputs)
    return Converted(module, inputs=inputs)


class OnnxRotaryEmbedding(nn.Module):
    """Rotates pairs of features by position-dependent angles (RoPE).

    Pairs are the two halves of the rotated part (``interleaved=False``) or adjacent
    features (``interleaved=True``); only the first ``rotary_dim`` features of each head
    rotate (all when 0).
    """

    def __init__(self, interleaved: bool, rotary_dim: int, num_heads: int):
        super().__init__()
        self.interleaved = interleaved
        self.rotary_dim = rotary_dim
        self.num_heads = num_heads

    def forward(
        self, x: torch.Tensor, cos_cache: torch.Tensor, sin_cache: torch.Tensor,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        original_shape = x.shape
        if x.dim() == 4:  # (batch, heads, sequence, size) → (batch, sequence, heads, size)
            x = x.transpose(1, 2)
        else:
            x = x.reshape(x.shape[0], x.shape[1], self.num_heads, -1)
        rotary_dim = self.rotary_dim if self.rotary_dim > 0 else x.shape[3]
        rotated, kept = x[..., :rotary_dim], x[..., rotary_dim:]
        if position_ids is not None:
            cos_cache = cos_cache[position_ids.to(torch.int64)]
            sin_cache = sin_cache[position_ids.to(torch.int64)]
        cos = cos_cache.unsqueeze(2).to(x.dtype)
        sin = sin_cache.unsqueeze(2).to(x.dtype)
        if self.interleaved:
            first, second = rotated[..., 0::2], rotated[..., 1::2]
        else:
            first, second = rotated[..., : rotary_dim // 2], rotated[..., rotary_dim // 2:]
        real = cos * first - sin * second
        imaginary = sin * first + cos * second
        if self.interleaved:
            rotated = torch.stack([real, imaginary], dim=-1).reshape(rotated.shape)
        else:
            rotated = torch.cat([real, imaginary], dim=-1)
        y = torch.cat([rotated, kept], dim=-1)
        if len(original_shape) == 4:
            return y.transpose(1, 2)
        return y.reshape(original_shape)


@converter("RotaryEmbedding", versions=(23,))
def convert_rotary_embedding(node: OnnxNode, context: ConversionContext) -> nn.Module:
    rotary_dim = int(node.attribute("rotary_embedding_dim", 0))
    if rotary_dim < 0 or rotary_dim % 2:
        raise ConversionError(
            f"RotaryEmbedding node {node.name!r}: rotary_embedding_dim={rotary_dim}; "
            "expected 0 (the whole head) or a positive even number"
        )
    num_heads = int(node.attribute("num_heads", 0))
    x_type = context.type_of(node.inputs[0])
    if x_type is not None and x_type.shape is not None and len(x_type.shape) == 3 \
            and num_heads < 1:
        raise ConversionError(
            f"RotaryEmbedding node {node.name!r}: a 3-D input needs the num_heads attribute "
            f"(got num_heads={num_heads})"
        )
    return OnnxRotaryEmbedding(bool(node.attribute("interleaved", 0)), rotary_dim, num_heads)
