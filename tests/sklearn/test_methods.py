"""Methods bridge adds to estimators whose skl2onnx graph lacks them (transform of
ensembles, LDA and PLS; decision values of thresholds, QDA, one-vs-one; score_samples of
one-class SVMs; RFE predictions; multi-output probabilities), each checked against
scikit-learn and, on bridge's own graph, onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import ensemble, linear_model, naive_bayes, svm, tree
from sklearn.datasets import make_classification

import bridge
from bridge.errors import UnsupportedEstimatorError
from tests.parity import assert_parity, run_onnxruntime


@pytest.fixture(scope="module")
def binary():
    X, y = make_classification(160, 5, n_informative=3, n_redundant=0, random_state=4)
    return X[:120], y[:120], X[120:]


@pytest.fixture(scope="module")
def multiclass():
    X, y = make_classification(160, 6, n_informative=4, n_redundant=0, n_classes=3,
                               random_state=5)
    return X[:120], y[:120], X[120:]


def _check(estimator, method, new, rtol=1e-4):
    """bridge and onnxruntime (bridge's graph for ``method``) against scikit-learn."""
    model = bridge.from_sklearn(estimator)
    expected = getattr(estimator, method)(new)
    actual = getattr(model, method)(new)
    assert_parity(actual, expected, rtol=rtol, atol=rtol, what=method)
    output = model._method_outputs[method]
    graph = model._graphs[output.graph]
    reference = run_onnxruntime(graph, {graph.graph.input[0].name: new.astype(np.float32)})
    values = np.asarray(reference[output.output])
    if values.shape != expected.shape and values.ndim == 2 and expected.ndim == 1:
        values = values[:, -1] if values.shape[1] == 2 else values.ravel()
    assert_parity(values, expected, rtol=rtol, atol=rtol, what=f"{method} in onnxruntime")
    return model


@pytest.mark.parametrize("passthrough", [False, True])
def test_binary_stacking_transform_keeps_one_column_per_estimator(binary, passthrough):
    X, y, new = binary
    estimator = ensemble.StackingClassifier(
        [("lr", linear_model.LogisticRegression()), ("svc", svm.LinearSVC(random_state=0)),
         ("tree", tree.DecisionTreeClassifier(max_depth=3, random_state=0))],
        passthrough=passthrough, cv=2).fit(X, y)
    assert estimator.transform(new).shape[1] == 3 + (5 if passthrough else 0)
    _check(estimator, "transform", new)


def test_stacking_regressor_transform(binary):
    X, _, new = binary
    estimator = ensemble.StackingRegressor(
        [("ridge", linear_model.Ridge()), ("tree", tree.DecisionTreeRegressor(max_depth=3))],
        cv=2).fit(X, X[:, 0] + X[:, 1] ** 2)
    _check(estimator, "transform", new)


@pytest.mark.parametrize(("voting", "flatten"), [("soft", True), ("soft", False),
                                                 ("hard", True)])
def test_voting_classifier_transform(multiclass, voting, flatten):
    X, y, new = multiclass
    estimator = ensemble.VotingClassifier(
        [("lr", linear_model.LogisticRegression()), ("nb", naive_bayes.GaussianNB())],
        voting=voting, flatten_transform=flatten).fit(X, y)
    model = _check(estimator, "transform", new)
    if voting == "hard":  # class indices, as scikit-learn's integers
        assert model.transform(new).dtype == np.int64


@pytest.mark.parametrize("solver", ["svd", "eigen"])
def test_lda_transform(multiclass, solver):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    X, y, new = multiclass
    _check(LinearDiscriminantAnalysis(solver=solver).fit(X, y), "transform", new)


def test_lda_lsqr_has_no_transform_and_says_so(multiclass):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    X, y, new = multiclass
    estimator = LinearDiscriminantAnalysis(solver="lsqr").fit(X, y)
    model = bridge.from_sklearn(estimator)
    assert "transform" not in model._method_outputs
    np.testing.assert_array_equal(model.predict(new), estimator.predict(new))


def test_binary_lda_probabilities(binary):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    X, y, new = binary
    estimator = LinearDiscriminantAnalysis().fit(X, y)
    for method in ("predict_proba", "decision_function"):
        _check(estimator, method, new, rtol=1e-5)


def test_qda_decision_function(binary, multiclass):
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis

    for X, y, new in (binary, multiclass):
        _check(QuadraticDiscriminantAnalysis().fit(X, y), "decision_function", new)


@pytest.mark.parametrize("name", ["FixedThresholdClassifier", "TunedThresholdClassifierCV"])
def test_threshold_classifier_decision_function_beside_its_labels(binary, name):
    from sklearn import model_selection

    X, y, new = binary
    cls = getattr(model_selection, name)
    extra = {"threshold": 0.3} if name == "FixedThresholdClassifier" else {"cv": 2}
    estimator = cls(linear_model.LogisticRegression(), **extra).fit(X, y)
    model = _check(estimator, "decision_function", new)
    np.testing.assert_array_equal(model.predict(new), estimator.predict(new))


@pytest.mark.parametrize("name", ["OneClassSVM", "SGDOneClassSVM"])
def test_one_class_svm_score_samples(multiclass, name):
    X, _, new = multiclass
    estimator = (svm.OneClassSVM(gamma=0.05) if name == "OneClassSVM"
                 else linear_model.SGDOneClassSVM(random_state=0)).fit(X)
    _check(estimator, "score_samples", new)


def test_one_vs_one_decision_function(multiclass):
    from sklearn.multiclass import OneVsOneClassifier

    X, y, new = multiclass
    _check(OneVsOneClassifier(linear_model.LogisticRegression()).fit(X, y),
           "decision_function", new)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "decision_function",
                                    "transform"])
