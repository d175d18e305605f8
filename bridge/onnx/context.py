"""What a converter may ask about the graph while converting one node."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bridge.errors import ConversionError
from bridge.onnx.graph import OnnxGraph, OnnxNode, ValueType


class ConversionContext:
    """Graph-wide facts for converters: opsets, constants, static types, vocabularies.

    Parameters
    ----------
    graph : OnnxGraph
        The graph being converted.
    opsets : dict
        Model opset per domain (``""`` for ai.onnx).
    options : dict, optional
        Conversion options given to :func:`bridge.from_onnx` (e.g. ``tree_strategy``).
    """

    def __init__(self, graph: OnnxGraph, opsets: dict[str, int], options: dict | None = None):
        self.graph = graph
        self.opsets = dict(opsets)
        self.options = dict(options or {})
        self.constants: dict[str, torch.Tensor] = {}
        self.vocabularies: dict[str, list] = {}
        # string graph inputs whose values must be in their vocabulary → the node refusing
        # others (a OneHotEncoder with handle_unknown='error'); see ClosedVocabulary
        self.closed_inputs: dict[str, str] = {}
        # set by the importer: GraphProto → (module, names of the outer values it reads)
        self.convert_subgraph = None
        # run-time integer vectors whose entries import-time shape folding partly knows
        # (bridge/onnx/static_shapes.py): value name → entries, None where unknown
        self.known_entries: dict[str, list[int | None]] = {}

    def opset(self, domain: str = "") -> int | None:
        """Return the model's opset for ``domain`` (``None`` when not imported)."""
        return self.opsets.get(domain)

    def is_constant(self, name: str) -> bool:
        """Whether value ``name`` is known at conversion time (initializer or folded)."""
        return name in self.constants

    def constant(self, name: str) -> torch.Tensor | None:
        """Return the value of ``name`` when it is a constant, else ``None``."""
        return self.constants.get(name)

    def require_constant(self, node: OnnxNode, name: str, role: str) -> torch.Tensor:
        """Return constant ``name`` or raise a ConversionError naming the node and input role."""
        value = self.constants.get(name)
        if value is None:
            raise ConversionError(
                f"{node.op_type} node {node.name!r}: input {role!r} ({name!r}) must be a "
                "constant (an initializer or computed from constants only) for bridge to "
                "convert it; it is computed at run time in this graph"
            )
        return value

    def type_of(self, name: str) -> ValueType | None:
        """Return the static type of a value when the graph (or shape inference) has it."""
        return self.graph.type_of(name)

    def vocabulary(self, name: str) -> list | None:
        """Return the labels that the int64 indices of string value ``name`` stand for."""
        return self.vocabularies.get(name)

    def set_vocabulary(self, name: str, labels: Sequence) -> None:
        """Declare that string value ``name`` is carried as int64 indices into ``labels``."""
        self.vocabularies[name] = list(labels)


class ClosedVocabulary(list):
    """The labels of a string graph input that refuses any other value.

    ``refused_by`` names the operator that refuses them (e.g. a OneHotEncoder with
    ``handle_unknown='error'``), so that inputs can be checked, and the unknown value named,
    before the graph runs, where only its index would be left.
    """

    def __init__(self, labels, refused_by: str):
        super().__init__(labels)
        self.refused_by = refused_by
