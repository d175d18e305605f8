"""ai.onnx.ml tree ensembles: TreeEnsembleClassifier, TreeEnsembleRegressor, TreeEnsemble.

The attributes are parsed into a :class:`bridge.trees.TreeSpec`; the computation lives in
:mod:`bridge.trees` (five strategies and a rule choosing one per call, see docs/trees.md).
``from_onnx(..., tree_strategy=...)`` forces one strategy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import converter
from bridge.trees import TreeEnsembleModule, TreeSpec, parse_legacy, parse_tree_ensemble, serving
from bridge.trees.finalize import ClassifierOutput, RegressionOutput
from bridge.trees.select import validate_strategy

ML = "ai.onnx.ml"


class OnnxTreeEnsembleClassifier(nn.Module):
    """TreeEnsembleClassifier: (label [N] int64, scores [N, classes] float32).

    Eager CPU calls run as one C call where they can (:mod:`bridge.trees.serving`); a plan
    reading one output calls :meth:`forward_labels` or :meth:`forward_probabilities`.
    """

    output_methods = {(0,): "forward_labels", (1,): "forward_probabilities"}

    def __init__(self, spec: TreeSpec, strategy: str, double_thresholds: bool):
        super().__init__()
        self.trees = TreeEnsembleModule(spec, strategy, double_thresholds)
        self.output = ClassifierOutput(spec)
        self._serving = serving.Serving()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        served = serving.classify(self, x)
        return self.computed(x) if served is None else served

    def forward_labels(self, x: torch.Tensor) -> tuple:
        """:meth:`forward`'s labels (its probabilities None where C skips them)."""
        served = serving.classify(self, x, probabilities=False)
        return self.computed(x) if served is None else served

    def forward_probabilities(self, x: torch.Tensor) -> tuple:
        """:meth:`forward`'s probabilities (its labels None where C skips them)."""
        served = serving.classify(self, x, labels=False)
        return self.computed(x) if served is None else served

    def computed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels and probabilities by the torch modules (calls C does not serve)."""
        scores, has = self.trees(x)
        return self.output(scores, has)

    def forward_array(self, X: np.ndarray, outputs: tuple[int, ...]) -> tuple | None:
        """The outputs at positions ``outputs`` for numpy rows, as numpy arrays from one C
        call (None for the others), or None when C does not serve the call: a plan's numpy
        path (:func:`bridge.onnx.plans.array_plan_for`)."""
        return serving.classify_array(self, X, labels=0 in outputs, probabilities=1 in outputs)


class OnnxTreeEnsembleRegressor(nn.Module):
    """TreeEnsembleRegressor: predictions [N, targets] float32; with ``input_dtype``
    (TreeEnsemble, ai.onnx.ml opset 5) in the input's floating dtype."""

    def __init__(self, spec: TreeSpec, strategy: str, double_thresholds: bool,
                 input_dtype: bool = False):
        super().__init__()
        self.trees = TreeEnsembleModule(spec, strategy, double_thresholds)
        self.output = RegressionOutput(spec)
        self.input_dtype = input_dtype
        self._serving = serving.Serving()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        served = serving.regress(self, x)  # eager CPU calls: one C call where it can
        if served is not None:
            return served
        scores, has = self.trees(x)
        result = self.output(scores, has)
        if not self.input_dtype:
            return result if result.dtype == torch.float32 else result.float()
        return result.to(x.dtype) if x.is_floating_point() else result

    def forward_array(self, X: np.ndarray, outputs: tuple[int, ...]) -> np.ndarray | None:
        """The values for numpy rows as a numpy array from one C call, or None when C does
        not serve the call (see :meth:`OnnxTreeEnsembleClassifier.forward_array`)."""
        return serving.regress_array(self, X)


def _strategy(context: ConversionContext) -> str:
    return validate_strategy(context.options.get("tree_strategy", "auto"))


def _is_double(node: OnnxNode, name: str) -> bool:
    value = node.attribute(name)
    return isinstance(value, np.ndarray) and value.dtype == np.float64


@converter("TreeEnsembleClassifier", versions=(1, 3), domain=ML)
def convert_tree_ensemble_classifier(node: OnnxNode, context: ConversionContext) -> nn.Module:
    strategy = _strategy(context)
    spec = parse_legacy(node, "classifier")
    if spec.labels_are_strings:
        context.set_vocabulary(node.outputs[0], spec.class_labels)
    return OnnxTreeEnsembleClassifier(spec, strategy, _is_double(node, "nodes_values_as_tensor"))


@converter("TreeEnsembleRegressor", versions=(1, 3), domain=ML)
def convert_tree_ensemble_regressor(node: OnnxNode, context: ConversionContext) -> nn.Module:
    strategy = _strategy(context)
    spec = parse_legacy(node, "regressor")
    return OnnxTreeEnsembleRegressor(spec, strategy, _is_double(node, "nodes_values_as_tensor"))


@converter("TreeEnsemble", versions=(5,), domain=ML)
def convert_tree_ensemble(node: OnnxNode, context: ConversionContext) -> nn.Module:
    strategy = _strategy(context)
    spec = parse_tree_ensemble(node)
    return OnnxTreeEnsembleRegressor(spec, strategy, _is_double(node, "nodes_splits"),
                                     input_dtype=True)
