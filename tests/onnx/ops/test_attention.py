"""Attention and RotaryEmbedding against onnxruntime (and the ONNX reference where ORT lacks a case)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx.reference import ReferenceEvaluator

import bridge
from bridge.onnx.ops.attention import OnnxAttention, OnnxRotaryEmbedding
from tests.parity import assert_matches_onnxruntime, assert_parity, run_bridge, single_node_model


def _random(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _qkv(batch=2, q_heads=4, kv_heads=4, q_length=3, kv_length=5, size=8, v_size=8):
    return {
        "q": _random(batch, q_heads, q_length, size, seed=1),
        "k": _random(batch, kv_heads, kv_length, size, seed=2),
        "v": _random(batch, kv_heads, kv_length, v_size, seed=3),
    }


@pytest.mark.parametrize("attributes", [
    {},
    {"is_causal": 1},
    {"scale": 0.3},
    {"softcap": 2.0},
    {"is_causal": 1, "softcap": 1.5, "scale": 0.5},
])
@pytest.mark.parametrize("heads", [(4, 4), (4, 2), (4, 1)])
def test_attention_4d_matches_onnxruntime(attributes, heads):
    inputs = _qkv(q_heads=heads[0], kv_heads=heads[1], v_size=6)
    model = single_node_model("Attention", inputs, opset=23, attributes=attributes)
    assert_matches_onnxruntime(model, inputs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("causal", [0, 1])
def test_attention_3d_grouped_query(causal):
    inputs = {"q": _random(2, 3, 4 * 8, seed=1), "k": _random(2, 5, 2 * 8, seed=2),
              "v": _random(2, 5, 2 * 6, seed=3)}
    model = single_node_model("Attention", inputs, opset=23,
                              attributes={"q_num_heads": 4, "kv_num_heads": 2,
                                          "is_causal": causal})
    assert_matches_onnxruntime(model, inputs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mask_shape", [(3, 5), (1, 4, 3, 5), (2, 1, 3, 5), (4, 3, 5)])
@pytest.mark.parametrize("boolean", [False, True])
def test_attention_masks(mask_shape, boolean):
    inputs = _qkv()
    rng = np.random.default_rng(4)
    if boolean:
        mask = rng.uniform(size=mask_shape) > 0.3
        mask[..., 0] = True  # keep at least one key per row: ORT gives NaN rows otherwise
    else:
        mask = rng.standard_normal(mask_shape).astype(np.float32)
    inputs["attn_mask"] = mask
    model = single_node_model("Attention", inputs, opset=23)
    assert_matches_onnxruntime(model, inputs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_attention_past_present_and_qk_output(mode):
    inputs = _qkv(q_heads=4, kv_heads=2, q_length=2, kv_length=2)
    inputs["attn_mask"] = _random(2, 5, seed=5)
    inputs["past_key"] = _random(2, 2, 3, 8, seed=6)
    inputs["past_value"] = _random(2, 2, 3, 8, seed=7)
    model = single_node_model(
        "Attention", inputs, ("y", "present_key", "present_value", "qk"), opset=23,
        attributes={"qk_matmul_output_mode": mode, "softcap": 3.0})
    y, present_key, present_value, qk = assert_matches_onnxruntime(
        model, inputs, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(present_key[:, :, :3], inputs["past_key"])
    assert qk.shape == (2, 4, 2, 5)


def test_attention_causal_with_past_is_bottom_right_aligned():
    inputs = _qkv(q_length=2, kv_length=2)
    inputs["attn_mask"] = np.zeros((2, 5), np.float32)
    inputs["past_key"] = _random(2, 4, 3, 8, seed=6)
    inputs["past_value"] = _random(2, 4, 3, 8, seed=7)
    model = single_node_model("Attention", inputs, ("y", "present_key", "present_value"),
                              opset=23, attributes={"is_causal": 1})
    assert_matches_onnxruntime(model, inputs, rtol=1e-5, atol=1e-5)


def _reference(model, inputs):
    return ReferenceEvaluator(model).run(None, inputs)


@pytest.mark.parametrize("causal", [0, 1])
def test_attention_nonpad_kv_seqlen_matches_reference(causal):
    # onnxruntime's CPU kernel does not take nonpad_kv_seqlen; the ONNX reference does
    inputs = _qkv(q_length=2, kv_length=6)
    inputs["attn_mask"] = _random(2, 4, seed=8)  # shorter than kv: padded with -inf
    inputs["nonpad_kv_seqlen"] = np.array([3, 4], np.int64)
    names = ["q", "k", "v", "attn_mask", "", "", "nonpad_kv_seqlen"]
    model = single_node_model("Attention", inputs, opset=24, attributes={"is_causal": causal})
    model.graph.node[0].ClearField("input")
    model.graph.node[0].input.extend(names)
    expected = _reference(model, inputs)
    actual = run_bridge(model, inputs)
    assert_parity(actual[0], expected[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("window", [(2, 0), (1, 1), (-1, 2)])
def test_attention_sliding_window_matches_reference(window):
    inputs = _qkv(q_length=4, kv_length=6)
    model = single_node_model("Attention", inputs, opset=25, attributes={
        "left_window_size": window[0], "right_window_size": window[1]})
    assert_parity(run_bridge(model, inputs)[0], _reference(model, inputs)[0],
                  rtol=1e-5, atol=1e-6)


def test_attention_fully_masked_row_is_zero():
    inputs = _qkv(q_length=2, kv_length=3)
    mask = np.ones((2, 3), bool)
    mask[0] = False
    inputs["attn_mask"] = mask
    model = single_node_model("Attention", inputs, ("y", "present_k", "present_v", "qk"),
                              opset=24, attributes={"qk_matmul_output_mode": 3})
    y, _, _, probabilities = bridge.from_onnx(model)(*[torch.from_numpy(v) for v in inputs.values()])
    assert torch.all(y[:, :, 0] == 0) and torch.all(probabilities[:, :, 0] == 0)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(probabilities[:, :, 1].sum(-1), torch.ones(2, 4))


def test_attention_float16_matches_onnxruntime():
    inputs = {name: value.astype(np.float16) for name, value in _qkv().items()}
    model = single_node_model("Attention", inputs, opset=23, attributes={"is_causal": 1})
    # float16 outputs: one rounding of a float32 computation vs onnxruntime's own kernel
    assert_matches_onnxruntime(model, inputs, rtol=2e-3, atol=2e-3)


def test_attention_rejects_3d_inputs_without_heads():
    inputs = {"q": _random(2, 3, 8), "k": _random(2, 5, 8), "v": _random(2, 5, 8)}
    model = single_node_model("Attention", inputs, opset=23, attributes={"q_num_heads": 2})
    with pytest.raises(bridge.errors.ConversionError, match="kv_num_heads"):
        bridge.from_onnx(model)


def test_attention_scripts_traces_and_has_gradients():
    module = OnnxAttention(4, 2, None, True, 0.0, 2, None, -1, -1)
    q = torch.randn(2, 4, 3, 8, requires_grad=True)
    k, v = torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    eager = module(q, k, v)
    scripted = torch.jit.script(module)(q, k, v)
    traced = torch.jit.trace(module, (q, k, v))(q, k, v)
    for a, b in zip(eager, scripted):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(eager[0], traced[0])
    eager[0].sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


@pytest.mark.parametrize("attributes", [
    {}, {"interleaved": 1}, {"rotary_embedding_dim": 4}, {"interleaved": 1,
                                                         "rotary_embedding_dim": 4},
])
@pytest.mark.parametrize("with_positions", [False, True])
def test_rotary_embedding_4d(attributes, with_positions):
    x = _random(2, 3, 5, 8)
    half = attributes.get("rotary_embedding_dim", 8) // 2
    inputs = {"x": x}
    if with_positions:
        angles = _random(10, half, seed=2)
        inputs.update(cos=np.cos(angles), sin=np.sin(angles),
                      position_ids=np.array([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], np.int64))
    else:
        angles = _random(2, 5, half, seed=2)
        inputs.update(cos=np.cos(angles), sin=np.sin(angles))
    model = single_node_model("RotaryEmbedding", inputs, opset=23, attributes=attributes)
    assert_matches_onnxruntime(model, inputs, rtol=1e-5, atol=1e-6)


def test_rotary_embedding_3d_input_needs_num_heads():
    x = _random(2, 5, 3 * 8)
    angles = _random(2, 5, 4, seed=2)
    inputs = {"x": x, "cos": np.cos(angles), "sin": np.sin(angles)}
    model = single_node_model("RotaryEmbedding", inputs, opset=23, attributes={"num_heads": 3})
    assert_matches_onnxruntime(model, inputs, rtol=1e-5, atol=1e-6)
    no_heads = single_node_model("RotaryEmbedding", inputs, opset=23)
    with pytest.raises(bridge.errors.ConversionError, match="num_heads"):
        bridge.from_onnx(no_heads)


def test_rotary_embedding_scripts():
    module = OnnxRotaryEmbedding(True, 4, 0)
    x = torch.randn(1, 2, 3, 8)
    cos, sin = torch.randn(1, 3, 2), torch.randn(1, 3, 2)
    torch.testing.assert_close(torch.jit.script(module)(x, cos, sin), module(x, cos, sin))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_attention_and_rotary_run_on_cuda():
    inputs = _qkv(q_heads=4, kv_heads=2)
    inputs["attn_mask"] = _random(3, 5, seed=5)
    model = single_node_model("Attention", inputs, opset=23, attributes={"is_causal": 1})
    module = bridge.from_onnx(model).cuda()
    with torch.no_grad():
        on_gpu = module(*[torch.from_numpy(v).cuda() for v in inputs.values()])
    assert on_gpu.device.type == "cuda"
    assert_parity(on_gpu, run_bridge(model, inputs)[0], rtol=1e-4, atol=1e-4)
    rotary = OnnxRotaryEmbedding(True, 0, 0)
    x, cos, sin = torch.randn(1, 2, 3, 8), torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    torch.testing.assert_close(rotary(x.cuda(), cos.cuda(), sin.cuda()).cpu(), rotary(x, cos, sin))
