"""ai.onnx.ml encoders: OneHotEncoder, LabelEncoder, CategoryMapper and ZipMap.

Strings travel as int64 indices into vocabularies (see ``ConversionContext``). A string
*graph input* read by one of these ops gets (or extends) its vocabulary from the op's keys,
so every key has an index and any other string arrives as -1 ("unknown"); a string output
gets the vocabulary of the op's values plus its default. ZipMap rule: torch has no maps,
so ZipMap returns its ``[N, C]`` probability tensor unchanged and records its class labels
as that output's vocabulary: there the vocabulary names the columns, it does not decode values.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from bridge.errors import ConversionError, InvalidInputError
from bridge.onnx.context import ConversionContext
from bridge.onnx.dtypes import STRING, numpy_to_torch
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import Converted, converter

_NO_POSITION = -1


def _is_string_value(context: ConversionContext, name: str) -> bool:
    value_type = context.type_of(name)
    if value_type is not None and value_type.elem_type == STRING:
        return True
    return context.vocabulary(name) is not None


# ops that move string indices around without changing them (data is input 0)
_PASS_THROUGH = {("", "Identity"), ("", "Reshape"), ("", "Flatten"), ("", "Squeeze"),
                 ("", "Unsqueeze"), ("", "Transpose"), ("", "Slice"), ("", "Gather"),
                 ("", "Expand"), ("", "Tile"), ("ai.onnx.ml", "ArrayFeatureExtractor")}


def _path_to_graph_input(context: ConversionContext, name: str) -> list[str]:
    """Values from ``name`` back to the graph input it copies, or ``[]`` if it has none."""
    producers = {output: node for node in context.graph.nodes() for output in node.outputs}
    path = [name]
    while path[-1] not in context.graph.inputs:
        node = producers.get(path[-1])
        if node is None or (node.domain, node.op_type) not in _PASS_THROUGH:
            return []
        path.append(node.inputs[0])
    return path


def string_position_table(
    node: OnnxNode, context: ConversionContext, name: str, positions: dict[str, int]
) -> torch.Tensor:
    """Return, per vocabulary index of string value ``name``, its position in ``positions``.

    Strings without a position map to -1; one extra trailing -1 entry serves indices that
    are out of range. When ``name`` is a graph input, or copies one through ops that only
    move indices (Identity, Reshape, Gather, ArrayFeatureExtractor, ...), the keys are first
    appended to that input's vocabulary, which every value on the way then shares.
    """
    path = _path_to_graph_input(context, name)
    vocabulary = context.vocabulary(path[-1] if path else name)
    if path:
        known = set(vocabulary or [])
        missing = [key for key in positions if key not in known]
        vocabulary = list(vocabulary or []) + missing
        for value in path:  # the input and every pass-through value between share it
            context.set_vocabulary(value, vocabulary)
    elif vocabulary is None:
        raise ConversionError(
            f"{node.op_type} node {node.name!r}: string input {name!r} has no known "
            "vocabulary; bridge maps strings that come from a graph input or from an "
            "operator with fixed labels (LabelEncoder, CategoryMapper, class labels)"
        )
    table = [positions.get(label, _NO_POSITION) for label in vocabulary] + [_NO_POSITION]
    return torch.tensor(table, dtype=torch.int64)


class KeyPositions(nn.Module):
    """Map each input element to the position of its key (``-1`` when it has none).

    ``mode="index"``: inputs are vocabulary indices and ``table`` gives their positions.
    ``mode="numeric"``: inputs are numbers looked up in the sorted ``keys`` (NaN matches
    ``nan_position`` when that is not -1).
    """

    def __init__(self, mode: str, table: torch.Tensor | None = None,
                 keys: torch.Tensor | None = None, key_positions: torch.Tensor | None = None,
                 nan_position: int = _NO_POSITION, cast_to_int64: bool = False):
        super().__init__()
        self.mode = mode
        self.register_buffer("table", table if table is not None else torch.zeros(1, dtype=torch.int64))
        self.register_buffer("keys", keys if keys is not None else torch.zeros(0))
        self.register_buffer(
            "key_positions",
            key_positions if key_positions is not None else torch.zeros(0, dtype=torch.int64),
        )
        self.nan_position = nan_position
        self.cast_to_int64 = cast_to_int64
        self.has_keys = keys is not None and keys.numel() > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "index":
            unknown = self.table.shape[0] - 1
            valid = (x >= 0) & (x < unknown)
            return self.table[torch.where(valid, x, torch.full_like(x, unknown))]
        if self.cast_to_int64:
            x = x.to(torch.int64)
        missing = torch.full(x.shape, -1, dtype=torch.int64, device=x.device)
        if not self.has_keys:
            positions = missing
        else:
            keys = self.keys.to(x.dtype)
            exporting = False
            if not torch.jit.is_scripting():
                exporting = torch.compiler.is_exporting()
            if exporting:  # ONNX has no searchsorted: compare with every key (they are unique)
                matches = x.unsqueeze(-1) == keys
                found = (matches.to(torch.int64) * self.key_positions).sum(dim=-1)
                positions = torch.where(matches.any(dim=-1), found, missing)
            else:
                slot = torch.searchsorted(keys, x.contiguous()).clamp(max=keys.shape[0] - 1)
                positions = torch.where(keys[slot] == x, self.key_positions[slot], missing)
        if self.nan_position >= 0 and x.is_floating_point():
            positions = torch.where(torch.isnan(x), torch.full_like(positions, self.nan_position),
                                    positions)
        return positions


def numeric_key_positions(keys: np.ndarray, first_wins: bool = True,
                          cast_to_int64: bool = False) -> KeyPositions:
    """A :class:`KeyPositions` over numeric ``keys`` (duplicates: first or last one wins)."""
    chosen: dict = {}
    nan_position = _NO_POSITION
    for position, key in enumerate(keys.tolist()):
        if isinstance(key, float) and math.isnan(key):
            if nan_position == _NO_POSITION or not first_wins:
                nan_position = position
            continue
        key = 0.0 if key == 0 and isinstance(key, float) else key  # -0.0 and 0.0 are one key
        if first_wins:
            chosen.setdefault(key, position)
        else:
            chosen[key] = position
    ordered = sorted(chosen)
    key_tensor = numpy_to_torch(np.asarray(ordered, dtype=keys.dtype))
    positions = torch.tensor([chosen[k] for k in ordered], dtype=torch.int64)
    return KeyPositions("numeric", keys=key_tensor, key_positions=positions,
                        nan_position=nan_position, cast_to_int64=cast_to_int64)


def key_positions_for(node: OnnxNode, context: ConversionContext, name: str, keys: list,
                      first_wins: bool = True) -> KeyPositions:
    """Positions of string keys for a string input: a vocabulary-index table."""
    positions: dict[str, int] = {}
    for position, key in enumerate(keys):
        if first_wins:
            positions.setdefault(key, position)
        else:
            positions[key] = position
    return KeyPositions("index", table=string_position_table(node, context, name, positions))


class OnnxKeyValueMap(nn.Module):
    """Look each element up among the keys and return its value, or the default."""

    def __init__(self, positions: KeyPositions, values_with_default: torch.Tensor):
        super().__init__()
        self.positions = positions
        self.register_buffer("values_with_default", values_with_default)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        position = self.positions(x)
        default = self.values_with_default.shape[0] - 1
        return self.values_with_default[torch.where(position >= 0, position,
                                                    torch.full_like(position, default))]


def output_values(node: OnnxNode, context: ConversionContext, values, default,
                  dtype: np.dtype | None) -> torch.Tensor:
    """Return ``values + [default]`` as a tensor; strings become indices into a new vocabulary."""
    if dtype is None:  # strings
        vocabulary = list(dict.fromkeys(list(values) + [default]))
        context.set_vocabulary(node.outputs[0], vocabulary)
        index = {label: i for i, label in enumerate(vocabulary)}
        return torch.tensor([index[v] for v in list(values) + [default]], dtype=torch.int64)
    return numpy_to_torch(np.asarray(list(values) + [default], dtype=dtype))


def _decode(values) -> list:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _tensor_items(array: np.ndarray) -> tuple[list, np.dtype | None]:
    """Items of a keys/values tensor attribute and their dtype (``None`` for strings)."""
    flat = np.asarray(array).reshape(-1)
    if flat.dtype.kind in "OUS":
        return _decode(flat), None
    return flat.tolist(), flat.dtype


_TYPED_FIELDS = (("strings", None), ("int64s", np.dtype(np.int64)),
                 ("floats", np.dtype(np.float32)))


def _read_field(node: OnnxNode, stem: str) -> tuple[list, np.dtype | None, str]:
    if node.has_attribute(f"{stem}_tensor"):
        items, dtype = _tensor_items(node.attribute(f"{stem}_tensor"))
        return items, dtype, f"{stem}_tensor"
    present = [(suffix, dtype) for suffix, dtype in _TYPED_FIELDS
               if node.has_attribute(f"{stem}_{suffix}")]
    if len(present) != 1:
        raise ConversionError(
            f"LabelEncoder node {node.name!r} must set exactly one of {stem}_strings, "
            f"{stem}_int64s, {stem}_floats or {stem}_tensor; it sets "
            f"{[f'{stem}_{s}' for s, _ in present] or 'none'}"
        )
    suffix, dtype = present[0]
    items = node.attribute(f"{stem}_{suffix}")
    return list(items), dtype, f"{stem}_{suffix}"


def _default_value(node: OnnxNode, dtype: np.dtype | None):
    if node.has_attribute("default_tensor"):
        items, _ = _tensor_items(node.attribute("default_tensor"))
        return items[0]
    if dtype is None:
        return node.attribute("default_string", "_Unused")
    if dtype.kind == "f":
        return node.attribute("default_float", -0.0)
    return node.attribute("default_int64", -1)


@converter("LabelEncoder", versions=(1, 2, 4), domain="ai.onnx.ml")
def convert_label_encoder(node: OnnxNode, context: ConversionContext) -> Converted:
    source = node.inputs[0]
    if node.since_version < 2:
        classes = list(node.attribute("classes_strings", []) or [])
        if _is_string_value(context, source):  # string → its index in classes (last one wins)
            positions = key_positions_for(node, context, source, classes, first_wins=False)
            values = output_values(node, context, range(len(classes)),
                                   node.attribute("default_int64", -1), np.dtype(np.int64))
        else:  # index → the class string
            positions = numeric_key_positions(np.arange(len(classes), dtype=np.int64))
            values = output_values(node, context, classes,
                                   node.attribute("default_string", "_Unused"), None)
        return Converted(OnnxKeyValueMap(positions, values), inputs=[source])
    keys, key_dtype, key_field = _read_field(node, "keys")
    values, value_dtype, value_field = _read_field(node, "values")
    if len(keys) != len(values):
        raise ConversionError(
            f"LabelEncoder node {node.name!r}: {key_field} has {len(keys)} entries but "
            f"{value_field} has {len(values)}; they must pair up"
        )
    if key_dtype is None:
        positions = key_positions_for(node, context, source, keys)
    else:
        positions = numeric_key_positions(np.asarray(keys, dtype=key_dtype))
        if node.since_version < 4:  # before opset 4 a NaN key never matches
            positions.nan_position = _NO_POSITION
    default = _default_value(node, value_dtype)
    table = output_values(node, context, values, default, value_dtype)
    return Converted(OnnxKeyValueMap(positions, table), inputs=[source])


@converter("CategoryMapper", versions=(1,), domain="ai.onnx.ml")
def convert_category_mapper(node: OnnxNode, context: ConversionContext) -> Converted:
    strings = list(node.attribute("cats_strings", []) or [])
    ints = list(node.attribute("cats_int64s", []) or [])
    if len(strings) != len(ints):
        raise ConversionError(
            f"CategoryMapper node {node.name!r}: cats_strings has {len(strings)} entries but "
            f"cats_int64s has {len(ints)}; they must pair up"
        )
    source = node.inputs[0]
    if _is_string_value(context, source):
        positions = key_positions_for(node, context, source, strings, first_wins=False)
        values = output_values(node, context, ints, node.attribute("default_int64", -1),
                               np.dtype(np.int64))
    else:
        positions = numeric_key_positions(np.asarray(ints, dtype=np.int64), first_wins=False)
        values = output_values(node, context, strings,
                               node.attribute("default_string", "_Unused"), None)
    return Converted(OnnxKeyValueMap(positions, values), inputs=[source])


class OnnxOneHotEncoder(nn.Module):
    """One float32 column per category, appended as a new last axis; unknown → all zeros.

    With ``zeros=0`` an unknown category raises, as onnxruntime does (checked eagerly; a
    traced or exported graph cannot raise and gives all zeros).
    """

    def __init__(self, positions: KeyPositions, category_count: int, fail_on_unknown: bool,
                 described: str = "OneHotEncoder", categories: str = ""):
        super().__init__()
        self.positions = positions
        self.category_count = category_count
        self.fail_on_unknown = fail_on_unknown
        self.described = described  # names the node and its input, for the error
        self.categories = categories
        self.text = categories.startswith("'")  # x holds vocabulary indices, not the texts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        position = self.positions(x)
        categories = torch.arange(self.category_count, device=x.device)
        encoded = (position.unsqueeze(-1) == categories).to(torch.float32)
        checking = self.fail_on_unknown and not torch.jit.is_tracing()
        if not torch.jit.is_scripting():
            checking = checking and not torch.compiler.is_exporting()  # no raising in a graph
        if checking:
            if bool((position < 0).any()):
                where = (position < 0).nonzero()[0].tolist()
                value = "a text" if self.text else repr(x[tuple(where)].item())
                raise InvalidInputError(
                    f"{self.described} (zeros=0, i.e. handle_unknown='error') met category "
                    f"{value} at index {tuple(where)} of that input (row {where[0]}), not "
                    f"among its categories {self.categories}"
                )
        return encoded


@converter("OneHotEncoder", versions=(1,), domain="ai.onnx.ml")
def convert_one_hot_encoder(node: OnnxNode, context: ConversionContext) -> Converted:
    strings = list(node.attribute("cats_strings", []) or [])
    ints = list(node.attribute("cats_int64s", []) or [])
    if bool(strings) == bool(ints):
        raise ConversionError(
            f"OneHotEncoder node {node.name!r} must set exactly one of cats_int64s and "
            f"cats_strings (got {len(ints)} and {len(strings)} categories)"
        )
    source = node.inputs[0]
    if strings:
        positions = key_positions_for(node, context, source, strings, first_wins=False)
    else:
        positions = numeric_key_positions(np.asarray(ints, dtype=np.int64), first_wins=False,
                                          cast_to_int64=True)
    fail_on_unknown = not bool(node.attribute("zeros", 1))
    described = f"OneHotEncoder {node.name!r} on {source!r}"
    categories = _shown_labels(strings or ints)
    path = _path_to_graph_input(context, source) if strings else []
    if fail_on_unknown and path:  # checked, and the text named, as the input comes in
        context.closed_inputs[path[-1]] = described
    module = OnnxOneHotEncoder(positions, len(strings or ints), fail_on_unknown, described,
                               categories)
    return Converted(module, inputs=[source])


def _shown_labels(labels: list, shown: int = 10) -> str:
    text = ", ".join(repr(label) for label in labels[:shown])
    return text + (f", ... ({len(labels)} in all)" if len(labels) > shown else "")


class OnnxZipMap(nn.Module):
    """Returns the probability tensor unchanged (its class labels are the output vocabulary)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@converter("ZipMap", versions=(1,), domain="ai.onnx.ml")
def convert_zip_map(node: OnnxNode, context: ConversionContext) -> nn.Module:
    strings = list(node.attribute("classlabels_strings", []) or [])
    ints = list(node.attribute("classlabels_int64s", []) or [])
    if bool(strings) == bool(ints):
        raise ConversionError(
            f"ZipMap node {node.name!r} must set exactly one of classlabels_strings and "
            f"classlabels_int64s (got {len(strings)} and {len(ints)} labels)"
        )
    context.set_vocabulary(node.outputs[0], strings or ints)
    return OnnxZipMap()
