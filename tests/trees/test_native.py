"""The C walk (bridge/trees/native.py, _walk.c) against the torch walk it replaces on CPU.

Without a C compiler at install time the extension is absent: these tests then skip, except
the ones showing that bridge falls back to the torch walk.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bridge
from bridge.trees import fused, native
from tests.onnx.ops.ml.test_tree import grid_inputs, legacy_model
from tests.trees.test_kernel import forest, fused_walk, fused_walk_cases, traversal_of

built = pytest.mark.skipif(native._walk is None, reason="the C walk is not built here")


@built
def test_c_walk_matches_the_torch_walk_on_every_mode():
    checked = 0
    for walk, x, expected, case in fused_walk_cases():
        actual = fused_walk(native.walk, walk, x)
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        assert torch.equal(actual, expected), case
        checked += 1
    assert checked == 20


@built
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_int64_tables_walk_alike(dtype):
    # forests of 2**31 slots or more get int64 tables; the same loop runs on them
    walk = traversal_of(bridge.from_onnx(forest("BRANCH_LT", True), tree_strategy="traversal"))
    x = torch.from_numpy(grid_inputs(np.random.RandomState(4), 300, n_features=4,
                                     nan=True)).to(dtype)
    narrow = fused_walk(native.walk, walk, x)
    for name in ("feature", "first_child", "roots"):
        setattr(walk, name, getattr(walk, name).long())
    wide = fused_walk(native.walk, walk, x)
    assert wide.dtype == torch.int64 and torch.equal(wide, narrow.long())


@built
def test_deep_unbalanced_trees_and_partial_blocks():
    # depth 14 with shallow leaves: blocks stop when all their walks are at leaves; 1000 rows
    # are 15 full blocks of 64 and one partial one
    rng = np.random.RandomState(5)
    model = legacy_model("regressor", rng, n_trees=5, depth=14, n_features=3)
    walk = traversal_of(bridge.from_onnx(model, tree_strategy="traversal"))
    x = torch.from_numpy(grid_inputs(rng, 1000))
    with fused.switched_off():
        expected = walk(x)
    assert torch.equal(walk(x), expected)
    assert torch.equal(walk(x[:1]), expected[:, :1])


@built
def test_cpu_traversal_runs_the_c_walk_unless_switched_off(monkeypatch):
    calls = []
    original = native.walk
    monkeypatch.setattr(native, "walk", lambda *a, **k: calls.append(1) or original(*a, **k))
    module = bridge.from_onnx(forest("BRANCH_GTE", True), tree_strategy="traversal")
    x = torch.from_numpy(grid_inputs(np.random.RandomState(6), 100, n_features=4, nan=True))
    result = module(x)
    assert calls == [1]
    with fused.switched_off():
        assert torch.equal(module(x), result)
    assert calls == [1]


def test_without_the_extension_the_torch_walk_runs(monkeypatch):
    model = forest("BRANCH_LEQ", True)
    x = torch.from_numpy(grid_inputs(np.random.RandomState(7), 100, n_features=4, nan=True))
    expected = bridge.from_onnx(model, tree_strategy="traversal")(x)
    monkeypatch.setattr(native, "_walk", None)
    assert not native.available()
    module = bridge.from_onnx(model, tree_strategy="traversal")
    assert not traversal_of(module).kernel_runs(x)
    torch.testing.assert_close(module(x), expected)
    with pytest.raises(RuntimeError, match="not built"):
        fused_walk(native.walk, traversal_of(module), x)


def tables(**changes):
    """A one-tree forest (x[:, 0] <= 0.5 ? slot 2 : slot 1) as the walk's tables."""
    nan = float("nan")
    table = {"feature": torch.tensor([0, 0, 0], dtype=torch.int32),
             "threshold": torch.tensor([0.5, nan, nan]),
             "first_child": torch.tensor([1, 1, 2], dtype=torch.int32),
             "roots": torch.tensor([0], dtype=torch.int32),
             "depths": torch.tensor([1], dtype=torch.int32), "mode": 0}
    table.update(changes)
    return table


@built
def test_a_hand_built_tree_and_empty_calls():
    x = torch.tensor([[0.0], [1.0], [float("nan")], [0.5]])
    assert native.walk(x, **tables()).tolist() == [[2, 1, 1, 2]]
    assert native.walk(x[:0], **tables()).shape == (1, 0)
    no_trees = tables(roots=torch.zeros(0, dtype=torch.int32),
                      depths=torch.zeros(0, dtype=torch.int32))
    assert native.walk(x, **no_trees).shape == (0, 4)


@built
def test_a_single_leaf_tree_under_not_equal_stays_at_its_root():
    # under "!=" a terminal slot's first child is the slot before it: -1 for a leaf at slot 0
    leaf = tables(feature=torch.tensor([0], dtype=torch.int32),
                  threshold=torch.tensor([float("nan")]),
                  first_child=torch.tensor([-1], dtype=torch.int32), depths=torch.tensor(
                      [3], dtype=torch.int32), mode=5)
    x = torch.tensor([[0.0], [float("nan")]])
    assert native.walk(x, **leaf).tolist() == [[0, 0]]