def test_rfe_in_a_pipeline_predicts_through_the_selection(multiclass, method):
    from sklearn.feature_selection import RFE
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, new = multiclass
    estimator = make_pipeline(StandardScaler(), RFE(linear_model.LogisticRegression(),
                                                    n_features_to_select=3)).fit(X, y)
    model = bridge.from_sklearn(estimator)
    expected = getattr(estimator, method)(new)
    actual = getattr(model, method)(new)
    if method == "predict":
        np.testing.assert_array_equal(actual, expected)
    else:
        assert_parity(actual, expected, rtol=1e-4, atol=1e-4, what=method)


def test_randomized_search_converts_as_its_best_estimator(multiclass):
    from sklearn.model_selection import RandomizedSearchCV

    X, y, new = multiclass
    estimator = RandomizedSearchCV(svm.SVC(random_state=0), {"C": [0.3, 1.0, 3.0]},
                                   n_iter=2, cv=2, random_state=0).fit(X, y)
    _check(estimator, "decision_function", new)


def test_multi_output_classifier_probabilities_are_one_array_per_output(multiclass):
    from sklearn.multioutput import MultiOutputClassifier

    X, y, new = multiclass
    targets = np.column_stack([y, y == 0, (X[:, 0] > 0) * 2]).astype(int)
    estimator = MultiOutputClassifier(linear_model.LogisticRegression()).fit(X, targets)
    model = bridge.from_sklearn(estimator)
    np.testing.assert_array_equal(model.predict(new), estimator.predict(new))
    probabilities = model.predict_proba(new)
    expected = estimator.predict_proba(new)
    assert isinstance(probabilities, list) and len(probabilities) == len(expected)
    for actual, wanted in zip(probabilities, expected):
        assert_parity(actual, wanted, rtol=0, atol=1e-5)
    graph = model._graphs[model._method_outputs["predict_proba"].graph]
    _, sequence = run_onnxruntime(graph, {graph.graph.input[0].name: new.astype(np.float32)})
    for actual, wanted in zip(sequence, expected):
        assert_parity(actual, wanted, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["GaussianRandomProjection", "SparseRandomProjection"])
def test_random_projection_with_automatic_width(name):
    from sklearn import random_projection

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 400))
    estimator = getattr(random_projection, name)(eps=0.8, random_state=0).fit(X)
    assert estimator.n_components == "auto" and estimator.n_components_ < 400
    _check(estimator, "transform", rng.normal(size=(6, 400)))


def test_feature_agglomeration_pools_by_mean_only(multiclass):
    from sklearn.cluster import FeatureAgglomeration

    X, _, new = multiclass
    _check(FeatureAgglomeration(3).fit(X), "transform", new)
    with pytest.raises(UnsupportedEstimatorError, match="pooling_func"):
        bridge.from_sklearn(FeatureAgglomeration(3, pooling_func=np.max).fit(X))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_neighbors", [5, 10])  # fewer and more neighbours than features
def test_locally_linear_embedding_transform(multiclass, n_neighbors, dtype):
    from sklearn.manifold import LocallyLinearEmbedding

    X, _, new = multiclass
    estimator = LocallyLinearEmbedding(n_neighbors=n_neighbors, random_state=0).fit(X)
    model = bridge.from_sklearn(estimator, dtype=dtype)
    expected = estimator.transform(new)
    tolerance = 1e-5 if dtype == np.float32 else 1e-10
    assert_parity(model.transform(new), expected, rtol=tolerance, atol=tolerance)
    graph = model.onnx_model
    (reference,) = run_onnxruntime(graph, {graph.graph.input[0].name: new.astype(dtype)})
    assert_parity(reference, expected, rtol=tolerance, atol=tolerance, what="onnxruntime")
