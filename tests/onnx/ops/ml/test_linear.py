"""LinearClassifier and LinearRegressor against onnxruntime, for every post-transform.

Tolerance: rtol 1e-5, atol 1e-6 (float32 GEMM of a few features; transforms elementwise),
except PROBIT: rtol 1e-4, atol 1e-5, because the closed-form erfinv that onnxruntime uses
subtracts nearly equal terms and magnifies the last-bit rounding of the score about tenfold.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto

import bridge
from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.ops.ml.linear import OnnxLinearClassifier, OnnxLinearRegressor
from tests.onnx.ops.ml.test_encoders import assert_decoded_matches_onnxruntime
from tests.parity import ML_DOMAIN, assert_matches_onnxruntime, single_node_model

TRANSFORMS = ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"]
FEATURES = 4


def tolerance(post_transform: str) -> dict:
    return {"rtol": 1e-4, "atol": 1e-5} if post_transform == "PROBIT" else {"rtol": 1e-5, "atol": 1e-6}


def classifier_model(x, rows, post_transform, labels=None, label_type=TensorProto.INT64):
    rng = np.random.default_rng(rows)
    # small weights and a 0.5 intercept keep scores in (0, 1), where PROBIT is defined
    attributes = {
        "coefficients": rng.uniform(-0.1, 0.1, size=rows * FEATURES).tolist(),
        "intercepts": (0.5 + rng.uniform(-0.2, 0.2, size=rows)).tolist(),
        "post_transform": post_transform,
    }
    if labels is not None:
        attributes["classlabels_strings" if isinstance(labels[0], str) else "classlabels_ints"] = labels
    return single_node_model(
        "LinearClassifier", {"x": x}, ("label", "scores"), attributes=attributes,
        domain=ML_DOMAIN, ml_opset=1,
        output_types={"label": label_type, "scores": TensorProto.FLOAT},
    )


@pytest.fixture
def x():
    return np.random.default_rng(0).uniform(-2, 2, size=(9, FEATURES)).astype(np.float32)


CLASSIFIER_CASES = [
    (transform, rows, labels)
    for transform in TRANSFORMS
    for rows, labels in [(3, [5, 6, 7]), (2, [0, 1]), (1, [3, 9]), (1, None)]
    # PROBIT, one row, two labels: refused, see test_probit_with_two_labels_and_one_row_is_refused
    if not (transform == "PROBIT" and rows == 1 and labels is not None)
]


@pytest.mark.parametrize("post_transform, rows, labels", CLASSIFIER_CASES)
def test_linear_classifier_matches_onnxruntime(x, post_transform, rows, labels):
    model = classifier_model(x, rows, post_transform, labels)
    assert_matches_onnxruntime(model, {"x": x}, **tolerance(post_transform))


@pytest.mark.parametrize("rows, labels", [(3, ["ant", "bee", "cow"]), (1, ["no", "yes"])])
def test_linear_classifier_string_labels(x, rows, labels):
    model = classifier_model(x, rows, "LOGISTIC", labels, TensorProto.STRING)
    assert_decoded_matches_onnxruntime(model, {"x": x}, rtol=1e-5, atol=1e-6)
    assert bridge.from_onnx(model).output_vocabularies["label"] == labels


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.int32])
def test_linear_classifier_casts_other_input_types(dtype):
    x = np.random.default_rng(1).integers(-3, 4, size=(5, FEATURES)).astype(dtype)
    model = classifier_model(x, 3, "SOFTMAX", [1, 2, 3])
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-5, atol=1e-6)


def test_linear_classifier_vector_input_is_one_sample(x):
    model = classifier_model(x[0], 3, "NONE", [0, 1, 2])
    label, scores = assert_matches_onnxruntime(model, {"x": x[0]}, rtol=1e-5, atol=1e-6)
    assert label.shape == (1,) and scores.shape == (1, 3)


def test_probit_with_two_labels_and_one_row_is_refused(x):
    with pytest.raises(UnsupportedOperatorError, match="PROBIT"):
        bridge.from_onnx(classifier_model(x, 1, "PROBIT", [0, 1]))


def test_coefficients_must_split_into_rows(x):
    model = single_node_model(
        "LinearClassifier", {"x": x}, ("label", "scores"), domain=ML_DOMAIN, ml_opset=1,
        attributes={"coefficients": [1.0, 2.0, 3.0], "intercepts": [0.0, 1.0],
                    "classlabels_ints": [0, 1]},
    )
    with pytest.raises(ConversionError, match="3 coefficients"):
        bridge.from_onnx(model)


@pytest.mark.parametrize("post_transform", TRANSFORMS)
@pytest.mark.parametrize("targets, with_intercepts", [(1, True), (3, True), (2, False)])
def test_linear_regressor_matches_onnxruntime(x, post_transform, targets, with_intercepts):
    rng = np.random.default_rng(targets)
    attributes = {"coefficients": rng.uniform(-0.1, 0.1, size=targets * FEATURES).tolist(),
                  "targets": targets, "post_transform": post_transform}
    if with_intercepts:
        attributes["intercepts"] = (0.5 + rng.uniform(-0.2, 0.2, size=targets)).tolist()
    elif post_transform == "PROBIT":
        attributes["coefficients"] = (np.abs(attributes["coefficients"]) / 10).tolist()
        x = np.abs(x)  # keep scores in (0, 1) without intercepts
    model = single_node_model("LinearRegressor", {"x": x}, attributes=attributes,
                              domain=ML_DOMAIN, ml_opset=1,
                              output_types={"y": TensorProto.FLOAT})
    (result,) = assert_matches_onnxruntime(model, {"x": x}, **tolerance(post_transform))
    assert result.shape == (len(x), targets)


def test_linear_modules_script_trace_and_differentiate(x):
    model = classifier_model(x, 3, "SOFTMAX", [0, 1, 2])
    module = bridge.from_onnx(model)
    tensor = torch.from_numpy(x)
    label, scores = module(tensor)
    (classifier,) = [m for m in module.modules() if isinstance(m, OnnxLinearClassifier)]
    scripted_label, scripted_scores = torch.jit.script(classifier)(tensor)
    torch.testing.assert_close(scripted_scores, scores)
    assert torch.equal(scripted_label, label)
    traced = torch.jit.trace(module, (tensor,))
    torch.testing.assert_close(traced(tensor)[1], scores)
    regressor = OnnxLinearRegressor(torch.tensor([[1.0, -2.0, 0.5, 3.0]]), torch.tensor([0.1]),
                                    "NONE")
    torch.jit.script(regressor)
    inputs = tensor.clone().requires_grad_(True)
    regressor(inputs).sum().backward()
    torch.testing.assert_close(inputs.grad, torch.tensor([[1.0, -2.0, 0.5, 3.0]]).expand(9, 4))
    softmax_input = tensor.clone().requires_grad_(True)
    module(softmax_input)[1][:, 0].sum().backward()
    assert softmax_input.grad is not None and torch.isfinite(softmax_input.grad).all()
