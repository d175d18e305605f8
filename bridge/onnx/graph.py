"""Read-only views over ONNX protobufs, so converters never touch protobuf plumbing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from bridge.errors import InvalidModelError, ModelFileError

ONNX_DOMAIN = ""
ML_DOMAIN = "ai.onnx.ml"


def normalize_domain(domain: str) -> str:
    """Map the aliases of the default domain (``""``, ``"ai.onnx"``) to ``""``."""
    return "" if domain in ("", "ai.onnx") else domain


def load_model(model: onnx.ModelProto | str | os.PathLike | bytes) -> onnx.ModelProto:
    """Return a ``ModelProto`` from a model, a file path or serialized bytes.

    Raises
    ------
    ModelFileError
        When the path is missing, is a directory, cannot be read, or names external data
        files that are missing or unreadable (both a ``ValueError`` and an ``OSError``).
    InvalidModelError
        When the input is of another type, or the bytes are not a complete ONNX model
        (truncated, corrupt, not ONNX at all, no opset list).
    """
    if isinstance(model, onnx.ModelProto):
        proto, what = model, "the ONNX model"
    elif isinstance(model, (bytes, bytearray, memoryview)):
        what = "the given bytes"
        proto = _parse_bytes(bytes(model), what)
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        what = repr(str(path))
        proto = _parse_bytes(_read_file(path), what)
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
            _load_external_data(proto, path)
    else:
        raise InvalidModelError(
            f"expected an onnx.ModelProto, a path or bytes, got {type(model).__name__}"
        )
    if not proto.graph.node and not proto.graph.output:
        raise InvalidModelError(f"{what} has an empty graph (no nodes, no outputs)")
    _check_opsets(proto, what)
    return proto


def _read_file(path: Path) -> bytes:
    if path.is_dir():
        raise ModelFileError(f"ONNX file {str(path)!r} is a directory; give the path of a "
                             ".onnx file inside it")
    if not path.exists():
        raise ModelFileError(f"ONNX file {str(path)!r} does not exist")
    try:
        return path.read_bytes()
    except OSError as error:
        raise ModelFileError(f"ONNX file {str(path)!r} cannot be read: {error}") from error


def _load_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Read the initializers stored beside ``path``; name the missing file when one is."""
    for tensor in proto.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        target = path.parent / location
        if not location or not target.is_file():
            raise ModelFileError(
                f"ONNX file {str(path)!r} stores initializer {tensor.name!r} in the external "
                f"file {str(target)!r}, which does not exist (copy it beside the model)"
            )
    try:
        onnx.load_external_data_for_model(proto, str(path.parent))
    except Exception as error:  # onnx raises ValidationError, OSError or ValueError here
        raise ModelFileError(
            f"the external data of ONNX file {str(path)!r} cannot be read: {error}"
        ) from None


def _check_opsets(proto: onnx.ModelProto, what: str) -> None:
    """Every model imports opsets, and every domain its nodes use must be among them."""
    if not proto.opset_import:
        raise InvalidModelError(
            f"{what} declares no opset (its opset_import list is empty); an ONNX file cut "
            "short after its graph looks like this: is the file truncated?"
        )
    imported = {normalize_domain(o.domain) for o in proto.opset_import}
    for node in proto.graph.node:
        if normalize_domain(node.domain) not in imported:
            shown = sorted(d or "ai.onnx" for d in imported)
            raise InvalidModelError(
                f"{what}: node {node.name or node.op_type!r} uses domain "
                f"{node.domain or 'ai.onnx'!r}, which the model does not import "
                f"(opset_import lists {shown})"
            )


def _parse_bytes(data: bytes, what: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as error:  # protobuf raises DecodeError or RuntimeWarning-like errors
        raise InvalidModelError(
            f"{what} is not a readable ONNX model ({len(data)} bytes; "
            f"the protobuf decoder said: {error}); is the file truncated or of another format?"
        ) from None
    if not proto.HasField("graph"):
        raise InvalidModelError(f"{what} parsed, but holds no ONNX graph ({len(data)} bytes)")
    return proto


def attribute_value(attribute: onnx.AttributeProto) -> Any:
    """Return an attribute as a plain Python value (strings decoded, tensors as numpy)."""
    kind = attribute.type
    A = onnx.AttributeProto
    if kind == A.FLOAT:
        return float(attribute.f)
    if kind == A.INT:
        return int(attribute.i)
    if kind == A.STRING:
        return attribute.s.decode("utf-8")
    if kind == A.TENSOR:
        return numpy_helper.to_array(attribute.t)
    if kind == A.GRAPH:
        return attribute.g
    if kind == A.FLOATS:
        return [float(v) for v in attribute.floats]
    if kind == A.INTS:
        return [int(v) for v in attribute.ints]
    if kind == A.STRINGS:
        return [s.decode("utf-8") for s in attribute.strings]
    if kind == A.TENSORS:
        return [numpy_helper.to_array(t) for t in attribute.tensors]
    if kind == A.GRAPHS:
        return list(attribute.graphs)
    if kind == A.SPARSE_TENSOR:
        return numpy_helper.to_array(attribute.sparse_tensor.values)
    return onnx.helper.get_attribute_value(attribute)


@dataclass(frozen=True)
class ValueType:
    """The static type of a graph value: element type and shape (dims may be None/str)."""

    elem_type: int | None
    shape: tuple[int | str | None, ...] | None
    kind: str = "tensor"  # "tensor", "sequence", "map", "optional"


def value_type(type_proto: onnx.TypeProto) -> ValueType:
    """Return the :class:`ValueType` of a ``TypeProto``."""
    which = type_proto.WhichOneof("value")
    if which == "tensor_type":
        tensor = type_proto.tensor_type
        shape = None
        if tensor.HasField("shape"):
            shape = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in tensor.shape.dim
            )
        return ValueType(tensor.elem_type or None, shape)
    if which == "sequence_type":
        return ValueType(None, None, "sequence")
    if which == "map_type":
        return ValueType(None, None, "map")
    if which == "optional_type":
        return ValueType(None, None, "optional")
    return ValueType(None, None, which or "unknown")


