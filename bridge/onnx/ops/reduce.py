"""Reductions and scans: Reduce*, ArgMax, ArgMin, CumSum, CumProd."""


import torch
from torch import Tensor, nn

from bridge.errors import ConversionError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.ops.shape import optional_int_input, tensor_to_ints
from bridge.onnx.registry import Converted, converter

# op type → (reduction kind, since_version from which axes is an input)
_REDUCTIONS = {
    "ReduceSum": ("sum", 13),
    "ReduceMean": ("mean", 18),
    "ReduceMax": ("max", 18),
    "ReduceMin": ("min", 18),
    "ReduceProd": ("prod", 18),
    "ReduceL1": ("l1", 18),
    "ReduceL2": ("l2", 18),
    "ReduceLogSum": ("log_sum", 18),
    "ReduceLogSumExp": ("log_sum_exp", 18),
    "ReduceSumSquare": ("sum_square", 18),
}

_VERSIONS = {
    "ReduceSum": (1, 11, 13),
    "ReduceMean": (1, 11, 13, 18),
    "ReduceMax": (1, 11, 12, 13, 18, 20),
    "ReduceMin": (1, 11, 12, 13, 18, 20),
    "ReduceProd": (1, 11, 13, 18),
    "ReduceL1": (1, 11, 13, 18),
    "ReduceL2": (1, 11, 13, 18),
    "ReduceLogSum": (1, 11, 13, 18, 28),
    "ReduceLogSumExp": (1, 11, 13, 18, 28),
    "ReduceSumSquare": (1, 11, 13, 18),
}


def _extreme(x: Tensor, shape: list[int], largest: bool) -> Tensor:
    """The value a max (``largest``) or min over an empty set yields for ``x``'s dtype."""
    if x.dtype == torch.bool:
        return torch.full(shape, not largest, dtype=torch.bool, device=x.device)
    if x.is_floating_point():
        value = float("-inf") if largest else float("inf")
        return torch.full(shape, value, dtype=x.dtype, device=x.device)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    if x.dtype in [torch.uint8, torch.uint16, torch.uint32, torch.uint64]:
        low = zero
        high = torch.full((), -1, dtype=torch.int64, device=x.device).to(x.dtype)  # wraps to max
    else:  # two's complement: the lowest value is the sign bit alone
        low = torch.bitwise_left_shift(torch.ones_like(zero), x.element_size() * 8 - 1)
        high = low.bitwise_not()
    return (low if largest else high).expand(shape).clone()


def reduce_tensor(x: Tensor, kind: str, dims: list[int], keepdims: bool) -> Tensor:
    """Apply reduction ``kind`` over ``dims`` (sorted, unique, non-negative).

    An empty ``dims`` applies only the reduction's element-wise part (square, abs, log, ...).
    """
    dtype = x.dtype
    exact = x.is_floating_point() or kind in ("sum", "sum_square", "l1", "max", "min", "prod")
    if not exact:  # integer mean, L2, logs: compute in float64, return the input dtype
        x = x.to(torch.float64)
    if kind in ("sum_square", "l2"):
        x = x * x
    elif kind == "l1":
        x = x.abs()
    if len(dims) == 0:
        if kind == "l2":
            x = x.sqrt()
        elif kind == "log_sum":
            x = x.log()
        return x if x.dtype == dtype else x.to(dtype)
    if kind in ("sum", "sum_square", "l1", "l2", "log_sum"):
        result = torch.sum(x, dims, keepdim=keepdims, dtype=x.dtype)
        if kind == "l2":
            result = result.sqrt()
        elif kind == "log_sum":
            result = result.log()
    elif kind == "mean":
        result = torch.mean(x, dims, keepdim=keepdims)
    elif kind == "log_sum_exp":
        result = torch.logsumexp(x, dims, keepdim=keepdims)
    elif kind == "prod":
        result = x
        for dim in dims:
            result = torch.prod(result, dim, keepdim=True, dtype=x.dtype)
        if not keepdims:
            for position in range(len(dims) - 1, -1, -1):
                result = result.squeeze(dims[position])
    else:
        empty = False
        for dim in dims:
            if x.shape[dim] == 0:
                empty = True
        if empty:
            shape: list[int] = []
            for d in range(x.dim()):
                if d not in dims:
                    shape.append(x.shape[d])
                elif keepdims:
                    shape.append(1)
            result = _extreme(x, shape, kind == "max")
        elif kind == "max":
            result = torch.amax(x, dims, keepdim=keepdims)
        else:
            result = torch.amin(x, dims, keepdim=keepdims)
    # a no-op .to() still records a dtype assertion that torch.vmap cannot export
    return result if result.dtype == dtype else result.to(dtype)


