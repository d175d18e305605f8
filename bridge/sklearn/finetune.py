"""Trainable conversion (``from_sklearn(estimator, trainable=True)``): a fitted model's ONNX
graph as a torch module whose floating weights are parameters and whose forward returns what a
net's criterion needs, so ``NeuralNetClassifier(module=...)`` fine-tunes it from its solution.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from numpy.typing import DTypeLike
from sklearn.base import BaseEstimator, is_classifier, is_regressor
from sklearn.pipeline import Pipeline
from torch import nn

from bridge.errors import UnsupportedEstimatorError
from bridge.onnx.importer import OnnxGraphModule, from_onnx

# final estimators whose graphs are differentiable in their weights (trees and neighbours
# are not: their thresholds and training rows enter through comparisons and sorting)
LINEAR_CLASSIFIERS = ("LogisticRegression", "LogisticRegressionCV", "SGDClassifier",
                      "LinearSVC", "RidgeClassifier", "RidgeClassifierCV", "Perceptron")
LINEAR_REGRESSORS = ("LinearRegression", "Ridge", "RidgeCV", "Lasso", "ElasticNet",
                     "SGDRegressor", "LinearSVR")
SUPPORTED = LINEAR_CLASSIFIERS + LINEAR_REGRESSORS + ("MLPClassifier", "MLPRegressor")


class TrainableModel(nn.Module):
    """A fitted estimator as a trainable torch module (built by ``from_sklearn(...,
    trainable=True)``).

    ``forward(X)`` takes a float tensor of the estimator's input width and returns, for a
    classifier, one logit per class in the order of :attr:`classes_` (a binary linear model's
    score ``s`` as ``[0, s]``, so the softmax gives its ``predict_proba``); for a regressor,
    the predictions as a ``(n_samples, n_targets)`` tensor. Use ``criterion=nn.CrossEntropyLoss``
    with ``NeuralNetClassifier``, ``nn.MSELoss`` with ``NeuralNetRegressor`` (targets
    shaped ``(n, 1)``), and class indices ``numpy.searchsorted(module.classes_, y)`` as targets.

    Attributes
    ----------
    preprocessing : OnnxGraphModule or None
        A pipeline's steps before the last (frozen unless converted with
        ``train_preprocessing=True``).
    head : OnnxGraphModule
        The final estimator's graph, cut at its logits or values.
    classes_ : numpy.ndarray or None
        The classifier's classes (the order of the logits).
    estimator_name : str
        The converted estimator's class name.
    """

    def __init__(self, head: OnnxGraphModule, preprocessing: OnnxGraphModule | None,
                 classes: np.ndarray | None, binary_scores: bool, estimator_name: str):
        super().__init__()
        self.preprocessing = preprocessing
        self.head = head
        self.classes_ = classes
        self.binary_scores = binary_scores
        self.estimator_name = estimator_name

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Logits (classifiers) or predictions (regressors) for a float tensor ``X``."""
        if not isinstance(X, torch.Tensor):
            raise TypeError(f"the trainable {self.estimator_name} takes a torch.Tensor; got "
                            f"{type(X).__name__} (torch.as_tensor(X, dtype=torch.float32))")
        if self.preprocessing is not None:
            X = self.preprocessing(X)
        values: torch.Tensor = self.head(X)
        values = values.flatten(1) if values.dim() > 1 else values.unsqueeze(1)
        if self.binary_scores:  # one score per row: the positive class's logit against 0
            return torch.cat([torch.zeros_like(values), values], dim=1)
        return values


def trainable_module(estimator: BaseEstimator, *, train_preprocessing: bool = False,
                     dtype: DTypeLike = np.float32) -> TrainableModel:
    """Build the :class:`TrainableModel` of a fitted estimator or pipeline (see
    :func:`bridge.from_sklearn`, which checks that it is fitted)."""
    steps = estimator.steps if isinstance(estimator, Pipeline) else [("model", estimator)]
    final = steps[-1][1]
    while isinstance(final, Pipeline):
        steps = steps[:-1] + final.steps
        final = final.steps[-1][1]
    name = type(final).__name__
    if name not in SUPPORTED or not (is_classifier(final) or is_regressor(final)):
        raise UnsupportedEstimatorError(
            f"from_sklearn(..., trainable=True) cannot fine-tune a {name}: its graph is not "
            f"differentiable in its weights or not covered; supported final estimators: "
            f"{', '.join(SUPPORTED)}")
    preprocessing = None
    if len(steps) > 1:
        preprocessing = _graph_module(Pipeline(steps[:-1]), "transform", dtype)
        preprocessing.requires_grad_(train_preprocessing)
    classes = np.asarray(final.classes_) if is_classifier(final) else None
    if classes is not None and name == "MLPClassifier":
        head = _graph_module(final, "predict_proba", dtype, logits=True)
        binary = len(classes) == 2  # one sigmoid unit: its input is the positive logit
    elif classes is not None:
        head = _graph_module(final, "decision_function", dtype)
        binary = len(classes) == 2
    else:
        head, binary = _graph_module(final, "predict", dtype), False
    return TrainableModel(head.train(), preprocessing, classes, binary, type(estimator).__name__)


