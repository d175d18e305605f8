"""Random generators: RandomUniform, RandomNormal, their ``*Like`` forms, Bernoulli and
Multinomial.

Every module is ``deterministic = False`` so the importer never folds it into a constant.
A ``seed`` attribute makes each call draw the same numbers (a generator seeded per call);
without one, draws come from torch's global generator. The numbers differ from other
runtimes' for the same seed: no two ONNX runtimes share a generator.
"""

from __future__ import annotations

import torch
from torch import nn

from bridge.errors import ConversionError
from bridge.onnx.context import ConversionContext
from bridge.onnx.dtypes import torch_dtype
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import converter


class _RandomModule(nn.Module):
    """Holds the seed and a device anchor (a buffer that follows ``module.to(device)``)."""

    deterministic = False

    def __init__(self, seed: float | None):
        super().__init__()
        self.seed = seed
        self.register_buffer("device_anchor", torch.empty(0), persistent=False)

    def generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        generator = torch.Generator(device=device)
        generator.manual_seed(int(self.seed))
        return generator


class OnnxRandomFill(_RandomModule):
    """Samples ``standard * scale + offset``, where ``standard`` is U[0, 1) (``normal=False``:
    RandomUniform, scale = high - low, offset = low) or N(0, 1) (``normal=True``:
    RandomNormal, scale and offset = mean); shape from the attribute or from ``like``."""

    def __init__(self, normal: bool, scale: float, offset: float, shape: list[int] | None,
                 dtype: torch.dtype | None, seed: float | None):
        super().__init__(seed)
        self.normal = normal
        self.scale = scale
        self.offset = offset
        self.shape = shape
        self.dtype = dtype

    def forward(self, like: torch.Tensor | None = None) -> torch.Tensor:
        shape = list(like.shape) if like is not None else list(self.shape or [])
        device = like.device if like is not None else self.device_anchor.device
        dtype = self.dtype or (like.dtype if like is not None else torch.float32)
        work = torch.float64 if dtype == torch.float64 else torch.float32
        sample = torch.randn if self.normal else torch.rand
        values = sample(shape, generator=self.generator(device), device=device, dtype=work)
        return (values * self.scale + self.offset).to(dtype)


class OnnxBernoulli(_RandomModule):
    """1 with probability ``p`` (the input), else 0, in ``dtype`` (default: the input's)."""

    def __init__(self, dtype: torch.dtype | None, seed: float | None):
        super().__init__(seed)
        self.dtype = dtype

    def forward(self, probabilities: torch.Tensor) -> torch.Tensor:
        draws = torch.rand(probabilities.shape, generator=self.generator(probabilities.device),
                           device=probabilities.device, dtype=torch.float64)
        return (draws < probabilities.to(torch.float64)).to(self.dtype or probabilities.dtype)


class OnnxMultinomial(_RandomModule):
    """``sample_size`` class indices per row, drawn with replacement from the softmax of
    the input's unnormalized log-probabilities."""

    def __init__(self, sample_size: int, dtype: torch.dtype, seed: float | None):
        super().__init__(seed)
        self.sample_size = sample_size
        self.dtype = dtype

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        probabilities = torch.softmax(logits.to(torch.float64), dim=-1)
        samples = torch.multinomial(probabilities, self.sample_size, replacement=True,
                                    generator=self.generator(logits.device))
        return samples.to(self.dtype)


def _seed(node: OnnxNode) -> float | None:
    seed = node.attribute("seed")
    return None if seed is None else float(seed)


def _dtype(node: OnnxNode, default: int | None) -> torch.dtype | None:
    value = node.attribute("dtype", default)
    return None if value is None else torch_dtype(int(value))


def _shape(node: OnnxNode) -> list[int]:
    shape = node.attribute("shape")
    if shape is None:
        raise ConversionError(f"{node.op_type} node {node.name!r}: the shape attribute is missing")
    return [int(s) for s in shape]


def _fill(node: OnnxNode, like: bool) -> OnnxRandomFill:
    shape, dtype = (None, _dtype(node, None)) if like else (_shape(node), _dtype(node, 1))
    if node.op_type.startswith("RandomNormal"):
        scale, offset = float(node.attribute("scale", 1.0)), float(node.attribute("mean", 0.0))
        return OnnxRandomFill(True, scale, offset, shape, dtype, _seed(node))
    low, high = float(node.attribute("low", 0.0)), float(node.attribute("high", 1.0))
    return OnnxRandomFill(False, high - low, low, shape, dtype, _seed(node))


@converter("RandomUniform", versions=(1, 22))
def convert_random_uniform(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return _fill(node, like=False)


@converter("RandomUniformLike", versions=(1, 22))
def convert_random_uniform_like(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return _fill(node, like=True)


@converter("RandomNormal", versions=(1, 22))
def convert_random_normal(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return _fill(node, like=False)


@converter("RandomNormalLike", versions=(1, 22))
def convert_random_normal_like(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return _fill(node, like=True)


@converter("Bernoulli", versions=(15, 22))
def convert_bernoulli(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxBernoulli(_dtype(node, None), _seed(node))


@converter("Multinomial", versions=(7, 22))
def convert_multinomial(node: OnnxNode, context: ConversionContext) -> nn.Module:
    sample_size = int(node.attribute("sample_size", 1))
    if sample_size < 1:
        raise ConversionError(
            f"Multinomial node {node.name!r}: sample_size={sample_size}; expected >= 1"
        )
    return OnnxMultinomial(sample_size, _dtype(node, 6), _seed(node))
