"""scikit-learn tree models → skl2onnx → bridge.from_onnx, against scikit-learn itself.

Labels must agree exactly. Probabilities / predictions: rtol 1e-5, atol 1e-5 (float32 sums
of per-tree values in another order than scikit-learn's float64 ones). Inputs are float32,
so scikit-learn's float64 comparisons meet the float32 thresholds skl2onnx writes exactly
(the float32 threshold rule, docs/trees.md).
"""

from __future__ import annotations

import warnings

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
    IsolationForest,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreeClassifier,
    ExtraTreeRegressor,
)

import bridge
from bridge.sklearn.converters.hist_gradient_boosting import register
from tests.onnx.ops.ml.test_tree import strategies_for
from tests.parity import assert_parity

STRATEGIES = ("gemm", "traversal", "perfect", "lookup", "bitvector", "auto")
OPSETS = {"": 17, "ai.onnx.ml": 3}


def data(seed=0, n_rows=300, nan=False):
    rng = np.random.RandomState(seed)
    x = rng.randn(n_rows, 5).astype(np.float32)
    # rounded values make ties with thresholds frequent: the float32 rule is exercised
    x[:, :2] = np.round(x[:, :2], 1)
    if nan:
        x[rng.rand(n_rows, 5) < 0.1] = np.nan
    score = np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) ** 2 - np.nan_to_num(x[:, 2])
    return x, score


def convert(model, x):
    from skl2onnx import to_onnx

    options = {"zipmap": False} if hasattr(model, "predict_proba") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return to_onnx(model, x[:1], options=options, target_opset=OPSETS)


def run(onnx_model, x, strategy):
    module = bridge.from_onnx(onnx_model, tree_strategy=strategy)
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    return module, (out if isinstance(out, tuple) else (out,))


CLASSIFIERS = [
    DecisionTreeClassifier(max_depth=6, random_state=0),
    ExtraTreeClassifier(max_depth=10, random_state=0),
    RandomForestClassifier(n_estimators=8, max_depth=6, random_state=0),
    ExtraTreesClassifier(n_estimators=8, max_depth=8, random_state=0),
    GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0),
    HistGradientBoostingClassifier(max_iter=5, max_leaf_nodes=15, random_state=0),
]
REGRESSORS = [
    DecisionTreeRegressor(max_depth=8, random_state=0),
    ExtraTreeRegressor(max_depth=10, random_state=0),
    RandomForestRegressor(n_estimators=8, max_depth=6, random_state=0),
    ExtraTreesRegressor(n_estimators=8, max_depth=8, random_state=0),
    GradientBoostingRegressor(n_estimators=10, random_state=0),
    HistGradientBoostingRegressor(max_iter=5, max_leaf_nodes=15, random_state=0),
]


def _name(model):
    return type(model).__name__


@pytest.fixture(scope="module", autouse=True)
def hist_gradient_boosting_converter():
    register()


@pytest.fixture(autouse=True)
def one_openmp_thread():
    # scikit-learn's and torch's OpenMP pools oversubscribe 2-core CI machines (HGB fits
    # slow down 10x); one thread keeps the suite fast.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.mark.parametrize("model", CLASSIFIERS, ids=_name)
@pytest.mark.parametrize("labels", ["binary-int", "multi-str"])
def test_classifiers_match_sklearn(model, labels):
    nan = isinstance(model, HistGradientBoostingClassifier)
    x, score = data(1, nan=nan)
    classes = np.digitize(score, [0.0]) if labels.startswith("binary") else np.digitize(
        score, [-1.0, 0.5, 1.5])
    y = (np.array(["neg", "pos", "mid", "top"])[classes] if labels.endswith("str")
         else classes * 3 + 2)
    model.fit(x, y)
    onnx_model = convert(model, x)
    for strategy in strategies_for(onnx_model, STRATEGIES):
        module, (label, probabilities) = run(onnx_model, x, strategy)
        if labels.endswith("str"):
            vocabulary = module.output_vocabularies[module.output_names[0]]
            label = np.asarray(vocabulary, dtype=object)[label.numpy()]
        assert_parity(np.asarray(label), model.predict(x).astype(np.asarray(label).dtype),
                      rtol=0, atol=0, what=f"{strategy} labels")
        assert_parity(probabilities, model.predict_proba(x), rtol=1e-5, atol=1e-5,
                      what=f"{strategy} probabilities")


@pytest.mark.parametrize("labels", ["multiclass-int", "binary-str"])
def test_forest_classifier_label_kinds(labels):
    test_classifiers_match_sklearn(
        RandomForestClassifier(n_estimators=5, max_depth=5, random_state=0), labels)


