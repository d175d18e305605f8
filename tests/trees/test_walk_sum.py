"""The C walk with the leaf sums in its loop (native.walk_sum) against the walk and a sum.

walk_sum must add, per row, the reached leaves' values tree by tree in the forest's order in
the input's dtype: checked bit for bit against that sum written out in numpy. Whole modules
that take it (SUM/AVERAGE forests whose outputs every row scores: scikit-learn's forests and
boosting) must match the same modules with the torch aggregation and with the torch walk.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)

import bridge
from bridge.trees import TreeEnsembleModule, fused, native, serving
from bridge.trees.aggregate import LeafAggregator
from bridge.trees.traversal import filled_rows
from tests.trees.test_kernel import fused_walk_cases, traversal_of
from tests.trees.test_native import tables

built = pytest.mark.skipif(native._walk is None, reason="the C walk is not built here")


def summed(walk, x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """:func:`native.walk_sum` on ``walk``'s tables, trees in the forest's order."""
    filled = filled_rows(x, walk.n_features, walk.missing_fill)
    return native.walk_sum(filled, walk.feature, walk.tests.thresholds(filled.dtype),
                           walk.first_child, walk.roots[walk.forest_rank],
                           walk.depths[walk.forest_rank], walk.tests.single_mode, values)


@built
def test_walk_sum_adds_leaf_values_in_forest_order_bit_for_bit():
    checked = 0
    for walk, x, slots, case in fused_walk_cases():
        rng = np.random.default_rng(checked)
        dtype = x.numpy().dtype
        values = rng.normal(size=(walk.first_child.numel(), 3)).astype(dtype) * 10.0 ** rng.integers(
            -3, 4, size=(walk.first_child.numel(), 1))
        actual = summed(walk, x, torch.from_numpy(values.astype(dtype)))
        expected = np.zeros((x.shape[0], 3), dtype=dtype)
        by_tree = slots.numpy()[np.argsort(walk.tree_order)]  # rows of slots in forest order
        for tree_slots in by_tree:
            expected = expected + values.astype(dtype)[tree_slots]  # one rounding per add
        assert actual.dtype == x.dtype
        np.testing.assert_array_equal(actual.numpy(), expected, err_msg=str(case))
        checked += 1
    assert checked == 20


@built
def test_walk_sum_of_no_rows_and_of_no_trees():
    x = torch.tensor([[0.0], [1.0], [0.5]])
    values = torch.tensor([[0.0, 0.0], [1.0, 10.0], [2.0, 20.0]])
    assert native.walk_sum(x, **tables(), values=values).tolist() == [
        [2.0, 20.0], [1.0, 10.0], [2.0, 20.0]]
    assert native.walk_sum(x[:0], **tables(), values=values).shape == (0, 2)
    no_trees = tables(roots=torch.zeros(0, dtype=torch.int32),
                      depths=torch.zeros(0, dtype=torch.int32))
    assert native.walk_sum(x, **no_trees, values=values).tolist() == [[0.0, 0.0]] * 3


@built
@pytest.mark.parametrize("values, message", [
    (torch.zeros(2, 2), "one row per slot"),
    (torch.zeros(3, 2, dtype=torch.float64), "float32 matrix"),
    (torch.zeros(3), "matrix"),
    (torch.zeros(3, 2, device="meta"), "on meta"),
])
def test_bad_values_are_a_value_error(values, message):
    with pytest.raises(ValueError, match=message):
        native.walk_sum(torch.tensor([[0.0]]), **tables(), values=values)


@built
def test_corrupt_tables_are_refused_before_summing():
    values = torch.zeros(3, 2)
    bad = tables(first_child=torch.tensor([2, 1, 2], dtype=torch.int32))
    with pytest.raises(IndexError, match="slot outside"):
        native.walk_sum(torch.tensor([[0.0]]), **bad, values=values)
    checked = native.CheckedTables()
    good = tables()
    x = torch.tensor([[0.0], [1.0]])
    native.walk_sum(x, **good, values=values, checked=checked)
    good["first_child"][0] = 7  # an in-place edit: checked again, and refused
    with pytest.raises(IndexError, match="slot outside"):
        native.walk_sum(x, **good, values=values, checked=checked)


def sklearn_cases():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    y3 = (x[:, 0] > 0.3).astype(int) + (x[:, 1] > 0).astype(int)
    yield "rf3", RandomForestClassifier(20, max_depth=6, random_state=0).fit(x, y3), x
    yield "rf2", RandomForestClassifier(10, random_state=0).fit(x, x[:, 2] > 0), x
    yield "gb3", GradientBoostingClassifier(n_estimators=15, random_state=0).fit(x, y3), x
    yield "gb2", GradientBoostingClassifier(n_estimators=15, random_state=0).fit(x, y3 > 0), x
    yield "hgb3", HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(x, y3), x
    yield "rfr", RandomForestRegressor(10, max_depth=5, random_state=0).fit(x, x[:, 0]), x
    targets = np.stack([x[:, 0], x[:, 1] * x[:, 2]], 1)
    yield "etr2", ExtraTreesRegressor(10, max_depth=5, random_state=0).fit(x, targets), x


def outputs(model, method: str, x: np.ndarray) -> np.ndarray:
    return getattr(model, method)(x)


def without_serving(patch) -> None:
    """Turn the one-call C path (bridge/trees/serving.py) off: the operators' modules run."""
    patch.setattr(serving, "_forest", lambda *args: serving.UNSUPPORTED)


