"""Catalogue: inputs and estimators that converted models refuse, with the words each error holds."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KernelDensity
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import bridge
from bridge.errors import InvalidInputError, NotFittedError, UnsupportedEstimatorError


@pytest.fixture(scope="module")
def frame():
    rng = np.random.RandomState(0)
    colors = rng.choice(["red", "green", "blue"], 30)
    df = pd.DataFrame({"color": colors, "size": rng.rand(30)})
    return df, (colors == "red").astype(np.int64)


def _text_pipeline(frame, handle_unknown):
    df, y = frame
    encode = make_column_transformer((OneHotEncoder(handle_unknown=handle_unknown), ["color"]),
                                     remainder="passthrough")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_pipeline(encode, LogisticRegression()).fit(df, y)


def test_unseen_text_category_names_the_column_and_the_value(frame):
    model = bridge.from_sklearn(_text_pipeline(frame, "error"))
    rows = frame[0][:4].copy()
    rows.loc[2, "color"] = "purple"
    with pytest.raises(InvalidInputError, match=r"column 'color' .* holds 'purple' \(row 2\).*"
                                                r"handle_unknown='error'.*\['blue', 'green', "
                                                r"'red'\]"):
        model.predict(rows)


def test_unseen_text_category_is_still_refused_after_pickling(frame):
    model = pickle.loads(pickle.dumps(bridge.from_sklearn(_text_pipeline(frame, "error"))))
    rows = frame[0][:2].copy()
    rows.loc[0, "color"] = "teal"
    with pytest.raises(InvalidInputError, match="holds 'teal'"):
        model.predict(rows)


def test_unseen_text_category_with_handle_unknown_ignore_is_all_zeros(frame):
    pipeline = _text_pipeline(frame, "ignore")
    rows = frame[0][:4].copy()
    rows.loc[2, "color"] = "purple"
    got = bridge.from_sklearn(pipeline).predict_proba(rows)
    np.testing.assert_allclose(got, pipeline.predict_proba(rows), rtol=1e-4, atol=1e-6)


def test_unseen_numeric_category_names_the_value():
    X = np.array([[0, 1], [1, 2], [2, 0], [0, 0]] * 5, dtype=np.float32)
    y = np.arange(20) % 2
    model = bridge.from_sklearn(make_pipeline(OneHotEncoder(), LogisticRegression()).fit(X, y))
    with pytest.raises(InvalidInputError, match=r"handle_unknown='error'\) met category 5 "
                                                r".*\(row 1\), not among its categories "
                                                r"0, 1, 2"):
        model.predict(np.array([[0, 1], [5, 1]], np.float32))


def test_kernel_density_converts_its_score_samples():
    rows = np.random.RandomState(0).rand(20, 2)
    density = KernelDensity().fit(rows)
    np.testing.assert_allclose(bridge.from_sklearn(density).score_samples(rows),
                               density.score_samples(rows), rtol=1e-5)


class _Predictor(BaseEstimator):
    """A fitted estimator of no kind scikit-learn names (not a classifier, regressor, ...)."""

    def fit(self, X, y=None):
        self.n_features_in_ = np.shape(X)[1]
        return self

    def predict(self, X):
        return np.zeros(len(X))


def test_an_estimator_of_no_known_kind_says_which_methods_it_has_and_why_none_converts():
    with pytest.raises(UnsupportedEstimatorError, match="_Predictor has predict, but it does "
                                                        "not convert: .*SUPPORTED.md"):
        bridge.from_sklearn(_Predictor().fit(np.zeros((3, 2))))


def test_unfitted_kernel_density_says_it_is_not_fitted():
    with pytest.raises(NotFittedError, match="KernelDensity instance is not fitted"):
        bridge.from_sklearn(KernelDensity())