class OnnxReduce(nn.Module):
    """One ONNX reduction over the listed axes (all axes when none are listed)."""

    axes: list[int] | None

    def __init__(self, kind: str, axes: list[int] | None, keepdims: bool, noop_with_empty_axes: bool):
        super().__init__()
        self.kind = kind
        self.axes = axes
        self.keepdims = keepdims
        self.noop_with_empty_axes = noop_with_empty_axes

    def forward(self, x: Tensor, axes: Tensor | None = None) -> Tensor:
        listed = tensor_to_ints(axes) if axes is not None else self.axes
        rank = x.dim()
        dims: list[int] = []
        if listed is None or len(listed) == 0:
            if not self.noop_with_empty_axes:
                dims = list(range(rank))
        else:
            for axis in listed:
                axis = axis + rank if axis < 0 else axis
                if axis not in dims:
                    dims.append(axis)
            dims.sort()
        return reduce_tensor(x, self.kind, dims, self.keepdims)


def _convert_reduce(node: OnnxNode, context: ConversionContext) -> Converted:
    kind, input_axes_since = _REDUCTIONS[node.op_type]
    keepdims = bool(node.attribute("keepdims", 1))
    if node.since_version < input_axes_since:
        module = OnnxReduce(kind, node.attribute("axes"), keepdims, False)
        return Converted(module, inputs=[node.inputs[0], None])
    axes, runtime = optional_int_input(node, context, 1)
    module = OnnxReduce(kind, axes, keepdims, bool(node.attribute("noop_with_empty_axes", 0)))
    return Converted(module, inputs=[node.inputs[0], runtime])


for _op_type, _versions in _VERSIONS.items():
    converter(_op_type, versions=_versions)(_convert_reduce)


class OnnxArgExtreme(nn.Module):
    """Index of the max (or min) along ``axis``; ties → first index, or last when asked."""

    def __init__(self, axis: int, keepdims: bool, select_last_index: bool, largest: bool):
        super().__init__()
        self.axis = axis
        self.keepdims = keepdims
        self.select_last_index = select_last_index
        self.largest = largest

    def forward(self, x: Tensor) -> Tensor:
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        extreme = torch.amax(x, axis, keepdim=True) if self.largest else torch.amin(
            x, axis, keepdim=True)
        hit = x == extreme
        if x.is_floating_point():  # a NaN is the extreme, like numpy's argmax/argmin
            hit = hit | (torch.isnan(x) & torch.isnan(extreme))
        shape = [1] * x.dim()
        shape[axis] = x.shape[axis]
        position = torch.arange(x.shape[axis], device=x.device).reshape(shape)
        if self.select_last_index:
            index = torch.where(hit, position, -1).amax(axis, keepdim=self.keepdims)
        else:
            index = torch.where(hit, position, x.shape[axis]).amin(axis, keepdim=self.keepdims)
        return index


@converter("ArgMax", versions=(1, 11, 12, 13))
def convert_arg_max(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxArgExtreme(node.attribute("axis", 0), bool(node.attribute("keepdims", 1)),
                          bool(node.attribute("select_last_index", 0)), True)


@converter("ArgMin", versions=(1, 11, 12, 13))
def convert_arg_min(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxArgExtreme(node.attribute("axis", 0), bool(node.attribute("keepdims", 1)),
                          bool(node.attribute("select_last_index", 0)), False)


class OnnxCumulative(nn.Module):
    """Running sum or product along an axis, optionally exclusive and/or reversed."""

    axis: int | None

    def __init__(self, product: bool, axis: int | None, exclusive: bool, reverse: bool):
        super().__init__()
        self.product = product
        self.axis = axis
        self.exclusive = exclusive
        self.reverse = reverse

    def forward(self, x: Tensor, axis: Tensor | None = None) -> Tensor:
        dim = int(axis.reshape(-1)[0]) if axis is not None else self.axis
        if dim is None:
            raise ValueError("the cumulative op needs an axis")
        dim = dim + x.dim() if dim < 0 else dim
        if self.reverse:
            x = x.flip(dim)
        if self.exclusive:
            length = x.shape[dim]
            shape = list(x.shape)
            shape[dim] = 1
            identity = torch.ones(shape, dtype=x.dtype, device=x.device) if self.product \
                else torch.zeros(shape, dtype=x.dtype, device=x.device)
            x = torch.cat([identity, x.narrow(dim, 0, max(length - 1, 0))], dim)
        result = torch.cumprod(x, dim, dtype=x.dtype) if self.product \
            else torch.cumsum(x, dim, dtype=x.dtype)
        return result.flip(dim) if self.reverse else result


def _convert_cumulative(node: OnnxNode, context: ConversionContext, product: bool) -> Converted:
    axis, runtime = optional_int_input(node, context, 1)
    if axis is None and runtime is None:
        raise ConversionError(f"{node.op_type} node {node.name!r} has no 'axis' input")
    module = OnnxCumulative(product, axis[0] if axis else None,
                            bool(node.attribute("exclusive", 0)), bool(node.attribute("reverse", 0)))
    return Converted(module, inputs=[node.inputs[0], runtime])


@converter("CumSum", versions=(11, 14))
def convert_cum_sum(node: OnnxNode, context: ConversionContext) -> Converted:
    return _convert_cumulative(node, context, product=False)


@converter("CumProd", versions=26)
def convert_cum_prod(node: OnnxNode, context: ConversionContext) -> Converted:
    return _convert_cumulative(node, context, product=True)