@built
@pytest.mark.parametrize("changes", [
    {"feature": torch.tensor([3, 0, 0], dtype=torch.int32)},  # a column x does not have
    {"feature": torch.tensor([-1, 0, 0], dtype=torch.int32)},
    {"first_child": torch.tensor([2, 1, 2], dtype=torch.int32)},  # true child = slot 3
    {"first_child": torch.tensor([1, 1, -1], dtype=torch.int32)},  # a leaf stepping to -1
    {"threshold": torch.tensor([0.5, float("nan"), 0.0])},  # leaf 2 could step to slot 3
    {"roots": torch.tensor([3], dtype=torch.int32)},
    {"roots": torch.tensor([-2], dtype=torch.int32)},
])
def test_tables_that_lead_outside_are_an_index_error(changes):
    x = torch.tensor([[0.0], [1.0]])
    with pytest.raises(IndexError, match=r"slot outside 0\.\.2 or read a column outside 0\.\.0"):
        native.walk(x, **tables(**changes))


@built
@pytest.mark.parametrize("changes, message", [
    ({"threshold": torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64)}, "threshold is"),
    ({"feature": torch.tensor([0, 0, 0], dtype=torch.int64)}, "must share int32 or int64"),
    ({"first_child": torch.tensor([1, 1, 2], dtype=torch.int16)}, "must share int32 or int64"),
    ({"depths": torch.tensor([1], dtype=torch.int64)}, "depths must be int32"),
    ({"depths": torch.tensor([1, 1], dtype=torch.int32)}, "one entry per root"),
    ({"feature": torch.tensor([0, 0], dtype=torch.int32)}, "one entry per slot"),
    ({"mode": 6}, "not a branch mode"),
    ({"feature": torch.zeros(3, dtype=torch.int32, device="meta")}, "on meta"),
])
def test_bad_arguments_are_a_value_error(changes, message):
    with pytest.raises(ValueError, match=message):
        native.walk(torch.tensor([[0.0], [1.0]]), **tables(**changes))


@built
def test_x_must_be_a_float_matrix():
    with pytest.raises(ValueError, match="2-D float32/float64"):
        native.walk(torch.tensor([[0], [1]]), **tables())
    with pytest.raises(ValueError, match="2-D float32/float64"):
        native.walk(torch.tensor([0.0, 1.0]), **tables())


@built
def test_strided_inputs_are_read_right():
    x = torch.tensor([[9.0, 0.0], [9.0, 1.0], [9.0, 0.25]])
    column = x[:, 1:]  # stride 2 between rows
    assert native.walk(column, **tables()).tolist() == [[2, 1, 2]]
    assert native.walk(x.t().contiguous().t()[:, 1:], **tables()).tolist() == [[2, 1, 2]]


def test_the_environment_switch_turns_the_c_walk_off(monkeypatch):
    monkeypatch.setenv(fused.SWITCH, "1")
    assert native.available() == (native._walk is not None)
    monkeypatch.setenv(fused.SWITCH, "0")
    assert not native.available()


class Recorder:
    """Stands in for the extension, recording whether each call checked the tables."""

    def __init__(self, extension):
        self.extension, self.checks = extension, []

    def walk(self, *arguments):
        self.checks.append(arguments[-1])
        return self.extension.walk(*arguments)

    def walk_sum(self, *arguments):
        self.checks.append(arguments[-1])
        return self.extension.walk_sum(*arguments)


@built
def test_tables_are_checked_again_only_when_they_change(monkeypatch):
    recorder = Recorder(native._walk)
    monkeypatch.setattr(native, "_walk", recorder)
    module = bridge.from_onnx(forest("BRANCH_LEQ", False), tree_strategy="traversal")
    walk = traversal_of(module)
    x = torch.from_numpy(grid_inputs(np.random.RandomState(8), 50, n_features=4))
    module(x)
    module(x)
    assert recorder.checks == [True, False]
    walk(x.double())  # other thresholds, other dtype: checked
    walk(torch.cat([x, x], 1))  # another width: checked
    assert recorder.checks[2:] == [True, True]
    with torch.no_grad():
        walk.feature[0] = 99  # an in-place edit bumps the version: checked, and refused
    with pytest.raises(IndexError, match="column outside"):
        module(x)


@built
def test_a_loaded_state_with_bad_tables_is_refused_not_walked():
    module = bridge.from_onnx(forest("BRANCH_LEQ", False), tree_strategy="traversal")
    x = torch.from_numpy(grid_inputs(np.random.RandomState(9), 50, n_features=4))
    module(x)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    key = next(k for k in state if k.endswith("traversal.first_child"))
    state[key][0] = 10**6
    module.load_state_dict(state)
    with pytest.raises(IndexError, match="slot outside"):
        module(x)


@built
def test_copies_check_their_own_tables():
    import copy
    import pickle

    module = bridge.from_onnx(forest("BRANCH_GT", False), tree_strategy="traversal")
    x = torch.from_numpy(grid_inputs(np.random.RandomState(10), 50, n_features=4))
    expected = module(x)
    for twin in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        assert traversal_of(twin).checked_tables._state is None
        torch.testing.assert_close(twin(x), expected)


def test_tree_and_svm_models_run_under_inference_mode_then_with_autograd():
    """Tables checked or derived under torch.inference_mode are not kept (inference tensors
    have no version counter), so inference-mode calls work and later autograd calls too."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.svm import SVC

    import bridge

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    for estimator in (RandomForestClassifier(5, max_depth=3, random_state=0).fit(X, y),
                      SVC(probability=True, random_state=0).fit(X, y)):
        model = bridge.from_sklearn(estimator)
        with torch.inference_mode():
            inside = model.predict_proba(torch.from_numpy(X))
        outside = model.predict_proba(torch.from_numpy(X))
        torch.testing.assert_close(inside, outside)
        if isinstance(estimator, SVC):
            x = torch.from_numpy(X[:3]).requires_grad_(True)
            model.predict_proba(x).sum().backward()
            assert x.grad is not None
