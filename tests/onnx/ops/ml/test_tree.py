"""TreeEnsembleClassifier / TreeEnsembleRegressor / TreeEnsemble against onnxruntime.

Random forests are written with ``onnx.helper`` so that every node mode, missing-value
track, aggregate, post transform and onnxruntime's binary-classifier rules are exercised;
each model runs under every strategy, and the level walk also as torch operations (its C
and Triton forms switched off: :func:`bridge.trees.fused.switched_off`). Inputs sit on a small integer grid (plus NaN) so
that EQ/NEQ/MEMBER tests and threshold ties actually occur. Tolerances: labels exact; scores
rtol 1e-5 / atol 1e-5 (float32 sums over trees in another order, and float32 transforms).
"""

from __future__ import annotations

import contextlib

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

import bridge
from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.trees import fused
from tests.parity import assert_parity, run_onnxruntime

ML = "ai.onnx.ml"
STRATEGIES = ("gemm", "traversal", "perfect", "lookup", "bitvector")
MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ")


def random_trees(rng, n_trees, depth, n_features, modes, missing):
    """Legacy node tables: per tree a random (possibly unbalanced) tree of ``depth`` levels."""
    rows = {k: [] for k in ("treeids", "nodeids", "featureids", "modes", "values", "true",
                            "false", "missing")}
    leaves = []  # (tree id, node id)
    for tree in range(n_trees):
        counter = [0]

        def grow(level, tree=tree, counter=counter):
            node = counter[0]
            counter[0] += 1
            position = len(rows["treeids"])
            for key in rows:
                rows[key].append(0)
            rows["treeids"][position] = tree
            rows["nodeids"][position] = node
            if level == depth or (level > 0 and rng.rand() < 0.2):
                rows["modes"][position] = "LEAF"
                leaves.append((tree, node))
                return node
            rows["modes"][position] = modes[rng.randint(len(modes))]
            rows["featureids"][position] = int(rng.randint(n_features))
            rows["values"][position] = float(rng.randint(0, 5)) + (0.5 if rng.rand() < 0.3 else 0)
            rows["missing"][position] = int(missing and rng.rand() < 0.5)
            rows["true"][position] = grow(level + 1)
            rows["false"][position] = grow(level + 1)
            return node

        grow(0)
    return rows, leaves


def legacy_model(kind, rng, *, n_trees=3, depth=3, n_features=3, modes=("BRANCH_LEQ",),
                 missing=False, n_outputs=1, aggregate="SUM", post="NONE", base_values=None,
                 labels=None, class_ids="all", negative=True, ml_opset=3, as_tensor=False):
    rows, leaves = random_trees(rng, n_trees, depth, n_features, modes, missing)
    prefix = "class" if kind == "classifier" else "target"
    ids, nodeids, treeids, weights = [], [], [], []
    for tree, node in leaves:
        outputs = {"all": range(n_outputs), "single0": [0], "single1": [1]}[class_ids]
        for output in outputs:
            if class_ids == "all" and n_outputs > 1 and rng.rand() < 0.2:
                continue  # some leaves miss some outputs (has-score rules)
            ids.append(output)
            nodeids.append(node)
            treeids.append(tree)
            weight = rng.rand() if not negative else rng.randn()
            weights.append(float(np.float32(weight)))
    attributes = dict(
        nodes_treeids=rows["treeids"], nodes_nodeids=rows["nodeids"],
        nodes_featureids=rows["featureids"], nodes_modes=rows["modes"],
        nodes_truenodeids=rows["true"], nodes_falsenodeids=rows["false"],
        nodes_missing_value_tracks_true=rows["missing"], post_transform=post,
        **{f"{prefix}_ids": ids, f"{prefix}_nodeids": nodeids, f"{prefix}_treeids": treeids},
    )
    if as_tensor:
        attributes["nodes_values_as_tensor"] = numpy_helper.from_array(
            np.asarray(rows["values"], np.float64))
        attributes[f"{prefix}_weights_as_tensor"] = numpy_helper.from_array(
            np.asarray(weights, np.float64))
    else:
        attributes["nodes_values"] = rows["values"]
        attributes[f"{prefix}_weights"] = weights
    if base_values is not None:
        attributes["base_values"] = base_values
    x_type = onnx.TensorProto.DOUBLE if as_tensor else onnx.TensorProto.FLOAT
    if kind == "classifier":
        labels = labels if labels is not None else list(range(n_outputs))
        if isinstance(labels[0], str):
            attributes["classlabels_strings"] = labels
            label_type = onnx.TensorProto.STRING
        else:
            attributes["classlabels_int64s"] = labels
            label_type = onnx.TensorProto.INT64
        node = helper.make_node("TreeEnsembleClassifier", ["X"], ["label", "scores"],
                                domain=ML, **attributes)
        outputs = [helper.make_tensor_value_info("label", label_type, [None]),
                   helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT,
                                                 [None, len(labels)])]
    else:
        attributes["n_targets"] = n_outputs
        attributes["aggregate_function"] = aggregate
        node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain=ML, **attributes)
        outputs = [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT,
                                                 [None, n_outputs])]
    graph = helper.make_graph([node], "trees", [helper.make_tensor_value_info(
        "X", x_type, [None, n_features])], outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(ML, ml_opset)])
    model.ir_version = 8
    return model