class OnnxNode:
    """A read-only view of a ``NodeProto``."""

    def __init__(self, proto: onnx.NodeProto, index: int):
        self.proto = proto
        self.index = index
        self._attributes = {a.name: a for a in proto.attribute}

    @property
    def name(self) -> str:
        return self.proto.name or f"{self.op_type}_{self.index}"

    @property
    def op_type(self) -> str:
        return self.proto.op_type

    @property
    def domain(self) -> str:
        return normalize_domain(self.proto.domain)

    @property
    def inputs(self) -> list[str]:
        """Input value names; ``""`` marks an omitted optional input."""
        return list(self.proto.input)

    @property
    def outputs(self) -> list[str]:
        return list(self.proto.output)

    def has_attribute(self, name: str) -> bool:
        return name in self._attributes

    def attribute(self, name: str, default: Any = None) -> Any:
        """Return attribute ``name`` as a Python value, or ``default`` when absent."""
        attribute = self._attributes.get(name)
        return default if attribute is None else attribute_value(attribute)

    @property
    def attribute_names(self) -> list[str]:
        return list(self._attributes)

    def __repr__(self) -> str:
        shown = self.domain + "::" if self.domain else ""
        return f"OnnxNode({shown}{self.op_type} {self.name!r})"


def _decoded(tensor, name: str, source: str) -> np.ndarray:
    """An initializer as an array; a corrupt one (data size off its dims, unknown element
    type) raises :class:`InvalidModelError` naming it and ``source``."""
    try:
        return numpy_helper.to_array(tensor)
    except Exception as error:  # numpy's reshape ValueError, onnx's TypeError, ...
        dims = list(getattr(tensor, "dims", None) or tensor.values.dims)
        raise InvalidModelError(
            f"{source}: initializer {name!r} (dims {dims}) cannot be decoded ({error}); "
            "is the file corrupt?"
        ) from None


class OnnxGraph:
    """A read-only view of a ``GraphProto``: inputs, outputs, initializers, nodes, types."""

    def __init__(self, proto: onnx.GraphProto, source: str = "the ONNX model"):
        self.proto = proto
        self.initializers: dict[str, np.ndarray] = {
            t.name: _decoded(t, t.name, source) for t in proto.initializer
        }
        for sparse in proto.sparse_initializer:
            self.initializers[sparse.values.name] = _decoded(sparse, sparse.values.name, source)
        self.types: dict[str, ValueType] = {}
        for info in list(proto.input) + list(proto.value_info) + list(proto.output):
            if info.HasField("type"):
                self.types[info.name] = value_type(info.type)

    @property
    def inputs(self) -> list[str]:
        """Names of the inputs a caller must feed (initializer-backed inputs excluded)."""
        return [i.name for i in self.proto.input if i.name not in self.initializers]

    @property
    def outputs(self) -> list[str]:
        return [o.name for o in self.proto.output]

    def nodes(self) -> Iterator[OnnxNode]:
        for index, node in enumerate(self.proto.node):
            yield OnnxNode(node, index)

    def type_of(self, name: str) -> ValueType | None:
        return self.types.get(name)


def free_names(graph: onnx.GraphProto) -> list[str]:
    """Names a (sub)graph reads but does not define: values of the enclosing graphs.

    Nested subgraphs count too (their free names that this graph does not define).
    """
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    defined |= {t.values.name for t in graph.sparse_initializer}
    free: list[str] = []

    def read(name: str) -> None:
        if name and name not in defined and name not in free:
            free.append(name)

    for node in graph.node:
        for name in node.input:
            read(name)
        for attribute in node.attribute:
            subgraphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else []
            if attribute.type == onnx.AttributeProto.GRAPHS:
                subgraphs = list(attribute.graphs)
            for subgraph in subgraphs:
                for name in free_names(subgraph):
                    read(name)
        defined.update(node.output)
    for output in graph.output:
        read(output.name)
    return free
