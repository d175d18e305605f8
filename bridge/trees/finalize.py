"""From aggregated scores to operator outputs: base values, post transforms, class labels.

The rules follow onnxruntime's CPU kernels exactly, including its treatment of binary
classifiers that store weights for one class only (``binary_case``): the second column is
derived from the first (``1 - p`` for non-negative weights, ``-s`` or a logistic pair
otherwise) and the label comes from a 0.5 or 0 threshold. Transforms run in float32, as
onnxruntime computes them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bridge.trees.aggregate import always_scored
from bridge.trees.attributes import TreeSpec

_SQRT2 = math.sqrt(2.0)


def logistic(x: torch.Tensor) -> torch.Tensor:
    """onnxruntime's logistic: ``1/(1+exp(-|x|))``, mirrored for negative ``x``."""
    v = 1.0 / (1.0 + torch.exp(-x.abs()))
    return torch.where(x < 0, 1.0 - v, v)


def probit(x: torch.Tensor) -> torch.Tensor:
    """onnxruntime's probit: ``sqrt(2) * erfinv(2x - 1)`` with its closed-form erfinv."""
    y = 2.0 * x - 1.0
    sign = torch.where(y < 0, -torch.ones_like(y), torch.ones_like(y))
    product = (1.0 - y) * (1.0 + y)
    log = torch.log(product)
    a = 0.147
    v = 2.0 / (math.pi * a) + 0.5 * log
    v2 = (1.0 / a) * log
    v3 = -v + torch.sqrt(v * v - v2)
    return _SQRT2 * sign * torch.sqrt(v3)


def softmax_zero(x: torch.Tensor) -> torch.Tensor:
    """Softmax that leaves (near-)zero scores out of the normalisation, as onnxruntime does."""
    v_max = x.amax(-1, keepdim=True)
    nonzero = (x > 1e-7) | (x < -1e-7)
    exps = torch.where(nonzero, torch.exp(x - v_max), x * torch.exp(-v_max))
    total = torch.where(nonzero, exps, torch.zeros_like(exps)).sum(-1, keepdim=True)
    return exps / total


def transform(scores: torch.Tensor, post_transform: str) -> torch.Tensor:
    """Apply a post transform to a score matrix [N, outputs] (float32)."""
    if post_transform == "LOGISTIC":
        return logistic(scores)
    if post_transform == "SOFTMAX":
        return torch.softmax(scores, -1)
    if post_transform == "SOFTMAX_ZERO":
        return softmax_zero(scores)
    if post_transform == "PROBIT":
        return probit(scores)
    return scores


class RegressionOutput(nn.Module):
    """Regressor / TreeEnsemble outputs: averaging, base values, post transform."""

    def __init__(self, spec: TreeSpec):
        super().__init__()
        self.n_outputs: int = spec.ensemble.n_outputs
        self.n_trees: int = spec.ensemble.n_trees
        self.aggregate: str = spec.aggregate
        self.post_transform: str = spec.post_transform
        base = torch.as_tensor(spec.base_values, dtype=torch.float64)
        self.use_base: bool = base.numel() == self.n_outputs
        self.register_buffer("base64", base if self.use_base else torch.zeros(0))
        self.register_buffer("base32", self.base64.float())
        self.always_scored: bool = always_scored(spec.ensemble)  # has is then all true

    def forward(self, scores: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
        if self.aggregate == "AVERAGE":
            scores = scores / self.n_trees
        if self.use_base:
            scores = scores + (self.base64 if scores.dtype == torch.float64 else self.base32)
        if self.n_outputs > 1 and not self.always_scored:
            # onnxruntime writes 0 for a target no reached leaf scored
            scores = torch.where(has, scores, torch.zeros_like(scores))
        if self.post_transform == "NONE":
            return scores
        if self.n_outputs == 1 and self.post_transform != "PROBIT":
            return scores  # onnxruntime applies only PROBIT to a single target
        return transform(scores.float(), self.post_transform).to(scores.dtype)


class ClassifierOutput(nn.Module):
    """Classifier outputs: (label [N] int64, scores [N, classes] float32)."""

    def __init__(self, spec: TreeSpec):
        super().__init__()
        self.n_classes: int = spec.ensemble.n_outputs
        self.post_transform: str = spec.post_transform
        self.binary_case: bool = spec.binary_case
        self.all_positive: bool = spec.weights_all_positive
        self.n_base: int = int(len(spec.base_values))
        labels = (list(range(len(spec.class_labels))) if spec.labels_are_strings
                  else [int(v) for v in spec.class_labels])
        self.register_buffer("labels", torch.tensor(labels, dtype=torch.int64))
        self.register_buffer("base", torch.as_tensor(spec.base_values, dtype=torch.float32))
        self.always_scored: bool = always_scored(spec.ensemble)  # has is then all true

    def forward(self, scores: torch.Tensor,
                has: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if scores.dtype != torch.float32:
            scores = scores.float()
        if self.n_classes > 2:
            return self._multiclass(scores, has)
        return self._binary(scores, has)

    def _multiclass(self, scores: torch.Tensor,
                    has: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.n_base > 0:  # base values score every class
            scores = scores + self.base
        if self.n_base > 0 or self.always_scored:
            return self._scored(scores)
        candidates = torch.where(has, scores, torch.full_like(scores, float("-inf")))
        label = self.labels.index_select(0, candidates.argmax(1))
        scores = torch.where(has, scores, torch.zeros_like(scores))
        return label, transform(scores, self.post_transform)

    def _scored(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_multiclass` when every class of every row has a score: its masks would
        keep every score (same results, four operations fewer)."""
        label = self.labels.index_select(0, scores.argmax(1))
        return label, transform(scores, self.post_transform)

    def _binary(self, scores: torch.Tensor,
                has: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0, s1 = scores[:, 0], scores[:, 1]
        h0, h1 = has[:, 0], has[:, 1]
        two_entries = h1
        if self.n_base == 2:
            shifted = s0 + self.base[1]
            s1, s0 = torch.where(h1, shifted, s1 + self.base[1]), torch.where(
                h1, -shifted, s0 + self.base[0])
            two_entries = torch.ones_like(h1)
        elif self.n_base == 1:
            s0 = s0 + self.base[0]
        zero = torch.zeros_like(s0)
        positive = torch.where(h1, s1, torch.where(h0, s0, zero))
        if self.binary_case:
            wins = positive > 0.5 if self.all_positive else positive > 0
            label = torch.where(wins, self.labels[1], self.labels[0])
        else:  # onnxruntime answers the literal labels 1 / 0 here
            label = (positive > 0).to(torch.int64)
        # onnxruntime reads a score nothing was added to as 0 when writing outputs
        s0 = torch.where(h0, s0, zero)
        both = transform(torch.stack([s0, torch.where(h1, s1, zero)], 1), self.post_transform)
        if self.post_transform == "PROBIT":  # onnxruntime leaves column 1 unwritten
            single = torch.stack([probit(s0), zero], 1)
        elif not (self.binary_case or self.n_base == 0):  # column 1 unwritten as well
            single = torch.stack([s0, zero], 1)
        elif self.post_transform == "LOGISTIC":
            single = torch.stack([logistic(-s0), logistic(s0)], 1)
        elif self.binary_case and self.all_positive:
            single = torch.stack([1.0 - s0, s0], 1)
        else:
            single = torch.stack([-s0, s0], 1)
        return label, torch.where(two_entries.unsqueeze(1), both, single)
