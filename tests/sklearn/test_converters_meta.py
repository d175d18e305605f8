"""bridge's converters for TargetEncoder (multiclass), ClassifierChain, RegressorChain and
OutputCodeClassifier: edge cases the parity list does not reach, float64, onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OutputCodeClassifier
from sklearn.multioutput import ClassifierChain, RegressorChain
from sklearn.naive_bayes import GaussianNB
from sklearn.preprocessing import TargetEncoder
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

import bridge
from bridge.errors import UnsupportedEstimatorError
from tests.parity import assert_parity, run_onnxruntime
from tests.sklearn.cases import get_dataset


def _onnxruntime(model, X):
    graph = model.onnx_model
    return run_onnxruntime(graph, {graph.graph.input[0].name: X.astype(model._input_spec.dtype)})


def _categories_with_nan(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 5, size=(300, 3)).astype(np.float64)
    X[rng.random(300) < 0.1, 1] = np.nan
    y = (np.nan_to_num(X[:, 1], nan=3) + rng.integers(0, 3, size=300)).astype(int) % 4
    return X, y


def test_target_encoder_nan_category_unseen_values_and_float64():
    X, y = _categories_with_nan()
    encoder = TargetEncoder(random_state=0).fit(X, y)
    assert encoder.target_type_ == "multiclass" and np.isnan(encoder.categories_[1][-1])
    rng = np.random.default_rng(1)
    new = rng.integers(-1, 7, size=(400, 3)).astype(np.float64)  # -1, 5, 6 unseen
    new[::7, 1] = np.nan
    new[::11, 1] = 0.0  # 0 must not match the NaN category's placeholder
    expected = encoder.transform(new)
    exact = bridge.from_sklearn(encoder, dtype=np.float64)
    np.testing.assert_array_equal(exact.transform(new), expected)
    np.testing.assert_array_equal(_onnxruntime(exact, new)[0], expected)
    single = bridge.from_sklearn(encoder)
    assert_parity(single.transform(new), expected, rtol=1e-6, atol=1e-6, what="float32")
    assert_parity(_onnxruntime(single, new)[0], expected, rtol=1e-6, atol=1e-6,
                  what="onnxruntime")


def test_binary_target_encoder_keeps_skl2onnx_converter():
    X, y = _categories_with_nan()
    encoder = TargetEncoder(random_state=0).fit(np.nan_to_num(X), y % 2)
    model = bridge.from_sklearn(encoder)
    assert "LabelEncoder" in {node.op_type for node in model.onnx_model.graph.node}
    assert_parity(model.transform(np.nan_to_num(X)), encoder.transform(np.nan_to_num(X)),
                  rtol=1e-6, atol=1e-6, what="binary")


def test_target_encoder_with_string_categories_is_refused_by_name():
    X = np.array([["a"], ["b"], ["c"], ["a"], ["b"], ["c"]], dtype=object)
    encoder = TargetEncoder(cv=2).fit(X, np.array([0, 1, 2, 0, 1, 2]))
    with pytest.raises(UnsupportedEstimatorError, match="non-numeric categories"):
        bridge.from_sklearn(encoder, X_sample=np.zeros((1, 1)))


@pytest.mark.parametrize("chain_method", ["predict", "predict_proba", "decision_function"])
def test_classifier_chain_methods_in_float64_and_onnxruntime(chain_method):
    data = get_dataset("multilabel")
    chain = ClassifierChain(LogisticRegression(), order="random", random_state=1,
                            chain_method=chain_method).fit(data.X, data.y)
    model = bridge.from_sklearn(chain, dtype=np.float64)
    for method in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
        assert_parity(getattr(model, method)(data.X), getattr(chain, method)(data.X),
                      rtol=1e-9, atol=1e-9, what=f"{chain_method}: {method}")
    predictions, probabilities, decision, _ = _onnxruntime(model, data.X)
    np.testing.assert_array_equal(predictions, chain.predict(data.X))
    assert_parity(decision, chain.decision_function(data.X), rtol=1e-9, atol=1e-9,
                  what="onnxruntime decision")


def test_classifier_chain_without_probabilities_refuses_them_as_scikit_learn_does():
    data = get_dataset("multilabel")
    chain = ClassifierChain(LinearSVC(random_state=0)).fit(data.X, data.y)
    model = bridge.from_sklearn(chain)
    np.testing.assert_array_equal(model.predict(data.X), chain.predict(data.X))
    assert_parity(model.decision_function(data.X), chain.decision_function(data.X),
                  rtol=1e-4, atol=1e-4, what="decision")
    assert "predict_proba" not in model.methods
    with pytest.raises(UnsupportedEstimatorError, match="no predict_proba"):
        model.predict_log_proba(data.X)


def test_regressor_chain_float64():
    data = get_dataset("multi-regression")
    chain = RegressorChain(Ridge(), order=[2, 0, 1]).fit(data.X, data.y)
    model = bridge.from_sklearn(chain, dtype=np.float64)
    assert model.predict(data.X).shape == (len(data.X), 3)
    assert_parity(model.predict(data.X), chain.predict(data.X), rtol=1e-9, atol=1e-9,
                  what="RegressorChain")


def _code_book_ties(classifier, X) -> np.ndarray:
    from sklearn.multiclass import _predict_binary

    scores = np.array([_predict_binary(e, X) for e in classifier.estimators_]).T
    distances = ((scores[:, None, :] - classifier.code_book_[None]) ** 2).sum(axis=2)
    nearest_two = np.sort(distances, axis=1)[:, :2]
    return nearest_two[:, 1] - nearest_two[:, 0] < 1e-6


@pytest.mark.parametrize("estimator", [LogisticRegression(), GaussianNB(),
                                       DecisionTreeClassifier(max_depth=3, random_state=0)],
                         ids=["decision", "proba", "tree"])
def test_output_code_with_constant_columns_and_string_classes(estimator):
    data = get_dataset("multiclass")
    rng = np.random.default_rng(0)
    labels = np.array(["ant", "bee", "cow", "doe", "elk"])[
        np.where(rng.random(len(data.y)) < 0.2, 4, data.y)]
    classifier = OutputCodeClassifier(estimator, code_size=1.0, random_state=1).fit(
        data.X, labels)
    kinds = {type(e).__name__ for e in classifier.estimators_}
    assert "_ConstantPredictor" in kinds  # a code-book column with one class
    new = np.random.default_rng(2).normal(scale=2.0, size=(2000, data.X.shape[1]))
    expected = classifier.predict(new)
    for dtype in (np.float32, np.float64):
        model = bridge.from_sklearn(classifier, dtype=dtype)
        differ = model.predict(new) != expected
        # only exact ties may break the other way: skl2onnx's tree ops give float32
        # probabilities even in a double graph, so 1/7 + 6/7 need not sum to 1 there
        assert not (differ & ~_code_book_ties(classifier, new)).any(), dtype
        in_onnxruntime = _onnxruntime(model, new)[0].astype(str)
        assert not ((in_onnxruntime != expected) & ~_code_book_ties(classifier, new)).any()


def test_classifier_chain_with_multiclass_links_predicts_and_refuses_the_rest():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    Y = np.stack([(X[:, 0] > 0) + (X[:, 1] > 0.5), rng.integers(0, 3, size=150)], axis=1)
    chain = ClassifierChain(LogisticRegression(), order=[1, 0]).fit(X, Y)
    new = rng.normal(size=(500, 4))
    for dtype in (np.float32, np.float64):
        model = bridge.from_sklearn(chain, dtype=dtype)
        np.testing.assert_array_equal(model.predict(new), chain.predict(new))
    with pytest.raises(ValueError):
        chain.predict_proba(new)  # scikit-learn's own chain fails here
    with pytest.raises(UnsupportedEstimatorError, match="not binary"):
        model.predict_proba(new)
