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

from bridge.errors import InvalidModelError

ONNX_DOMAIN = ""
ML_DOMAIN = "ai.onnx.ml"


def normalize_domain(domain: str) -> str:
    """Map the aliases of the default domain (``""``, ``"ai.onnx"``) to ``""``."""
    return "" if domain in ("", "ai.onnx") else domain


def load_model(model: onnx.ModelProto | str | os.PathLike | bytes) -> onnx.ModelProto:
    """Return a ``ModelProto`` from a model, a file path or serialized bytes.

    Raises
    ------
    InvalidModelError
        When the input is of another type, the file is missing, or the bytes are
        not a parseable ONNX model (truncated, corrupt, not ONNX at all).
    """
    if isinstance(model, onnx.ModelProto):
        proto = model
    elif isinstance(model, (bytes, bytearray, memoryview)):
        proto = _parse_bytes(bytes(model), "the given bytes")
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise InvalidModelError(f"ONNX file {str(path)!r} does not exist")
        proto = _parse_bytes(path.read_bytes(), repr(str(path)))
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
            onnx.load_external_data_for_model(proto, str(path.parent))
    else:
        raise InvalidModelError(
            f"expected an onnx.ModelProto, a path or bytes, got {type(model).__name__}"
        )
    if not proto.graph.node and not proto.graph.output:
        raise InvalidModelError("the ONNX model has an empty graph (no nodes, no outputs)")
    return proto


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


class OnnxGraph:
    """A read-only view of a ``GraphProto``: inputs, outputs, initializers, nodes, types."""

    def __init__(self, proto: onnx.GraphProto):
        self.proto = proto
        self.initializers: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in proto.initializer
        }
        for sparse in proto.sparse_initializer:
            self.initializers[sparse.values.name] = numpy_helper.to_array(sparse)
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
