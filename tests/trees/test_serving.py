"""The one-call C path of tree-ensemble operators (bridge/trees/serving.py).

Its results must be the torch path's (labels equal, values within float32 rounding of the
transforms), for classifiers and regressors of every finish it takes; it must follow every
change of the tensors it reads (in-place edits, replaced tensors, load_state_dict, a replaced
submodule) and leave traced, autograd and inference-mode calls to the torch path.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import bridge
from bridge.onnx.ops.ml.tree import OnnxTreeEnsembleClassifier, OnnxTreeEnsembleRegressor
from bridge.trees import TreeEnsembleModule, fused, native, serving
from tests.trees.test_kernel import fused_walk_cases

built = pytest.mark.skipif(native._walk is None, reason="the C walk is not built here")


def data(seed: int = 0, rows: int = 300, features: int = 6):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    y3 = (x[:, 0] > 0.3).astype(int) + (x[:, 1] > 0).astype(int)
    return x, y3


def estimators():
    x, y3 = data()
    y2, target = y3 > 0, x[:, 0] + 0.5 * x[:, 1] * x[:, 2]
    two = np.stack([x[:, 0], x[:, 1] * x[:, 2]], 1)
    labelled = np.array(["a", "b", "c"])[y3]
    yield "rf3", RandomForestClassifier(20, max_depth=6, random_state=0).fit(x, y3)
    yield "rf2", RandomForestClassifier(10, random_state=0).fit(x, y2)
    yield "et3-strings", ExtraTreesClassifier(10, max_depth=5, random_state=0).fit(x, labelled)
    yield "tree3", DecisionTreeClassifier(max_depth=5, random_state=0).fit(x, y3)
    yield "gb3", GradientBoostingClassifier(n_estimators=15, random_state=0).fit(x, y3)
    yield "gb2", GradientBoostingClassifier(n_estimators=15, random_state=0).fit(x, y2)
    yield "hgb3", HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(x, y3)
    yield "hgb2", HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(x, y2)
    yield "rfr", RandomForestRegressor(10, max_depth=5, random_state=0).fit(x, target)
    yield "etr2", ExtraTreesRegressor(10, max_depth=5, random_state=0).fit(x, two)
    yield "gbr", GradientBoostingRegressor(n_estimators=15, random_state=0).fit(x, target)
    yield "hgbr", HistGradientBoostingRegressor(max_iter=15, random_state=0).fit(x, target)
    yield "treer", DecisionTreeRegressor(max_depth=6, random_state=0).fit(x, target)


CASES = list(estimators())


def operator_of(model) -> torch.nn.Module:
    return next(m for m in model.modules()
                if isinstance(m, (OnnxTreeEnsembleClassifier, OnnxTreeEnsembleRegressor)))


def torch_path(operator: torch.nn.Module, x: torch.Tensor):
    """The operator's modules, without the one-call path."""
    scores, has = operator.trees(x)
    result = operator.output(scores, has)
    if isinstance(operator, OnnxTreeEnsembleRegressor):
        return result.float() if not operator.input_dtype else result.to(x.dtype)
    return result


def assert_same(served, expected) -> None:
    if isinstance(expected, tuple):
        assert torch.equal(served[0], expected[0])
        served, expected = served[1], expected[1]
    assert served.dtype == expected.dtype and served.shape == expected.shape
    torch.testing.assert_close(served, expected, rtol=1e-6, atol=1e-7)


def probe(estimator, rows: int = 64) -> np.ndarray:
    x = data(seed=1, rows=rows)[0]
    if estimator.__sklearn_tags__().input_tags.allow_nan and not isinstance(
            estimator, (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier,
                        ExtraTreesRegressor, DecisionTreeClassifier, DecisionTreeRegressor)):
        x[::5, 1] = np.nan  # HistGradientBoosting tracks missing values
    return x


@built
@pytest.mark.parametrize(("name", "estimator"), CASES, ids=[c[0] for c in CASES])
def test_the_one_call_path_gives_the_torch_paths_results(name, estimator):
    operator = operator_of(bridge.from_sklearn(estimator))
    x = torch.from_numpy(probe(estimator))
    for rows in (1, 2, 7, 8, 64):  # (fewer than 8 rows walk trees in lockstep)
        with torch.no_grad():
            served = (serving.classify(operator, x[:rows])
                      if isinstance(operator, OnnxTreeEnsembleClassifier)
                      else serving.regress(operator, x[:rows]))
            assert served is not None, name
            assert_same(served, torch_path(operator, x[:rows]))
            assert_same(served, operator(x[:rows]))


