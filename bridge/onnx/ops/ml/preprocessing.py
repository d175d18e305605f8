"""ai.onnx.ml preprocessing: Scaler, Normalizer, Binarizer, Imputer, ArrayFeatureExtractor, FeatureVectorizer.

Each op follows onnxruntime's numbers; the float ones stay differentiable in their input
(Binarizer is a step function, and has no useful gradient).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.held import held
from bridge.onnx.ops.indexing import check_indices
from bridge.onnx.registry import Converted, converter

NORMS = ("MAX", "L1", "L2")


def _feature_axis(x: torch.Tensor) -> int:
    """onnxruntime's feature axis for these ops: axis 0 of a vector, else axis 1."""
    return 0 if x.dim() == 1 else 1


class OnnxScaler(nn.Module):
    """``(x - offset) * scale`` per feature (or with one shared value), as float32."""

    def __init__(self, offset: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("offset", offset)
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # TorchScript reads attributes its own way
            offset, scale = self.offset, self.scale
        else:
            offset, scale = held(self, "offset"), held(self, "scale")  # (see bridge/onnx/held.py)
        if x.dim() == 2 and x.dtype == torch.float32 and offset.dtype == torch.float32:
            return (x - offset) * scale  # the common case, broadcast along axis 1
        compute = torch.float64 if x.dtype == torch.float64 else torch.float32
        shape = [1] * x.dim()
        shape[_feature_axis(x)] = -1
        offset = offset.to(compute).reshape(shape)
        scale = scale.to(compute).reshape(shape)
        return ((x.to(compute) - offset) * scale).to(torch.float32)


@converter("Scaler", versions=(1,), domain="ai.onnx.ml")
def convert_scaler(node: OnnxNode, context: ConversionContext) -> nn.Module:
    scale = np.asarray(node.attribute("scale", []) or [], dtype=np.float32)
    offset = np.asarray(node.attribute("offset", []) or [], dtype=np.float32)
    if scale.size == 0 or scale.size != offset.size:
        raise ConversionError(
            f"Scaler node {node.name!r}: scale and offset must be non-empty and of equal "
            f"length (one value per feature, or one value), got {scale.size} and {offset.size}"
        )
    return OnnxScaler(torch.from_numpy(offset), torch.from_numpy(scale))


class OnnxNormalizer(nn.Module):
    """Divide each sample by its max, L1 or L2 norm over axis 1 (rows of norm 0 unchanged)."""

    def __init__(self, norm: str):
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            x = x.to(torch.float32)
        axis = _feature_axis(x)
        if not x.requires_grad and self.norm != "MAX":  # fewer calls, same arithmetic
            if self.norm == "L1":  # 0 only for a zero row, which 0 / 1e-45 leaves at 0
                return x / x.abs().sum(dim=axis, keepdim=True).clamp_min_(1e-45)
            norm = x.square().sum(dim=axis, keepdim=True).sqrt_()  # 0 also on underflow
            return x / norm.masked_fill_(norm == 0, 1.0)
        if self.norm == "MAX":
            divisor = x.max(dim=axis, keepdim=True).values
        elif self.norm == "L1":
            divisor = x.abs().sum(dim=axis, keepdim=True)
        else:
            squares = x.square().sum(dim=axis, keepdim=True)
            nonzero = squares != 0
            safe = torch.where(nonzero, squares, torch.ones_like(squares))
            divisor = torch.where(nonzero, torch.sqrt(safe), torch.zeros_like(squares))
        nonzero = divisor != 0
        safe_divisor = torch.where(nonzero, divisor, torch.ones_like(divisor))
        return x / safe_divisor


@converter("Normalizer", versions=(1,), domain="ai.onnx.ml")
def convert_normalizer(node: OnnxNode, context: ConversionContext) -> nn.Module:
    norm = node.attribute("norm", "MAX")
    if norm not in NORMS:
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"attribute norm={norm!r} is not supported; supported: " + ", ".join(NORMS),
        )
    return OnnxNormalizer(norm)


class OnnxBinarizer(nn.Module):
    """1 where ``x > threshold``, else 0, in the input's dtype (NaN gives 0)."""

    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > self.threshold).to(x.dtype)