def grid_inputs(rng, n_rows=64, n_features=3, nan=False, dtype=np.float32):
    x = rng.randint(0, 6, size=(n_rows, n_features)).astype(dtype)
    x[rng.rand(n_rows, n_features) < 0.2] += 0.5
    if nan:
        x[rng.rand(n_rows, n_features) < 0.15] = np.nan
    return x


def strategies_for(model, names=STRATEGIES):
    """``names`` without 'bitvector' where it cannot run the forest (> 64 leaves in a tree,
    or equality / set-membership tests): the only strategy with such limits."""
    if "bitvector" not in names:
        return tuple(names)
    try:
        bridge.from_onnx(model, tree_strategy="bitvector")
    except ConversionError as error:
        assert "cannot run this forest" in str(error)
        return tuple(n for n in names if n != "bitvector")
    return tuple(names)


def assert_all_strategies_match(model, x, rtol=1e-5, atol=1e-5):
    expected = run_onnxruntime(model, {"X": x})
    runs = [(strategy, contextlib.nullcontext) for strategy in strategies_for(model)]
    runs.append(("traversal", fused.switched_off))
    for strategy, walks in runs:
        module = bridge.from_onnx(model, tree_strategy=strategy)
        with torch.no_grad(), walks():
            result = module(torch.from_numpy(x))
        result = result if isinstance(result, tuple) else (result,)
        for index, (actual, wanted) in enumerate(zip(result, expected)):
            actual = actual.numpy()
            if wanted.dtype.kind in "OU":
                vocabulary = module.output_vocabularies[module.output_names[index]]
                actual = np.asarray(vocabulary, dtype=object)[actual]
                wanted = wanted.astype(object)
            assert_parity(actual, wanted, rtol=rtol, atol=atol,
                          what=f"{strategy} ({walks.__name__}) output {index}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("missing", [False, True])
def test_regressor_node_modes(mode, missing):
    rng = np.random.RandomState(MODES.index(mode) + 10 * missing)
    model = legacy_model("regressor", rng, modes=(mode,), missing=missing, n_trees=4, depth=4)
    assert_all_strategies_match(model, grid_inputs(rng, nan=missing))


def test_regressor_mixed_modes_with_missing_tracks():
    rng = np.random.RandomState(1)
    model = legacy_model("regressor", rng, modes=MODES, missing=True, n_trees=5, depth=5)
    assert_all_strategies_match(model, grid_inputs(rng, 200, nan=True))


@pytest.mark.parametrize("aggregate", ["SUM", "AVERAGE", "MIN", "MAX"])
@pytest.mark.parametrize("n_targets", [1, 3])
def test_regressor_aggregates_and_base_values(aggregate, n_targets):
    rng = np.random.RandomState(n_targets)
    base = [float(v) for v in rng.randn(n_targets).astype(np.float32)]
    model = legacy_model("regressor", rng, n_outputs=n_targets, aggregate=aggregate,
                         base_values=base, n_trees=4)
    assert_all_strategies_match(model, grid_inputs(rng))


@pytest.mark.parametrize("post", ["NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT"])
@pytest.mark.parametrize("n_targets", [1, 3])
def test_regressor_post_transforms(post, n_targets):
    rng = np.random.RandomState(7)
    # PROBIT needs scores in (0, 1): non-negative weights averaged over trees
    model = legacy_model("regressor", rng, n_outputs=n_targets, post=post,
                         aggregate="AVERAGE" if post == "PROBIT" else "SUM",
                         negative=post != "PROBIT")
    assert_all_strategies_match(model, grid_inputs(rng), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("ml_opset", [1, 3])
def test_regressor_opsets_and_double_tensors(ml_opset):
    rng = np.random.RandomState(3)
    model = legacy_model("regressor", rng, ml_opset=ml_opset, as_tensor=ml_opset == 3,
                         n_outputs=2, base_values=None)
    x = grid_inputs(rng, dtype=np.float64 if ml_opset == 3 else np.float32)
    assert_all_strategies_match(model, x)


@pytest.mark.parametrize("post", ["NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT"])
def test_multiclass_classifier_post_transforms(post):
    rng = np.random.RandomState(11)
    model = legacy_model("classifier", rng, n_outputs=4, post=post, negative=post != "PROBIT",
                         base_values=None if post == "PROBIT" else [0.1, -0.2, 0.3, 0.0])
    if post == "PROBIT":  # probabilities in (0, 1): a single tree with weights in (0, 1)
        model = legacy_model("classifier", rng, n_outputs=4, post=post, negative=False,
                             n_trees=1)
    assert_all_strategies_match(model, grid_inputs(rng), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("class_ids", ["all", "single0", "single1"])
@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("base_values", [None, [0.25], [0.1, -0.3]])
@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX"])
def test_binary_classifier_rules(class_ids, negative, base_values, post):
    rng = np.random.RandomState(len(class_ids) + 3 * negative)
    model = legacy_model("classifier", rng, n_outputs=2, labels=[0, 1], class_ids=class_ids,
                         negative=negative, base_values=base_values, post=post, n_trees=3)
    assert_all_strategies_match(model, grid_inputs(rng, 100), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("labels", [[3, 7], ["no", "yes"], ["a", "b", "c"], [10, 20, 30]])
def test_classifier_labels(labels):
    rng = np.random.RandomState(5)
    class_ids = "single0" if len(labels) == 2 else "all"
    model = legacy_model("classifier", rng, n_outputs=len(labels), labels=labels,
                         class_ids=class_ids, negative=False, n_trees=3)
    assert_all_strategies_match(model, grid_inputs(rng))


def test_classifier_string_labels_have_a_vocabulary():
    rng = np.random.RandomState(5)
    model = legacy_model("classifier", rng, n_outputs=3, labels=["x", "y", "z"])
    module = bridge.from_onnx(model)
    assert module.output_vocabularies == {"label": ["x", "y", "z"]}


def tree_ensemble_model(rng, *, n_trees=3, depth=3, n_features=3, member=True, n_targets=2,
                        aggregate=1, post=0, dtype=np.float32):
    """An opset-5 TreeEnsemble with random modes (MEMBER included) and missing tracks."""
    features, splits, modes, true_ids, true_leaf, false_ids, false_leaf, missing = (
        [] for _ in range(8))
    member_values, leaf_targets, leaf_weights, roots = [], [], [], []

    def leaf():
        leaf_targets.append(int(rng.randint(n_targets)))
        leaf_weights.append(float(rng.randn()))
        return len(leaf_targets) - 1, 1

    def grow(level):
        if level == depth or (level > 0 and rng.rand() < 0.2):
            return leaf()
        index = len(features)
        for column in (features, splits, modes, true_ids, true_leaf, false_ids, false_leaf,
                       missing):
            column.append(0)
        features[index] = int(rng.randint(n_features))
        mode = int(rng.randint(7 if member else 6))
        modes[index] = mode
        splits[index] = float(rng.randint(0, 5))
        if mode == 6:
            member_values.extend([float(v) for v in rng.choice(6, 2, replace=False)] + [np.nan])
        missing[index] = int(rng.rand() < 0.5)
        true_ids[index], true_leaf[index] = grow(level + 1)
        false_ids[index], false_leaf[index] = grow(level + 1)
        return index, 0

    for _ in range(n_trees):
        roots.append(grow(0)[0])
    tensor_type = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    attributes = dict(
        tree_roots=roots, nodes_featureids=features,
        nodes_splits=numpy_helper.from_array(np.asarray(splits, dtype)),
        nodes_modes=numpy_helper.from_array(np.asarray(modes, np.uint8)),
        nodes_truenodeids=true_ids, nodes_trueleafs=true_leaf, nodes_falsenodeids=false_ids,
        nodes_falseleafs=false_leaf, nodes_missing_value_tracks_true=missing,
        leaf_targetids=leaf_targets,
        leaf_weights=numpy_helper.from_array(np.asarray(leaf_weights, dtype)),
        n_targets=n_targets, aggregate_function=aggregate, post_transform=post,
    )
    if member_values:
        attributes["membership_values"] = numpy_helper.from_array(
            np.asarray(member_values, dtype))
    node = helper.make_node("TreeEnsemble", ["X"], ["Y"], domain=ML, **attributes)
    graph = helper.make_graph(
        [node], "tree5", [helper.make_tensor_value_info("X", tensor_type, [None, n_features])],
        [helper.make_tensor_value_info("Y", tensor_type, [None, n_targets])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                    helper.make_opsetid(ML, 5)])
    model.ir_version = 10
    return model


@pytest.mark.parametrize("aggregate", [0, 1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tree_ensemble_v5_modes_membership_missing(aggregate, dtype):
    rng = np.random.RandomState(aggregate)
    model = tree_ensemble_model(rng, aggregate=aggregate, dtype=dtype, n_trees=4, depth=4)
    assert_all_strategies_match(model, grid_inputs(rng, 100, nan=True, dtype=dtype))


@pytest.mark.parametrize("post", [0, 3])
def test_tree_ensemble_v5_post_transforms(post):
    rng = np.random.RandomState(20 + post)
    model = tree_ensemble_model(rng, post=post, n_targets=3)
    assert_all_strategies_match(model, grid_inputs(rng, nan=True), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("post", [1, 2])
def test_tree_ensemble_v5_softmax_and_logistic_follow_the_specification(post):
    # The spec numbers SOFTMAX 1 and LOGISTIC 2; onnxruntime 1.2x-1.3x reads them swapped
    # (its internal enum order). bridge follows the spec, so it must equal onnxruntime run
    # on the same forest with the other code.
    rng = np.random.RandomState(20 + post)
    model = tree_ensemble_model(rng, post=post, n_targets=3)
    x = grid_inputs(rng, nan=True)
    swapped = _replace_attribute(model, "post_transform", 3 - post)
    expected = run_onnxruntime(swapped, {"X": x})[0]
    for strategy in strategies_for(model):
        actual = bridge.from_onnx(model, tree_strategy=strategy)(torch.from_numpy(x))
        assert_parity(actual, expected, rtol=1e-4, atol=1e-5, what=strategy)
    if post == 1:
        np.testing.assert_allclose(actual.sum(1).numpy(), 1.0, rtol=1e-5)


def test_forced_strategy_is_validated():
    rng = np.random.RandomState(0)
    model = legacy_model("regressor", rng)
    with pytest.raises(ValueError, match="'gemm', 'traversal', 'perfect', 'lookup', 'bitvector'"):
        bridge.from_onnx(model, tree_strategy="fastest")


def _replace_attribute(model, name, value):
    model = onnx.ModelProto.FromString(model.SerializeToString())
    node = model.graph.node[0]
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept)
    if value is not None:
        node.attribute.append(helper.make_attribute(name, value))
    return model


@pytest.mark.parametrize("name, value, message", [
    ("nodes_featureids", [0], "nodes_featureids"),
    ("nodes_modes", None, "nodes_modes"),
    ("target_weights", [1.0], "target_weights"),
    ("nodes_values_as_tensor", numpy_helper.from_array(np.zeros(3)), "nodes_values"),
    ("aggregate_function", "MEDIAN", "aggregate_function"),
    ("post_transform", "SQUARE", "post_transform"),
    ("base_values", [1.0, 2.0, 3.0], "base_values"),
])
def test_forbidden_attributes_raise_conversion_error(name, value, message):
    rng = np.random.RandomState(0)
    model = _replace_attribute(legacy_model("regressor", rng), name, value)
    with pytest.raises(ConversionError, match=message):
        bridge.from_onnx(model)


def test_unknown_mode_names_the_attribute():
    rng = np.random.RandomState(0)
    model = legacy_model("regressor", rng, depth=2)
    modes = [a for a in model.graph.node[0].attribute if a.name == "nodes_modes"][0]
    modes.strings[0] = b"BRANCH_SOMETIMES"
    with pytest.raises(ConversionError, match="nodes_modes.*BRANCH_SOMETIMES"):
        bridge.from_onnx(model)


def test_deprecated_opset5_regressor_is_unsupported():
    rng = np.random.RandomState(0)
    model = legacy_model("regressor", rng, ml_opset=5)
    with pytest.raises(UnsupportedOperatorError, match="supported: 1, 3"):
        bridge.from_onnx(model)


def test_jit_trace_matches_eager():
    rng = np.random.RandomState(0)
    model = legacy_model("classifier", rng, n_outputs=3, post="SOFTMAX")
    module = bridge.from_onnx(model)
    x = torch.from_numpy(grid_inputs(rng))
    traced = torch.jit.trace(module, (x,), check_trace=False)
    for a, b in zip(traced(x), module(x)):
        assert torch.equal(a, b)


def test_one_dimensional_input_is_one_row():
    rng = np.random.RandomState(0)
    model = legacy_model("regressor", rng)
    module = bridge.from_onnx(model)
    x = grid_inputs(rng, 4)
    assert torch.equal(module(torch.from_numpy(x[0])), module(torch.from_numpy(x[:1])))
