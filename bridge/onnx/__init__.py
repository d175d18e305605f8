"""ONNX → PyTorch: read-only graph views, the converter registry and the importer."""

from bridge.onnx.importer import from_onnx

__all__ = ["from_onnx"]
