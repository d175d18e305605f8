"""Indexing operators: Gather*, Slice, Scatter*, OneHot, NonZero, Compress, TopK, ReverseSequence, Unique."""


import torch
from torch import Tensor, nn

from bridge.errors import ConversionError
from bridge.onnx import select
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.ops.shape import optional_int_input, tensor_to_ints, unsupported
from bridge.onnx.registry import Converted, converter


def check_indices(indices: Tensor, low: int, high: int, op: str) -> None:
    """Raise ``IndexError`` naming ``op`` when an index lies outside ``[low, high)``.

    Checked in eager CPU runs only: on a GPU the test would wait for the device (its kernels
    assert on their own), and traced or compiled graphs must not branch on data.
    """
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    if not torch.jit.is_scripting():
        if torch.compiler.is_exporting():  # asked before numel(): a symbol under export
            return
    if indices.device.type != "cpu" or indices.numel() == 0:
        return
    smallest, largest = torch.aminmax(indices)
    if smallest < low or largest >= high:
        bad = int(smallest) if smallest < low else int(largest)
        raise IndexError(
            f"{op}: index {bad} is out of range for an axis of length {max(high, 0)}; "
            f"valid indices are {low}..{high - 1}"
        )


def _wrap_negative(indices: Tensor, length: int, op: str) -> Tensor:
    """Return int64 indices with negative entries counted from the end of an axis of ``length``.

    Raises ``IndexError`` naming ``op`` for indices outside ``[-length, length)``.
    """
    indices = indices.to(torch.int64)
    check_indices(indices, -length, length, op)
    return torch.where(indices < 0, indices + length, indices)


class OnnxGather(nn.Module):
    """Take entries along ``axis`` at the given (possibly negative) indices."""

    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor, indices: Tensor) -> Tensor:
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        flat = _wrap_negative(indices, x.shape[axis], "Gather").reshape(-1)
        taken = x.index_select(axis, flat)
        shape = list(x.shape[:axis]) + list(indices.shape) + list(x.shape[axis + 1:])
        return taken.reshape(shape)


class OnnxGatherScalar(nn.Module):
    """Gather with one constant index: ``select`` along ``axis``, bounds checked in Python."""

    def __init__(self, axis: int, index: int):
        super().__init__()
        self.axis = axis
        self.index = index

    def forward(self, x: Tensor) -> Tensor:
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        length = x.shape[axis]
        if not -length <= self.index < length:
            raise IndexError(
                f"Gather: index {self.index} is out of range for an axis of length {length}; "
                f"valid indices are {-length}..{length - 1}"
            )
        return x.select(axis, self.index)


@converter("Gather", versions=(1, 11, 13))
def convert_gather(node: OnnxNode, context: ConversionContext) -> nn.Module | Converted:
    indices = context.constant(node.inputs[1])
    if indices is not None and indices.dim() == 0 and not indices.is_floating_point():
        return Converted(OnnxGatherScalar(node.attribute("axis", 0), int(indices)),
                         [node.inputs[0]])
    return OnnxGather(node.attribute("axis", 0))


class OnnxGatherElements(nn.Module):
    """``torch.gather`` along ``axis`` with negative indices allowed."""

    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor, indices: Tensor) -> Tensor:
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        return torch.gather(x, axis, _wrap_negative(indices, x.shape[axis], "GatherElements"))