@built
@pytest.mark.parametrize("case", list(sklearn_cases()), ids=lambda case: case[0])
def test_models_summing_in_the_walk_match_the_torch_aggregation(monkeypatch, case):
    name, estimator, x = case
    model = bridge.from_sklearn(estimator)
    method = "predict_proba" if hasattr(estimator, "predict_proba") else "predict"
    served, calls = [], []
    forest = serving._forest
    monkeypatch.setattr(serving, "_forest", lambda *a: served.append(1) or forest(*a))
    probe = x[:51].copy()
    if estimator.__sklearn_tags__().input_tags.allow_nan:
        probe[-1, ::2] = np.nan
    results = {rows: outputs(model, method, probe[:rows]) for rows in (1, 7, len(probe))}
    assert served, f"{name}: the serving call did not run"
    with monkeypatch.context() as patch:  # the operators' modules with the summing walk
        without_serving(patch)
        original = native.walk_sum
        patch.setattr(native, "walk_sum", lambda *a, **k: calls.append(1) or original(*a, **k))
        for rows, result in results.items():
            np.testing.assert_allclose(result, outputs(model, method, probe[:rows]),
                                       rtol=1e-6, atol=1e-6, err_msg=name)
        assert calls, f"{name}: the summing walk did not run"
    with monkeypatch.context() as patch:  # the C walk, leaves aggregated by torch
        without_serving(patch)
        patch.setattr(LeafAggregator, "sums_in_walk", property(lambda self: False))
        for rows, result in results.items():
            np.testing.assert_allclose(result, outputs(model, method, probe[:rows]),
                                       rtol=1e-6, atol=1e-6, err_msg=name)
    with fused.switched_off():  # the torch walk
        for rows, result in results.items():
            np.testing.assert_allclose(result, outputs(model, method, probe[:rows]),
                                       rtol=1e-6, atol=1e-6, err_msg=name)
    if method == "predict_proba":
        np.testing.assert_array_equal(model.predict(x), estimator.predict(x))


