"""The three strategies agree with each other, the selection rule, size limits and devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bridge
from bridge.errors import ConversionError
from bridge.trees import TreeEnsembleModule, choose_strategy, validate_strategy
from bridge.trees.select import auto_candidates
from tests.onnx.ops.ml.test_tree import grid_inputs, legacy_model, tree_ensemble_model


def forest_module(model, strategy):
    module = bridge.from_onnx(model, tree_strategy=strategy)
    return module, [m for m in module.modules() if isinstance(m, TreeEnsembleModule)][0]


@pytest.mark.parametrize("depth", [1, 4, 7])
def test_strategies_agree_on_unbalanced_forests(depth):
    rng = np.random.RandomState(depth)
    model = tree_ensemble_model(rng, n_trees=6, depth=depth, n_targets=2)
    x = torch.from_numpy(grid_inputs(rng, 257, nan=True))
    results = [bridge.from_onnx(model, tree_strategy=s)(x) for s in ("gemm", "traversal",
                                                                      "perfect")]
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], rtol=1e-6, atol=1e-6)


def test_chunked_batches_equal_one_pass(monkeypatch):
    import bridge.trees.module as module_file

    rng = np.random.RandomState(0)
    model = legacy_model("regressor", rng, n_trees=4, depth=5)
    x = torch.from_numpy(grid_inputs(rng, 500))
    whole = bridge.from_onnx(model, tree_strategy="traversal")(x)
    monkeypatch.setattr(module_file, "CHUNK_ENTRIES", 64)
    torch.testing.assert_close(bridge.from_onnx(model, tree_strategy="traversal")(x), whole)


def test_rule_picks_gemm_for_small_trees_at_small_batches_and_walks_otherwise():
    every = ("gemm", "traversal", "perfect")
    assert choose_strategy(depth=3, n_trees=100, batch=1, device_type="cpu", available=every,
                           padding_ratio=1.0, tree_size=7 * 8) == "gemm"
    assert choose_strategy(depth=3, n_trees=100, batch=10_000, device_type="cpu",
                           available=every, padding_ratio=1.0, tree_size=7 * 8) == "traversal"
    assert choose_strategy(depth=8, n_trees=100, batch=1, device_type="cpu", available=every,
                           padding_ratio=1.0, tree_size=255 * 256) == "traversal"
    assert choose_strategy(depth=20, n_trees=1, batch=10_000, device_type="cpu",
                           available=("traversal", "perfect"), padding_ratio=300.0,
                           tree_size=10**7) == "traversal"
    assert choose_strategy(depth=8, n_trees=100, batch=10_000, device_type="cuda",
                           available=("traversal", "perfect"), padding_ratio=1.5,
                           tree_size=255 * 256) == "perfect"
    assert choose_strategy(depth=4, n_trees=10, batch=10_000, device_type="cuda",
                           available=every, padding_ratio=1.0, tree_size=15 * 16) == "gemm"
    assert "gemm" not in auto_candidates(tree_size=255 * 256, padding_ratio=1.0)


def test_auto_records_its_choice():
    rng = np.random.RandomState(0)
    module, trees = forest_module(legacy_model("regressor", rng, depth=2), "auto")
    module(torch.from_numpy(grid_inputs(rng, 8)))
    assert trees.last_strategy == trees.choose(8, "cpu")


def test_validate_strategy_lists_choices():
    assert validate_strategy("perfect") == "perfect"
    with pytest.raises(ValueError, match="'auto', 'gemm', 'traversal', 'perfect'"):
        validate_strategy("GEMM")


def test_forced_strategy_over_its_size_limit_raises(monkeypatch):
    import bridge.trees.module as module_file

    monkeypatch.setattr(module_file, "PERFECT_LIMIT", 10)
    rng = np.random.RandomState(0)
    with pytest.raises(ConversionError, match="tree_strategy='perfect'"):
        bridge.from_onnx(legacy_model("regressor", rng, depth=4), tree_strategy="perfect")


def test_too_few_features_is_a_clear_error():
    rng = np.random.RandomState(0)
    module = bridge.from_onnx(legacy_model("regressor", rng, n_features=3))
    with pytest.raises(ValueError, match="F >= "):
        module(torch.zeros(2, 1))


def test_integer_inputs_compare_as_float():
    rng = np.random.RandomState(0)
    model = legacy_model("regressor", rng, n_features=3)
    module = bridge.from_onnx(model)
    x = grid_inputs(rng, 32).round()
    torch.testing.assert_close(module(torch.from_numpy(x.astype(np.int64))),
                               module(torch.from_numpy(x)))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("strategy", ["gemm", "traversal", "perfect", "auto"])
def test_cuda_matches_cpu(strategy):
    rng = np.random.RandomState(1)
    model = tree_ensemble_model(rng, n_trees=5, depth=5, n_targets=3)
    x = torch.from_numpy(grid_inputs(rng, 300, nan=True))
    module = bridge.from_onnx(model, tree_strategy=strategy)
    expected = module(x)
    actual = module.to("cuda")(x.to("cuda"))
    assert actual.device.type == "cuda"
    torch.testing.assert_close(actual.cpu(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_classifier_outputs_stay_on_device():
    rng = np.random.RandomState(2)
    model = legacy_model("classifier", rng, n_outputs=2, class_ids="single0", post="LOGISTIC")
    x = torch.from_numpy(grid_inputs(rng, 64))
    module = bridge.from_onnx(model)
    expected = module(x)
    actual = module.to("cuda")(x.to("cuda"))
    for a, e in zip(actual, expected):
        assert a.device.type == "cuda"
        torch.testing.assert_close(a.cpu(), e, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_traversal_fast_paths_match_gemm_with_nan_and_infinities(mode, dtype):
    # one mode + missing tracks: traversal reads a NaN-filled copy of x (and, for float32,
    # packed node words); GEMM runs the general per-node tests
    rng = np.random.RandomState(7)
    model = legacy_model("regressor", rng, modes=(mode,), missing=True, n_trees=9, depth=6)
    x = grid_inputs(rng, 400, nan=True, dtype=dtype)
    x[::7, 0] = np.inf
    x[::11, 1] = -np.inf
    expected = bridge.from_onnx(model, tree_strategy="gemm")(torch.from_numpy(x))
    actual = bridge.from_onnx(model, tree_strategy="traversal")(torch.from_numpy(x))
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)


def test_missing_fill_refuses_strict_tests_at_infinite_thresholds():
    from bridge.trees.ensemble import BRANCH_GT, BRANCH_LEQ, BRANCH_LT
    from bridge.trees.traversal import _missing_fill

    tracked = np.array([True, False])
    assert _missing_fill(np.array([BRANCH_LEQ] * 2), np.array([-np.inf, 1.0]), tracked) == (
        -np.inf)
    assert _missing_fill(np.array([BRANCH_LT] * 2), np.array([1.0, 2.0]), tracked) == -np.inf
    assert _missing_fill(np.array([BRANCH_LT] * 2), np.array([-np.inf, 2.0]), tracked) is None
    assert _missing_fill(np.array([BRANCH_GT] * 2), np.array([np.inf, 2.0]), tracked) is None
    assert _missing_fill(np.array([BRANCH_LEQ, BRANCH_LT]), np.zeros(2), tracked) is None
    assert _missing_fill(np.array([BRANCH_LEQ] * 2), np.zeros(2), ~tracked | tracked) == -np.inf
    assert _missing_fill(np.array([BRANCH_LEQ] * 2), np.zeros(2), np.zeros(2, bool)) is None


def test_traversal_skips_finished_shallow_trees():
    rng = np.random.RandomState(3)
    model = legacy_model("regressor", rng, n_trees=12, depth=7)
    _, trees = forest_module(model, "traversal")
    walker = trees.strategies["traversal"]
    assert walker.active == sorted(walker.active, reverse=True)
    assert walker.active[0] == 12
    x = torch.from_numpy(grid_inputs(rng, 300))
    torch.testing.assert_close(bridge.from_onnx(model, tree_strategy="traversal")(x),
                               bridge.from_onnx(model, tree_strategy="gemm")(x))
