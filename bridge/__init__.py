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
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers see (``X as X``: explicit re-exports); at run time
    # the names resolve lazily below
    from bridge import callbacks as callbacks
    from bridge import dataset as dataset
    from bridge import errors as errors
    from bridge import helper as helper
    from bridge.export import to_onnx as to_onnx
    from bridge.net import NeuralNet as NeuralNet
    from bridge.net import NeuralNetBinaryClassifier as NeuralNetBinaryClassifier
    from bridge.net import NeuralNetClassifier as NeuralNetClassifier
    from bridge.net import NeuralNetRegressor as NeuralNetRegressor
    from bridge.onnx.importer import from_onnx as from_onnx
    from bridge.session import InferenceSession as InferenceSession
    from bridge.sklearn.compiled import compile_for_serving as compile_for_serving
    from bridge.sklearn.convert import from_sklearn as from_sklearn

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