@built
def test_edited_tables_and_values_reach_the_summing_walk(monkeypatch):
    _, estimator, x = next(sklearn_cases())
    model = bridge.from_sklearn(estimator)
    trees = next(m for m in model.modules() if isinstance(m, TreeEnsembleModule))
    before = model.predict_proba(x[:20])
    with torch.no_grad():
        trees.aggregators["traversal"].values32.mul_(2.0)
        walk = traversal_of(model)
        walk.roots[0] = walk.roots[1]  # tree 1 counts twice, the first tree not at all
        walk.depths[0] = walk.depths[1]
    after = model.predict_proba(x[:20])
    with monkeypatch.context() as patch:  # the same tables, leaves aggregated by torch
        without_serving(patch)
        patch.setattr(LeafAggregator, "sums_in_walk", property(lambda self: False))
        np.testing.assert_allclose(after, model.predict_proba(x[:20]), rtol=1e-6, atol=1e-6)
    assert np.abs(after - 2 * before).max() > 1e-3


def test_without_the_extension_the_torch_walk_and_sum_run(monkeypatch):
    _, estimator, x = next(sklearn_cases())
    model = bridge.from_sklearn(estimator)
    expected = model.predict_proba(x[:30])
    monkeypatch.setattr(native, "_walk", None)
    assert not native.available()
    np.testing.assert_allclose(model.predict_proba(x[:30]), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(RuntimeError, match="not built"):
        native.walk_sum(torch.tensor([[0.0]]), **tables(), values=torch.zeros(3, 1))


@built
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["rf3", "gb3"])
def test_modules_add_up_trees_in_the_forests_order(dtype, name):
    # onnxruntime adds tree scores in the forest's order; the walk's tables sort trees by
    # depth. Gradient boosting's trees score one class each: one value per (row, tree)
    _, estimator, x = next(case for case in sklearn_cases() if case[0] == name)
    model = bridge.from_sklearn(estimator)
    trees = next(m for m in model.modules() if isinstance(m, TreeEnsembleModule))
    walk, aggregator = trees.strategies["traversal"], trees.aggregators["traversal"]
    if name == "rf3":  # trees of several depths: the walk's order is not the forest's
        assert not np.array_equal(walk.tree_order, np.arange(len(walk.tree_order)))
    rows = torch.from_numpy(x.astype(dtype))
    with torch.no_grad():
        scores, has = trees(rows)
        slots = native.walk(rows, walk.feature, walk.tests.thresholds(rows.dtype),
                            walk.first_child, walk.roots, walk.depths, walk.tests.single_mode)
    assert trees.last_strategy == "traversal" and bool(has.all())
    assert (aggregator.tree_outputs is not None) == (name == "gb3")
    values = (aggregator.values64 if dtype == np.float64 else aggregator.values32).numpy()
    expected = np.zeros(scores.shape, dtype=dtype)
    for tree, tree_slots in enumerate(slots.numpy()[np.argsort(walk.tree_order)]):
        if aggregator.tree_outputs is None:
            expected = expected + values[:, tree_slots].T
        else:
            output = int(aggregator.tree_outputs[tree])
            expected[:, output] = expected[:, output] + values[output, tree_slots]
    np.testing.assert_array_equal(scores.numpy(), expected)


@built
def test_one_value_per_tree_and_bad_tree_outputs():
    x = torch.tensor([[0.0], [1.0], [0.5]])
    values = torch.tensor([0.0, 1.0, 2.0])
    one = torch.tensor([1])
    assert native.walk_sum(x, **tables(), values=values, tree_outputs=one,
                           n_outputs=2).tolist() == [[0.0, 2.0], [0.0, 1.0], [0.0, 2.0]]
    with pytest.raises(IndexError, match="output is outside 0..1"):
        native.walk_sum(x, **tables(), values=values, tree_outputs=torch.tensor([2]),
                        n_outputs=2)
    with pytest.raises(IndexError, match="output is outside 0..1"):
        native.walk_sum(x, **tables(), values=values, tree_outputs=torch.tensor([-1]),
                        n_outputs=2)
    with pytest.raises(ValueError, match="one entry per tree"):
        native.walk_sum(x, **tables(), values=values, tree_outputs=torch.tensor([0, 1]),
                        n_outputs=2)
    with pytest.raises(ValueError, match="vector with one entry per slot"):
        native.walk_sum(x, **tables(), values=values[:2], tree_outputs=one, n_outputs=2)
