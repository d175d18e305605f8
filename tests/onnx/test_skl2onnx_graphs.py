"""Real skl2onnx graphs of fitted estimators: bridge.from_onnx against onnxruntime.

Labels must agree exactly; probabilities, scores and transforms within rtol 1e-4, atol 1e-5
(float32 in both runtimes). SVMs are fitted on standardized features so that their kernel
terms stay O(1): float32 rounding grows with the size of the terms a decision value sums.
ZipMap outputs (lists of dicts in onnxruntime) are compared column by column in the order
of the class labels that bridge records as the output's vocabulary.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import skl2onnx
from sklearn.datasets import load_iris
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import Binarizer, Normalizer, OneHotEncoder, StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC, NuSVR, OneClassSVM

import bridge
from tests.onnx.ops.ml.test_encoders import run_bridge_decoded
from tests.parity import assert_parity, run_onnxruntime

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
SPECIES = np.array(["setosa", "versicolor", "virginica"], dtype=object)


@pytest.fixture(scope="module")
def iris():
    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def scaled(iris):
    x, y = iris
    return StandardScaler().fit_transform(x).astype(np.float32), y


def convert(estimator, sample: np.ndarray, zipmap: bool | None = False):
    options = None if zipmap is None else {id(estimator): {"zipmap": zipmap}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skl2onnx.to_onnx(estimator, sample[:1], options=options)


def assert_agrees(model, x: np.ndarray) -> list:
    """Run both; compare every output (lists of dicts by bridge's recorded class labels)."""
    input_name = model.graph.input[0].name
    expected = run_onnxruntime(model, {input_name: x})
    actual = run_bridge_decoded(model, {input_name: x})
    vocabularies = bridge.from_onnx(model).output_vocabularies
    assert len(actual) == len(expected)
    for output, a, e in zip(model.graph.output, actual, expected):
        if isinstance(e, list):  # ZipMap: one {label: probability} per sample
            labels = vocabularies[output.name]
            e = np.array([[row[label] for label in labels] for row in e], dtype=np.float32)
        e = np.asarray(e)
        if e.dtype.kind in "OUS" or e.dtype.kind in "iu":
            np.testing.assert_array_equal(np.asarray(a).astype(str), e.astype(str),
                                          err_msg=output.name)
        else:
            assert_parity(a, e, what=output.name, **TOLERANCE)
    return actual


@pytest.mark.parametrize("labels", ["binary", "multiclass", "strings", "binary_strings"])
@pytest.mark.parametrize("zipmap", [False, True])
def test_logistic_regression(iris, labels, zipmap):
    x, y = iris
    if labels.startswith("binary"):
        x, y = x[y > 0], y[y > 0]
    target = SPECIES[y] if labels.endswith("strings") else y
    estimator = LogisticRegression(max_iter=500).fit(x, target)
    label, probabilities = assert_agrees(convert(estimator, x, zipmap), x)
    np.testing.assert_array_equal(label.astype(str), estimator.predict(x).astype(str))
    np.testing.assert_allclose(probabilities, estimator.predict_proba(x), atol=1e-4)


@pytest.mark.parametrize("binary", [False, True])
def test_linear_svc(iris, binary):
    x, y = iris
    if binary:
        x, y = x[y > 0], y[y > 0]
    estimator = LinearSVC(random_state=0).fit(x, y)
    label, scores = assert_agrees(convert(estimator, x, zipmap=None), x)
    np.testing.assert_array_equal(label, estimator.predict(x))


@pytest.mark.parametrize("kernel", ["linear", "poly", "rbf", "sigmoid"])
@pytest.mark.parametrize("probability", [False, True])
def test_svc_multiclass(scaled, kernel, probability):
    x, y = scaled
    estimator = SVC(kernel=kernel, probability=probability, random_state=0).fit(x, y)
    label, _ = assert_agrees(convert(estimator, x), x)
    np.testing.assert_array_equal(label, estimator.predict(x))


@pytest.mark.parametrize("kernel, probability, zipmap", [
    ("rbf", False, False), ("rbf", True, False), ("linear", True, True), ("poly", False, False),
])
def test_svc_binary(scaled, kernel, probability, zipmap):
    x, y = scaled
    x, y = x[y > 0], y[y > 0]
    estimator = SVC(kernel=kernel, probability=probability, random_state=0).fit(x, y)
    label, _ = assert_agrees(convert(estimator, x, zipmap), x)
    np.testing.assert_array_equal(label, estimator.predict(x))


def test_svc_string_labels_with_zipmap(scaled):
    x, y = scaled
    estimator = SVC(probability=True, random_state=0).fit(x, SPECIES[y])
    label, probabilities = assert_agrees(convert(estimator, x, zipmap=True), x)
    np.testing.assert_array_equal(label, estimator.predict(x))
    assert probabilities.shape == (len(x), 3)


@pytest.mark.parametrize("estimator", [SVR(), NuSVR(), OneClassSVM(gamma=0.3)],
                         ids=lambda e: type(e).__name__)
def test_svm_regressors(scaled, estimator):
    x, y = scaled
    estimator.fit(x, y.astype(np.float64))
    outputs = assert_agrees(convert(estimator, x, zipmap=None), x)
    if isinstance(estimator, OneClassSVM):
        np.testing.assert_array_equal(outputs[0].ravel(), estimator.predict(x))
    else:
        np.testing.assert_allclose(outputs[0].ravel(), estimator.predict(x), atol=1e-4)


@pytest.mark.parametrize("estimator", [
    StandardScaler(), Normalizer("l1"), Normalizer("l2"), Normalizer("max"),
    Binarizer(threshold=3.0),
], ids=lambda e: repr(e))
def test_transformers(iris, estimator):
    x, _ = iris
    estimator.fit(x)
    (result,) = assert_agrees(convert(estimator, x, zipmap=None), x)
    np.testing.assert_allclose(result, estimator.transform(x), rtol=1e-5, atol=1e-5)


def test_simple_imputer(iris):
    x, _ = iris
    holes = x.copy()
    holes[::7, 1] = np.nan
    holes[::5, 3] = np.nan
    estimator = SimpleImputer().fit(holes)
    (result,) = assert_agrees(convert(estimator, holes, zipmap=None), holes)
    np.testing.assert_allclose(result, estimator.transform(holes), rtol=1e-5)


def test_one_hot_encoder_int_categories():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(30, 3)).astype(np.int64)
    estimator = OneHotEncoder(handle_unknown="ignore").fit(x)
    unseen = np.vstack([x, [[9, 0, 1]]]).astype(np.int64)
    (result,) = assert_agrees(convert(estimator, x, zipmap=None), unseen)
    np.testing.assert_allclose(result, estimator.transform(unseen).toarray())


