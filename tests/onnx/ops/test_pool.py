"""MaxPool, AveragePool, LpPool and global pooling against onnxruntime."""

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


WINDOWS = [
    {"kernel_shape": [3, 3]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 1, 2, 0]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [3, 2], "auto_pad": "SAME_UPPER", "strides": [2, 2]},
    {"kernel_shape": [3, 2], "auto_pad": "SAME_LOWER", "strides": [2, 1]},
    {"kernel_shape": [3, 3], "auto_pad": "VALID", "strides": [2, 2]},
    {"kernel_shape": [3, 3], "pads": [2, 2, 2, 2]}  # wider than torch allows,
]


@pytest.mark.parametrize("attributes", WINDOWS + [{"kernel_shape": [2, 2], "dilations": [2, 2]}])
def test_max_pool_with_indices(attributes):
    x = _random(2, 3, 7, 8)
    model = single_node_model("MaxPool", {"x": x}, ("y", "indices"), attributes=attributes,
                              opset=12)
    assert_matches_onnxruntime(model, {"x": x}, rtol=0, atol=0)


def test_max_pool_column_major_indices_and_int8():
    x = _random(1, 2, 5, 6)
    model = single_node_model("MaxPool", {"x": x}, ("y", "indices"), opset=12,
                              attributes={"kernel_shape": [2, 2], "storage_order": 1})
    assert_matches_onnxruntime(model, {"x": x}, rtol=0, atol=0)
    ints = np.random.default_rng(1).integers(-100, 100, (1, 2, 5, 6)).astype(np.int8)
    model = single_node_model("MaxPool", {"x": ints}, opset=12,
                              attributes={"kernel_shape": [3, 3], "pads": [1, 0, 0, 1]})
    assert_matches_onnxruntime(model, {"x": ints}, rtol=0, atol=0)


@pytest.mark.parametrize("attributes", WINDOWS[:7])
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool(attributes, count_include_pad):
    x = _random(2, 3, 7, 8)
    model = single_node_model("AveragePool", {"x": x}, opset=19,
                              attributes={**attributes, "count_include_pad": count_include_pad})
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spatial", [(9,), (4, 5, 6)])
def test_average_and_max_pool_1d_3d(spatial):
    x = _random(1, 2, *spatial)
    rank = len(spatial)
    for op in ("AveragePool", "MaxPool"):
        model = single_node_model(op, {"x": x}, attributes={
            "kernel_shape": [2] * rank, "strides": [2] * rank, "pads": [1] * rank + [0] * rank})
        assert_matches_onnxruntime(model, {"x": x}, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_pool(p):
    x = _random(2, 3, 6, 7)
    model = single_node_model("LpPool", {"x": x}, opset=18, attributes={
        "kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 0, 1], "p": p})
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 4, 5)])
def test_global_pool(op, shape):
    x = _random(*shape)
    assert_matches_onnxruntime(single_node_model(op, {"x": x}), {"x": x}, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pool_gradient_matches_torch_and_scripts(op):
    x = _random(1, 2, 6, 6)
    model = single_node_model(op, {"x": x}, attributes={"kernel_shape": [2, 2], "strides": [2, 2]})
    module = bridge.from_onnx(model)
    tensor = torch.from_numpy(x).requires_grad_()
    module(tensor).sum().backward()
    reference = tensor.detach().clone().requires_grad_()
    function = torch.nn.functional.max_pool2d if op == "MaxPool" else torch.nn.functional.avg_pool2d
    function(reference, 2, 2).sum().backward()
    torch.testing.assert_close(tensor.grad, reference.grad)
    scripted = torch.jit.script(torch.fx.GraphModule(module, module.graph))
    torch.testing.assert_close(scripted(tensor), module(tensor))
