"""ONNX → PyTorch: read-only graph views, the converter registry and the importer."""

from bridge.onnx.importer import from_onnx
from bridge.onnx.serving import compile_for_serving

__all__ = ["compile_for_serving", "from_onnx"]
