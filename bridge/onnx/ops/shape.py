"""Shape operators: Shape, Size, Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Expand,
Concat, Split, Tile; plus the small helpers other families use to read constant inputs.
"""


import torch
from torch import Tensor, nn

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import Converted, converter

# ---------------------------------------------------------------------------------------------
# Helpers shared by the shape, indexing and reduce families.


def tensor_to_ints(values: Tensor) -> list[int]:
    """Return the entries of an integer tensor (any rank) as a Python list of ints."""
    result: list[int] = values.reshape(-1).to(torch.int64).tolist()
    return result


def optional_int_input(
    node: OnnxNode, context: ConversionContext, position: int
) -> tuple[list[int] | None, str | None]:
    """Read optional int-list input ``position``: (constant values, None) or (None, run-time name).

    Returns ``(None, None)`` when the input is omitted.
    """
    inputs = node.inputs
    if position >= len(inputs) or not inputs[position]:
        return None, None
    name = inputs[position]
    value = context.constant(name)
    if value is None:
        return None, name
    return [int(v) for v in value.reshape(-1).tolist()], None


def unsupported(node: OnnxNode, reason: str) -> UnsupportedOperatorError:
    """Return the error for an attribute value bridge does not convert."""
    return UnsupportedOperatorError(node.domain, node.op_type, node.since_version, reason=reason)


# ---------------------------------------------------------------------------------------------


class OnnxShape(nn.Module):
    """The input's shape as int64, sliced by ``start``/``end`` (clamped like Python slices)."""

    end: int | None

    def __init__(self, start: int = 0, end: int | None = None):
        super().__init__()
        self.start = start
        self.end = end

    def forward(self, x: Tensor) -> Tensor:
        dims = list(x.shape)
        end = self.end
        selected = dims[self.start:] if end is None else dims[self.start:end]
        return torch.tensor(selected, dtype=torch.int64, device=x.device)


