"""Pooling: MaxPool, AveragePool, LpPool and their global forms.

Common cases run on torch's pooling kernels; the rest (asymmetric or ``SAME_*`` pads,
dilated average pooling, Lp pooling, pads wider than half the kernel) go through one
general window implementation built on ``Tensor.unfold``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.ops.conv import (
    read_auto_pad,
    read_pads,
    read_spatial_ints,
    same_pads,
    torch_pad_order,
)
from bridge.onnx.registry import converter


class _WindowSpec(nn.Module):
    """Window geometry shared by the pooling modules: kernel, strides, pads, ceil mode."""

    def __init__(
        self, kernel: list[int], strides: list[int], dilations: list[int], pads: list[int],
        auto_pad: str, ceil_mode: bool,
    ):
        super().__init__()
        self.rank = len(kernel)
        self.kernel = kernel
        self.strides = strides
        self.dilations = dilations
        self.pads = pads
        self.auto_pad = auto_pad
        self.ceil_mode = ceil_mode

    def resolve(self, sizes: list[int]) -> tuple[list[int], list[int], list[int]]:
        """Return (begin pads, end pads, extra end pads for ceil mode) for ``sizes``."""
        rank = self.rank
        if self.auto_pad == "SAME_UPPER" or self.auto_pad == "SAME_LOWER":
            pads = same_pads(sizes, self.kernel, self.strides, self.dilations,
                             self.auto_pad == "SAME_UPPER")
        else:
            pads = self.pads
        begins = pads[:rank]
        ends = pads[rank:]
        extra: list[int] = []
        for i in range(rank):
            span = (self.kernel[i] - 1) * self.dilations[i] + 1
            padded = sizes[i] + begins[i] + ends[i]
            if self.ceil_mode:
                count = (padded - span + self.strides[i] - 1) // self.strides[i] + 1
                if (count - 1) * self.strides[i] >= sizes[i] + begins[i]:
                    count -= 1
            else:
                count = (padded - span) // self.strides[i] + 1
            extra.append(max(0, (count - 1) * self.strides[i] + span - padded))
        return begins, ends, extra

    def windows(self, x: torch.Tensor, fill: float, sizes: list[int]) -> torch.Tensor:
        """``x`` padded with ``fill`` and cut into windows: ``[N, C, *out, taps]``."""
        begins, ends, extra = self.resolve(sizes)
        ends_total = [ends[i] + extra[i] for i in range(self.rank)]
        x = F.pad(x, torch_pad_order(begins + ends_total), value=fill)
        for i in range(self.rank):
            span = (self.kernel[i] - 1) * self.dilations[i] + 1
            x = x.unfold(2 + i, span, self.strides[i])
            if self.dilations[i] > 1:
                taps = torch.arange(0, span, self.dilations[i], device=x.device)
                x = x.index_select(x.dim() - 1, taps)
        return x.flatten(2 + self.rank)

    def counts(self, x: torch.Tensor, include_pad: bool, sizes: list[int]) -> torch.Tensor:
        """How many positions of each window count for an average: ``[*out]``."""
        begins, ends, extra = self.resolve(sizes)
        ones = torch.ones([1, 1] + sizes, dtype=x.dtype, device=x.device)
        ones = F.pad(ones, torch_pad_order(begins + ends), value=1.0 if include_pad else 0.0)
        zeros = [0] * self.rank
        ones = F.pad(ones, torch_pad_order(zeros + extra), value=0.0)
        for i in range(self.rank):
            span = (self.kernel[i] - 1) * self.dilations[i] + 1
            ones = ones.unfold(2 + i, span, self.strides[i])
            if self.dilations[i] > 1:
                taps = torch.arange(0, span, self.dilations[i], device=x.device)
                ones = ones.index_select(ones.dim() - 1, taps)
        return ones.flatten(2 + self.rank).sum(-1)


def _native_pads_fit(kernel: list[int], dilations: list[int], pads: list[int]) -> bool:
    rank = len(kernel)
    return pads[:rank] == pads[rank:] and all(
        2 * pads[i] <= (kernel[i] - 1) * dilations[i] + 1 for i in range(rank)
    )


class OnnxMaxPool(_WindowSpec):
    """Max pooling; returns ``(values, indices)`` when the node asks for ``Indices``."""

    def __init__(self, *args, with_indices: bool = False, storage_order: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.with_indices = with_indices
        self.storage_order = storage_order
        self.native = (
            self.auto_pad in ("NOTSET", "VALID") and 1 <= self.rank <= 3
            and _native_pads_fit(self.kernel, self.dilations, self.pads)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = x.dtype
        if not x.is_floating_point():
            x = x.to(torch.float64)
        sizes = [int(s) for s in x.shape[2:]]
        if self.native:
            values, indices = self._native(x)
        else:
            values, indices = self._general(x, sizes)
        values = values.to(dtype)
        if not self.with_indices:
            return values, indices
        return values, self._onnx_indices(indices, x.shape[0], x.shape[1], sizes)

    def _native(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        padding = self.pads[: self.rank]
        if self.rank == 1:
            return F.max_pool1d_with_indices(x, self.kernel, self.strides, padding,
                                             self.dilations, self.ceil_mode, True)
        if self.rank == 2:
            return F.max_pool2d_with_indices(x, self.kernel, self.strides, padding,
                                             self.dilations, self.ceil_mode, True)
        return F.max_pool3d_with_indices(x, self.kernel, self.strides, padding,
                                         self.dilations, self.ceil_mode, True)

    def _general(self, x: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        windows = self.windows(x, -math.inf, sizes)
        values, taps = windows.max(dim=-1)
        if not self.with_indices:
            return values, taps
        begins, _, _ = self.resolve(sizes)
        # window tap → input coordinates → per-plane row-major index (as torch reports it)
        flat = torch.zeros_like(taps)
        remaining = taps
        plane = 1
        for i in range(self.rank - 1, -1, -1):
            tap = remaining % self.kernel[i]
            remaining = remaining // self.kernel[i]
            out = values.shape[2 + i]
            start = torch.arange(out, device=x.device) * self.strides[i] - begins[i]
            start = start.reshape([out] + [1] * (self.rank - 1 - i))
            coordinate = start + tap * self.dilations[i]
            flat = flat + coordinate * plane
            plane *= sizes[i]
        return values, flat

    def _onnx_indices(
        self, indices: torch.Tensor, batch: int, channels: int, sizes: list[int]
    ) -> torch.Tensor:
        plane = 1
        for size in sizes:
            plane *= size
        if self.storage_order == 1:  # column major: the first spatial axis varies fastest
            column = torch.zeros_like(indices)
            column_stride = 1
            for i in range(self.rank):
                row_stride = 1
                for j in range(i + 1, self.rank):
                    row_stride *= sizes[j]
                column = column + (indices // row_stride) % sizes[i] * column_stride
                column_stride *= sizes[i]
            indices = column
        offsets = torch.arange(batch * channels, device=indices.device, dtype=torch.int64)
        offsets = offsets.reshape([batch, channels] + [1] * self.rank) * plane
        return indices.to(torch.int64) + offsets


class _SingleOutput(nn.Module):
    """Keeps the first output of a pooling module (MaxPool without ``Indices``)."""

    def __init__(self, pool: OnnxMaxPool):
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)[0]


class OnnxAveragePool(_WindowSpec):
    """Average pooling with ``count_include_pad``, ceil mode, dilations, any pads."""

    def __init__(self, *args, count_include_pad: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.count_include_pad = count_include_pad
        self.native = (
            self.auto_pad in ("NOTSET", "VALID") and 1 <= self.rank <= 3
            and all(d == 1 for d in self.dilations)
            and _native_pads_fit(self.kernel, self.dilations, self.pads)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.native:
            padding = self.pads[: self.rank]
            if self.rank == 1:
                return F.avg_pool1d(x, self.kernel, self.strides, padding, self.ceil_mode,
                                    self.count_include_pad)
            if self.rank == 2:
                return F.avg_pool2d(x, self.kernel, self.strides, padding, self.ceil_mode,
                                    self.count_include_pad)
            return F.avg_pool3d(x, self.kernel, self.strides, padding, self.ceil_mode,
                                self.count_include_pad)
        sizes = [int(s) for s in x.shape[2:]]
        total = self.windows(x, 0.0, sizes).sum(-1)
        return total / self.counts(x, self.count_include_pad, sizes)[0, 0]


class OnnxLpPool(_WindowSpec):
    """Lp pooling: ``(sum |x|^p) ^ (1/p)`` over each window (pads count as zeros)."""

    def __init__(self, *args, p: float = 2.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = [int(s) for s in x.shape[2:]]
        windows = self.windows(x, 0.0, sizes)
        return windows.abs().pow(self.p).sum(-1).pow(1.0 / self.p)


class OnnxGlobalPool(nn.Module):
    """Average or max over every spatial axis, kept as size-1 axes."""

    def __init__(self, reduce_max: bool):
        super().__init__()
        self.reduce_max = reduce_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = list(range(2, x.dim()))
        if self.reduce_max:
            return x.amax(dim=axes, keepdim=True)
        return x.mean(dim=axes, keepdim=True)


def _window_arguments(node: OnnxNode, *, ceil_mode_allowed: bool) -> dict:
    kernel = node.attribute("kernel_shape")
    if not kernel:
        raise ConversionError(f"{node.op_type} node {node.name!r} has no kernel_shape attribute")
    kernel = [int(k) for k in kernel]
    rank = len(kernel)
    auto_pad = read_auto_pad(node)
    ceil_mode = bool(node.attribute("ceil_mode", 0)) if ceil_mode_allowed else False
    return dict(
        kernel=kernel,
        strides=read_spatial_ints(node, "strides", rank, 1),
        dilations=read_spatial_ints(node, "dilations", rank, 1),
        pads=[0] * (2 * rank) if auto_pad == "VALID" else read_pads(node, rank),
        auto_pad=auto_pad,
        ceil_mode=ceil_mode,
    )


@converter("MaxPool", versions=(1, 8, 10, 11, 12, 22))
def convert_max_pool(node: OnnxNode, context: ConversionContext) -> nn.Module:
    storage_order = int(node.attribute("storage_order", 0))
    if storage_order not in (0, 1):
        raise ConversionError(
            f"MaxPool node {node.name!r}: storage_order={storage_order}; expected 0 or 1"
        )
    with_indices = len(node.outputs) > 1 and node.outputs[1] != ""
    pool = OnnxMaxPool(
        **_window_arguments(node, ceil_mode_allowed=node.since_version >= 10),
        with_indices=with_indices, storage_order=storage_order,
    )
    return pool if len(node.outputs) > 1 else _SingleOutput(pool)


@converter("AveragePool", versions=(1, 7, 10, 11, 19, 22))
def convert_average_pool(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxAveragePool(
        **_window_arguments(node, ceil_mode_allowed=node.since_version >= 10),
        count_include_pad=bool(node.attribute("count_include_pad", 0)),
    )


@converter("LpPool", versions=(1, 2, 11, 18, 22))
def convert_lp_pool(node: OnnxNode, context: ConversionContext) -> nn.Module:
    p = float(node.attribute("p", 2))
    if p <= 0:
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"attribute p={p} is not supported; supported: p > 0",
        )
    return OnnxLpPool(**_window_arguments(node, ceil_mode_allowed=node.since_version >= 18), p=p)


@converter("GlobalAveragePool", versions=(1, 22))
def convert_global_average_pool(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxGlobalPool(reduce_max=False)


@converter("GlobalMaxPool", versions=(1, 22))
def convert_global_max_pool(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxGlobalPool(reduce_max=True)
