"""Exporting fitted nets (and Pipelines ending in a net) with a scikit-learn-like output contract.

Classifiers give ``label`` and ``probabilities`` (the names and shapes skl2onnx uses with
ZipMap off), regressors and plain nets give ``variable``; the batch dimension is dynamic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from bridge.errors import ExportError

if TYPE_CHECKING:
    from bridge.net import NeuralNet

Nonlinearity = Callable[[torch.Tensor], torch.Tensor]
SampleLike = ArrayLike | torch.Tensor  # rows: an array, a DataFrame, a list or a tensor

CLASSIFIER_OUTPUTS = ("label", "probabilities")
REGRESSOR_OUTPUTS = ("variable",)


def _first(output: Any) -> torch.Tensor:
    first: torch.Tensor = output[0] if isinstance(output, (tuple, list)) else output
    return first


class _ClassifierHeadBase(nn.Module):
    """A classifier net's module (after optional preprocessing), returning label and probabilities.

    ``label`` holds the class values when they are numbers, else int64 indices into the
    class list stored in the model metadata (``bridge.classes``).
    """

    def __init__(self, module: nn.Module, classes: torch.Tensor | None,
                 preprocess: nn.Module | None = None):
        super().__init__()
        self.preprocess = preprocess
        self.module = module
        if classes is not None:
            self.register_buffer("classes", classes)
        else:
            self.classes = None

    def probabilities_and_index(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.preprocess is not None:
            X = self.preprocess(X)
        probabilities, index = self.probabilities_and_index(_first(self.module(X)))
        classes = self.classes
        label = classes[index] if isinstance(classes, torch.Tensor) else index
        return label, probabilities


class ClassifierHead(_ClassifierHeadBase):
    """Multiclass: the predict nonlinearity, then the most probable class."""

    def __init__(self, module: nn.Module, nonlinearity: Nonlinearity,
                 classes: torch.Tensor | None, preprocess: nn.Module | None = None):
        super().__init__(module, classes, preprocess)
        self.nonlinearity = nonlinearity

    def probabilities_and_index(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probabilities = self.nonlinearity(output)
        return probabilities, probabilities.argmax(dim=-1)


class BinaryClassifierHead(_ClassifierHeadBase):
    """Binary: sigmoid of the logit, two probability columns, ``threshold`` for the label."""

    def __init__(self, module: nn.Module, threshold: float, classes: torch.Tensor | None,
                 preprocess: nn.Module | None = None):
        super().__init__(module, classes, preprocess)
        self.threshold = float(threshold)

    def probabilities_and_index(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positive = torch.sigmoid(output).reshape(-1)
        probabilities = torch.stack([1 - positive, positive], dim=1)
        return probabilities, (positive > self.threshold).long()


class RegressorHead(nn.Module):
    """A regressor or plain net: the module's (first) output after its predict nonlinearity."""

    def __init__(self, module: nn.Module, nonlinearity: Nonlinearity,
                 preprocess: nn.Module | None = None):
        super().__init__()
        self.preprocess = preprocess
        self.module = module
        self.nonlinearity = nonlinearity

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if self.preprocess is not None:
            X = self.preprocess(X)
        return self.nonlinearity(_first(self.module(X)))


def _numeric_classes(classes: ArrayLike | None) -> torch.Tensor | None:
    """The class values as a tensor when numeric; None when they are strings (indices then)."""
    if classes is None:
        return None
    values = np.asarray(classes)
    if values.dtype.kind in "iub":
        if np.array_equal(values, np.arange(len(values))):
            return None  # the argmax index is the label already
        return torch.as_tensor(values.astype(np.int64))
    if values.dtype.kind == "f":
        return torch.as_tensor(values.astype(np.float32))
    return None


def net_head(net: NeuralNet, preprocess: nn.Module | None = None,
             ) -> tuple[nn.Module, tuple[str, ...], dict[str, Any]]:
    """Return the exportable module, its output names and the metadata for a fitted net."""
    from bridge.net import NeuralNetBinaryClassifier, NeuralNetClassifier

    module = cast(nn.Module, net.module_)  # (torch.compile may wrap it)
    metadata: dict[str, Any] = {"bridge.estimator": type(net).__name__}
    if isinstance(net, NeuralNetBinaryClassifier):
        classes = getattr(net, "classes_", np.array([0, 1]))
        head = BinaryClassifierHead(module, net.threshold, _numeric_classes(classes), preprocess)
        metadata["bridge.classes"] = np.asarray(classes).tolist()
        return head, CLASSIFIER_OUTPUTS, metadata
    nonlinearity = net._get_predict_nonlinearity()
    if isinstance(net, NeuralNetClassifier):
        classes = getattr(net, "classes_", None)
        multiclass = ClassifierHead(module, nonlinearity, _numeric_classes(classes), preprocess)
        if classes is not None:
            metadata["bridge.classes"] = np.asarray(classes).tolist()
            metadata["bridge.label"] = (
                "class values" if _numeric_classes(classes) is not None
                or np.asarray(classes).dtype.kind in "iub" else "indices into bridge.classes"
            )
        return multiclass, CLASSIFIER_OUTPUTS, metadata
    return RegressorHead(module, nonlinearity, preprocess), REGRESSOR_OUTPUTS, metadata


def sample_array(X_sample: SampleLike) -> np.ndarray:
    """Example rows (array, DataFrame or tensor) as a numpy array of their own dtype."""
    if isinstance(X_sample, torch.Tensor):
        return X_sample.detach().cpu().numpy()
    if hasattr(X_sample, "iloc"):  # a DataFrame
        frame: Any = X_sample
        return np.asarray(frame.to_numpy())
    return np.asarray(X_sample)


def sample_tensor(X_sample: SampleLike, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Example rows (array, DataFrame or tensor) as a CPU tensor of ``dtype``; without one,
    a tensor keeps its dtype and an array becomes float32 (bridge's default boundary type)."""
    if isinstance(X_sample, torch.Tensor):
        tensor = X_sample.detach().cpu()
        return tensor if dtype is None else tensor.to(dtype)
    return torch.as_tensor(sample_array(X_sample)).to(dtype or torch.float32)


def sample_for(net: NeuralNet, X_sample: SampleLike | None) -> torch.Tensor:
    """The example input for tracing: ``X_sample`` or zeros of the fitted feature count."""
    module = cast(nn.Module, net.module_)
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()),
                 torch.float32)
    if X_sample is not None:
        if isinstance(X_sample, dict):
            raise ExportError(
                "nets whose forward takes several inputs (dict X) cannot be exported with the "
                "single-input contract; export net.module_ with bridge.to_onnx(module, X_sample=...)"
            )
        return sample_tensor(X_sample, dtype)
    n_features = getattr(net, "n_features_in_", None)
    if n_features is None:
        raise ExportError(
            f"cannot infer the input shape of {type(net).__name__}: it saw no 2-D array in fit; "
            "pass X_sample=<a few input rows>"
        )
    return torch.zeros((2, n_features), dtype=dtype)
