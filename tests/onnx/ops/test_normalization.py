"""Normalization layers and Dropout against onnxruntime."""

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



@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 5), (2, 3, 4, 5)])
def test_batch_normalization_inference(shape):
    x = _random(*shape)
    rng = np.random.default_rng(1)
    stats = {"scale": _random(3), "bias": _random(3), "mean": _random(3),
             "var": rng.uniform(0.5, 2, 3).astype(np.float32)}
    model = single_node_model("BatchNormalization", {"x": x}, initializers=stats, opset=15,
                              attributes={"epsilon": 1e-3})
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-5, atol=1e-5)


def test_batch_normalization_training_mode_outputs_running_statistics():
    x = _random(4, 3, 5)
    stats = {"scale": _random(3), "bias": _random(3), "mean": np.zeros(3, np.float32),
             "var": np.ones(3, np.float32)}
    model = single_node_model("BatchNormalization", {"x": x}, ("y", "mean_out", "var_out"),
                              initializers=stats, opset=15,
                              attributes={"training_mode": 1, "momentum": 0.8})
    y, running_mean, running_var = bridge.from_onnx(model)(torch.from_numpy(x))
    batch_mean = x.mean(axis=(0, 2))
    batch_var = x.var(axis=(0, 2))
    np.testing.assert_allclose(running_mean.numpy(), 0.2 * batch_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(running_var.numpy(), 0.8 + 0.2 * batch_var, rtol=1e-5)
    expected = (x - batch_mean[:, None]) / np.sqrt(batch_var[:, None] + 1e-5)
    expected = expected * stats["scale"][:, None] + stats["bias"][:, None]
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_instance_normalization():
    x = _random(2, 3, 4, 5)
    model = single_node_model("InstanceNormalization", {"x": x}, opset=6,
                              initializers={"scale": _random(3), "bias": _random(3)})
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis", [-1, -2, 1])
def test_layer_normalization_with_statistics(axis):
    x = _random(2, 3, 4)
    normalized = x.shape[axis:]
    model = single_node_model(
        "LayerNormalization", {"x": x}, ("y", "mean", "inv_std"), opset=17,
        initializers={"scale": _random(*normalized), "bias": _random(*normalized)},
        attributes={"axis": axis, "epsilon": 1e-3})
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opset", [18, 21])
def test_group_normalization(opset):
    x = _random(2, 6, 3, 2)
    affine_size = 6 if opset == 21 else 3
    model = single_node_model("GroupNormalization", {"x": x}, opset=opset,
                              initializers={"scale": _random(affine_size),
                                            "bias": _random(affine_size)},
                              attributes={"num_groups": 3})
    module = bridge.from_onnx(model)
    grouped = x.reshape(2, 3, -1)
    normalized = ((grouped - grouped.mean(-1, keepdims=True))
                  / np.sqrt(grouped.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    scale = np.asarray(model.graph.initializer[0].float_data or
                       onnx.numpy_helper.to_array(model.graph.initializer[0]))
    bias = onnx.numpy_helper.to_array(model.graph.initializer[1])
    if opset == 18:
        scale, bias = np.repeat(scale, 2), np.repeat(bias, 2)
    expected = normalized * scale[None, :, None, None] + bias[None, :, None, None]
    np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), expected, rtol=1e-4,
                               atol=1e-5)


def test_rms_normalization_matches_formula():
    x = _random(2, 3, 4)
    scale = _random(4)
    model = single_node_model("RMSNormalization", {"x": x}, initializers={"scale": scale},
                              opset=23)
    expected = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-5) * scale
    result = bridge.from_onnx(model)(torch.from_numpy(x))
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p, axis", [(1, 1), (2, -1)])
def test_lp_normalization(p, axis):
    x = _random(3, 4, 5)
    model = single_node_model("LpNormalization", {"x": x}, attributes={"p": p, "axis": axis})
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-5, atol=1e-6)


def test_mean_variance_normalization():
    x = _random(2, 3, 4, 5)
    model = single_node_model("MeanVarianceNormalization", {"x": x}, opset=13)
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-4, atol=1e-5)


def test_lrn():
    x = _random(2, 6, 4, 3)
    model = single_node_model("LRN", {"x": x}, opset=13,
                              attributes={"size": 3, "alpha": 0.01, "beta": 0.6, "bias": 2.0})
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-5, atol=1e-6)


def test_lrn_even_size_uses_onnx_window_placement():
    # onnxruntime only accepts odd sizes; ONNX puts floor((size-1)/2) channels before c
    x = _random(1, 5, 2)
    model = single_node_model("LRN", {"x": x}, attributes={"size": 4, "alpha": 0.1})
    squares = np.pad(x**2, ((0, 0), (1, 2), (0, 0)))
    sums = sum(squares[:, i:i + 5] for i in range(4))
    expected = x / (1.0 + 0.1 / 4 * sums) ** 0.75
    result = bridge.from_onnx(model)(torch.from_numpy(x))
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_dropout_inference_is_identity_with_true_mask():
    x = _random(3, 4)
    model = single_node_model("Dropout", {"x": x}, ("y", "mask"), opset=13)
    assert_matches_onnxruntime(model, {"x": x}, rtol=0, atol=0)


def test_dropout_in_training_mode_is_random_and_never_folded():
    x = np.ones((200, 50), np.float32)
    model = single_node_model("Dropout", {"x": x}, ("y", "mask"), opset=13, initializers={
        "ratio": np.array(0.25, np.float32), "training_mode": np.array(True)})
    module = bridge.from_onnx(model)
    y, mask = module(torch.from_numpy(x))
    assert mask.dtype == torch.bool
    kept = mask.float().mean().item()
    assert 0.7 < kept < 0.8
    torch.testing.assert_close(y, mask.float() / 0.75)
    other, _ = module(torch.from_numpy(x))
    assert not torch.equal(y, other)


@pytest.mark.parametrize("axis, scale_shape, with_bias", [
    (-1, (4,), True), (1, (3, 4), False), (-2, (1, 4), True), (-1, (4,), False)])
def test_layer_normalization_output_y_only(axis, scale_shape, with_bias):
    # exact scale/bias shapes take torch's fused kernel, broadcast ones the general path
    x = _random(2, 3, 4)
    initializers = {"scale": _random(*scale_shape)}
    if with_bias:
        initializers["bias"] = _random(*scale_shape)
    model = single_node_model("LayerNormalization", {"x": x}, opset=17,
                              initializers=initializers, attributes={"axis": axis})
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-4, atol=1e-5)


def test_layer_normalization_gradient_and_scripting():
    x = _random(2, 5)
    scale, bias = _random(5), _random(5)
    model = single_node_model("LayerNormalization", {"x": x}, opset=17,
                              initializers={"scale": scale, "bias": bias})
    module = bridge.from_onnx(model)
    tensor = torch.from_numpy(x).requires_grad_()
    module(tensor).pow(2).sum().backward()
    reference = tensor.detach().clone().requires_grad_()
    torch.nn.functional.layer_norm(reference, (5,), torch.from_numpy(scale),
                                   torch.from_numpy(bias)).pow(2).sum().backward()
    torch.testing.assert_close(tensor.grad, reference.grad, rtol=1e-4, atol=1e-5)
    scripted = torch.jit.script(torch.fx.GraphModule(module, module.graph))
    torch.testing.assert_close(scripted(tensor), module(tensor))