def _graph_module(estimator: BaseEstimator, method: str, dtype: DTypeLike,
                  logits: bool = False) -> OnnxGraphModule:
    """The graph behind ``estimator.<method>`` cut at the value the head returns, imported
    with every floating constant as a parameter."""
    from bridge.sklearn.convert import from_sklearn

    converted = from_sklearn(estimator, dtype=dtype)
    output = converted._method_outputs[method]
    graph = converted._graphs[output.graph]
    name = graph.graph.output[output.output].name
    if logits:
        name = _pre_activation(graph, name)
    elif method == "decision_function" and len(getattr(estimator, "classes_", ())) == 2:
        name = _positive_column(graph, name)
    module = from_onnx(_sliced(graph, name), trainable=True)
    _promote_buffers(module)
    return module


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {value: node for node in graph.node for value in node.output}


def _pre_activation(model: onnx.ModelProto, output: str) -> str:
    """The input of the last Softmax/Sigmoid on the way to ``output`` (an MLP's logits)."""
    producers = _producers(model.graph)
    pending, seen = [output], set()
    while pending:
        value = pending.pop()
        node = producers.get(value)
        if node is None or value in seen:
            continue
        seen.add(value)
        if node.op_type in ("Softmax", "Sigmoid"):
            return str(node.input[0])
        pending.extend(node.input)
    raise UnsupportedEstimatorError(f"no Softmax or Sigmoid leads to {output!r}: the graph has "
                                    "no logits to fine-tune")


def _positive_column(model: onnx.ModelProto, output: str) -> str:
    """A binary classifier's decision output holds ``[-s, s]`` or ``[1 - s, s]``: add a
    ``Slice`` of its last column (``s``) and return that value's name."""
    helper = onnx.helper
    column = f"{output}_positive_score"
    for name, values in (("bridge_slice_start", [-1]), ("bridge_slice_end", [2**62]),
                         ("bridge_slice_axis", [1])):
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(values, np.int64),
                                                                    name))
    model.graph.node.append(helper.make_node(
        "Slice", [output, "bridge_slice_start", "bridge_slice_end", "bridge_slice_axis"],
        [column], name="bridge_positive_score"))
    return column


def _sliced(model: onnx.ModelProto, output: str) -> onnx.ModelProto:
    """A copy of ``model`` whose one output is ``output``, holding only the nodes it needs."""
    producers = _producers(model.graph)
    needed, pending = set(), [output]
    while pending:
        node = producers.get(pending.pop())
        if node is not None and id(node) not in needed:
            needed.add(id(node))
            pending.extend(node.input)
    sliced = onnx.ModelProto()
    sliced.CopyFrom(model)
    del sliced.graph.node[:]
    sliced.graph.node.extend(n for n in model.graph.node if id(n) in needed)
    del sliced.graph.output[:]
    sliced.graph.output.append(onnx.helper.make_empty_tensor_value_info(output))
    used = {name for node in sliced.graph.node for name in node.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del sliced.graph.initializer[:]
    sliced.graph.initializer.extend(kept)
    return sliced


def _promote_buffers(module: nn.Module) -> None:
    """Make every floating buffer a parameter (the ai.onnx.ml operators keep their weights,
    e.g. LinearClassifier's coefficients or Scaler's offsets, as buffers)."""
    for submodule in module.modules():
        for name, tensor in list(submodule._buffers.items()):
            if tensor is not None and tensor.is_floating_point():
                del submodule._buffers[name]
                submodule.register_parameter(name, nn.Parameter(tensor.detach().clone()))
