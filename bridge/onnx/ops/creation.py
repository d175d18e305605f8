"""Tensors made from shapes and scalars: ConstantOfShape, Range, EyeLike, Trilu."""

import math

import numpy as np
import torch
from torch import Tensor, nn

from bridge.onnx.context import ConversionContext
from bridge.onnx.dtypes import numpy_to_torch, torch_dtype
from bridge.onnx.graph import OnnxNode
from bridge.onnx.ops.shape import optional_int_input, tensor_to_ints, unsupported
from bridge.onnx.registry import Converted, converter


class OnnxConstantOfShape(nn.Module):
    """A tensor of the given shape filled with one value (dtype from that value)."""

    def __init__(self, value: Tensor):
        super().__init__()
        self.register_buffer("value", value.reshape(()))

    def forward(self, shape: Tensor) -> Tensor:
        return self.value.to(shape.device).expand(tensor_to_ints(shape)).clone()


@converter("ConstantOfShape", versions=(9, 20, 21, 23, 24, 25))
def convert_constant_of_shape(node: OnnxNode, context: ConversionContext) -> nn.Module:
    value = node.attribute("value")
    if value is None:
        value = np.zeros((1,), dtype=np.float32)
    return OnnxConstantOfShape(numpy_to_torch(np.asarray(value)))


class OnnxRange(nn.Module):
    """``start + i * delta`` for ``i < max(ceil((limit - start) / delta), 0)``."""

    def forward(self, start: Tensor, limit: Tensor, delta: Tensor) -> Tensor:
        if start.is_floating_point():
            first, last, step = float(start), float(limit), float(delta)
            count = max(int(math.ceil((last - first) / step)), 0)
            steps = torch.arange(count, dtype=torch.float64, device=start.device)
            return (steps * step + first).to(start.dtype)
        first_int, last_int, step_int = int(start), int(limit), int(delta)
        count = max(-((first_int - last_int) // step_int), 0)
        steps = torch.arange(count, dtype=torch.int64, device=start.device)
        return (steps * step_int + first_int).to(start.dtype)


@converter("Range", versions=(11, 27))
def convert_range(node: OnnxNode, context: ConversionContext) -> nn.Module:
    stash_type = node.attribute("stash_type", 1)
    if stash_type not in (1, 11):
        raise unsupported(node, f"stash_type={stash_type} is not supported; supported: 1, 11")
    return OnnxRange()


class OnnxEyeLike(nn.Module):
    """Ones on diagonal ``k`` of a matrix shaped like the input, zeros elsewhere."""

    dtype: torch.dtype | None

    def __init__(self, k: int, dtype: torch.dtype | None):
        super().__init__()
        self.k = k
        self.dtype = dtype

    def forward(self, x: Tensor) -> Tensor:
        rows = torch.arange(x.shape[0], device=x.device).unsqueeze(1)
        columns = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
        dtype = self.dtype if self.dtype is not None else x.dtype
        return (columns - rows == self.k).to(dtype)


@converter("EyeLike", versions=(9, 22))
def convert_eye_like(node: OnnxNode, context: ConversionContext) -> nn.Module:
    dtype = node.attribute("dtype")
    return OnnxEyeLike(node.attribute("k", 0), None if dtype is None else torch_dtype(dtype))


class OnnxTrilu(nn.Module):
    """Keep the upper (or lower) triangle of the last two axes, from diagonal ``k``."""

    def __init__(self, upper: bool, k: int):
        super().__init__()
        self.upper = upper
        self.k = k

    def forward(self, x: Tensor, k: Tensor | None = None) -> Tensor:
        diagonal = int(k) if k is not None else self.k
        return torch.triu(x, diagonal) if self.upper else torch.tril(x, diagonal)


@converter("Trilu", versions=14)
def convert_trilu(node: OnnxNode, context: ConversionContext) -> Converted:
    k, runtime = optional_int_input(node, context, 1)
    module = OnnxTrilu(bool(node.attribute("upper", 1)), k[0] if k else 0)
    return Converted(module, inputs=[node.inputs[0], runtime])