@converter("Shape", versions=(1, 13, 15, 19, 21, 23, 24, 25))
def convert_shape(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxShape(node.attribute("start", 0), node.attribute("end"))


class OnnxSize(nn.Module):
    """The input's number of elements as an int64 scalar."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tensor(x.numel(), dtype=torch.int64, device=x.device)


@converter("Size", versions=(1, 13, 19, 21, 23, 24, 25))
def convert_size(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxSize()


class OnnxReshape(nn.Module):
    """Reshape; a 0 in the target copies the input dimension unless ``allowzero``."""

    shape: list[int] | None

    def __init__(self, shape: list[int] | None, allowzero: bool):
        super().__init__()
        self.shape = shape
        self.allowzero = allowzero

    def forward(self, x: Tensor, shape: Tensor | None = None) -> Tensor:
        if shape is not None:
            target = tensor_to_ints(shape)
        else:
            baked = self.shape
            if baked is None:
                raise ValueError("Reshape needs a target shape")
            target = baked
        resolved: list[int] = []
        for position, dim in enumerate(target):
            if dim == 0 and not self.allowzero:
                resolved.append(x.shape[position])
            else:
                resolved.append(dim)
        return x.reshape(resolved)


@converter("Reshape", versions=(1, 5, 13, 14, 19, 21, 23, 24, 25))
def convert_reshape(node: OnnxNode, context: ConversionContext) -> Converted:
    allowzero = bool(node.attribute("allowzero", 0))
    if node.since_version < 5:
        return Converted(OnnxReshape(node.attribute("shape"), allowzero), inputs=[node.inputs[0]])
    shape, runtime = optional_int_input(node, context, 1)
    if shape is None and runtime is None:
        raise ConversionError(f"Reshape node {node.name!r} has no 'shape' input")
    return Converted(OnnxReshape(shape, allowzero), inputs=[node.inputs[0], runtime])


class OnnxFlatten(nn.Module):
    """Flatten to 2-D: dimensions before ``axis`` form the rows, the rest the columns."""

    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        rows = 1
        for dim in x.shape[:axis]:
            rows *= dim
        columns = 1
        for dim in x.shape[axis:]:
            columns *= dim
        return x.reshape(rows, columns)


@converter("Flatten", versions=(1, 9, 11, 13, 21, 23, 24, 25))
def convert_flatten(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxFlatten(node.attribute("axis", 1))


class OnnxSqueeze(nn.Module):
    """Remove the listed size-1 axes (all size-1 axes when none are listed)."""

    axes: list[int] | None

    def __init__(self, axes: list[int] | None):
        super().__init__()
        self.axes = axes

    def forward(self, x: Tensor, axes: Tensor | None = None) -> Tensor:
        listed = tensor_to_ints(axes) if axes is not None else self.axes
        if listed is None:
            return x.squeeze()
        rank = x.dim()
        normalized = [a + rank if a < 0 else a for a in listed]
        normalized.sort()
        for position in range(len(normalized) - 1, -1, -1):
            axis = normalized[position]
            if x.shape[axis] != 1:
                raise ValueError(f"Squeeze: axis {axis} has size {x.shape[axis]}, not 1")
            x = x.squeeze(axis)
        return x


@converter("Squeeze", versions=(1, 11, 13, 21, 23, 24, 25))
def convert_squeeze(node: OnnxNode, context: ConversionContext) -> Converted:
    if node.since_version < 13:
        return Converted(OnnxSqueeze(node.attribute("axes")), inputs=[node.inputs[0]])
    axes, runtime = optional_int_input(node, context, 1)
    return Converted(OnnxSqueeze(axes), inputs=[node.inputs[0], runtime])


class OnnxUnsqueeze(nn.Module):
    """Insert size-1 axes at the listed positions of the output."""

    axes: list[int]

    def __init__(self, axes: list[int] | None):
        super().__init__()
        self.axes = list(axes or [])

    def forward(self, x: Tensor, axes: Tensor | None = None) -> Tensor:
        listed = tensor_to_ints(axes) if axes is not None else self.axes
        rank = x.dim() + len(listed)
        for axis in sorted([a + rank if a < 0 else a for a in listed]):
            x = x.unsqueeze(axis)
        return x


@converter("Unsqueeze", versions=(1, 11, 13, 21, 23, 24, 25))
def convert_unsqueeze(node: OnnxNode, context: ConversionContext) -> Converted:
    if node.since_version < 13:
        return Converted(OnnxUnsqueeze(node.attribute("axes")), inputs=[node.inputs[0]])
    axes, runtime = optional_int_input(node, context, 1)
    if axes is None and runtime is None:
        raise ConversionError(f"Unsqueeze node {node.name!r} has no 'axes' input")
    return Converted(OnnxUnsqueeze(axes), inputs=[node.inputs[0], runtime])


class OnnxTranspose(nn.Module):
    """Permute the axes (reverse them when no permutation is given)."""

    perm: list[int] | None

    def __init__(self, perm: list[int] | None):
        super().__init__()
        self.perm = perm

    def forward(self, x: Tensor) -> Tensor:
        perm = self.perm
        if perm is None:
            return x.permute(list(range(x.dim() - 1, -1, -1)))
        return x.permute(perm)


@converter("Transpose", versions=(1, 13, 21, 23, 24, 25))
def convert_transpose(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxTranspose(node.attribute("perm"))


def broadcast_dims(left: list[int], right: list[int]) -> list[int]:
    """Return the numpy-style broadcast of two shapes."""
    rank = max(len(left), len(right))
    padded_left = [1] * (rank - len(left)) + left
    padded_right = [1] * (rank - len(right)) + right
    result: list[int] = []
    for a, b in zip(padded_left, padded_right):
        if a != b and a != 1 and b != 1:
            raise ValueError(f"shapes {left} and {right} do not broadcast")
        result.append(b if a == 1 else a)
    return result


def broadcast_dims_while_exporting(left: list, right: list) -> list:
    """:func:`broadcast_dims` for torch.export, where sizes read from a shape tensor are
    unbacked symbols: "is this size 1?" is answered without a guard (unknown counts as no),
    and sizes are declared non-negative (ONNX shapes have no -1 entries)."""
    from torch.fx.experimental.symbolic_shapes import guard_or_false

    rank = max(len(left), len(right))
    padded_left = [1] * (rank - len(left)) + list(left)
    padded_right = [1] * (rank - len(right)) + list(right)
    result = []
    for a, b in zip(padded_left, padded_right):
        torch._check(b >= 0)
        result.append(b if guard_or_false(a == 1) else a)
    return result


class OnnxExpand(nn.Module):
    """Broadcast the input against a shape (bidirectionally, like numpy)."""

    shape: list[int] | None
    known: list[int] | None

    def __init__(self, shape: list[int] | None, known: list[int | None] | None = None):
        super().__init__()
        self.shape = shape
        # entries of a run-time target known at import (-1 where not): see forward
        self.known = None if known is None else [-1 if k is None else k for k in known]

    def forward(self, x: Tensor, shape: Tensor | None = None) -> Tensor:
        target = tensor_to_ints(shape) if shape is not None else self.shape
        if target is None:
            raise ValueError("Expand needs a target shape")
        if not torch.jit.is_scripting():
            if torch.compiler.is_exporting():
                known = self.known
                if known is not None and len(known) == len(target):  # numbers, not symbols
                    target = [t if k < 0 else k for k, t in zip(known, target)]
                return x.expand(broadcast_dims_while_exporting(list(x.shape), target))
        return x.expand(broadcast_dims(list(x.shape), target))


@converter("Expand", versions=(8, 13))
def convert_expand(node: OnnxNode, context: ConversionContext) -> Converted:
    shape, runtime = optional_int_input(node, context, 1)
    known = context.known_entries.get(runtime) if runtime else None
    return Converted(OnnxExpand(shape, known), inputs=[node.inputs[0], runtime])


class OnnxConcat(nn.Module):
    """Concatenate the inputs along ``axis``."""

    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis

    def forward(self, tensors: list[Tensor]) -> Tensor:
        return torch.cat(tensors, dim=self.axis)


@converter("Concat", versions=(1, 4, 11, 13))
def convert_concat(node: OnnxNode, context: ConversionContext) -> Converted:
    axis = node.attribute("axis", 1 if node.since_version < 4 else None)
    if axis is None:
        raise ConversionError(f"Concat node {node.name!r} has no 'axis' attribute")
    return Converted(OnnxConcat(axis), inputs=[node.inputs])


class OnnxSplit(nn.Module):
    """Split along ``axis`` into the given sizes, or into equal chunks (the last may be smaller)."""

    split: list[int] | None

    def __init__(self, axis: int, split: list[int] | None, outputs: int):
        super().__init__()
        self.axis = axis
        self.split = split
        self.outputs = outputs

    def forward(self, x: Tensor, split: Tensor | None = None) -> list[Tensor]:
        sizes = tensor_to_ints(split) if split is not None else self.split
        if sizes is None:
            length = x.shape[self.axis]
            chunk = (length + self.outputs - 1) // self.outputs
            sizes = [chunk] * (self.outputs - 1) + [length - chunk * (self.outputs - 1)]
        return list(torch.split(x, sizes, dim=self.axis))


class OnnxSplitSingle(nn.Module):
    """A Split with one output: the whole input."""

    def forward(self, x: Tensor, split: Tensor | None = None) -> Tensor:
        return x


@converter("Split", versions=(1, 2, 11, 13, 18))
def convert_split(node: OnnxNode, context: ConversionContext) -> Converted:
    axis = node.attribute("axis", 0)
    outputs = node.attribute("num_outputs", len(node.outputs))
    if outputs != len(node.outputs):
        raise ConversionError(
            f"Split node {node.name!r}: num_outputs={outputs} but the node has "
            f"{len(node.outputs)} outputs"
        )
    split, runtime = node.attribute("split"), None
    if node.since_version >= 13 or (node.since_version == 1 and split is None):
        split, runtime = optional_int_input(node, context, 1)
    if len(node.outputs) == 1:
        return Converted(OnnxSplitSingle(), inputs=[node.inputs[0], None])
    return Converted(OnnxSplit(axis, split, outputs), inputs=[node.inputs[0], runtime])


class OnnxTile(nn.Module):
    """Repeat the input ``repeats[i]`` times along each axis ``i``."""

    repeats: list[int] | None

    def __init__(self, repeats: list[int] | None):
        super().__init__()
        self.repeats = repeats

    def forward(self, x: Tensor, repeats: Tensor | None = None) -> Tensor:
        counts = tensor_to_ints(repeats) if repeats is not None else self.repeats
        if counts is None:
            raise ValueError("Tile needs repeats")
        return x.repeat(counts)


class OnnxTileAxis(nn.Module):
    """Tile-1: repeat the input ``tiles`` times along one ``axis`` (both inputs)."""

    def forward(self, x: Tensor, tiles: Tensor, axis: Tensor) -> Tensor:
        counts = [1] * x.dim()
        counts[int(axis)] = int(tiles)
        return x.repeat(counts)


@converter("Tile", versions=(1, 6, 13))
def convert_tile(node: OnnxNode, context: ConversionContext) -> Converted:
    if node.since_version < 6:
        return Converted(OnnxTileAxis())
    repeats, runtime = optional_int_input(node, context, 1)
    return Converted(OnnxTile(repeats), inputs=[node.inputs[0], runtime])
