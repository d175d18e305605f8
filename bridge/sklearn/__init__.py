"""(B) scikit-learn → ONNX → torch: ``from_sklearn`` and the converted-model wrapper."""

from bridge.sklearn.convert import from_sklearn
from bridge.sklearn.model import ConvertedModel
from bridge.sklearn.support import SUPPORTED_ESTIMATORS

__all__ = ["ConvertedModel", "SUPPORTED_ESTIMATORS", "from_sklearn"]
