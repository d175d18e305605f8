"""Convolutions: Conv and ConvTranspose.

Also holds the padding helpers (ONNX ``pads`` / ``auto_pad`` → per-side amounts) that the
pooling converters share.
"""



import torch
import torch.nn.functional as F
from torch import nn

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import converter

AUTO_PAD_MODES = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def read_auto_pad(node: OnnxNode) -> str:
    """Return the node's ``auto_pad`` attribute, checked against the modes ONNX defines."""
    auto_pad = node.attribute("auto_pad", "NOTSET")
    if auto_pad not in AUTO_PAD_MODES:
        raise ConversionError(
            f"{node.op_type} node {node.name!r}: auto_pad={auto_pad!r}; expected one of "
            f"{', '.join(AUTO_PAD_MODES)}"
        )
    return auto_pad


def read_spatial_ints(node: OnnxNode, name: str, rank: int, default: int) -> list[int]:
    """Return a per-spatial-axis int attribute (``strides``, ``dilations``), defaulted."""
    values = node.attribute(name)
    if values is None or len(values) == 0:
        return [default] * rank
    if len(values) != rank:
        raise ConversionError(
            f"{node.op_type} node {node.name!r}: attribute {name}={values} has "
            f"{len(values)} entries; the kernel has {rank} spatial axes"
        )
    return [int(v) for v in values]


def read_pads(node: OnnxNode, rank: int) -> list[int]:
    """Return ONNX ``pads`` as ``[begin_1, ..., begin_n, end_1, ..., end_n]``."""
    pads = node.attribute("pads")
    if pads is None or len(pads) == 0:
        return [0] * (2 * rank)
    if len(pads) != 2 * rank:
        raise ConversionError(
            f"{node.op_type} node {node.name!r}: pads={pads} has {len(pads)} entries; "
            f"expected {2 * rank} (begin and end for each of {rank} spatial axes)"
        )
    return [int(v) for v in pads]