def test_one_hot_encoder_string_categories():
    rng = np.random.default_rng(1)
    x = rng.choice(np.array(["red", "green", "blue"], dtype=object), size=(25, 2))
    estimator = OneHotEncoder(handle_unknown="ignore").fit(x)
    unseen = np.vstack([x, [["pink", "red"]]])
    model = convert(estimator, x, zipmap=None)
    (result,) = assert_agrees(model, unseen)
    np.testing.assert_allclose(result, estimator.transform(unseen).toarray())
    module = bridge.from_onnx(model)
    assert set(module.input_vocabularies[model.graph.input[0].name]) == {"red", "green", "blue"}
    copied = copy.deepcopy(module)  # fx's deepcopy alone drops these attributes
    for name in ("input_names", "output_names", "opsets", "input_vocabularies",
                 "output_vocabularies"):
        assert getattr(copied, name) == getattr(module, name)


@pytest.mark.cuda
def test_ml_graphs_run_on_cuda(scaled):
    import torch

    x, y = scaled
    estimators = [SVC(probability=True, random_state=0).fit(x, SPECIES[y]),
                  LogisticRegression(max_iter=500).fit(x, y), SVR().fit(x, y.astype(float)),
                  Normalizer("l2").fit(x)]
    for estimator in estimators:
        zipmap = True if hasattr(estimator, "classes_") else None
        module = bridge.from_onnx(convert(estimator, x, zipmap))
        tensor = torch.from_numpy(x)
        expected = module(tensor)
        actual = module.to("cuda")(tensor.to("cuda"))
        expected = expected if isinstance(expected, tuple) else (expected,)
        actual = actual if isinstance(actual, tuple) else (actual,)
        for a, e in zip(actual, expected):
            assert a.device.type == "cuda"
            assert_parity(a.cpu(), e, what=type(estimator).__name__, **TOLERANCE)
