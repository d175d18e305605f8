"""ai.onnx.ml linear models: LinearClassifier and LinearRegressor.

Also holds the score post-transforms (NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO, PROBIT) that
the SVM converters share, written to reproduce onnxruntime's numbers, including its
approximate inverse error function for PROBIT and its two-column binary layouts.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.held import held
from bridge.onnx.registry import Converted, converter

POST_TRANSFORMS = ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT")


def read_post_transform(node: OnnxNode) -> str:
    """Return the node's ``post_transform`` attribute, checked against the known values."""
    value = node.attribute("post_transform", "NONE")
    if value not in POST_TRANSFORMS:
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"attribute post_transform={value!r} is not supported; supported: "
            + ", ".join(POST_TRANSFORMS),
        )
    return value


def probit(values: torch.Tensor) -> torch.Tensor:
    """``sqrt(2) * erfinv(2p - 1)`` with the closed-form erfinv approximation onnxruntime uses."""
    a = 0.147  # the constant of the approximation (Winitzki's)
    x = 2.0 * values - 1.0
    sign = torch.where(x < 0, -torch.ones_like(x), torch.ones_like(x))
    log_term = torch.log((1.0 - x) * (1.0 + x))
    v = 2.0 / (math.pi * a) + 0.5 * log_term
    v2 = log_term / a
    return math.sqrt(2.0) * sign * torch.sqrt(-v + torch.sqrt(v * v - v2))


