"""SwiGLU, TensorScatter, CausalConvWithState and LinearAttention.

onnxruntime has TensorScatter; the newer operators are checked against the ONNX
reference implementation (onnxruntime 1.31 has no kernels for them).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from bridge.onnx.ops.transformer import OnnxCausalConvWithState, OnnxSwiGLU
from tests.parity import assert_matches_onnxruntime, assert_parity, run_bridge, single_node_model


def _random(*shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _node_model(op, inputs, input_names, outputs, opset, attributes=None):
    model = single_node_model(op, inputs, outputs, opset=opset, attributes=attributes)
    del model.graph.node[0].input[:]
    model.graph.node[0].input.extend(input_names)
    return onnx.shape_inference.infer_shapes(model)


def _matches_reference(model, inputs, rtol, atol):
    expected = ReferenceEvaluator(model).run(None, inputs)
    actual = run_bridge(model, inputs)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert_parity(a, e, rtol=rtol, atol=atol)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_swiglu(alpha):
    inputs = {"a": _random(3, 8), "b": _random(3, 8, seed=1)}
    model = single_node_model("SwiGLU", inputs, opset=28, attributes={"alpha": alpha})
    _matches_reference(model, inputs, rtol=1e-5, atol=1e-6)


def test_swiglu_scripts():
    module = OnnxSwiGLU(1.0)
    a, b = torch.randn(4), torch.randn(4)
    torch.testing.assert_close(torch.jit.script(module)(a, b), torch.nn.functional.silu(a) * b)


@pytest.mark.parametrize("mode", ["linear", "circular"])
@pytest.mark.parametrize("axis", [-2, 1])
def test_tensor_scatter(mode, axis):
    cache = _random(3, 6, 4)
    update = _random(3, 2, 4, seed=1)
    indices = np.array([0, 3, 5 if mode == "circular" else 4], np.int64)
    inputs = {"cache": cache, "update": update, "indices": indices}
    model = single_node_model("TensorScatter", inputs, opset=24,
                              attributes={"mode": mode, "axis": axis})
    assert_matches_onnxruntime(model, inputs, rtol=0, atol=0)


@pytest.mark.parametrize("activation", ["none", "silu"])
@pytest.mark.parametrize("with_state", [False, True])
def test_causal_conv_with_state(activation, with_state):
    inputs = {"x": _random(2, 3, 7), "w": _random(3, 1, 4, seed=1), "bias": _random(3, seed=2)}
    names = ["x", "w", "bias"]
    if with_state:
        inputs["state"] = _random(2, 3, 3, seed=3)
        names.append("state")
    model = _node_model("CausalConvWithState", inputs, names, ("y", "present"), 27,
                        {"activation": activation})
    _matches_reference(model, inputs, rtol=1e-5, atol=1e-5)


def test_causal_conv_state_chains_across_calls():
    module = OnnxCausalConvWithState(False)
    x, weight = torch.randn(1, 2, 10), torch.randn(2, 1, 3)
    whole, _ = module(x, weight)
    first, state = module(x[:, :, :6], weight)
    second, _ = module(x[:, :, 6:], weight, None, state)
    torch.testing.assert_close(torch.cat([first, second], 2), whole)


@pytest.mark.parametrize(("rule", "decay_size", "beta_size"), [
    ("linear", 0, 0), ("gated", 2, 0), ("gated", 16, 0), ("delta", 0, 2),
    ("gated_delta", 16, 2), ("gated_delta", 2, 1),
])
@pytest.mark.parametrize(("q_heads", "with_past"), [(2, False), (4, True)])
def test_linear_attention(rule, decay_size, beta_size, q_heads, with_past):
    batch, steps, kv_heads, size = 2, 3, 2, 8
    inputs = {"q": _random(batch, steps, q_heads * size, scale=0.5),
              "k": _random(batch, steps, kv_heads * size, seed=1, scale=0.5),
              "v": _random(batch, steps, kv_heads * size, seed=2)}
    names = ["q", "k", "v", "", "", ""]
    if with_past:
        inputs["past"] = _random(batch, kv_heads, size, size, seed=3, scale=0.1)
        names[3] = "past"
    if decay_size:
        # decay per key/value head (size 2) or per head and key feature (size 16)
        decay = -np.abs(_random(batch, steps, decay_size, seed=4))
        inputs["decay"] = decay.astype(np.float32)
        names[4] = "decay"
    if beta_size:
        beta = np.random.default_rng(5).uniform(size=(batch, steps, beta_size))
        inputs["beta"] = beta.astype(np.float32)
        names[5] = "beta"
    model = _node_model("LinearAttention", inputs, names, ("y", "state"), 27,
                        {"q_num_heads": q_heads, "kv_num_heads": kv_heads, "update_rule": rule})
    _matches_reference(model, inputs, rtol=1e-4, atol=1e-5)
