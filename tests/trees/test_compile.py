"""Tree modules capture whole under ``torch.compile(fullgraph=True)``.

The ``aot_eager`` backend traces every op as inductor would but runs them eagerly, so this
needs no C++ compiler; it pins that no strategy (nor the per-call rule) breaks the graph.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bridge
from tests.onnx.ops.ml.test_tree import grid_inputs, legacy_model


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["auto", "gemm", "traversal", "perfect", "lookup",
                                      "bitvector"])
def test_every_strategy_compiles_without_graph_breaks(strategy):
    rng = np.random.RandomState(8)
    model = legacy_model("classifier", rng, n_trees=5, depth=5, n_outputs=3, missing=True,
                         post="SOFTMAX")
    module = bridge.from_onnx(model, tree_strategy=strategy)
    x = torch.from_numpy(grid_inputs(rng, 200, nan=True))
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        expected, actual = module(x), compiled(x)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-6, atol=1e-6)
