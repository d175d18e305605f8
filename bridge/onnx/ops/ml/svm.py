"""ai.onnx.ml support vector machines: SVMClassifier and SVMRegressor.

The classifier reproduces onnxruntime: one-vs-one decision values ``K @ P + rho`` (``P``
scatters the dual coefficients of each class pair), votes with ties going to the lowest
class index, Platt-scaled pair probabilities coupled by libsvm's iterative method, and the
two-column binary score layouts. Without support vectors both ops are linear models.
"""

from __future__ import annotations

import operator

import numpy as np
import torch
from torch import nn

from bridge.derived import Derived, eager_call
from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.held import held
from bridge.onnx.ops.ml.linear import class_labels, probit, read_post_transform, transform_scores
from bridge.onnx.registry import Converted, converter
from bridge.svm import native
from bridge.svm.coupling import (  # noqa: F401 (couple_pairwise_probabilities: public here too)
    couple_pairwise_probabilities,
    couple_while_exporting,
    couple_while_tracing,
)

KERNELS = ("LINEAR", "POLY", "RBF", "SIGMOID")
# Eager CPU calls run in blocks of rows whose kernel matrix holds about this many values
# (1 MB of float32; at least 32 rows): each block's temporaries stay in cache and are
# reused by the allocator, where a 10,000-row SVC's [10000, 2582] matrices cost fresh pages
# per operation (190 against 50 ms). Both paths block alike, so they keep agreeing bit for
# bit; traced, scripted, compiled and exported calls run the whole batch at once.
ROW_BLOCK_VALUES = 1 << 18


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
        self.vector_norms = Derived()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel == "RBF":  # |x - v|^2 expanded, as a matrix product (fast on GPUs)
            if torch.jit.is_scripting():
                norms = self.vectors.square().sum(dim=1)
            else:
                norms = self._squared_norms()
            squared = (x.square().sum(dim=1, keepdim=True) + norms
                       - 2.0 * (x @ self.vectors.t())).clamp_min(0.0)
            return torch.exp(-self.gamma * squared)
        dots = x @ self.vectors.t()
        if self.kernel == "POLY":
            return torch.pow(self.gamma * dots + self.coef0, self.degree)
        if self.kernel == "SIGMOID":
            return torch.tanh(self.gamma * dots + self.coef0)
        return dots

    @torch.jit.unused
    def row_block(self, x: torch.Tensor) -> int:
        """Rows per block for an eager CPU call on ``x`` [N, F], or 0 to run it whole."""
        if not eager_call():  # (first: a trace would record the comparison)
            return 0
        rows = x.shape[0]
        if rows <= 32 or not x.is_cpu:
            return 0
        block = max(32, ROW_BLOCK_VALUES // max(1, held(self, "vectors").shape[0]))
        return block if rows > block else 0

    @torch.jit.unused
    def in_place(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` for eager CPU calls without autograd where the C extension is
        built: for RBF, the matrix product and row norms in torch, the elementwise steps in
        one C loop (:func:`bridge.svm.native.rbf_exponent`) and the exponential in place.
        Same results bit for bit."""
        if self.kernel != "RBF":
            return self.forward(x)
        memo = self.__dict__.get("_prepared")
        if memo is None:
            memo = self.__dict__["_prepared"] = native.Prepared()
        tables = memo.get((held(self, "vectors"),), native.KernelTables.build)
        if tables is None:
            return self.forward(x)
        return tables.exponent(x, self.gamma).exp_()

    @torch.jit.unused
    def _squared_norms(self) -> torch.Tensor:
        """``|v|^2`` per vector, computed once per buffer state in eager mode."""
        if not eager_call():  # a traced or compiled graph computes it from the buffer
            return self.vectors.square().sum(dim=1)
        return self.vector_norms.get(self.vectors, lambda v: v.square().sum(dim=1))


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


_TABLE_NAMES = ("pair_weights", "rho", "pair_rows", "pair_columns", "labels", "prob_a", "prob_b")
_TABLE_BUFFERS = operator.itemgetter(*_TABLE_NAMES)


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
        if x.dtype != torch.float32:  # (a no-op .to still costs ~1.5 us)
            x = x.to(torch.float32)
        if self.linear_mode:
            return self._linear(x)
        if not torch.jit.is_scripting():
            block = self._modules["kernel"].row_block(x)
            if block:
                parts = [self.forward(x[start:start + block])
                         for start in range(0, x.shape[0], block)]
                return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            tables = self._native_tables(x)
            if tables is not None:
                return self._forward_native(x, tables)
        # onnxruntime sums each pair's terms in double precision; so do we
        kernel = self.kernel(x).to(torch.float64)
        decisions = (kernel @ self.pair_weights.to(torch.float64) + self.rho).to(torch.float32)
        wins = (decisions > 0).to(torch.float32)
        votes = wins @ self.vote_winner + (1.0 - wins) @ self.vote_loser
        label = self.labels[torch.argmax(votes, dim=1)]
        return label, self._scores(decisions)

    def _scores(self, decisions: torch.Tensor) -> torch.Tensor:
        """The score output for decision values ``decisions [N, pairs]``."""
        if self.has_probabilities:
            return transform_scores(self._probabilities(decisions), self.post_transform)
        if self.class_count > 2:
            return transform_scores(decisions, self.post_transform)
        if self.post_transform == "NONE":
            return torch.cat([-decisions, decisions], dim=1)
        if self.post_transform == "LOGISTIC":
            decisions = torch.sigmoid(decisions)
        return torch.cat([1.0 - decisions, decisions], dim=1)

    @torch.jit.unused
    def _native_runs(self, x: torch.Tensor) -> bool:
        """Whether this call runs :meth:`_forward_native`: eager calls on CPU without
        autograd, where the extension is built."""
        return self._native_tables(x) is not None

    @torch.jit.unused
    def _native_tables(self, x: torch.Tensor) -> native.ClassifierTables | None:
        """The checked tables :meth:`_forward_native` hands C, kept between calls while the
        buffers are unchanged; None where this call takes the torch path."""
        if not (x.is_cpu and native.available() and eager_call()):
            return None
        try:  # one C call for all seven (see bridge/onnx/held.py)
            sources = _TABLE_BUFFERS(self._buffers)
        except KeyError:  # some were made parameters (fine-tuning)
            sources = tuple(held(self, name) for name in _TABLE_NAMES)
        if torch.is_grad_enabled() and (x.requires_grad or held(
                self._modules["kernel"], "vectors").requires_grad or any(
                t.requires_grad for t in sources)):
            return None
        memo = self.__dict__.get("_prepared")
        if memo is None:
            memo = self.__dict__["_prepared"] = native.Prepared()
        return memo.get(sources, native.ClassifierTables.build)

    @torch.jit.unused
    def _forward_native(self, x: torch.Tensor, tables: native.ClassifierTables | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` with the kernel's elementwise steps, the intercepts, votes, Platt's
        affine step and the coupling in C (:mod:`bridge.svm.native`): the same arithmetic
        (the results agree bit for bit), without the torch coupling's ~45 small operations
        and one synchronisation per sweep, and with a dozen fewer torch calls at one row."""
        if tables is None:
            tables = self._native_tables(x)
        kernel = self._modules["kernel"].in_place(x)
        sums = torch.mm(kernel.to(torch.float64), tables.weights64)
        if not self.has_probabilities:
            decisions, label = tables.decide(sums)
            return label, self._scores(decisions)
        label, scores = tables.probabilities(sums)
        if self.post_transform == "NONE":
            return label, scores
        return label, transform_scores(scores, self.post_transform)

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
            return couple_while_tracing(pairwise)
        return couple_pairwise_probabilities(pairwise)


def _column_major(matrix: np.ndarray, transposed: bool) -> torch.Tensor:
    """``matrix`` as a tensor, laid out column by column when ``transposed``: the kernel's
    ``x @ vectors.t()`` and the ``[N, V] @ [V, pairs]`` product then read memory in the order
    the matrix-product routines prefer (at one row 3.7 against 6.1 us and 1.9 against 2.9
    us; at 10k rows the float64 product 18 against 30 ms). Both paths read the same layout,
    so they keep agreeing bit for bit; ``state_dict``, ``.to()`` and copies keep it."""
    if not transposed:
        return torch.from_numpy(matrix)
    return torch.from_numpy(np.ascontiguousarray(matrix.T)).t()


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
        SvmKernel(kernel, _column_major(vectors, vector_count > 0), gamma, coef0, degree),
        _column_major(pair_weights, True), torch.from_numpy(rho),
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
        if x.dtype != torch.float32:  # (a no-op .to still costs ~1.5 us)
            x = x.to(torch.float32)
        if self.linear_mode:
            scores = self.kernel(x) + self.rho
        else:
            if not torch.jit.is_scripting():
                block = self._modules["kernel"].row_block(x)
                if block:
                    return torch.cat([self.forward(x[start:start + block])
                                      for start in range(0, x.shape[0], block)])
                if self._native_runs(x):
                    return self._forward_native(x)
            scores = self.kernel(x) @ self.coefficients.unsqueeze(1) + self.rho
        if self.one_class:
            return torch.where(scores > 0, torch.ones_like(scores), -torch.ones_like(scores))
        return scores

    @torch.jit.unused
    def _native_runs(self, x: torch.Tensor) -> bool:
        """Whether this call runs :meth:`_forward_native`: eager RBF calls on CPU without
        autograd, where the extension is built."""
        kernel = self._modules["kernel"]
        if not (kernel.kernel == "RBF" and x.is_cpu and native.available() and eager_call()):
            return False
        return not (torch.is_grad_enabled() and (x.requires_grad or held(
            kernel, "vectors").requires_grad or held(self, "coefficients").requires_grad))

    @torch.jit.unused
    def _forward_native(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with the RBF kernel's elementwise steps in C
        (:meth:`SvmKernel.in_place`) and the intercept added in place: the same bits."""
        kernel = self._modules["kernel"].in_place(x)
        scores = torch.mm(kernel, held(self, "coefficients").unsqueeze(1)).add_(self.rho)
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
        SvmKernel(kernel, _column_major(vectors, vector_count > 0), gamma, coef0, degree),
        torch.from_numpy(coefficients), float(rho[0]),
        bool(node.attribute("one_class", 0)), vector_count == 0,
    )
    return Converted(module, inputs=[node.inputs[0]])
