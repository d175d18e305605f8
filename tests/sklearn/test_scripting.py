"""torch.jit.script of a converted model: its methods on tensors, saved and loaded back."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import bridge
from bridge.errors import UnsupportedEstimatorError
from tests.sklearn.cases import fitted


def script(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates script
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.script(model)


@pytest.mark.parametrize(("case", "data_name"), [
    ("SVC-rbf-proba", "multiclass"), ("LogisticRegression", "binary"), ("MLPRegressor", "regression"),
    ("PCA", "features"), ("Pipeline", "multiclass"),
])
def test_scripted_methods_match_scikit_learn_after_save_and_load(case, data_name, tmp_path):
    estimator, data = fitted(case, data_name)
    scripted = script(bridge.from_sklearn(estimator))
    scripted.save(str(tmp_path / "model.pt"))
    loaded = torch.jit.load(str(tmp_path / "model.pt"))
    X = torch.from_numpy(data.X)  # float64 in: cast to the graph's float32 inside
    converted = [m for m in ("predict", "predict_proba", "decision_function", "transform")
                 if hasattr(estimator, m)]
    for method in converted:
        expected = getattr(estimator, method)(data.X)
        actual = getattr(loaded, method)(X).numpy()
        if method == "predict" and expected.dtype.kind in "iub":
            np.testing.assert_array_equal(actual, expected)
        else:
            np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * max(
                1.0, float(np.abs(expected).max())))
    main = "predict" if hasattr(estimator, "predict") else "transform"
    np.testing.assert_allclose(loaded(X).numpy(), getattr(loaded, main)(X).numpy())


def test_scripted_labels_are_the_class_values():
    estimator, data = fitted("LogisticRegression", "binary")
    shifted = np.where(data.y == 1, 7, 3)  # class values that are not 0..k-1
    estimator.fit(data.X, shifted)
    scripted = script(bridge.from_sklearn(estimator))
    np.testing.assert_array_equal(scripted.predict(torch.from_numpy(data.X)).numpy(),
                                  estimator.predict(data.X))


def test_methods_without_a_tensor_answer_raise_their_reason():
    estimator, data = fitted("LogisticRegression", "strings")
    scripted = script(bridge.from_sklearn(estimator))
    X = torch.from_numpy(data.X)
    assert scripted.predict_proba(X).shape == (len(data.X), 3)
    with pytest.raises(torch.jit.Error, match="string labels, which a tensor cannot hold"):
        scripted.predict(X)
    rbm, unit = fitted("BernoulliRBM", "unit-interval")  # its score_samples draws at random
    with pytest.raises(torch.jit.Error, match="BernoulliRBM.score_samples has no conversion"):
        script(bridge.from_sklearn(rbm)).score_samples(torch.from_numpy(unit.X))


@pytest.mark.parametrize(("case", "data_name", "reason"), [
    ("RandomForestClassifier", "binary", "tree ensembles"),
    ("KNeighborsClassifier", "binary", "ONNX Scan"),
])
def test_graphs_torchscript_cannot_compile_are_named(case, data_name, reason):
    estimator, _ = fitted(case, data_name)
    with pytest.raises(UnsupportedEstimatorError, match=reason):
        script(bridge.from_sklearn(estimator))
