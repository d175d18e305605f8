"""ai.onnx.ml support vector machines: SVMClassifier and SVMRegressor.

The classifier reproduces onnxruntime: one-vs-one decision values ``K @ P + rho`` (``P``
scatters the dual coefficients of each class pair), votes with ties going to the lowest
class index, Platt-scaled pair probabilities coupled by libsvm's iterative method, and the
two-column binary score layouts. Without support vectors both ops are linear models.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.ops.ml.linear import class_labels, probit, read_post_transform, transform_scores
from bridge.onnx.registry import Converted, converter

KERNELS = ("LINEAR", "POLY", "RBF", "SIGMOID")


class SvmKernel(nn.Module):
    """The kernel between a batch ``x [N, F]`` and vectors ``[V, F]``, as onnxruntime computes it."""

    def __init__(self, kernel: str, vectors: torch.Tensor, gamma: float, coef0: float,
                 degree: float):
        super().__init__()
        self.register_buffer("vectors", vectors)
        self.kernel = kernel
        self.gamma = gamma
        self.coef0 = coef0
        self.degree = degree

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel == "RBF":  # |x - v|^2 expanded, as a matrix product (fast on GPUs)
            squared = (x.square().sum(dim=1, keepdim=True) + self.vectors.square().sum(dim=1)
                       - 2.0 * (x @ self.vectors.t())).clamp_min(0.0)
            return torch.exp(-self.gamma * squared)
        dots = x @ self.vectors.t()
        if self.kernel == "POLY":
            return torch.pow(self.gamma * dots + self.coef0, self.degree)
        if self.kernel == "SIGMOID":
            return torch.tanh(self.gamma * dots + self.coef0)
        return dots


def _read_kernel(node: OnnxNode, has_support_vectors: bool) -> tuple[str, float, float, float]:
    kernel = node.attribute("kernel_type", "LINEAR")
    if kernel not in KERNELS:
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"attribute kernel_type={kernel!r} is not supported; supported: "
            + ", ".join(KERNELS),
        )
    params = node.attribute("kernel_params", []) or [0.0, 0.0, 0.0]
    if len(params) < 3:
        raise ConversionError(
            f"{node.op_type} node {node.name!r}: kernel_params must hold gamma, coef0 and "
            f"degree (3 values), got {params}"
        )
    if not has_support_vectors:  # liblinear mode: onnxruntime forces the linear kernel
        kernel = "LINEAR"
    return kernel, float(params[0]), float(params[1]), float(params[2])


COUPLING_SWEEPS = 100  # libsvm's (and onnxruntime's) cap on coupling sweeps


def coupling_matrix(pairwise: torch.Tensor) -> torch.Tensor:
    """libsvm's ``Q [N, C, C]`` for pairwise probabilities ``r [N, C, C]``."""
    count = pairwise.shape[-1]
    squared = pairwise.square()
    diagonal = squared.sum(dim=1) - torch.diagonal(squared, dim1=1, dim2=2)
    q = -(pairwise.transpose(1, 2) * pairwise)
    eye = torch.eye(count, dtype=torch.bool, device=pairwise.device)
    return torch.where(eye, torch.diag_embed(diagonal), q)


