"""Every converter module, imported explicitly so that each registers its ops.

Adding an op family means adding its module to ``OP_MODULES``; ``tests/onnx/test_registry.py``
checks that every module under ``bridge/onnx/ops/`` is listed here.
"""

import importlib

OP_MODULES = (
    "constants",
    "elementwise",
    "logical",
    "activations",
    "cast",
    "shape",
    "creation",
    "layout",
    "indexing",
    "reduce",
    "linalg",
    "conv",
    "pool",
    "normalization",
    "rnn",
    "rnn_fused",
    "resize",
    "losses",
    "attention",
    "control_flow",
    "sequence",
    "ml.linear",
    "ml.svm",
    "ml.preprocessing",
    "ml.encoders",
    "ml.tree",
    "quantization",
    "image",
    "detection",
    "signal",
    "random",
    "transformer",
)

for _name in OP_MODULES:
    importlib.import_module(f"{__name__}.{_name}")