@converter("Binarizer", versions=(1,), domain="ai.onnx.ml")
def convert_binarizer(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxBinarizer(float(node.attribute("threshold", 0.0)))


class OnnxImputer(nn.Module):
    """Replace entries equal to ``replaced`` (NaN matches NaN) by the per-feature imputed value.

    As in onnxruntime, the imputed value of flat element ``i`` is ``imputed[i % stride]``,
    where ``stride`` is the size of axis 1 (axis 0 for a vector); one value applies to all.
    """

    def __init__(self, imputed: torch.Tensor, replaced: torch.Tensor):
        super().__init__()
        self.register_buffer("imputed", imputed)
        self.register_buffer("replaced", replaced)
        self.replaced_is_nan = bool(torch.isnan(replaced).item())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.replaced_is_nan:
            missing = torch.isnan(x)
        else:
            missing = x == self.replaced.to(x.dtype)
        imputed = self.imputed.to(x.dtype)
        if imputed.numel() > 1:
            stride = x.shape[_feature_axis(x)]
            if imputed.numel() != stride:
                imputed = imputed[:1]
            elif x.dim() <= 2:
                imputed = imputed.reshape([1] * (x.dim() - 1) + [-1])
            else:
                flat = torch.arange(x.numel(), device=x.device) % stride
                imputed = imputed[flat].reshape(x.shape)
        return torch.where(missing, imputed, x)


@converter("Imputer", versions=(1,), domain="ai.onnx.ml")
def convert_imputer(node: OnnxNode, context: ConversionContext) -> nn.Module:
    floats = node.attribute("imputed_value_floats", []) or []
    ints = node.attribute("imputed_value_int64s", []) or []
    if bool(floats) == bool(ints):
        raise ConversionError(
            f"Imputer node {node.name!r} must set exactly one of imputed_value_floats and "
            f"imputed_value_int64s (got {len(floats)} and {len(ints)} values)"
        )
    if floats:
        replaced = torch.tensor(float(node.attribute("replaced_value_float", 0.0)))
        return OnnxImputer(torch.tensor(floats, dtype=torch.float32), replaced)
    replaced = torch.tensor(int(node.attribute("replaced_value_int64", 0)), dtype=torch.int64)
    return OnnxImputer(torch.tensor(ints, dtype=torch.int64), replaced)


class OnnxArrayFeatureExtractor(nn.Module):
    """Select entries of the last axis; a vector input gives a ``[1, k]`` result."""

    def forward(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        indices = indices.reshape(-1).to(torch.int64)
        check_indices(indices, 0, x.shape[-1], "ArrayFeatureExtractor")  # no negative ones
        selected = torch.index_select(x, x.dim() - 1, indices)
        if x.dim() == 1:
            return selected.unsqueeze(0)
        return selected


@converter("ArrayFeatureExtractor", versions=(1,), domain="ai.onnx.ml")
def convert_array_feature_extractor(node: OnnxNode, context: ConversionContext) -> nn.Module:
    vocabulary = context.vocabulary(node.inputs[0])
    if vocabulary is not None:  # strings stay indices into the same vocabulary
        context.set_vocabulary(node.outputs[0], vocabulary)
    return OnnxArrayFeatureExtractor()


class OnnxFeatureVectorizer(nn.Module):
    """Concatenate inputs as float32 columns, each cut or zero-padded to its declared width."""

    def __init__(self, widths: list[int]):
        super().__init__()
        self.widths = widths

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        batch = 1 if inputs[0].dim() == 1 else inputs[0].shape[0]
        columns: list[torch.Tensor] = []
        for value, width in zip(inputs, self.widths):
            rows = value.reshape(batch, -1).to(torch.float32)
            if rows.shape[1] >= width:
                columns.append(rows[:, :width])
            else:
                padding = rows.new_zeros((batch, width - rows.shape[1]))
                columns.append(torch.cat([rows, padding], dim=1))
        return torch.cat(columns, dim=1)


@converter("FeatureVectorizer", versions=(1,), domain="ai.onnx.ml")
def convert_feature_vectorizer(node: OnnxNode, context: ConversionContext) -> Converted:
    widths = [int(v) for v in node.attribute("inputdimensions", []) or []]
    inputs = [name for name in node.inputs if name]
    if len(widths) != len(inputs):
        raise ConversionError(
            f"FeatureVectorizer node {node.name!r}: inputdimensions has {len(widths)} "
            f"values but the node has {len(inputs)} inputs; give one width per input"
        )
    return Converted(OnnxFeatureVectorizer(widths), inputs=[inputs])
