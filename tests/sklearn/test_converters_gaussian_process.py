"""bridge's multiclass GaussianProcessClassifier converter: float64 exactness, kernels,
ties, refusals; binary problems stay with skl2onnx's converter."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.gaussian_process import GaussianProcessClassifier
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

import bridge
from bridge.errors import UnsupportedEstimatorError
from tests.parity import assert_parity, run_onnxruntime
from tests.sklearn.cases import get_dataset
from tests.sklearn.checks import assert_labels_match

KERNELS = {
    "default": None,
    "rbf-white": ConstantKernel(1.0) * RBF(1.5) + WhiteKernel(0.1),
    "matern": Matern(length_scale=2.0, nu=1.5),
}


def _new_rows(width: int) -> np.ndarray:
    return np.random.default_rng(6).normal(scale=2.0, size=(600, width))


@pytest.mark.parametrize("kernel", list(KERNELS), ids=list(KERNELS))
def test_multiclass_probabilities_float64_and_float32(kernel):
    data = get_dataset("multiclass")
    classifier = GaussianProcessClassifier(KERNELS[kernel], random_state=0).fit(data.X, data.y)
    new = _new_rows(data.X.shape[1])
    exact = bridge.from_sklearn(classifier, dtype=np.float64)
    assert_parity(exact.predict_proba(new), classifier.predict_proba(new), rtol=1e-9,
                  atol=1e-9, what=f"{kernel} float64")
    assert_labels_match(classifier, new, exact.predict(new), classifier.predict(new))
    single = bridge.from_sklearn(classifier)
    # tolerance: see LOOSE_TOLERANCE["GaussianProcessClassifier-multiclass"] in cases.py
    assert_parity(single.predict_proba(new), classifier.predict_proba(new), rtol=0,
                  atol=5e-4, what=f"{kernel} float32")
    graph = single.onnx_model
    in_onnxruntime = run_onnxruntime(graph, {graph.graph.input[0].name: new.astype(np.float32)})
    assert_parity(in_onnxruntime[1], classifier.predict_proba(new), rtol=0, atol=5e-4,
                  what=f"{kernel} onnxruntime")


def test_binary_problems_in_standard_ops():
    # skl2onnx's own binary graph uses com.microsoft::Solve
    data = get_dataset("binary")
    classifier = GaussianProcessClassifier(random_state=0).fit(data.X, data.y)
    model = bridge.from_sklearn(classifier, dtype=np.float64)
    assert all(n.domain in ("", "ai.onnx") for n in model.onnx_model.graph.node)
    new = _new_rows(data.X.shape[1])
    np.testing.assert_array_equal(model.predict(new), classifier.predict(new))
    assert_parity(model.predict_proba(new), classifier.predict_proba(new), rtol=1e-9,
                  atol=1e-9, what="binary")


def test_one_vs_one_and_string_classes_are_refused_by_name():
    data = get_dataset("multiclass")
    one_vs_one = GaussianProcessClassifier(multi_class="one_vs_one", random_state=0).fit(
        data.X, data.y)
    with pytest.raises(UnsupportedEstimatorError, match="multi_class='one_vs_one'"):
        bridge.from_sklearn(one_vs_one)
    strings = GaussianProcessClassifier(random_state=0).fit(
        data.X, np.array(["a", "b", "c"])[data.y])
    with pytest.raises(UnsupportedEstimatorError, match="integer labels"):
        bridge.from_sklearn(strings)
