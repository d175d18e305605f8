"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import bridge
from tests.parity import assert_matches_onnxruntime
from tests.parity import single_node_model as _untyped_model


def single_node_model(*args, **kwargs) -> onnx.ModelProto:
    """``tests.parity.single_node_model`` with output types inferred (onnxruntime needs them)."""
    return onnx.shape_inference.infer_shapes(_untyped_model(*args, **kwargs))


def _random(*shape, dtype=np.float32):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)



@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("with_weight", [False, True])
@pytest.mark.parametrize("ignore_index", [None, 1])
def test_softmax_cross_entropy(reduction, with_weight, ignore_index):
    scores = _random(4, 3, 2)
    labels = np.array([[0, 1], [2, 1], [1, 1], [0, 2]], np.int64)
    inputs = {"scores": scores, "labels": labels}
    attributes = {"reduction": reduction}
    if ignore_index is not None:
        attributes["ignore_index"] = ignore_index
    initializers = {"weight": np.array([0.2, 0.5, 1.3], np.float32)} if with_weight else None
    model = single_node_model("SoftmaxCrossEntropyLoss", inputs, ("loss", "log_prob"),
                              initializers=initializers, attributes=attributes, opset=13)
    assert_matches_onnxruntime(model, inputs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_negative_log_likelihood(reduction):
    log_probabilities = np.log(np.random.default_rng(0).dirichlet(np.ones(4), 5)).astype(np.float32)
    target = np.array([0, 3, 2, 3, 1], np.int64)
    inputs = {"x": log_probabilities, "target": target}
    model = single_node_model("NegativeLogLikelihoodLoss", inputs, opset=13,
                              initializers={"weight": np.array([1, 2, 0.5, 1], np.float32)},
                              attributes={"reduction": reduction, "ignore_index": 3})
    assert_matches_onnxruntime(model, inputs, rtol=1e-5, atol=1e-6)


def test_cross_entropy_gradient_matches_torch():
    scores = _random(6, 4)
    labels = np.array([0, 1, 2, 3, 1, 0], np.int64)
    model = single_node_model("SoftmaxCrossEntropyLoss", {"scores": scores, "labels": labels},
                              opset=13)
    tensor = torch.from_numpy(scores).requires_grad_()
    bridge.from_onnx(model)(tensor, torch.from_numpy(labels)).backward()
    reference = tensor.detach().clone().requires_grad_()
    torch.nn.functional.cross_entropy(reference, torch.from_numpy(labels)).backward()
    torch.testing.assert_close(tensor.grad, reference.grad)