def same_pads(
    sizes: list[int], kernel: list[int], strides: list[int], dilations: list[int], upper: bool
) -> list[int]:
    """Pads of ``auto_pad=SAME_UPPER/SAME_LOWER``: the output size is ``ceil(size / stride)``."""
    begins: list[int] = []
    ends: list[int] = []
    for i in range(len(sizes)):
        output = (sizes[i] + strides[i] - 1) // strides[i]
        total = max(0, (output - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - sizes[i])
        small = total // 2
        begins.append(small if upper else total - small)
        ends.append(total - small if upper else small)
    return begins + ends


def torch_pad_order(pads: list[int]) -> list[int]:
    """ONNX ``[b1..bn, e1..en]`` → ``F.pad``'s ``[bn, en, ..., b1, e1]`` (last axis first)."""
    rank = len(pads) // 2
    result: list[int] = []
    for i in range(rank - 1, -1, -1):
        result.append(pads[i])
        result.append(pads[rank + i])
    return result


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class OnnxConv(nn.Module):
    """N-d convolution (1, 2 or 3 spatial axes) with ONNX padding rules.

    Symmetric pads go to the torch kernel; asymmetric or ``SAME_*`` pads are applied
    with ``F.pad`` first (computed from the input's size at run time for ``SAME_*``).
    """

    native_padding: list[int]
    explicit_pads: list[int]

    def __init__(
        self, rank: int, strides: list[int], dilations: list[int], pads: list[int],
        group: int, auto_pad: str, kernel: list[int],
    ):
        super().__init__()
        self.rank = rank
        self.strides = strides
        self.dilations = dilations
        self.pads = pads
        self.group = group
        self.auto_pad = auto_pad
        self.kernel = kernel
        symmetric = pads[:rank] == pads[rank:]
        self.native_padding: list[int] = pads[:rank] if symmetric else [0] * rank
        self.explicit_pads: list[int] = [] if symmetric else torch_pad_order(pads)

    def forward(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        padding = self.native_padding
        if self.auto_pad == "SAME_UPPER" or self.auto_pad == "SAME_LOWER":
            sizes = [int(s) for s in x.shape[2:]]
            pads = same_pads(sizes, self.kernel, self.strides, self.dilations,
                             self.auto_pad == "SAME_UPPER")
            x = F.pad(x, torch_pad_order(pads))
            padding = [0] * self.rank
        elif len(self.explicit_pads) > 0:
            x = F.pad(x, self.explicit_pads)
        if self.rank == 1:
            return F.conv1d(x, weight, bias, self.strides, padding, self.dilations, self.group)
        if self.rank == 2:
            return F.conv2d(x, weight, bias, self.strides, padding, self.dilations, self.group)
        return F.conv3d(x, weight, bias, self.strides, padding, self.dilations, self.group)


class OnnxConvTranspose(nn.Module):
    """N-d transposed convolution with ONNX ``pads``/``output_padding``/``output_shape``.

    Computes the full (unpadded) transposed convolution, then crops ``pads`` and
    extends by ``output_padding`` with ``F.pad`` (negative amounts crop), then adds
    the bias, so every pad/output-padding combination ONNX allows is exact.
    """

    output_shape: list[int]

    def __init__(
        self, rank: int, strides: list[int], dilations: list[int], pads: list[int],
        group: int, auto_pad: str, kernel: list[int], output_padding: list[int],
        output_shape: list[int],
    ):
        super().__init__()
        self.rank = rank
        self.strides = strides
        self.dilations = dilations
        self.pads = pads
        self.group = group
        self.auto_pad = auto_pad
        self.kernel = kernel
        self.output_padding = output_padding
        self.output_shape = output_shape
        self.native = (
            auto_pad in ("NOTSET", "VALID") and len(output_shape) == 0
            and pads[:rank] == pads[rank:]
            and all(p < max(s, d) for p, s, d in zip(output_padding, strides, dilations))
        )

    def _pads(self, sizes: list[int]) -> list[int]:
        if len(self.output_shape) == 0 and self.auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
            return self.pads
        begins: list[int] = []
        ends: list[int] = []
        for i in range(self.rank):
            full = (sizes[i] - 1) * self.strides[i] + (self.kernel[i] - 1) * self.dilations[i] + 1
            target = self.output_shape[i] if len(self.output_shape) > 0 else sizes[i] * self.strides[i]
            total = full + self.output_padding[i] - target
            small = total // 2
            if self.auto_pad == "SAME_UPPER":
                begins.append(small)
                ends.append(total - small)
            else:
                begins.append(total - small)
                ends.append(small)
        return begins + ends

    def forward(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.native:
            padding = self.pads[: self.rank]
            if self.rank == 1:
                return F.conv_transpose1d(x, weight, bias, self.strides, padding,
                                          self.output_padding, self.group, self.dilations)
            if self.rank == 2:
                return F.conv_transpose2d(x, weight, bias, self.strides, padding,
                                          self.output_padding, self.group, self.dilations)
            return F.conv_transpose3d(x, weight, bias, self.strides, padding,
                                      self.output_padding, self.group, self.dilations)
        zeros = [0] * self.rank
        if self.rank == 1:
            y = F.conv_transpose1d(x, weight, None, self.strides, zeros, zeros, self.group,
                                   self.dilations)
        elif self.rank == 2:
            y = F.conv_transpose2d(x, weight, None, self.strides, zeros, zeros, self.group,
                                   self.dilations)
        else:
            y = F.conv_transpose3d(x, weight, None, self.strides, zeros, zeros, self.group,
                                   self.dilations)
        pads = self._pads([int(s) for s in x.shape[2:]])
        adjust: list[int] = []
        for i in range(self.rank):
            adjust.append(-pads[i])
            adjust.append(self.output_padding[i] - pads[self.rank + i])
        y = F.pad(y, self._reverse_pairs(adjust))
        if bias is not None:
            y = y + bias.reshape([1, -1] + [1] * self.rank)
        return y

    @staticmethod
    def _reverse_pairs(pairs: list[int]) -> list[int]:
        result: list[int] = []
        for i in range(len(pairs) // 2 - 1, -1, -1):
            result.append(pairs[2 * i])
            result.append(pairs[2 * i + 1])
        return result


def _kernel_shape(node: OnnxNode, context: ConversionContext) -> list[int]:
    kernel = node.attribute("kernel_shape")
    if kernel:
        return [int(k) for k in kernel]
    weight_type = context.type_of(node.inputs[1])
    weight = context.constant(node.inputs[1])
    if weight is not None:
        return [int(s) for s in weight.shape[2:]]
    if weight_type is not None and weight_type.shape is not None and all(
        isinstance(d, int) for d in weight_type.shape[2:]
    ):
        return [int(d) for d in weight_type.shape[2:]]
    raise ConversionError(
        f"{node.op_type} node {node.name!r}: the kernel shape is unknown (no kernel_shape "
        "attribute, and the weight is neither constant nor of static shape)"
    )


def _check_rank(node: OnnxNode, rank: int) -> None:
    if rank not in _CONV:
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"a kernel with {rank} spatial axes is not supported; supported: 1, 2, 3",
        )


@converter("Conv", versions=(1, 11, 22))
def convert_conv(node: OnnxNode, context: ConversionContext) -> nn.Module:
    kernel = _kernel_shape(node, context)
    rank = len(kernel)
    _check_rank(node, rank)
    auto_pad = read_auto_pad(node)
    pads = [0] * (2 * rank) if auto_pad == "VALID" else read_pads(node, rank)
    return OnnxConv(
        rank, read_spatial_ints(node, "strides", rank, 1),
        read_spatial_ints(node, "dilations", rank, 1), pads, int(node.attribute("group", 1)),
        auto_pad, kernel,
    )


@converter("ConvTranspose", versions=(1, 11, 22))
def convert_conv_transpose(node: OnnxNode, context: ConversionContext) -> nn.Module:
    kernel = _kernel_shape(node, context)
    rank = len(kernel)
    _check_rank(node, rank)
    auto_pad = read_auto_pad(node)
    pads = [0] * (2 * rank) if auto_pad == "VALID" else read_pads(node, rank)
    output_shape = [int(v) for v in node.attribute("output_shape", [])]
    if len(output_shape) > rank:  # some exporters include the batch and channel axes
        output_shape = output_shape[-rank:]
    if output_shape and len(output_shape) != rank:
        raise ConversionError(
            f"ConvTranspose node {node.name!r}: output_shape={output_shape} has "
            f"{len(output_shape)} entries; expected {rank}"
        )
    return OnnxConvTranspose(
        rank, read_spatial_ints(node, "strides", rank, 1),
        read_spatial_ints(node, "dilations", rank, 1), pads, int(node.attribute("group", 1)),
        auto_pad, kernel, read_spatial_ints(node, "output_padding", rank, 0), output_shape,
    )
