"""Every strategy exports to standard ONNX with a dynamic batch (what lowering relies on)."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime
import pytest
import torch

import bridge
from bridge.export.modules import export_module
from tests.onnx.ops.ml.test_tree import grid_inputs, legacy_model


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["gemm", "traversal", "perfect", "lookup", "bitvector"])
def test_strategy_exports_with_a_dynamic_batch(strategy):
    rng = np.random.RandomState(5)
    model = legacy_model("regressor", rng, n_trees=4, depth=5, missing=True,
                         modes=("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT"))
    module = bridge.from_onnx(model, tree_strategy=strategy)
    sample = torch.from_numpy(grid_inputs(rng, 40, nan=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = export_module(module, sample, input_name="X", output_names=["Y"],
                                 opset=18, exporter="dynamo")
    assert not [n.op_type for n in exported.graph.node if n.domain == "ai.onnx.ml"]
    x = grid_inputs(rng, 300, nan=True)  # another batch size than the sample's
    session = onnxruntime.InferenceSession(exported.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    actual = session.run(None, {"X": x})[0]
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)


def test_lowering_fixes_the_tree_strategy_for_large_batches():
    from bridge.export import LOWERED_TREE_BATCH, _fix_tree_strategies
    from bridge.trees import TreeEnsembleModule

    rng = np.random.RandomState(6)
    module = bridge.from_onnx(legacy_model("regressor", rng, n_trees=4, depth=5))
    trees = [m for m in module.modules() if isinstance(m, TreeEnsembleModule)][0]
    large = trees.choose(LOWERED_TREE_BATCH, "cpu")
    assert trees.choose(3, "cpu") == "gemm" != large  # what a 3-row sample would bake in
    _fix_tree_strategies(module)
    module(torch.from_numpy(grid_inputs(rng, 3)))
    assert trees.strategy == trees.last_strategy == large
