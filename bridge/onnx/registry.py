"""The converter registry: (domain, op_type, since_version) → converter function.

A converter reads one ONNX node and returns the ``torch.nn.Module`` that computes it.
Register one with the :func:`converter` decorator in the op family's module under
``bridge/onnx/ops/``::

    @converter("Relu", versions=(6, 13, 14))
    def convert_relu(node: OnnxNode, context: ConversionContext) -> nn.Module:
        return OnnxRelu()

The module's ``forward`` receives the node's inputs in order (``None`` for an omitted
optional input) and returns one tensor when the node has one output, else a tuple with
one entry per node output. A converter that reads some inputs at conversion time (a
constant ``shape`` for Reshape, say) returns ``Converted(module, inputs=[...])`` naming
the inputs its module does take; an entry may be a list of names, passed as one list.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import onnx
from torch import nn

from bridge.errors import UnsupportedOperatorError
from bridge.onnx.graph import OnnxNode, normalize_domain

if TYPE_CHECKING:
    from bridge.onnx.context import ConversionContext

InputSpec = str | None | list[str]


@dataclass
class Converted:
    """A converter's result: the module and the node inputs its ``forward`` takes."""

    module: nn.Module
    inputs: Sequence[InputSpec] | None = None  # None: all node inputs, in order


ConverterFunction = Callable[[OnnxNode, "ConversionContext"], nn.Module | Converted]


@dataclass
class _OpEntry:
    versions: list[int] = field(default_factory=list)  # sorted since_versions
    functions: dict[int, ConverterFunction] = field(default_factory=dict)


_REGISTRY: dict[tuple[str, str], _OpEntry] = {}


def converter(
    op_type: str, *, versions: int | Sequence[int], domain: str = ""
) -> Callable[[ConverterFunction], ConverterFunction]:
    """Register the decorated function for ``op_type`` at each ``since_version``.

    Parameters
    ----------
    op_type : str
        The ONNX operator type, e.g. ``"Gemm"``.
    versions : int or sequence of int
        The operator's ``since_version`` values this converter implements (the
        versions listed in the ONNX operator changelog, not model opsets).
    domain : str
        ``""`` (ai.onnx, the default) or ``"ai.onnx.ml"``.
    """
    domain = normalize_domain(domain)
    version_list = [versions] if isinstance(versions, int) else list(versions)

    def register(function: ConverterFunction) -> ConverterFunction:
        entry = _REGISTRY.setdefault((domain, op_type), _OpEntry())
        for version in version_list:
            if version in entry.functions:
                raise RuntimeError(
                    f"{domain or 'ai.onnx'}::{op_type} version {version} registered twice"
                )
            entry.functions[version] = function
            bisect.insort(entry.versions, version)
        return function

    return register


def supported_versions(domain: str, op_type: str) -> tuple[int, ...]:
    """Return the registered ``since_version`` values of an operator (empty when none)."""
    entry = _REGISTRY.get((normalize_domain(domain), op_type))
    return tuple(entry.versions) if entry else ()


def schema_version(domain: str, op_type: str, opset: int) -> int | None:
    """Return the operator's ``since_version`` in effect at model opset ``opset``.

    ``None`` when ONNX does not know the operator at that opset (too old, or a
    custom domain), in which case the registry picks the newest version ≤ ``opset``.
    """
    try:
        return onnx.defs.get_schema(op_type, opset, normalize_domain(domain)).since_version
    except onnx.defs.SchemaError:
        return None


def lookup(domain: str, op_type: str, opset: int | None) -> ConverterFunction:
    """Return the converter for an operator at a model's opset.

    Raises
    ------
    UnsupportedOperatorError
        When no converter exists for the operator, or none for the version the
        model's opset resolves to; the message lists the supported versions.
    """
    domain = normalize_domain(domain)
    entry = _REGISTRY.get((domain, op_type))
    if entry is None or opset is None:
        raise UnsupportedOperatorError(domain, op_type, opset, supported_versions(domain, op_type))
    version = schema_version(domain, op_type, opset)
    if version is not None:
        function = entry.functions.get(version)
    else:
        position = bisect.bisect_right(entry.versions, opset)
        function = entry.functions[entry.versions[position - 1]] if position else None
    if function is None:
        raise UnsupportedOperatorError(domain, op_type, opset, entry.versions)
    return function


def registered_operators() -> dict[tuple[str, str], tuple[int, ...]]:
    """Return every registered (domain, op_type) with its versions, sorted."""
    return {key: tuple(_REGISTRY[key].versions) for key in sorted(_REGISTRY)}