def softmax_zero(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis that leaves (near-)zero scores out of the normaliser."""
    row_max = scores.max(dim=-1, keepdim=True).values
    nonzero = scores.abs() > 1e-7
    exponentials = torch.where(nonzero, torch.exp(scores - row_max), scores * torch.exp(-row_max))
    total = torch.where(nonzero, exponentials, torch.zeros_like(exponentials)).sum(-1, keepdim=True)
    return exponentials / total


def transform_scores(scores: torch.Tensor, post_transform: str) -> torch.Tensor:
    """Apply a post-transform to ``[N, K]`` scores with ``K > 1`` (onnxruntime's batched path)."""
    if post_transform == "LOGISTIC":
        return torch.sigmoid(scores)
    if post_transform == "SOFTMAX":
        return torch.softmax(scores, dim=-1)
    if post_transform == "SOFTMAX_ZERO":
        return softmax_zero(scores)
    if post_transform == "PROBIT":
        return probit(scores)
    return scores


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    """Rank-1 input is one sample; everything is computed in float32 as onnxruntime does."""
    if x.dim() == 1:
        x = x.unsqueeze(0)
    return x if x.dtype == torch.float32 else x.to(torch.float32)


def class_labels(node: OnnxNode, context: ConversionContext, label_output: str) -> tuple:
    """Return ``(labels, uses_strings)``; string labels become the output's vocabulary.

    ``labels`` is an int64 tensor: the integer class labels, or for string labels the
    positions ``0..n-1`` into the vocabulary recorded for ``label_output``.
    """
    strings = node.attribute("classlabels_strings", None)
    ints = node.attribute("classlabels_ints", None)
    if strings and ints:
        raise ConversionError(
            f"{node.op_type} node {node.name!r} sets both classlabels_strings and "
            "classlabels_ints; exactly one may be given"
        )
    if strings:
        if label_output:
            context.set_vocabulary(label_output, strings)
        return torch.arange(len(strings), dtype=torch.int64), True
    return torch.tensor(list(ints or []), dtype=torch.int64), False


class _LinearWeights(nn.Module):
    """The coefficient and intercept buffers of the linear operators, read per call."""

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.jit.is_scripting():  # TorchScript reads attributes its own way
            return self.coefficients, self.intercepts
        return held(self, "coefficients"), held(self, "intercepts")  # (see bridge/onnx/held.py)


class OnnxLinearClassifier(_LinearWeights):
    """``scores = x @ W.T + b``; labels by arg-max (or by sign with one coefficient row).

    ``binary_layout`` mirrors onnxruntime for a single coefficient row: ``"two_columns"``
    (two class labels given) writes ``[1 - s, s]`` (``s`` after the logistic function
    under LOGISTIC, raw otherwise), ``"one_column"`` keeps the raw ``s`` (PROBIT aside).
    """

    def __init__(self, coefficients: torch.Tensor, intercepts: torch.Tensor,
                 labels: torch.Tensor, negative_label: int, positive_label: int,
                 post_transform: str, binary_layout: str):
        super().__init__()
        self.register_buffer("coefficients", coefficients)
        self.register_buffer("intercepts", intercepts)
        self.register_buffer("labels", labels)
        self.negative_label = negative_label
        self.positive_label = positive_label
        self.post_transform = post_transform
        self.binary_layout = binary_layout
        self.single_row = coefficients.shape[0] == 1

    output_methods = {(1,): "forward_scores"}  # for serving plans (bridge/onnx/plans.py)

    def forward_scores(self, x: torch.Tensor) -> tuple[None, torch.Tensor]:
        """The scores alone (what ``predict_proba`` reads) in the common multi-row case."""
        if self.single_row:
            return None, self.forward(x)[1]
        scores = functional.linear(_as_batch(x), *self._weights())
        return None, transform_scores(scores, self.post_transform)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = functional.linear(_as_batch(x), *self._weights())
        if self.single_row:
            positive = torch.full_like(scores[:, 0], self.positive_label, dtype=torch.int64)
            negative = torch.full_like(scores[:, 0], self.negative_label, dtype=torch.int64)
            label = torch.where(scores[:, 0] > 0, positive, negative)
            if self.post_transform == "PROBIT":
                scores = probit(scores)
            elif self.binary_layout == "two_columns":
                if self.post_transform == "LOGISTIC":
                    scores = torch.sigmoid(scores)
                scores = torch.cat([1.0 - scores, scores], dim=1)
        else:
            label = self.labels[torch.argmax(scores, dim=1)]
            scores = transform_scores(scores, self.post_transform)
        return label, scores


@converter("LinearClassifier", versions=(1,), domain="ai.onnx.ml")
def convert_linear_classifier(node: OnnxNode, context: ConversionContext) -> Converted:
    post_transform = read_post_transform(node)
    intercepts = np.asarray(node.attribute("intercepts", []), dtype=np.float32)
    coefficients = np.asarray(node.attribute("coefficients", []), dtype=np.float32)
    class_count = intercepts.size
    if class_count == 0 or coefficients.size == 0 or coefficients.size % class_count:
        raise ConversionError(
            f"LinearClassifier node {node.name!r}: {coefficients.size} coefficients do not "
            f"split into {class_count} rows (one per intercept)"
        )
    labels, uses_strings = class_labels(node, context, node.outputs[0])
    binary_layout = "one_column"
    negative, positive = 0, 1
    if class_count == 1:
        if labels.numel() == 2:
            binary_layout = "two_columns"
            negative, positive = int(labels[0]), int(labels[1])
            if post_transform == "PROBIT":
                raise UnsupportedOperatorError(
                    node.domain, node.op_type, node.since_version,
                    reason="post_transform='PROBIT' with one coefficient row and two class "
                    "labels is not supported: onnxruntime leaves its second score column "
                    "undefined; supported: NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO",
                )
        elif uses_strings:  # onnxruntime falls back to the strings "0" and "1"
            context.set_vocabulary(node.outputs[0], ["0", "1"])
    elif labels.numel() != class_count:
        raise ConversionError(
            f"LinearClassifier node {node.name!r}: {class_count} coefficient rows but "
            f"{labels.numel()} class labels; give one label per row"
        )
    module = OnnxLinearClassifier(
        torch.from_numpy(coefficients.reshape(class_count, -1)), torch.from_numpy(intercepts),
        labels, negative, positive, post_transform, binary_layout,
    )
    return Converted(module, inputs=[node.inputs[0]])


class OnnxLinearRegressor(_LinearWeights):
    """``y = x @ W.T + b`` for ``targets`` outputs, then the post-transform."""

    def __init__(self, coefficients: torch.Tensor, intercepts: torch.Tensor, post_transform: str):
        super().__init__()
        self.register_buffer("coefficients", coefficients)
        self.register_buffer("intercepts", intercepts)
        self.post_transform = post_transform
        self.targets = coefficients.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = functional.linear(_as_batch(x), *self._weights())
        if self.targets > 1:
            return transform_scores(scores, self.post_transform)
        if self.post_transform == "PROBIT":  # the only transform onnxruntime applies to 1 target
            return probit(scores)
        return scores


@converter("LinearRegressor", versions=(1,), domain="ai.onnx.ml")
def convert_linear_regressor(node: OnnxNode, context: ConversionContext) -> Converted:
    post_transform = read_post_transform(node)
    targets = int(node.attribute("targets", 1))
    coefficients = np.asarray(node.attribute("coefficients", []), dtype=np.float32)
    if targets < 1 or coefficients.size == 0 or coefficients.size % targets:
        raise ConversionError(
            f"LinearRegressor node {node.name!r}: {coefficients.size} coefficients do not "
            f"split into targets={targets} rows"
        )
    intercepts = np.asarray(node.attribute("intercepts", []), dtype=np.float32)
    if intercepts.size != targets:  # onnxruntime ignores intercepts of the wrong length
        intercepts = np.zeros(targets, dtype=np.float32)
    module = OnnxLinearRegressor(
        torch.from_numpy(coefficients.reshape(targets, -1)), torch.from_numpy(intercepts),
        post_transform,
    )
    return Converted(module, inputs=[node.inputs[0]])
