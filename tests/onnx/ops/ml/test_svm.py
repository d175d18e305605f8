"""SVMClassifier and SVMRegressor against onnxruntime: every kernel, votes, Platt probabilities.

The node attributes come from scikit-learn SVMs fitted on standardized iris data (so kernel
terms are O(1)), copied into one-node models. Tolerance: rtol 1e-4, atol 1e-5 on scores and
probabilities, labels exact. Inputs with kernel terms of size S carry float32 rounding of
about 1e-7 * S in either runtime (a cubic kernel on raw iris reaches S ~ 1e4, 5e-4 apart).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import skl2onnx
import torch
from onnx import TensorProto, helper
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR, NuSVR, OneClassSVM

import bridge
from bridge.errors import UnsupportedOperatorError
from bridge.onnx.ops.ml.svm import OnnxSVMClassifier, couple_pairwise_probabilities
from tests.onnx.ops.ml.test_encoders import assert_decoded_matches_onnxruntime
from tests.parity import ML_DOMAIN, assert_matches_onnxruntime, single_node_model

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
KERNELS = ["linear", "poly", "rbf", "sigmoid"]


@pytest.fixture(scope="module")
def iris():
    x, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(x).astype(np.float32), y


def svm_attributes(estimator, x) -> dict:
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "classes_") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = skl2onnx.to_onnx(estimator, x[:1], options=options)
    (node,) = [n for n in model.graph.node if n.op_type.startswith("SVM")]
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def classifier_model(x, attributes, label_type=TensorProto.INT64):
    return single_node_model(
        "SVMClassifier", {"x": x}, ("label", "scores"), attributes=attributes, domain=ML_DOMAIN,
        ml_opset=1, output_types={"label": label_type, "scores": TensorProto.FLOAT},
    )


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("probability", [False, True])
@pytest.mark.parametrize("classes", [3, 2])
def test_svc_matches_onnxruntime(iris, kernel, probability, classes):
    x, y = iris
    keep = y >= 3 - classes
    estimator = SVC(kernel=kernel, probability=probability, random_state=0).fit(x[keep], y[keep])
    model = classifier_model(x, svm_attributes(estimator, x))
    assert_matches_onnxruntime(model, {"x": x}, **TOLERANCE)


@pytest.mark.parametrize("post_transform", ["LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"])
@pytest.mark.parametrize("classes", [3, 2])
def test_svc_post_transforms(iris, post_transform, classes):
    # PROBIT is checked on LinearClassifier, where the scores can be kept inside (0, 1)
    x, y = iris
    keep = y >= 3 - classes
    attributes = svm_attributes(SVC().fit(x[keep], y[keep]), x)
    attributes["post_transform"] = post_transform
    assert_matches_onnxruntime(classifier_model(x, attributes), {"x": x}, **TOLERANCE)


def test_binary_svc_refuses_probit(iris):
    x, y = iris
    attributes = svm_attributes(SVC().fit(x[y > 0], y[y > 0]), x)
    attributes["post_transform"] = "PROBIT"
    with pytest.raises(UnsupportedOperatorError, match="second score column"):
        bridge.from_onnx(classifier_model(x, attributes))


def test_svc_string_labels_and_double_input(iris):
    x, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    attributes = svm_attributes(SVC(probability=True, random_state=0).fit(x, names), x)
    x64 = x.astype(np.float64)
    model = classifier_model(x64, attributes, TensorProto.STRING)
    assert_decoded_matches_onnxruntime(model, {"x": x64}, **TOLERANCE)


@pytest.mark.parametrize("classes, probabilities", [(3, False), (3, True), (2, False), (1, False)])
def test_linear_mode_without_support_vectors(iris, classes, probabilities):
    x, _ = iris
    rng = np.random.default_rng(classes)
    attributes = {"coefficients": rng.normal(size=classes * 4).tolist(), "rho": [0.3],
                  "classlabels_ints": list(range(10, 10 + classes)),
                  "kernel_type": "RBF", "kernel_params": [0.5, 0.0, 3.0]}  # forced linear
    if probabilities:
        attributes.update(prob_a=[-1.0], prob_b=[0.1])
    assert_matches_onnxruntime(classifier_model(x, attributes), {"x": x}, **TOLERANCE)


@pytest.mark.parametrize("rho", [-1.0, 0.7])
def test_linear_mode_binary_label_rules_with_positive_weights(iris, rho):
    x, _ = iris
    attributes = {"coefficients": [0.1, 0.2, 0.05, 0.3, 0.2, 0.1, 0.4, 0.05], "rho": [rho],
                  "classlabels_ints": [4, 8], "kernel_params": [0.5, 0.0, 3.0]}
    label, _ = assert_matches_onnxruntime(classifier_model(x, attributes), {"x": x}, **TOLERANCE)
    assert len(set(label.tolist())) == 2  # both rules (>= 0.5 and arg-max) are exercised


@pytest.mark.parametrize("estimator", [
    SVR(kernel="rbf"), SVR(kernel="linear"), NuSVR(kernel="poly"), NuSVR(kernel="sigmoid"),
    OneClassSVM(gamma=0.5),
], ids=lambda e: f"{type(e).__name__}-{e.kernel}")
def test_svm_regressor_matches_onnxruntime(iris, estimator):
    x, y = iris
    attributes = svm_attributes(estimator.fit(x, y.astype(np.float32)), x)
    model = single_node_model("SVMRegressor", {"x": x}, attributes=attributes, domain=ML_DOMAIN,
                              ml_opset=1, output_types={"y": TensorProto.FLOAT})
    # Both runtimes sum the terms coef_i * K(x, sv_i) in float32: allow 2e-7 of their total size
    # (a linear SVR here sums terms of total size ~370 into values of ~1).
    scale = term_scale(attributes, x)
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-4, atol=max(1e-5, 2e-7 * scale))


def term_scale(attributes: dict, x: np.ndarray) -> float:
    """max over samples of sum_i |coef_i * K(x, sv_i)|, computed in float64."""
    vectors = np.asarray(attributes["support_vectors"], dtype=np.float64)
    vectors = vectors.reshape(attributes["n_supports"], -1)
    gamma, coef0, degree = attributes["kernel_params"]
    kernel = attributes["kernel_type"]
    kernel = kernel.decode() if isinstance(kernel, bytes) else kernel
    x = x.astype(np.float64)
    if kernel == "RBF":
        values = np.exp(-gamma * ((x[:, None, :] - vectors[None]) ** 2).sum(-1))
    elif kernel == "POLY":
        values = (gamma * x @ vectors.T + coef0) ** degree
    elif kernel == "SIGMOID":
        values = np.tanh(gamma * x @ vectors.T + coef0)
    else:
        values = x @ vectors.T
    return float((np.abs(values) @ np.abs(np.asarray(attributes["coefficients"]))).max())


def test_svm_regressor_linear_mode_and_vector_input(iris):
    x, _ = iris
    attributes = {"coefficients": [1.0, -2.0, 0.5, 0.25], "rho": [0.5],
                  "kernel_params": [0.1, 0.0, 3.0]}
    model = single_node_model("SVMRegressor", {"x": x[0]}, attributes=attributes,
                              domain=ML_DOMAIN, ml_opset=1, output_types={"y": TensorProto.FLOAT})
    (result,) = assert_matches_onnxruntime(model, {"x": x[0]}, **TOLERANCE)
    assert result.shape == (1, 1)


def test_svm_regressor_refuses_post_transforms(iris):
    x, _ = iris
    model = single_node_model(
        "SVMRegressor", {"x": x}, domain=ML_DOMAIN, ml_opset=1,
        attributes={"coefficients": [1.0, 1.0, 1.0, 1.0], "rho": [0.0],
                    "post_transform": "LOGISTIC", "kernel_params": [0.1, 0.0, 3.0]},
    )
    with pytest.raises(UnsupportedOperatorError, match="post_transform='LOGISTIC'"):
        bridge.from_onnx(model)


def test_pairwise_coupling_of_consistent_probabilities_recovers_them():
    truth = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    pairwise = truth.unsqueeze(2) / (truth.unsqueeze(2) + truth.unsqueeze(1))
    pairwise = pairwise * (1 - torch.eye(3))
    coupled = couple_pairwise_probabilities(pairwise).numpy()
    np.testing.assert_allclose(coupled, truth.numpy(), atol=2e-3, rtol=0)  # stops at 0.005 / C


def test_svc_scripts_traces_and_differentiates(iris):
    x, y = iris
    attributes = svm_attributes(SVC(probability=True, random_state=0).fit(x, y), x)
    module = bridge.from_onnx(classifier_model(x[:20], attributes))  # declares 20 rows
    tensor = torch.from_numpy(x[:20])
    label, probabilities = module(tensor)
    (svc,) = [m for m in module.modules() if isinstance(m, OnnxSVMClassifier)]
    scripted_label, scripted_probabilities = torch.jit.script(svc)(tensor)
    assert torch.equal(scripted_label, label)
    torch.testing.assert_close(scripted_probabilities, probabilities)
    traced = torch.jit.trace(module, (tensor,), check_trace=False)
    torch.testing.assert_close(traced(tensor)[1], probabilities)
    inputs = tensor.clone().requires_grad_(True)
    module(inputs)[1][:, 0].sum().backward()
    assert inputs.grad is not None and torch.isfinite(inputs.grad).all()
    assert inputs.grad.abs().sum() > 0
