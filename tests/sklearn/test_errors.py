"""from_sklearn's errors and edge behaviour: unfitted, unsupported, bad inputs, missing methods."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.exceptions
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import bridge
from bridge.errors import NotFittedError, UnsupportedEstimatorError
from bridge.sklearn import SUPPORTED_ESTIMATORS
from tests.sklearn.cases import CASES, fitted


class _CustomRegressor(RegressorMixin, BaseEstimator):
    def fit(self, X, y):
        self.mean_ = float(np.mean(y))
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_)


def test_unfitted_estimator_raises_sklearn_not_fitted_error():
    with pytest.raises(sklearn.exceptions.NotFittedError) as info:
        bridge.from_sklearn(LogisticRegression())
    assert isinstance(info.value, NotFittedError)
    assert "LogisticRegression" in str(info.value)


def test_unsupported_estimator_names_it_and_supported_md():
    X = np.random.default_rng(0).normal(size=(20, 3))
    estimator = _CustomRegressor().fit(X, X[:, 0])
    with pytest.raises(UnsupportedEstimatorError, match="_CustomRegressor.*SUPPORTED.md"):
        bridge.from_sklearn(estimator)


def test_non_estimator_is_refused():
    with pytest.raises(UnsupportedEstimatorError, match="str"):
        bridge.from_sklearn("not an estimator")


def test_wrong_feature_count_names_both_shapes():
    estimator, data = fitted("LogisticRegression", "binary")
    model = bridge.from_sklearn(estimator)
    with pytest.raises(ValueError, match=r"\(4, 3\).*expecting 5 features"):
        model.predict(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="2D"):
        model.predict(np.zeros(5))


def test_non_numeric_input_is_refused():
    estimator, _ = fitted("StandardScaler", "features")
    model = bridge.from_sklearn(estimator)
    with pytest.raises(ValueError, match="dtype"):
        model.transform(np.array([["a"] * 6]))
    with pytest.raises(ValueError, match="bool"):
        model.transform(torch.zeros(2, 6, dtype=torch.bool))


def test_nan_rejected_like_sklearn_unless_estimator_accepts_it():
    estimator, data = fitted("SVC-rbf", "binary")
    model = bridge.from_sklearn(estimator)
    X = data.X.copy()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        estimator.predict(X)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        model.predict(X)
    imputer, features = fitted("SimpleImputer", "features")
    X = features.X.copy()
    X[0, 0] = np.nan
    np.testing.assert_allclose(bridge.from_sklearn(imputer).transform(X), imputer.transform(X),
                               rtol=1e-5, atol=1e-5)


def test_methods_mirror_the_estimator():
    X, y = fitted("SVC-rbf", "binary")[1].X, fitted("SVC-rbf", "binary")[1].y
    model = bridge.from_sklearn(SVC().fit(X, y))
    assert hasattr(model, "decision_function")
    assert not hasattr(model, "predict_proba")
    with pytest.raises(AttributeError):
        model.predict_proba(X)
    scaler = bridge.from_sklearn(StandardScaler().fit(X))
    assert not hasattr(scaler, "predict")
    assert scaler.methods == ("transform",)


def test_method_without_onnx_conversion_says_so():
    estimator, data = fitted("BernoulliRBM", "unit-interval")  # score_samples draws at random
    model = bridge.from_sklearn(estimator)
    assert hasattr(model, "score_samples")
    with pytest.raises(UnsupportedEstimatorError, match="BernoulliRBM.score_samples"):
        model.score_samples(data.X)


def test_onnx_model_is_a_dict_per_method_when_several_graphs():
    estimator, _ = fitted("LogisticRegression", "binary")
    model = bridge.from_sklearn(estimator)
    graphs = model.onnx_model
    assert set(graphs) == {"predict", "predict_proba", "predict_log_proba", "decision_function"}
    assert graphs["predict_proba"] is graphs["predict_log_proba"]
    single = bridge.from_sklearn(fitted("StandardScaler", "features")[0]).onnx_model
    assert single.graph.output[0].name


def test_unsupported_dtype():
    estimator, _ = fitted("StandardScaler", "features")
    with pytest.raises(ValueError, match="float16"):
        bridge.from_sklearn(estimator, dtype=np.float16)


def test_supported_table_covers_every_tested_family():
    names = {case.split("-")[0] for case in CASES}
    assert names <= set(SUPPORTED_ESTIMATORS)
    for name, entry in SUPPORTED_ESTIMATORS.items():
        assert entry["methods"] and set(entry["dtypes"]) <= {"float32", "float64"}, name


def test_a_graph_without_the_output_a_method_reads_is_refused(monkeypatch):
    import bridge.sklearn.convert as convert
    from bridge.sklearn.model import MethodOutput
    from bridge.sklearn.plan import ConversionPlan, GraphPlan

    estimator, _ = fitted("StandardScaler", "features")
    wrong = ConversionPlan({"g": GraphPlan(estimator)},
                           {"predict": MethodOutput("g", 0, "label"),
                            "predict_proba": MethodOutput("g", 1, "matrix")}, {})
    monkeypatch.setattr(convert, "plan_conversion", lambda _: wrong)
    with pytest.raises(UnsupportedEstimatorError, match="StandardScaler.predict cannot be"):
        bridge.from_sklearn(estimator)


@pytest.mark.parametrize("change", ["double", "half", "float", "to_float64"])
def test_changing_the_float_dtype_of_a_converted_model_is_refused(change):
    estimator, data = fitted("LogisticRegression", "binary")
    model = bridge.from_sklearn(estimator)
    with pytest.raises(TypeError, match="computes in the dtypes of its ONNX graph"):
        model.to(torch.float64) if change == "to_float64" else getattr(model, change)()
    model.to("cpu")  # a move is fine, and the model still answers
    np.testing.assert_array_equal(model.predict(data.X), estimator.predict(data.X))


def test_numbers_held_as_objects_are_accepted_and_text_is_not():
    estimator, data = fitted("StandardScaler", "features")
    model = bridge.from_sklearn(estimator)
    np.testing.assert_allclose(model.transform(data.X.astype(object)),
                               estimator.transform(data.X), rtol=1e-5, atol=1e-5)
    text = data.X.astype(object)
    text[0, 0] = "n/a"
    with pytest.raises(ValueError, match="takes numeric input; got dtype object"):
        model.transform(text)