@built
@pytest.mark.parametrize("name", ["rf3", "gb2", "hgb3", "rfr"])
def test_models_agree_with_scikit_learn_through_plans(name):
    estimator = dict(CASES)[name]
    model = bridge.from_sklearn(estimator)
    x = probe(estimator, 200)
    if hasattr(estimator, "predict_proba"):
        np.testing.assert_allclose(model.predict_proba(x), estimator.predict_proba(x),
                                   rtol=1e-4, atol=1e-5)
        operator = operator_of(model)  # a plan reading one output calls one method
        labels, probabilities = operator.forward_labels(torch.from_numpy(x[:3]))
        assert probabilities is None and labels.shape == (3,)
        labels, probabilities = operator.forward_probabilities(torch.from_numpy(x[:3]))
        assert labels is None and probabilities.shape[0] == 3
    np.testing.assert_array_equal(model.predict(x), estimator.predict(x)) if hasattr(
        estimator, "predict_proba") else np.testing.assert_allclose(
        model.predict(x), estimator.predict(x), rtol=1e-4, atol=1e-4)


@built
def test_float64_graphs_and_rows_of_either_dtype():
    estimator = dict(CASES)["gbr"]
    model = bridge.from_sklearn(estimator, dtype=np.float64)
    operator = operator_of(model)
    x = probe(estimator).astype(np.float64)
    for rows in (torch.from_numpy(x), torch.from_numpy(x).float()):
        with torch.no_grad():
            assert_same(serving.regress(operator, rows), torch_path(operator, rows))
    # (the legacy operator answers float32 whatever it computes in)
    np.testing.assert_allclose(model.predict(x), estimator.predict(x), rtol=1e-6, atol=1e-6)


@built
def test_the_few_rows_walk_adds_what_the_block_walk_adds_bit_for_bit():
    checked = 0
    for walk, x, _, case in fused_walk_cases():
        from tests.trees.test_walk_sum import summed
        values = torch.from_numpy(np.random.default_rng(checked).normal(
            size=(walk.first_child.numel(), 2)).astype(x.numpy().dtype))
        full = summed(walk, x, values)
        for start in (0, 5, 100):
            for rows in (1, 2, 7):
                part = summed(walk, x[start:start + rows], values)
                assert torch.equal(part, full[start:start + rows]), case
        checked += 1
    assert checked == 20


def edited_model():
    estimator = dict(CASES)["rf3"]
    model = bridge.from_sklearn(estimator)
    return model, operator_of(model), torch.from_numpy(probe(estimator))


def check_matches_torch(operator, x) -> None:
    with torch.no_grad():
        assert_same(operator(x[:1]), torch_path(operator, x[:1]))
        assert_same(operator(x), torch_path(operator, x))


@built
def test_in_place_edits_of_every_table_are_seen():
    model, operator, x = edited_model()
    trees = operator.trees
    walk, aggregator = trees.strategies["traversal"], trees.aggregators["traversal"]
    before = operator(x)[1].clone()
    edits = [
        lambda: aggregator.values32.mul_(2.0),
        lambda: walk.tests.threshold32.add_(0.25),
        lambda: (walk.roots.__setitem__(0, walk.roots[1]),
                 walk.depths.__setitem__(0, walk.depths[1])),
        lambda: operator.output.labels.add_(10),
    ]
    for edit in edits:
        with torch.no_grad():
            edit()
        check_matches_torch(operator, x)
    assert not torch.equal(operator(x)[1], before)
    assert int(operator(x[:1])[0]) >= 10