def coupling_unconverged(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Per sample, whether ``p [N, C]`` still misses libsvm's stopping rule (``0.005 / C``)."""
    qp = (q @ p.unsqueeze(-1)).squeeze(-1)
    pqp = (p * qp).sum(dim=1)
    return (qp - pqp.unsqueeze(1)).abs().max(dim=1).values >= 0.005 / p.shape[1]


def coupling_sweep(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """One sweep of libsvm's fixed-point update over every class, for every sample."""
    count = p.shape[1]
    qp = (q @ p.unsqueeze(-1)).squeeze(-1)
    pqp = (p * qp).sum(dim=1)
    eye = torch.eye(count, dtype=torch.bool, device=p.device)
    for i in range(count):
        q_ii = q[:, i, i]
        diff = (pqp - qp[:, i]) / q_ii
        p = torch.where(eye[i], p + diff.unsqueeze(1), p)
        scale = 1.0 + diff
        pqp = (pqp + diff * (diff * q_ii + 2.0 * qp[:, i])) / scale / scale
        qp = (qp + diff.unsqueeze(1) * q[:, i, :]) / scale.unsqueeze(1)
        p = p / scale.unsqueeze(1)
    return p


def couple_pairwise_probabilities(pairwise: torch.Tensor,
                                  max_sweeps: int = COUPLING_SWEEPS) -> torch.Tensor:
    """libsvm's multi-class probabilities from pairwise ones ``r [N, C, C]`` (Wu, Lin, Weng 2004).

    Runs onnxruntime's float32 fixed-point iteration (at most 100 sweeps, stopping a sample
    once its error is below ``0.005 / C``); converged samples are frozen, not recomputed.
    """
    q = coupling_matrix(pairwise)
    p = torch.full(pairwise.shape[:2], 1.0 / pairwise.shape[-1], dtype=pairwise.dtype,
                   device=pairwise.device)
    for _ in range(max_sweeps):
        active = coupling_unconverged(q, p)
        if not bool(active.any()):
            break
        p = torch.where(active.unsqueeze(1), coupling_sweep(q, p), p)
    return p


def couple_while_exporting(pairwise: torch.Tensor) -> torch.Tensor:
    """The same iteration as a ``while_loop`` (an ONNX ``Loop``): torch.export cannot stop a
    Python loop on a tensor value, but records this loop with its data-dependent stop."""
    from torch._higher_order_ops import while_loop

    q = coupling_matrix(pairwise)
    p = torch.full(pairwise.shape[:2], 1.0 / pairwise.shape[-1], dtype=pairwise.dtype,
                   device=pairwise.device)
    sweeps = torch.zeros((), dtype=torch.int64, device=pairwise.device)

    def keep_going(sweeps, p):
        return (sweeps < COUPLING_SWEEPS) & coupling_unconverged(q, p).any()

    def sweep(sweeps, p):
        active = coupling_unconverged(q, p)
        return sweeps + 1, torch.where(active.unsqueeze(1), coupling_sweep(q, p), p)

    return while_loop(keep_going, sweep, (sweeps, p))[1]


_SCRIPTED_COUPLING: list = []


@torch.jit.unused
def _couple_while_tracing(pairwise):  # unannotated: TorchScript reads it as Tensor -> Tensor
    """A trace cannot record the coupling's data-dependent stop; a scripted copy of it can."""
    if not _SCRIPTED_COUPLING:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            _SCRIPTED_COUPLING.append(torch.jit.script(couple_pairwise_probabilities))
    return _SCRIPTED_COUPLING[0](pairwise)


class OnnxSVMClassifier(nn.Module):
    """SVMClassifier in onnxruntime's two modes: one-vs-one over support vectors, or linear."""

    def __init__(self, kernel: SvmKernel, pair_weights: torch.Tensor, rho: torch.Tensor,
                 vote_winner: torch.Tensor, vote_loser: torch.Tensor, pair_rows: torch.Tensor,
                 pair_columns: torch.Tensor, prob_a: torch.Tensor, prob_b: torch.Tensor,
                 labels: torch.Tensor, linear_mode: bool, weights_all_positive: bool,
                 post_transform: str):
        super().__init__()
        self.kernel = kernel
        self.register_buffer("pair_weights", pair_weights)  # [V, pairs] (linear: unused)
        self.register_buffer("rho", rho)
        self.register_buffer("vote_winner", vote_winner)  # [pairs, C]: class i of pair (i, j)
        self.register_buffer("vote_loser", vote_loser)  # [pairs, C]: class j of pair (i, j)
        self.register_buffer("pair_rows", pair_rows)
        self.register_buffer("pair_columns", pair_columns)
        self.register_buffer("prob_a", prob_a)
        self.register_buffer("prob_b", prob_b)
        self.register_buffer("labels", labels)
        self.linear_mode = linear_mode
        self.has_probabilities = prob_a.numel() > 0
        self.class_count = labels.numel()
        self.weights_all_positive = weights_all_positive
        self.post_transform = post_transform

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() == 1:
            x = x.unsqueeze(0)
        x = x.to(torch.float32)
        if self.linear_mode:
            return self._linear(x)
        # onnxruntime sums each pair's terms in double precision; so do we
        kernel = self.kernel(x).to(torch.float64)
        decisions = (kernel @ self.pair_weights.to(torch.float64) + self.rho).to(torch.float32)
        wins = (decisions > 0).to(torch.float32)
        votes = wins @ self.vote_winner + (1.0 - wins) @ self.vote_loser
        label = self.labels[torch.argmax(votes, dim=1)]
        if self.has_probabilities:
            scores = self._probabilities(decisions)
            return label, transform_scores(scores, self.post_transform)
        if self.class_count > 2:
            return label, transform_scores(decisions, self.post_transform)
        if self.post_transform == "NONE":
            return label, torch.cat([-decisions, decisions], dim=1)
        if self.post_transform == "LOGISTIC":
            decisions = torch.sigmoid(decisions)
        return label, torch.cat([1.0 - decisions, decisions], dim=1)

    def _linear(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.kernel(x) + self.rho[0]
        best = torch.argmax(scores, dim=1)
        label = self.labels[best]
        if self.class_count == 2 and not self.has_probabilities:
            top = scores.max(dim=1).values
            if self.weights_all_positive:
                second = top >= 0.5
            else:
                second = top > 0
            label = torch.where(second, self.labels[1].expand_as(label), label)
        if self.class_count > 1:
            return label, transform_scores(scores, self.post_transform)
        if self.post_transform == "PROBIT":
            return label, probit(scores)
        return label, scores

    def _probabilities(self, decisions: torch.Tensor) -> torch.Tensor:
        pair = torch.sigmoid(-(decisions * self.prob_a + self.prob_b)).clamp(1e-7, 1.0 - 1e-7)
        count = self.class_count
        pairwise = decisions.new_zeros((decisions.shape[0], count, count))
        pairwise[:, self.pair_rows, self.pair_columns] = pair
        pairwise[:, self.pair_columns, self.pair_rows] = 1.0 - pair
        if not torch.jit.is_scripting():
            if torch.compiler.is_exporting():
                return couple_while_exporting(pairwise)
        if torch.jit.is_tracing():
            return _couple_while_tracing(pairwise)
        return couple_pairwise_probabilities(pairwise)


def _floats(node: OnnxNode, name: str) -> np.ndarray:
    return np.asarray(node.attribute(name, []) or [], dtype=np.float32)


@converter("SVMClassifier", versions=(1,), domain="ai.onnx.ml")
def convert_svm_classifier(node: OnnxNode, context: ConversionContext) -> Converted:
    post_transform = read_post_transform(node)
    labels, _ = class_labels(node, context, node.outputs[0])
    class_count = labels.numel()
    if class_count == 0:
        raise ConversionError(
            f"SVMClassifier node {node.name!r} needs classlabels_ints or classlabels_strings"
        )
    coefficients, rho = _floats(node, "coefficients"), _floats(node, "rho")
    prob_a, prob_b = _floats(node, "prob_a"), _floats(node, "prob_b")
    support_vectors = _floats(node, "support_vectors")
    vectors_per_class = [int(v) for v in node.attribute("vectors_per_class", []) or []]
    vector_count = sum(vectors_per_class)
    if prob_a.size != prob_b.size or coefficients.size == 0 or rho.size == 0:
        raise ConversionError(
            f"SVMClassifier node {node.name!r}: needs coefficients and rho, and as many prob_b "
            f"as prob_a values (got {coefficients.size}, {rho.size}, {prob_a.size}, {prob_b.size})"
        )
    kernel, gamma, coef0, degree = _read_kernel(node, vector_count > 0)
    pair_count = class_count * (class_count - 1) // 2
    pairs = [(i, j) for i in range(class_count) for j in range(i + 1, class_count)]
    vote_winner = np.zeros((max(pair_count, 1), class_count), dtype=np.float32)
    vote_loser = np.zeros_like(vote_winner)
    for index, (i, j) in enumerate(pairs):
        vote_winner[index, i] = 1.0
        vote_loser[index, j] = 1.0
    linear_mode = vector_count == 0
    if linear_mode:
        if coefficients.size % class_count:
            raise ConversionError(
                f"SVMClassifier node {node.name!r}: {coefficients.size} coefficients do not "
                f"split into {class_count} class rows"
            )
        vectors = coefficients.reshape(class_count, -1)
        pair_weights = np.zeros((0, 0), dtype=np.float32)
    else:
        pair_weights = _pair_weights(node, coefficients, vectors_per_class, pairs, rho)
        if class_count < 2 or support_vectors.size % vector_count:
            raise ConversionError(
                f"SVMClassifier node {node.name!r}: needs at least 2 classes and "
                f"{vector_count} support vectors of equal length ({support_vectors.size} values)"
            )
        vectors = support_vectors.reshape(vector_count, -1)
        if class_count == 2 and prob_a.size == 0 and post_transform == "PROBIT":
            raise UnsupportedOperatorError(
                node.domain, node.op_type, node.since_version,
                reason="post_transform='PROBIT' on a binary SVM without probabilities is not "
                "supported: onnxruntime leaves its second score column undefined; supported: "
                "NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO",
            )
    rows = torch.tensor([i for i, _ in pairs], dtype=torch.int64)
    columns = torch.tensor([j for _, j in pairs], dtype=torch.int64)
    module = OnnxSVMClassifier(
        SvmKernel(kernel, torch.from_numpy(vectors), gamma, coef0, degree),
        torch.from_numpy(pair_weights), torch.from_numpy(rho),
        torch.from_numpy(vote_winner[:pair_count]), torch.from_numpy(vote_loser[:pair_count]),
        rows, columns, torch.from_numpy(prob_a), torch.from_numpy(prob_b), labels,
        linear_mode, bool((coefficients >= 0).all()), post_transform,
    )
    return Converted(module, inputs=[node.inputs[0]])


def _pair_weights(node: OnnxNode, coefficients: np.ndarray, vectors_per_class: list[int],
                  pairs: list[tuple[int, int]], rho: np.ndarray) -> np.ndarray:
    """Scatter libsvm's dual coefficients ``[C - 1, V]`` into one column per class pair."""
    class_count = len(vectors_per_class)
    vector_count = sum(vectors_per_class)
    if coefficients.size != (class_count - 1) * vector_count or rho.size < len(pairs):
        raise ConversionError(
            f"SVMClassifier node {node.name!r}: expected {(class_count - 1) * vector_count} "
            f"coefficients and {len(pairs)} rho values for {class_count} classes and "
            f"{vector_count} support vectors, got {coefficients.size} and {rho.size}"
        )
    dual = coefficients.reshape(class_count - 1, vector_count)
    starts = np.concatenate([[0], np.cumsum(vectors_per_class)]).astype(int)
    weights = np.zeros((vector_count, len(pairs)), dtype=np.float32)
    for index, (i, j) in enumerate(pairs):
        weights[starts[i]:starts[i + 1], index] = dual[j - 1, starts[i]:starts[i + 1]]
        weights[starts[j]:starts[j + 1], index] = dual[i, starts[j]:starts[j + 1]]
    return weights


class OnnxSVMRegressor(nn.Module):
    """``K(x) @ coefficients + rho`` (or a linear model); ``one_class`` maps the sign to ±1."""

    def __init__(self, kernel: SvmKernel, coefficients: torch.Tensor, rho: float,
                 one_class: bool, linear_mode: bool):
        super().__init__()
        self.kernel = kernel
        self.register_buffer("coefficients", coefficients)
        self.rho = rho
        self.one_class = one_class
        self.linear_mode = linear_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 1:
            x = x.unsqueeze(0)
        x = x.to(torch.float32)
        if self.linear_mode:
            scores = self.kernel(x) + self.rho
        else:
            scores = self.kernel(x) @ self.coefficients.unsqueeze(1) + self.rho
        if self.one_class:
            return torch.where(scores > 0, torch.ones_like(scores), -torch.ones_like(scores))
        return scores


@converter("SVMRegressor", versions=(1,), domain="ai.onnx.ml")
def convert_svm_regressor(node: OnnxNode, context: ConversionContext) -> Converted:
    post_transform = read_post_transform(node)
    if post_transform != "NONE":
        raise UnsupportedOperatorError(
            node.domain, node.op_type, node.since_version,
            reason=f"attribute post_transform={post_transform!r} is not supported (onnxruntime "
            "ignores it on SVMRegressor, the spec applies it); supported: NONE",
        )
    coefficients, rho = _floats(node, "coefficients"), _floats(node, "rho")
    support_vectors = _floats(node, "support_vectors")
    vector_count = int(node.attribute("n_supports", 0))
    if coefficients.size == 0 or rho.size == 0:
        raise ConversionError(f"SVMRegressor node {node.name!r} needs coefficients and rho")
    kernel, gamma, coef0, degree = _read_kernel(node, vector_count > 0)
    if vector_count > 0:
        if support_vectors.size % vector_count or coefficients.size != vector_count:
            raise ConversionError(
                f"SVMRegressor node {node.name!r}: n_supports={vector_count} does not match "
                f"{support_vectors.size} support-vector values and {coefficients.size} coefficients"
            )
        vectors = support_vectors.reshape(vector_count, -1)
    else:
        vectors = coefficients.reshape(1, -1)
    module = OnnxSVMRegressor(
        SvmKernel(kernel, torch.from_numpy(vectors), gamma, coef0, degree),
        torch.from_numpy(coefficients), float(rho[0]),
        bool(node.attribute("one_class", 0)), vector_count == 0,
    )
    return Converted(module, inputs=[node.inputs[0]])
