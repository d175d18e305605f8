"""Constant and Identity: values fixed by the graph, and values passed through unchanged."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bridge.errors import ConversionError
from bridge.onnx.context import ConversionContext
from bridge.onnx.dtypes import numpy_to_torch
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import converter


class OnnxConstant(nn.Module):
    """Returns a fixed tensor (folded away at import time)."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.register_buffer("value", value)

    def forward(self) -> torch.Tensor:
        return self.value


class OnnxIdentity(nn.Module):
    """Returns its input unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


_CONSTANT_ATTRIBUTES = {
    "value": None,
    "value_float": np.float32,
    "value_floats": np.float32,
    "value_int": np.int64,
    "value_ints": np.int64,
    "sparse_value": None,
}


@converter("Constant", versions=(1, 9, 11, 12, 13, 19, 21, 23, 24, 25))
def convert_constant(node: OnnxNode, context: ConversionContext) -> nn.Module:
    present = [name for name in _CONSTANT_ATTRIBUTES if node.has_attribute(name)]
    if len(present) != 1:
        strings = [n for n in ("value_string", "value_strings") if node.has_attribute(n)]
        if strings:
            value = node.attribute(strings[0])
            labels = value if isinstance(value, list) else [value]
            context.set_vocabulary(node.outputs[0], labels)
            return OnnxConstant(torch.arange(len(labels), dtype=torch.int64).reshape(
                () if not isinstance(value, list) else (len(labels),)))
        raise ConversionError(
            f"Constant node {node.name!r} must set exactly one of "
            f"{sorted(_CONSTANT_ATTRIBUTES)}; it sets {present or 'none'}"
        )
    name = present[0]
    value = node.attribute(name)
    if isinstance(value, np.ndarray) and value.dtype.kind in "OUS":
        labels = [v.decode() if isinstance(v, bytes) else str(v) for v in value.reshape(-1)]
        context.set_vocabulary(node.outputs[0], labels)
        return OnnxConstant(torch.arange(len(labels), dtype=torch.int64).reshape(value.shape))
    dtype = _CONSTANT_ATTRIBUTES[name]
    array = np.asarray(value, dtype=dtype) if dtype is not None else np.asarray(value)
    return OnnxConstant(numpy_to_torch(array))


@converter("Identity", versions=(1, 13, 14, 16, 19, 21, 23, 24, 25))
def convert_identity(node: OnnxNode, context: ConversionContext) -> nn.Module:
    vocabulary = context.vocabulary(node.inputs[0])
    if vocabulary is not None:
        context.set_vocabulary(node.outputs[0], vocabulary)
    return OnnxIdentity()
