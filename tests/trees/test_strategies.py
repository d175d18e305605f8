"""The strategies agree with each other; the selection rule, size limits and devices."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch

import bridge
from bridge.errors import ConversionError
from bridge.trees import TreeEnsembleModule, choose_strategy, validate_strategy
from bridge.trees.select import (
    ForestShape,
    auto_candidates,
    estimated_cpu_fused_microseconds,
    estimated_cpu_microseconds,
    estimated_cuda_microseconds,
)
from tests.onnx.ops.ml.test_tree import grid_inputs, legacy_model, tree_ensemble_model
from tests.parity import run_onnxruntime


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


def test_cuda_chunks_hold_more_rows():
    # a chunk costs its launches on a GPU, where memory is not the CPU's cache
    _, trees = forest_module(legacy_model("regressor", np.random.RandomState(0), n_trees=50,
                                          depth=6), "traversal")
    cpu = trees.rows_per_chunk("traversal", "cpu")
    assert cpu == trees.chunk_rows["traversal"] < 100_000
    assert trees.rows_per_chunk("traversal", "cuda") >= 60 * cpu
    for name in trees.strategies:  # every strategy, bit-vectors included: at most 2**25
        assert trees.rows_per_chunk(name, "cuda") * 50 <= 2**25


GB3 = ForestShape(depth=3, n_trees=100, tree_size=7 * 8, mean_depth=3.0,
                  mean_depth_below_top=0.0, groups=20)
HGB = ForestShape(depth=14, n_trees=100, tree_size=30 * 31, mean_depth=8.7,
                  mean_depth_below_top=5.7, groups=20)
RF8 = ForestShape(depth=8, n_trees=100, tree_size=255 * 256, mean_depth=8.0,
                  mean_depth_below_top=5.0, groups=20, word_bits=64)
WIDE = ForestShape(depth=13, n_trees=100, tree_size=30 * 31, mean_depth=8.7,
                   mean_depth_below_top=5.7, groups=100)
DEEP = ForestShape(depth=20, n_trees=1, tree_size=10**7, mean_depth=20.0,
                   mean_depth_below_top=17.0, groups=20, word_bits=64, n_features=20)
EVERY = ("gemm", "traversal", "perfect", "lookup", "bitvector")


def test_rule_picks_gemm_for_small_trees_at_small_batches():
    assert choose_strategy(GB3, batch=1, device_type="cpu", available=EVERY) == "gemm"
    assert choose_strategy(HGB, batch=32, device_type="cpu", available=EVERY) == "gemm"
    assert choose_strategy(RF8, batch=1, device_type="cpu", available=EVERY) != "gemm"
    assert "gemm" not in auto_candidates(RF8, bitvector_possible=False)


def test_rule_follows_the_measured_cpu_costs():
    # benchmarks/trees.py: depth-3 boosting -> lookup (9 vs 17 ms traversal at 10k rows);
    # HistGradientBoosting on 20 features -> bit-vectors (16 vs 46 ms); the same on 100
    # features and a depth-8 forest -> lookup's walk
    assert choose_strategy(GB3, batch=10_000, device_type="cpu", available=EVERY) == "lookup"
    assert choose_strategy(HGB, batch=10_000, device_type="cpu", available=EVERY) == "bitvector"
    assert choose_strategy(WIDE, batch=10_000, device_type="cpu", available=EVERY) == "lookup"
    assert choose_strategy(RF8, batch=10_000, device_type="cpu",
                           available=("traversal", "lookup")) == "lookup"
    assert choose_strategy(HGB, batch=10_000, device_type="cpu",
                           available=("traversal",)) == "traversal"
    # one deep tree: lookup's transposed copy of the input costs more than three levels
    for batch in (100, 100_000):
        assert choose_strategy(DEEP, batch=batch, device_type="cpu",
                               available=("traversal", "lookup")) == "traversal"
    # at one row the walk's launches decide (lookup's top launches as many ops)
    assert choose_strategy(RF8, batch=1, device_type="cpu",
                           available=("traversal", "lookup")) == "traversal"
    assert (estimated_cpu_microseconds("lookup", GB3, 10_000)
            < estimated_cpu_microseconds("traversal", GB3, 10_000))


def test_cuda_rule_follows_the_measured_h100_costs():
    # benchmarks/results/trees-matrix-h100-eager.md, torch operations only: GEMM at 100 rows,
    # depth-3 boosting on 100 features -> lookup, 20 features at 100k rows -> bit-vectors
    wide_gb3 = replace(GB3, groups=88)
    assert choose_strategy(GB3, batch=100, device_type="cuda", available=EVERY) == "gemm"
    assert choose_strategy(wide_gb3, batch=10_000, device_type="cuda",
                           available=EVERY) == "lookup"
    assert choose_strategy(HGB, batch=100_000, device_type="cuda",
                           available=EVERY) == "bitvector"
    assert choose_strategy(RF8, batch=1, device_type="cuda", available=EVERY) != "gemm"
    assert "perfect" not in auto_candidates(HGB, bitvector_possible=True)
    for shape in (GB3, HGB, RF8, WIDE, DEEP):
        assert (estimated_cuda_microseconds("traversal", shape, 10**5)
                > estimated_cuda_microseconds("traversal", shape, 100))


@pytest.mark.parametrize("batch", [1, 100, 100_000])
def test_cuda_rule_takes_the_fused_walk(batch):
    for shape in (GB3, HGB, RF8, DEEP):
        assert choose_strategy(shape, batch=batch, device_type="cuda", available=EVERY,
                               fused_walk=True) == "traversal"


def test_cpu_rule_with_the_c_walk_follows_its_measured_costs():
    # benchmarks/results/trees-vm.md and trees-matrix-vm.md (session 6, C walk built): it beats
    # GEMM at 1 row and lookup on every forest but depth-3 boosting, where they tie (6.8 vs
    # 6.4-7.0 ns per row and tree); bit-vectors win on HistGradientBoosting over 20 features
    # (14.5 vs 20.6 ns at 100k rows)
    def pick(shape, batch, available=EVERY):
        return choose_strategy(shape, batch=batch, device_type="cpu", available=available,
                               fused_walk=True)

    for shape in (GB3, HGB, RF8, DEEP):
        assert pick(shape, 1) == "traversal"
    for shape in (GB3, RF8, DEEP, WIDE):
        assert pick(shape, 10_000) == "traversal"
    assert pick(HGB, 100_000) == "bitvector"
    assert pick(HGB, 100_000, available=("traversal", "lookup")) == "traversal"
    assert (estimated_cpu_fused_microseconds("traversal", DEEP, 10_000)
            < estimated_cpu_microseconds("traversal", DEEP, 10_000) / 2)
    assert (estimated_cpu_fused_microseconds("lookup", GB3, 10_000)
            == estimated_cpu_microseconds("lookup", GB3, 10_000))
    # without it (a traced call, or no C compiler), the torch-operation model: GEMM at 1 row
    assert choose_strategy(GB3, batch=1, device_type="cpu", available=EVERY) == "gemm"


def test_bitvector_limits_are_clear_errors():
    rng = np.random.RandomState(0)
    equality = legacy_model("regressor", rng, modes=("BRANCH_EQ", "BRANCH_LEQ"))
    with pytest.raises(ConversionError, match="equality or set-membership"):
        bridge.from_onnx(equality, tree_strategy="bitvector")
    deep = chain_model(65, rng)
    with pytest.raises(ConversionError, match="at most 64"):
        bridge.from_onnx(deep, tree_strategy="bitvector")
    # 'auto' simply does not consider it
    module, trees = forest_module(deep, "auto")
    assert "bitvector" not in trees.strategies


@pytest.mark.parametrize("leaves", [32, 33, 64])
def test_bitvector_reaches_every_bit_of_its_words(leaves):
    # 32 leaves use the int32 sign bit, 64 the int64 sign bit; every leaf is reached
    rng = np.random.RandomState(leaves)
    model = chain_model(leaves, rng)
    x = np.zeros((2 * leaves + 8, 3), dtype=np.float32)
    x[: 2 * leaves + 4, 0] = np.arange(-2, 2 * leaves + 2) / 2.0  # every threshold, tied too
    x[-4:, 0] = [np.inf, -np.inf, -0.0, np.nan]
    expected = run_onnxruntime(model, {"X": x})[0]
    actual = bridge.from_onnx(model, tree_strategy="bitvector")(torch.from_numpy(x))
    np.testing.assert_array_equal(actual.numpy(), expected)
    assert len(np.unique(expected)) == leaves


def test_lookup_and_bitvector_agree_with_float64_inputs():
    rng = np.random.RandomState(3)
    general = tree_ensemble_model(rng, n_trees=7, depth=5, n_targets=2)  # every mode
    ordered = legacy_model("regressor", rng, n_trees=7, depth=5, missing=True,
                           modes=("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT"))
    x = torch.from_numpy(grid_inputs(rng, 300, nan=True).astype(np.float64))
    for model, strategies in ((general, ("lookup",)), (ordered, ("lookup", "bitvector"))):
        expected = bridge.from_onnx(model, tree_strategy="traversal")(x)
        for strategy in strategies:
            actual = bridge.from_onnx(model, tree_strategy=strategy)(x)
            torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def one_node_model(node):
    """A model of one TreeEnsembleRegressor ``node``: X [N, 3] float -> Y [N, 1]."""
    from onnx import helper

    graph = helper.make_graph(
        [node], "trees", [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    return model


def chain_model(leaves, rng):
    """One regressor tree with exactly ``leaves`` leaves, all reachable: a chain of tests on
    x0 with rising thresholds 0, 1, 2, ... (<= or > at random, some tracking NaN to the true
    branch), each sending one side to a leaf and the other down the chain."""
    from onnx import helper

    splits = leaves - 1
    ids, true_ids, false_ids, modes, weights_of = [], [], [], [], {}
    for k in range(splits):
        node, leaf, down = 2 * k, 2 * k + 1, 2 * k + 2
        leq = rng.rand() < 0.5  # x0 <= k holds -> leaf; x0 > k fails -> leaf
        ids.append(node)
        true_ids.append(leaf if leq else down)
        false_ids.append(down if leq else leaf)
        modes.append("BRANCH_LEQ" if leq else "BRANCH_GT")
        weights_of[leaf] = float(k)
    weights_of[2 * splits] = float(splits)
    leaf_ids = sorted(weights_of)
    every = ids + leaf_ids
    inner = len(ids)
    node = helper.make_node(
        "TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml",
        nodes_treeids=[0] * len(every), nodes_nodeids=every,
        nodes_featureids=[0] * len(every),
        nodes_values=[float(k) for k in range(inner)] + [0.0] * len(leaf_ids),
        nodes_truenodeids=true_ids + [0] * len(leaf_ids),
        nodes_falsenodeids=false_ids + [0] * len(leaf_ids),
        nodes_modes=modes + ["LEAF"] * len(leaf_ids),
        nodes_missing_value_tracks_true=[int(rng.rand() < 0.3) for _ in ids] + [0] * len(
            leaf_ids),
        target_ids=[0] * len(leaf_ids), target_nodeids=leaf_ids,
        target_treeids=[0] * len(leaf_ids), target_weights=[weights_of[n] for n in leaf_ids],
        n_targets=1)
    return one_node_model(node)


def test_auto_records_its_choice():
    rng = np.random.RandomState(0)
    module, trees = forest_module(legacy_model("regressor", rng, depth=2), "auto")
    x = torch.from_numpy(grid_inputs(rng, 8))
    module(x)
    fused = trees.strategies["traversal"].kernel_runs(x)  # the C walk, where it is built
    assert trees.last_strategy == trees.choose(8, "cpu", fused)


def test_validate_strategy_lists_choices():
    assert validate_strategy("perfect") == "perfect"
    with pytest.raises(ValueError, match="'auto', 'gemm', 'traversal', 'perfect', 'lookup'"):
        validate_strategy("GEMM")


def test_forced_strategy_over_its_size_limit_raises(monkeypatch):
    import bridge.trees.module as module_file

    monkeypatch.setattr(module_file, "PERFECT_LIMIT", 10)
    rng = np.random.RandomState(0)
    with pytest.raises(ConversionError, match="tree_strategy='perfect'"):
        bridge.from_onnx(legacy_model("regressor", rng, depth=4), tree_strategy="perfect")


@pytest.mark.parametrize("strategy", EVERY + ("auto",))
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_an_empty_batch_gives_empty_outputs(strategy, kind):
    model = legacy_model(kind, np.random.RandomState(0), n_outputs=3)
    x = np.zeros((0, 3), dtype=np.float32)
    expected = run_onnxruntime(model, {model.graph.input[0].name: x})
    with torch.no_grad():
        got = bridge.from_onnx(model, tree_strategy=strategy)(torch.from_numpy(x))
    got = got if isinstance(got, tuple) else (got,)
    assert [tuple(t.shape) for t in got] == [e.shape for e in expected]


def test_too_few_features_is_a_clear_error():
    rng = np.random.RandomState(0)
    module = bridge.from_onnx(legacy_model("regressor", rng, n_features=3))
    with pytest.raises(ValueError, match=r"graph input 'X' has shape \(\?, 3\); got \(2, 1\)"):
        module(torch.zeros(2, 1))  # the graph's declared width, checked on entry
    trees = [m for m in module.modules() if isinstance(m, TreeEnsembleModule)][0]
    with pytest.raises(ValueError, match="F >= "):
        trees(torch.zeros(2, 1))  # the tree module alone checks its own width


def test_integer_inputs_compare_as_float():
    rng = np.random.RandomState(0)
    model = legacy_model("regressor", rng, n_features=3)
    module = bridge.from_onnx(model)
    x = grid_inputs(rng, 32).round()
    torch.testing.assert_close(module(torch.from_numpy(x.astype(np.int64))),
                               module(torch.from_numpy(x)))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("strategy", EVERY + ("auto",))
def test_cuda_matches_cpu(strategy):
    rng = np.random.RandomState(1)
    if strategy == "bitvector":  # ordering tests only
        model = legacy_model("regressor", rng, n_trees=5, depth=5, missing=True,
                             modes=("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT"))
    else:
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


def two_tree_model(mode):
    """Two trees of one ``mode``: a stump on x2 and a depth-2 tree on x1 then x2 whose
    false branch ends at depth 1 (that walk stays put for a level). Leaves read feature 0
    in the walk's tables, so x0 is where NaN and infinities go to show that they never
    move a walk off its leaf."""
    from onnx import helper

    node = helper.make_node(
        "TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml",
        nodes_treeids=[0, 0, 0, 1, 1, 1, 1, 1], nodes_nodeids=[0, 1, 2, 0, 1, 2, 3, 4],
        nodes_featureids=[2, 0, 0, 1, 2, 0, 0, 0],
        nodes_values=[-0.5, 0.0, 0.0, 1.5, 0.0, 0.0, 0.0, 0.0],
        nodes_modes=[mode, "LEAF", "LEAF", mode, mode, "LEAF", "LEAF", "LEAF"],
        nodes_truenodeids=[1, 0, 0, 1, 3, 0, 0, 0], nodes_falsenodeids=[2, 0, 0, 2, 4, 0, 0, 0],
        target_ids=[0] * 5, target_nodeids=[1, 2, 2, 3, 4], target_treeids=[0, 0, 1, 1, 1],
        target_weights=[10.0, 20.0, 1.0, 2.0, 3.0], n_targets=1)
    return one_node_model(node)


@pytest.mark.parametrize("mode", ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT",
                                  "BRANCH_EQ", "BRANCH_NEQ"])
def test_leaves_hold_whatever_the_row_holds(mode):
    # a terminal slot compares feature 0 with a NaN threshold (true only under "!=", where
    # its first child is one slot back): NaN and infinities in x0 must not move a walk
    model = two_tree_model(mode)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, 1.5, -3.0], np.float32)
    grid = np.array(np.meshgrid(specials, [0.0, 1.5, 2.0, -1.0], [0.0, 1.0, -1.0]),
                    np.float32).reshape(3, -1).T.copy()
    expected = run_onnxruntime(model, {"X": grid})[0]
    for strategy in ("gemm", "traversal", "perfect", "lookup"):
        actual = bridge.from_onnx(model, tree_strategy=strategy)(torch.from_numpy(grid))
        np.testing.assert_allclose(actual.numpy(), expected, rtol=1e-6, err_msg=strategy)


def test_wide_and_strided_inputs_read_the_right_columns():
    # the walk reads a contiguous x in place with its own row stride; other layouts are
    # copied first
    rng = np.random.RandomState(5)
    model = legacy_model("regressor", rng, n_trees=7, depth=6)
    x = grid_inputs(rng, 300)
    expected = run_onnxruntime(model, {"X": x})[0]
    wide = np.concatenate([x, rng.randn(300, 4).astype(np.float32)], 1)
    transposed = torch.from_numpy(x.T.copy()).t()  # a non-contiguous [300, 3] view
    for strategy in ("traversal", "perfect", "lookup"):
        _, trees = forest_module(model, strategy)
        for layout in (torch.from_numpy(wide), transposed):
            scores, _ = trees(layout)
            np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-5, atol=1e-6,
                                       err_msg=strategy)


@pytest.mark.parametrize("strategy", ["gemm", "traversal", "perfect", "lookup", "bitvector"])
def test_one_class_trees_give_static_flags_and_per_class_sums(strategy):
    # gradient boosting's multiclass trees each score one class at every leaf: every row
    # has a score for every class (no flags to gather), and each class sums only its own
    # trees (found through each strategy's tree order); leaves that miss outputs at random
    # (legacy_model's classifiers) leave the flags to be gathered per call
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.RandomState(2)
    x = rng.randn(300, 4).astype(np.float32)
    estimator = GradientBoostingClassifier(n_estimators=5, max_depth=4, random_state=0).fit(
        x, (x[:, 0] > 0).astype(int) + (x[:, 1] > 0))
    converted = bridge.from_sklearn(estimator, tree_strategy=strategy)
    trees = [m for m in converted.modules() if isinstance(m, TreeEnsembleModule)][0]
    aggregator = trees.aggregators[strategy]
    assert aggregator.static_has
    assert all(name is not None for name in aggregator.output_trees)
    np.testing.assert_allclose(converted.predict_proba(x), estimator.predict_proba(x),
                               rtol=1e-4, atol=1e-5)
    model = legacy_model("classifier", rng, n_outputs=3)
    _, trees = forest_module(model, "traversal")
    assert not trees.aggregators["traversal"].static_has


def test_auto_remembers_its_picks_within_a_bound(monkeypatch):
    import bridge.trees.module as module_file

    monkeypatch.setattr(module_file, "REMEMBERED_CHOICES", 4)
    rng = np.random.RandomState(1)
    module, trees = forest_module(legacy_model("regressor", rng, depth=3), "auto")
    x = torch.from_numpy(grid_inputs(rng, 40))
    for batch in range(1, 11):
        module(x[:batch])
        fresh = choose_strategy(trees.shape, batch=batch, device_type="cpu",
                                available=tuple(trees.strategies),
                                fused_walk=trees.strategies["traversal"].kernel_runs(x))
        assert trees.last_strategy == fresh
        assert len(trees.choices) <= 4
