"""Linear algebra: MatMul, Gemm, Einsum, Det."""

from __future__ import annotations

import torch
from torch import nn

from bridge.errors import ConversionError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import Converted, converter


class OnnxMatMul(nn.Module):
    """Matrix product with numpy semantics (1-D operands, batch broadcasting)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.dim() > 2 and b.dim() == 2:
            # one mm over the folded leading axes: torch.matmul folds only some layouts
            # (not a [seq, 1, features] view) and otherwise runs bmm on an expanded b
            folded = torch.mm(a.reshape(-1, a.shape[-1]), b)
            return folded.reshape(list(a.shape[:-1]) + [b.shape[-1]])
        return torch.matmul(a, b)


class OnnxGemm(nn.Module):
    """``alpha * op(A) @ op(B) + beta * C`` with optional transposes and optional ``C``.

    ``B`` stays a run-time input so that, imported with ``trainable=True``, a
    constant ``B`` is an ``nn.Parameter`` in the ONNX layout.
    """

    def __init__(self, alpha: float, beta: float, transpose_a: bool, transpose_b: bool):
        super().__init__()
        self.alpha = alpha
        self.beta = beta
        self.transpose_a = transpose_a
        self.transpose_b = transpose_b

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.transpose_a:
            a = a.transpose(0, 1)
        if self.transpose_b:
            b = b.transpose(0, 1)
        floating = a.is_floating_point()
        if c is not None and floating and self.beta != 0.0 and c.dim() <= 2 and a.dim() == 2:
            return torch.addmm(c.to(a.dtype), a, b, beta=self.beta, alpha=self.alpha)
        result = torch.matmul(a, b)
        if self.alpha != 1.0:
            result = result * self.alpha if floating else (result * self.alpha).to(result.dtype)
        if c is not None and self.beta != 0.0:
            scaled = c if self.beta == 1.0 else c * self.beta
            result = result + scaled.to(result.dtype)
        return result


class OnnxEinsum(nn.Module):
    """Einstein summation over a list of operands."""

    def __init__(self, equation: str):
        super().__init__()
        self.equation = equation

    def forward(self, operands: list[torch.Tensor]) -> torch.Tensor:
        return torch.einsum(self.equation, operands)


class OnnxDet(nn.Module):
    """Determinant of square matrices over the last two axes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.det(x)


@converter("MatMul", versions=(1, 9, 13))
def convert_matmul(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxMatMul()


@converter("Gemm", versions=(1, 6, 7, 9, 11, 13))
def convert_gemm(node: OnnxNode, context: ConversionContext) -> nn.Module:
    if node.since_version < 7 and node.has_attribute("broadcast"):
        broadcast = node.attribute("broadcast", 0)
        if broadcast not in (0, 1):
            raise ConversionError(
                f"Gemm node {node.name!r}: attribute broadcast={broadcast}; expected 0 or 1"
            )
    return OnnxGemm(
        alpha=float(node.attribute("alpha", 1.0)),
        beta=float(node.attribute("beta", 1.0)),
        transpose_a=bool(node.attribute("transA", 0)),
        transpose_b=bool(node.attribute("transB", 0)),
    )


@converter("Einsum", versions=(12, 28))
def convert_einsum(node: OnnxNode, context: ConversionContext) -> Converted:
    equation = node.attribute("equation")
    if not equation:
        raise ConversionError(f"Einsum node {node.name!r} has no 'equation' attribute")
    return Converted(OnnxEinsum(equation.replace(" ", "")), inputs=[node.inputs])


@converter("Det", versions=(11, 22))
def convert_det(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxDet()
