"""Loss operators: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bridge.errors import UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import converter

REDUCTIONS = ("none", "sum", "mean")
_NO_IGNORE_INDEX = -(2**62)  # a class index no target can hold


def _negative_log_likelihood(
    log_probabilities: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
    ignore_index: int, reduction: str,
) -> torch.Tensor:
    target = target.to(torch.int64)
    if weight is not None:
        weight = weight.to(log_probabilities.dtype)
    if reduction != "mean" or ignore_index == _NO_IGNORE_INDEX:
        return F.nll_loss(log_probabilities, target, weight, ignore_index=ignore_index,
                          reduction=reduction)
    # mean over the weights of the kept targets; 0 (not NaN) when every target is ignored
    losses = F.nll_loss(log_probabilities, target, weight, ignore_index=ignore_index,
                        reduction="none")
    kept = target != ignore_index
    if weight is None:
        total = kept.to(losses.dtype).sum()
    else:
        safe = torch.where(kept, target, torch.zeros_like(target))
        total = torch.where(kept, weight[safe], torch.zeros_like(losses)).sum()
    return torch.where(total == 0, losses.sum(), losses.sum() / total)


class OnnxNegativeLogLikelihoodLoss(nn.Module):
    """Negative log-likelihood over log-probabilities ``[N, C, d1, ...]``."""

    def __init__(self, reduction: str, ignore_index: int):
        super().__init__()
        self.reduction = reduction
        self.ignore_index = ignore_index

    def forward(
        self, log_probabilities: torch.Tensor, target: torch.Tensor,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return _negative_log_likelihood(log_probabilities, target, weight, self.ignore_index,
                                        self.reduction)


class OnnxSoftmaxCrossEntropyLoss(nn.Module):
    """Softmax cross-entropy over scores ``[N, C, d1, ...]``; returns ``(loss, log_prob)``."""

    def __init__(self, reduction: str, ignore_index: int):
        super().__init__()
        self.reduction = reduction
        self.ignore_index = ignore_index

    def forward(
        self, scores: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_probabilities = torch.log_softmax(scores, dim=1)
        loss = _negative_log_likelihood(log_probabilities, labels, weight, self.ignore_index,
                                        self.reduction)
        return loss, log_probabilities


class _LossOnly(nn.Module):
    """Keeps the loss output of SoftmaxCrossEntropyLoss (no ``log_prob`` output)."""

    def __init__(self, inner: OnnxSoftmaxCrossEntropyLoss):
        super().__init__()
        self.inner = inner

    def forward(
        self, scores: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.inner(scores, labels, weight)[0]


def _loss_attributes(node: OnnxNode) -> tuple[str, int]:
    reduction = node.attribute("reduction", "mean")
    if reduction not in REDUCTIONS:
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"attribute reduction={reduction!r} is not supported; supported: "
            + ", ".join(REDUCTIONS),
        )
    ignore_index = node.attribute("ignore_index")
    return reduction, _NO_IGNORE_INDEX if ignore_index is None else int(ignore_index)


@converter("NegativeLogLikelihoodLoss", versions=(12, 13, 22))
def convert_negative_log_likelihood_loss(node: OnnxNode, context: ConversionContext) -> nn.Module:
    return OnnxNegativeLogLikelihoodLoss(*_loss_attributes(node))


@converter("SoftmaxCrossEntropyLoss", versions=(12, 13))
def convert_softmax_cross_entropy_loss(node: OnnxNode, context: ConversionContext) -> nn.Module:
    module = OnnxSoftmaxCrossEntropyLoss(*_loss_attributes(node))
    return module if len(node.outputs) > 1 else _LossOnly(module)
