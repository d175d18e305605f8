"""bridge: PyTorch and scikit-learn, joined through ONNX.

Public API
----------
from_onnx
    An ONNX model (ai.onnx and ai.onnx.ml) as a ``torch.fx.GraphModule``.
from_sklearn
    A fitted scikit-learn estimator as a torch module with the estimator's own
    inference methods, by way of skl2onnx.
compile_for_serving
    A converted model's methods compiled ahead of time (AOTInductor) for serving.
InferenceSession
    onnxruntime's session API (``run``, ``get_inputs``, providers) over ``from_onnx``.
to_onnx
    Nets, converted models, estimators and modules as checked ONNX files.
NeuralNet, NeuralNetClassifier, NeuralNetBinaryClassifier, NeuralNetRegressor
    Torch modules with the scikit-learn estimator API (skorch-compatible).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Names resolve lazily so that ``import bridge`` stays cheap and the pieces stay
# independent (importing the ONNX importer never imports the training loop).
_LAZY = {
    "from_onnx": "bridge.onnx.importer",
    "from_sklearn": "bridge.sklearn.convert",
    "compile_for_serving": "bridge.sklearn.compiled",
    "to_onnx": "bridge.export",
    "InferenceSession": "bridge.session",
    "NeuralNet": "bridge.net",
    "NeuralNetClassifier": "bridge.net",
    "NeuralNetBinaryClassifier": "bridge.net",
    "NeuralNetRegressor": "bridge.net",
    "callbacks": "bridge.callbacks",
    "helper": "bridge.helper",
    "dataset": "bridge.dataset",
    "errors": "bridge.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'bridge' has no attribute {name!r}; public names: {__all__}")
    module = importlib.import_module(module_name)
    value = module if module_name.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