@converter("GatherElements", versions=(11, 13))
def convert_gather_elements(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxGatherElements(node.attribute("axis", 0))


def _linear_index(indices: Tensor, dims: list[int], op: str) -> Tensor:
    """Row-major flat index of index tuples (last axis of ``indices``) into ``dims``."""
    linear = torch.zeros(indices.shape[:-1], dtype=torch.int64, device=indices.device)
    for position, length in enumerate(dims):
        linear = linear * length + _wrap_negative(indices[..., position], length, op)
    return linear


class OnnxGatherND(nn.Module):
    """Gather slices addressed by index tuples, after ``batch_dims`` shared leading axes."""

    def __init__(self, batch_dims: int):
        super().__init__()
        self.batch_dims = batch_dims

    def forward(self, x: Tensor, indices: Tensor) -> Tensor:
        b = self.batch_dims
        depth = indices.shape[-1]
        batch_shape = list(x.shape[:b])
        batch = 1
        for dim in batch_shape:
            batch *= dim
        addressed = list(x.shape[b:b + depth])
        rest = list(x.shape[b + depth:])
        size = 1
        for dim in addressed:
            size *= dim
        data = x.reshape([batch, size] + rest)
        linear = _linear_index(indices.reshape(batch, -1, depth), addressed, "GatherND")
        rows = torch.arange(batch, device=x.device).unsqueeze(1)
        picked = data[rows, linear]
        return picked.reshape(list(indices.shape[:-1]) + rest)


@converter("GatherND", versions=(11, 12, 13))
def convert_gather_nd(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxGatherND(node.attribute("batch_dims", 0))


def _slice_axis(x: Tensor, axis: int, start: int, end: int, step: int) -> Tensor:
    """Slice one axis with ONNX clamping rules; negative steps walk backwards."""
    length = x.shape[axis]
    if step == 0:
        raise ValueError("Slice: step must not be 0")
    if start < 0:
        start += length
    if end < 0:
        end += length
    if step > 0:
        start = min(max(start, 0), length)
        end = min(max(end, 0), length)
        if step == 1:
            return x.narrow(axis, start, max(end - start, 0))
    else:
        start = min(max(start, 0), length - 1)
        end = min(max(end, -1), length - 1)
    count = max((end - start + step + (-1 if step > 0 else 1)) // step, 0)
    index = torch.arange(count, device=x.device) * step + start
    return x.index_select(axis, index)


class OnnxSlice(nn.Module):
    """Slice along the listed axes with per-axis starts, ends and steps."""

    starts: list[int] | None
    ends: list[int] | None
    axes: list[int] | None
    steps: list[int] | None

    def __init__(self, starts, ends, axes, steps):
        super().__init__()
        self.starts = starts
        self.ends = ends
        self.axes = axes
        self.steps = steps

    def forward(
        self,
        x: Tensor,
        starts: Tensor | None = None,
        ends: Tensor | None = None,
        axes: Tensor | None = None,
        steps: Tensor | None = None,
    ) -> Tensor:
        first = tensor_to_ints(starts) if starts is not None else self.starts
        last = tensor_to_ints(ends) if ends is not None else self.ends
        if first is None or last is None:
            raise ValueError("Slice needs starts and ends")
        listed = tensor_to_ints(axes) if axes is not None else self.axes
        if listed is None:
            listed = list(range(len(first)))
        strides = tensor_to_ints(steps) if steps is not None else self.steps
        if strides is None:
            strides = [1] * len(first)
        rank = x.dim()
        for position, axis in enumerate(listed):
            axis = axis + rank if axis < 0 else axis
            x = _slice_axis(x, axis, first[position], last[position], strides[position])
        return x


@converter("Slice", versions=(1, 10, 11, 13))
def convert_slice(node: OnnxNode, context: ConversionContext) -> Converted:
    if node.since_version < 10:
        module = OnnxSlice(node.attribute("starts"), node.attribute("ends"),
                           node.attribute("axes"), None)
        return Converted(module, inputs=[node.inputs[0], None, None, None, None])
    values, runtime = zip(*(optional_int_input(node, context, i) for i in range(1, 5)))
    return Converted(OnnxSlice(*values), inputs=[node.inputs[0], *runtime])


_SCATTER_REDUCTIONS = {"none": "none", "add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


def _scatter(x: Tensor, axis: int, index: Tensor, updates: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return torch.scatter(x, axis, index, updates)
    return torch.scatter_reduce(x, axis, index, updates, reduction, include_self=True)


class OnnxScatterElements(nn.Module):
    """Write ``updates`` into a copy of the input at per-element indices along ``axis``."""

    def __init__(self, axis: int, reduction: str):
        super().__init__()
        self.axis = axis
        self.reduction = reduction

    def forward(self, x: Tensor, indices: Tensor, updates: Tensor) -> Tensor:
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        index = _wrap_negative(indices, x.shape[axis], "ScatterElements")
        return _scatter(x, axis, index, updates, self.reduction)


def _scatter_reduction(node: OnnxNode) -> str:
    reduction = node.attribute("reduction", "none")
    allowed = ["none"]
    if node.since_version >= 16:
        allowed += ["add", "mul"]
    if node.since_version >= 18:
        allowed += ["max", "min"]
    if reduction not in allowed:
        raise unsupported(node, f"attribute reduction={reduction!r} is not supported; "
                          f"supported: {', '.join(allowed)}")
    return _SCATTER_REDUCTIONS[reduction]


@converter("ScatterElements", versions=(11, 13, 16, 18))
def convert_scatter_elements(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxScatterElements(node.attribute("axis", 0), _scatter_reduction(node))


@converter("Scatter", versions=(9, 11))
def convert_scatter(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxScatterElements(node.attribute("axis", 0), "none")


class OnnxScatterND(nn.Module):
    """Write ``updates`` slices into a copy of the input at index tuples."""

    def __init__(self, reduction: str):
        super().__init__()
        self.reduction = reduction

    def forward(self, x: Tensor, indices: Tensor, updates: Tensor) -> Tensor:
        depth = indices.shape[-1]
        addressed = list(x.shape[:depth])
        rest = list(x.shape[depth:])
        size = 1
        for dim in addressed:
            size *= dim
        data = x.reshape([size] + rest)
        linear = _linear_index(indices, addressed, "ScatterND").reshape(-1)
        values = updates.reshape([linear.shape[0]] + rest)
        index = linear.reshape([linear.shape[0]] + [1] * len(rest)).expand(values.shape)
        return _scatter(data, 0, index, values, self.reduction).reshape(x.shape)


@converter("ScatterND", versions=(11, 13, 16, 18))
def convert_scatter_nd(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxScatterND(_scatter_reduction(node))


class OnnxOneHot(nn.Module):
    """One-hot encode along ``axis`` using ``values = [off, on]``; out-of-range → all off."""

    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis

    def forward(self, indices: Tensor, depth: Tensor, values: Tensor) -> Tensor:
        size = int(depth)
        axis = self.axis + indices.dim() + 1 if self.axis < 0 else self.axis
        wrapped = indices.to(torch.int64) if not indices.is_floating_point() else indices.long()
        wrapped = torch.where(wrapped < 0, wrapped + size, wrapped).unsqueeze(axis)
        shape = [1] * (indices.dim() + 1)
        shape[axis] = size
        classes = torch.arange(size, device=indices.device).reshape(shape)
        return torch.where(classes == wrapped, values[1], values[0])


@converter("OneHot", versions=(9, 11, 28))
def convert_one_hot(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxOneHot(node.attribute("axis", -1))


class OnnxNonZero(nn.Module):
    """Indices of the non-zero entries, one row per input axis (int64, row-major order)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 0:
            return torch.zeros((0, int(x != 0)), dtype=torch.int64, device=x.device)
        return torch.nonzero(x).t()


@converter("NonZero", versions=(9, 13))
def convert_non_zero(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxNonZero()


class OnnxCompress(nn.Module):
    """Keep the slices along ``axis`` (of the flattened input when none) where condition holds."""

    axis: int | None

    def __init__(self, axis: int | None):
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        axis = self.axis
        if axis is None:
            x = x.reshape(-1)
            axis = 0
        elif axis < 0:
            axis += x.dim()
        keep = torch.nonzero(condition.reshape(-1)).reshape(-1)
        return x.index_select(axis, keep)


@converter("Compress", versions=(9, 11, 28))
def convert_compress(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxCompress(node.attribute("axis"))


def _sortable(x: Tensor) -> Tensor:
    """A tensor that sorts like ``x`` for dtypes torch cannot sort (uint64 → int64 order)."""
    if x.dtype == torch.uint64:
        if torch.jit.is_scripting():  # TorchScript reads view(dtype) as view(size)
            raise RuntimeError("TopK on uint64 runs in eager mode and under trace, not script")
        flipped = x.view(torch.int64) ^ torch.tensor(-(2**63), dtype=torch.int64, device=x.device)
        return flipped
    if x.dtype == torch.bool:
        return x.to(torch.uint8)
    return x


def _topk_lower_index_first(x: Tensor, count: int, axis: int, largest: bool):
    """``torch.topk`` with ONNX's tie rule (the lower index first), or None for the dtypes
    torch's topk lacks (bool, uint64), which take the full stable sort.

    topk selects in O(n); ties inside the selection are then put in index order by two
    sorts of only ``count`` entries per row. Only the rows where that is not enough — a
    value equal to the k-th one left outside the selection (it may have the lower index),
    or a NaN — are sorted whole, so one such row no longer sorts the batch.
    """
    if count == 0 or x.numel() == 0 or x.dtype in (torch.bool, torch.uint64):
        return None
    moved = x.movedim(axis, -1)
    if select.usable(moved, count):  # one pass per row in C (bridge/onnx/select.py)
        values, indices = select.select(moved, count, largest)
        return values.movedim(-1, axis), indices.movedim(-1, axis)
    rows = moved.reshape(-1, moved.shape[-1])
    values, indices = torch.topk(rows, count, dim=1, largest=largest, sorted=True)
    kth = values[:, count - 1:count]
    whole_sort = torch.count_nonzero(rows == kth, 1) != torch.count_nonzero(values == kth, 1)
    if rows.is_floating_point():  # a NaN makes its row's sum NaN (so may +inf and -inf)
        whole_sort |= torch.isnan(rows.sum(1))
    by_index = torch.argsort(indices, dim=1)
    indices, values = torch.gather(indices, 1, by_index), torch.gather(values, 1, by_index)
    by_value = torch.sort(values, dim=1, descending=largest, stable=True)[1]
    values, indices = torch.gather(values, 1, by_value), torch.gather(indices, 1, by_value)
    if bool(whole_sort.any()):
        chosen = whole_sort.nonzero().reshape(-1)
        order = torch.sort(rows[chosen], dim=1, descending=largest, stable=True)[1]
        indices[chosen] = order[:, :count]
        values[chosen] = torch.gather(rows[chosen], 1, order[:, :count])
    shape = moved.shape[:-1] + (count,)
    return values.reshape(shape).movedim(-1, axis), indices.reshape(shape).movedim(-1, axis)


class OnnxTopK(nn.Module):
    """The ``k`` largest (or smallest) entries along ``axis``; ties keep the lower index first."""

    k: int | None

    def __init__(self, k: int | None, axis: int, largest: bool):
        super().__init__()
        self.k = k
        self.axis = axis
        self.largest = largest

    def forward(self, x: Tensor, k: Tensor | None = None) -> tuple[Tensor, Tensor]:
        count = int(k.reshape(-1)[0]) if k is not None else self.k
        if count is None:
            raise ValueError("TopK needs k")
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        if not torch.jit.is_scripting():
            if torch.compiler.is_exporting() and x.dtype != torch.uint64:
                # ONNX has no sort; its TopK itself puts the lower index first on ties
                values, indices = torch.topk(x, count, dim=axis, largest=self.largest)
                return values, indices
            selected = _topk_lower_index_first(x, count, axis, self.largest)
            if selected is not None:
                return selected
        order = torch.sort(_sortable(x), dim=axis, descending=self.largest, stable=True)[1]
        indices = order.narrow(axis, 0, count)
        if x.dtype == torch.uint64:  # torch has no uint64 gather; the bits travel as int64
            return torch.gather(x.view(torch.int64), axis, indices).view(torch.uint64), indices
        return torch.gather(x, axis, indices), indices


@converter("TopK", versions=(1, 10, 11, 24))
def convert_top_k(node: OnnxNode, context: ConversionContext) -> Converted:
    axis = node.attribute("axis", -1)
    largest = bool(node.attribute("largest", 1))
    if node.since_version < 10:
        return Converted(OnnxTopK(node.attribute("k"), axis, largest), inputs=[node.inputs[0], None])
    k, runtime = optional_int_input(node, context, 1)
    if k is None and runtime is None:
        raise ConversionError(f"TopK node {node.name!r} has no 'K' input")
    return Converted(OnnxTopK(k[0] if k else None, axis, largest), inputs=[node.inputs[0], runtime])


class OnnxReverseSequence(nn.Module):
    """Reverse the first ``sequence_lens[b]`` steps along the time axis of each batch entry."""

    def __init__(self, batch_axis: int, time_axis: int):
        super().__init__()
        self.batch_axis = batch_axis
        self.time_axis = time_axis

    def forward(self, x: Tensor, sequence_lens: Tensor) -> Tensor:
        steps = x.shape[self.time_axis]
        time = torch.arange(steps, device=x.device).unsqueeze(0)
        lengths = sequence_lens.to(torch.int64).unsqueeze(1)
        source = torch.where(time < lengths, lengths - 1 - time, time)  # (batch, time)
        if self.time_axis < self.batch_axis:
            source = source.t()
        shape = list(source.shape) + [1] * (x.dim() - 2)
        return torch.gather(x, self.time_axis, source.reshape(shape).expand(x.shape))


@converter("ReverseSequence", versions=(10, 28))
def convert_reverse_sequence(node: OnnxNode, context: ConversionContext) -> nn.Module:
    batch_axis = node.attribute("batch_axis", 1)
    time_axis = node.attribute("time_axis", 0)
    if {batch_axis, time_axis} != {0, 1}:
        raise ConversionError(
            f"ReverseSequence node {node.name!r}: batch_axis={batch_axis} and "
            f"time_axis={time_axis} must be 0 and 1 in some order"
        )
    return OnnxReverseSequence(batch_axis, time_axis)


class OnnxUnique(nn.Module):
    """Unique values (or slices along ``axis``) with first indices, inverse indices and counts."""

    axis: int | None

    def __init__(self, axis: int | None, sorted_output: bool, outputs: int):
        super().__init__()
        self.axis = axis
        self.sorted_output = sorted_output
        self.outputs = outputs

    def forward(self, x: Tensor) -> list[Tensor]:
        axis = self.axis
        if axis is None:
            x = x.reshape(-1)
            axis = 0
        elif axis < 0:
            axis += x.dim()
        values, inverse, counts = torch.unique(
            x, sorted=True, return_inverse=True, return_counts=True, dim=axis
        )
        positions = torch.arange(inverse.shape[0], device=x.device)
        first = torch.full((counts.shape[0],), inverse.shape[0], dtype=torch.int64,
                           device=x.device)
        first = first.scatter_reduce(0, inverse, positions, "amin", include_self=True)
        if not self.sorted_output:
            order = torch.argsort(first)
            rank = torch.empty_like(order)
            rank[order] = torch.arange(order.shape[0], device=x.device)
            values = values.index_select(axis, order)
            first, counts, inverse = first[order], counts[order], rank[inverse]
        results = [values, first, inverse, counts]
        return results[:self.outputs]


@converter("Unique", versions=(11, 28))
def convert_unique(node: OnnxNode, context: ConversionContext) -> nn.Module:
    module = OnnxUnique(node.attribute("axis"), bool(node.attribute("sorted", 1)),
                        len(node.outputs))
    if len(node.outputs) == 1:
        return _FirstOutput(module)
    return module


class _FirstOutput(nn.Module):
    """Adapts a list-returning module to a node with a single output."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x)[0]