@built
def test_replaced_tensors_load_state_dict_and_replaced_modules_are_seen():
    model, operator, x = edited_model()
    aggregator = operator.trees.aggregators["traversal"]
    first = operator(x)[1].clone()
    aggregator.values32 = aggregator.values32 * 3.0  # a new tensor in the buffer's place
    check_matches_torch(operator, x)
    torch.testing.assert_close(operator(x)[1], first * 3.0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    name = next(k for k in state if k.endswith("aggregators.traversal.values32"))
    state[name] = state[name] / 3.0
    model.load_state_dict(state)
    check_matches_torch(operator, x)
    torch.testing.assert_close(operator(x)[1], first)
    model._apply(lambda t: t.clone())  # what .to() does when tensors move: all replaced
    check_matches_torch(operator, x)
    other = copy.deepcopy(aggregator)
    with torch.no_grad():
        other.values32.mul_(0.5)
    operator.trees.aggregators["traversal"] = other
    check_matches_torch(operator, x)
    torch.testing.assert_close(operator(x)[1], first * 0.5)


@built
def test_bad_tables_raise_before_walking():
    _, operator, x = edited_model()
    operator(x)
    with torch.no_grad():
        operator.trees.strategies["traversal"].feature[3] = 10_000
    with pytest.raises(IndexError, match="outside"):
        serving.classify(operator, x)


@built
def test_too_narrow_rows_raise_the_torch_paths_error_and_later_calls_are_served():
    _, operator, x = edited_model()
    with pytest.raises(ValueError, match="F >= 6"):
        operator(x[:, :4])
    assert serving.classify(operator, x) is not None


@built
def test_wider_rows_copies_and_pickles():
    model, operator, x = edited_model()
    expected = operator(x)
    wider = torch.cat([x, torch.ones(len(x), 3)], 1)
    assert_same(operator(wider), expected)
    assert_same(operator(x), expected)  # (back to the first width)
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert operator_of(other)._serving._state is None  # built anew, for its own tensors
        assert_same(operator_of(other)(x), expected)


@built
def test_autograd_inference_mode_and_tracing_keep_working():
    model, operator, x = edited_model()
    expected = torch_path(operator, x)
    rows = x.clone().requires_grad_(True)
    assert_same(operator(rows), expected)  # no graph to record through a walk
    assert_same(model.predict_proba(rows), expected[1])
    aggregator = operator.trees.aggregators["traversal"]
    aggregator.values32.requires_grad_(True)  # a table taking part in autograd: torch path
    assert serving.classify(operator, x) is None
    with torch.no_grad():
        assert serving.classify(operator, x) is not None
    aggregator.values32.requires_grad_(False)
    with torch.inference_mode():
        assert_same(operator(x), expected)
    traced = torch.jit.trace(operator, x[:5], check_trace=False)
    assert_same(traced(x[:5]), torch_path(operator, x[:5]))


@built
def test_tables_made_under_inference_mode_take_the_torch_path():
    estimator = dict(CASES)["gb3"]
    x = torch.from_numpy(probe(estimator))
    with torch.inference_mode():
        model = bridge.from_sklearn(estimator)
        operator = operator_of(model)
        expected = torch_path(operator, x)
        assert serving.classify(operator, x) is None
        assert_same(operator(x), expected)


@built
def test_other_strategies_and_the_switch_take_the_torch_path():
    estimator = dict(CASES)["gb3"]
    x = torch.from_numpy(probe(estimator))
    model = bridge.from_sklearn(estimator, tree_strategy="gemm")
    operator = operator_of(model)
    assert serving.classify(operator, x) is None
    assert next(m for m in model.modules() if isinstance(m, TreeEnsembleModule)).last_strategy \
        == "gemm"
    model = bridge.from_sklearn(estimator)
    operator = operator_of(model)
    with fused.switched_off():
        assert serving.classify(operator, x) is None
        expected = operator(x)
    assert_same(serving.classify(operator, x), expected)


def unscored_class_model(post: str):
    """A 4-class TreeEnsembleClassifier whose leaves all score classes 0-2 and none class 3:
    its has-score flags are fixed (so C serves it) without every class being scored."""
    from onnx import helper

    from tests.onnx.ops.ml.test_tree import legacy_model

    model = legacy_model("classifier", np.random.RandomState(3), n_outputs=4, post=post,
                         n_trees=4, depth=3)
    node = model.graph.node[0]
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    leaves = sorted(set(zip(attributes["class_treeids"], attributes["class_nodeids"])))
    rng = np.random.default_rng(4)
    ids, trees, nodes, weights = [], [], [], []
    for tree, leaf in leaves:
        for output in range(3):
            ids.append(output)
            trees.append(tree)
            nodes.append(leaf)
            weights.append(float(np.float32(rng.normal())))
    attributes.update(class_ids=ids, class_treeids=trees, class_nodeids=nodes,
                      class_weights=weights)
    replaced = helper.make_node("TreeEnsembleClassifier", list(node.input), list(node.output),
                                domain=node.domain, **attributes)
    model.graph.node.remove(node)
    model.graph.node.append(replaced)
    return model


@built
@pytest.mark.parametrize("post", ["NONE", "SOFTMAX", "LOGISTIC"])
def test_a_class_no_leaf_scores_is_zero_and_never_the_label(post):
    from tests.onnx.ops.ml.test_tree import grid_inputs
    from tests.parity import assert_parity, run_onnxruntime

    model = unscored_class_model(post)
    x = grid_inputs(np.random.RandomState(0), 80)
    module = bridge.from_onnx(model)
    operator = next(m for m in module.modules() if isinstance(m, OnnxTreeEnsembleClassifier))
    assert operator.output.n_base == 0 and not operator.output.always_scored
    rows = torch.from_numpy(x)
    with torch.no_grad():
        labels, scores = serving.classify(operator, rows)
        only_labels = serving.classify(operator, rows, probabilities=False)
        assert_same((labels, scores), torch_path(operator, rows))
    assert torch.equal(only_labels[0], labels) and only_labels[1] is None
    expected = run_onnxruntime(model, {"X": x})
    assert_parity(labels.numpy(), expected[0], rtol=0, atol=0, what="labels")
    assert_parity(scores.numpy(), expected[1], rtol=1e-5, atol=1e-5, what="scores")
    assert not (labels == 3).any()
    if post != "SOFTMAX":  # an unscored class reads 0 before the transform
        assert (scores[:, 3] == (0.5 if post == "LOGISTIC" else 0.0)).all()


@built
def test_many_classes_use_heap_buffers():
    x, _ = data(rows=600)
    y = (np.argsort(x[:, :3], 1)[:, 0] * 14 + (x[:, 3] * 3).astype(int) % 14) % 40
    estimator = RandomForestClassifier(5, max_depth=8, random_state=0).fit(x, y)
    operator = operator_of(bridge.from_sklearn(estimator))
    assert operator.output.n_classes > 16  # (64 + 1) rows of classes exceed the stack buffer
    rows = torch.from_numpy(x[:200])
    with torch.no_grad():
        for count in (1, 5, 200):
            assert_same(serving.classify(operator, rows[:count]), torch_path(operator, rows[:count]))
