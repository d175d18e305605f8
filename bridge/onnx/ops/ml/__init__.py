"""Converters for the ai.onnx.ml domain (traditional machine learning operators)."""