@pytest.mark.parametrize("model", REGRESSORS, ids=_name)
def test_regressors_match_sklearn(model):
    nan = isinstance(model, HistGradientBoostingRegressor)
    x, score = data(2, nan=nan)
    model.fit(x, score)
    onnx_model = convert(model, x)
    expected = model.predict(x).reshape(-1, 1)
    for strategy in strategies_for(onnx_model, STRATEGIES):
        _, (prediction,) = run(onnx_model, x, strategy)
        assert_parity(prediction, expected, rtol=1e-5, atol=1e-5, what=strategy)


def test_multi_target_regression_matches_sklearn():
    x, score = data(3)
    targets = np.stack([score, -2 * score, np.sin(score)], 1)
    model = RandomForestRegressor(n_estimators=5, max_depth=5, random_state=0).fit(x, targets)
    onnx_model = convert(model, x)
    for strategy in strategies_for(onnx_model, STRATEGIES):
        _, (prediction,) = run(onnx_model, x, strategy)
        assert_parity(prediction, model.predict(x), rtol=1e-5, atol=1e-5, what=strategy)


def test_isolation_forest_runs_where_onnxruntime_needs_ml_opset_3():
    x, _ = data(4)
    model = IsolationForest(n_estimators=10, random_state=0).fit(x)
    onnx_model = convert(model, x)
    for strategy in strategies_for(onnx_model, STRATEGIES):
        _, (label, scores) = run(onnx_model, x, strategy)
        assert_parity(label.reshape(-1), model.predict(x), rtol=0, atol=0, what=strategy)
        assert_parity(scores.reshape(-1), model.decision_function(x), rtol=1e-5, atol=1e-5,
                      what=strategy)


def test_float32_threshold_rule_gives_exact_agreement_on_ties():
    # inputs equal to sklearn's float64 thresholds rounded to float32 are the hard case
    x, score = data(5, n_rows=400)
    model = DecisionTreeRegressor(max_depth=10, random_state=0).fit(x, score)
    thresholds = model.tree_.threshold[model.tree_.feature >= 0]
    features = model.tree_.feature[model.tree_.feature >= 0]
    probe = np.repeat(x[:1], len(thresholds) * 3, 0).copy()
    for index, (feature, value) in enumerate(zip(features, thresholds)):
        for offset, nudged in enumerate((np.float32(value), np.nextafter(
                np.float32(value), np.float32(np.inf)), np.nextafter(
                np.float32(value), np.float32(-np.inf)))):
            probe[3 * index + offset, feature] = nudged
    onnx_model = convert(model, x)
    for strategy in strategies_for(onnx_model, STRATEGIES):
        _, (prediction,) = run(onnx_model, probe, strategy)
        np.testing.assert_array_equal(prediction.numpy().reshape(-1),
                                      model.predict(probe).astype(np.float32))


def test_hist_gradient_boosting_register_is_idempotent_and_converts_nan():
    first, second = register(), register()
    assert first == second
    x, score = data(6, nan=True)
    model = HistGradientBoostingRegressor(max_iter=3, max_leaf_nodes=7).fit(x, score)
    onnx_model = convert(model, x)
    tracks = [a for a in onnx_model.graph.node if a.op_type == "TreeEnsembleRegressor"][0]
    flags = [list(a.ints) for a in tracks.attribute if a.name == "nodes_missing_value_tracks_true"]
    assert flags and set(flags[0]) <= {0, 1} and 1 in flags[0]
    _, (prediction,) = run(onnx_model, x, "auto")
    assert_parity(prediction.reshape(-1), model.predict(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
def test_boosting_libraries_through_onnxmltools(library):
    pytest.importorskip(library)
    onnxmltools = pytest.importorskip("onnxmltools")
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, score = data(7)
    y = (score > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if library == "lightgbm":
            import lightgbm

            model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1, n_jobs=1).fit(x, y)
            onnx_model = onnxmltools.convert_lightgbm(
                model, initial_types=[("X", FloatTensorType([None, 5]))], zipmap=False,
                target_opset=15)
        else:
            import xgboost

            model = xgboost.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1).fit(x, y)
            onnx_model = onnxmltools.convert_xgboost(
                model, initial_types=[("X", FloatTensorType([None, 5]))], target_opset=15)
    for strategy in strategies_for(onnx_model, STRATEGIES):
        _, outputs = run(onnx_model, x, strategy)
        label, probabilities = outputs[0], outputs[-1]
        assert_parity(label, model.predict(x), rtol=0, atol=0, what=strategy)
        assert_parity(probabilities, model.predict_proba(x), rtol=1e-4, atol=1e-5,
                      what=strategy)
