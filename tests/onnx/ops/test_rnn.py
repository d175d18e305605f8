"""RNN, GRU and LSTM against onnxruntime: directions, states, sequence lengths, layout."""

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


GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
HIDDEN, FEATURES, STEPS, BATCH = 4, 3, 5, 3
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def _recurrent_model(op, direction="forward", *, lengths=False, states=False, layout=0,
                     peepholes=False, attributes=None, opset=14):
    directions = 2 if direction == "bidirectional" else 1
    gates = GATES[op]
    rng = np.random.default_rng(1)
    x_shape = (BATCH, STEPS, FEATURES) if layout else (STEPS, BATCH, FEATURES)
    inputs = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    initializers = {
        "w": rng.standard_normal((directions, gates * HIDDEN, FEATURES)).astype(np.float32) * 0.5,
        "r": rng.standard_normal((directions, gates * HIDDEN, HIDDEN)).astype(np.float32) * 0.5,
        "b": rng.standard_normal((directions, 2 * gates * HIDDEN)).astype(np.float32) * 0.1,
    }
    names = ["x", "w", "r", "b", "", "", "", ""]
    if lengths:
        initializers["lengths"] = np.array([5, 2, 4], np.int32)
        names[4] = "lengths"
    if states:
        state_shape = (BATCH, directions, HIDDEN) if layout else (directions, BATCH, HIDDEN)
        inputs["h0"] = rng.standard_normal(state_shape).astype(np.float32)
        names[5] = "h0"
        if op == "LSTM":
            inputs["c0"] = rng.standard_normal(state_shape).astype(np.float32)
            names[6] = "c0"
    if peepholes:
        initializers["p"] = rng.standard_normal((directions, 3 * HIDDEN)).astype(np.float32)
        names[7] = "p"
    while names[-1] == "":
        names.pop()
    outputs = ["y", "y_h", "y_c"] if op == "LSTM" else ["y", "y_h"]
    node = onnx.helper.make_node(op, names, outputs, direction=direction, hidden_size=HIDDEN,
                                 layout=layout, **(attributes or {}))
    graph = onnx.helper.make_graph(
        [node], "recurrent",
        [onnx.helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, v.shape)
         for k, v in inputs.items()],
        [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in outputs],
        initializer=[onnx.numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model, inputs


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_recurrent_directions_with_lengths_and_states(op, direction):
    model, inputs = _recurrent_model(op, direction, lengths=True, states=True)
    assert_matches_onnxruntime(model, inputs, **TOLERANCE)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_recurrent_batch_first_layout_equals_transposed_sequence_first(op):
    # onnxruntime's CPU kernels reject layout=1, so compare with bridge's own layout=0 result
    batch_first, inputs = _recurrent_model(op, "bidirectional", states=True, layout=1)
    sequence_first, _ = _recurrent_model(op, "bidirectional", states=True, layout=0)
    tensors = [torch.from_numpy(inputs[name]) for name in inputs]
    got = bridge.from_onnx(batch_first)(*tensors)
    want = bridge.from_onnx(sequence_first)(*[t.transpose(0, 1) for t in tensors])
    torch.testing.assert_close(got[0], want[0].permute(2, 0, 1, 3))
    for got_state, want_state in zip(got[1:], want[1:]):
        torch.testing.assert_close(got_state, want_state.transpose(0, 1))


def test_gru_linear_before_reset_and_lstm_peepholes():
    model, inputs = _recurrent_model("GRU", "bidirectional", attributes={"linear_before_reset": 1})
    assert_matches_onnxruntime(model, inputs, **TOLERANCE)
    model, inputs = _recurrent_model("LSTM", "forward", peepholes=True, states=True)
    assert_matches_onnxruntime(model, inputs, **TOLERANCE)


def test_custom_activations_and_clip():
    model, inputs = _recurrent_model("GRU", attributes={
        "activations": ["HardSigmoid", "LeakyRelu"], "activation_alpha": [0.3, 0.1],
        "activation_beta": [0.4], "clip": 1.5})
    assert_matches_onnxruntime(model, inputs, **TOLERANCE)
    model, inputs = _recurrent_model("RNN", attributes={"activations": ["Relu"]})
    assert_matches_onnxruntime(model, inputs, **TOLERANCE)


def test_lstm_matches_torch_lstm_and_its_gradient():
    torch.manual_seed(0)
    reference = torch.nn.LSTM(FEATURES, HIDDEN)
    iofc = [0, 3, 1, 2]  # torch gate order i, f, g, o -> ONNX i, o, f, c

    def reorder(t):
        return torch.cat([t.chunk(4)[i] for i in iofc])

    w = reorder(reference.weight_ih_l0.detach())[None].numpy()
    r = reorder(reference.weight_hh_l0.detach())[None].numpy()
    b = torch.cat([reorder(reference.bias_ih_l0.detach()),
                   reorder(reference.bias_hh_l0.detach())])[None].numpy()
    x = _random(STEPS, BATCH, FEATURES)
    model = single_node_model("LSTM", {"x": x}, ("y", "y_h", "y_c"),
                              initializers={"w": w, "r": r, "b": b},
                              attributes={"hidden_size": HIDDEN}, opset=14)
    module = bridge.from_onnx(model)
    tensor = torch.from_numpy(x).requires_grad_()
    y, y_h, y_c = module(tensor)
    expected, (h, c) = reference(tensor)
    torch.testing.assert_close(y[:, 0], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(y_c, c, rtol=1e-5, atol=1e-6)
    gradient, = torch.autograd.grad(y_h.sum(), tensor)
    expected_gradient, = torch.autograd.grad(h.sum(), tensor)
    torch.testing.assert_close(gradient, expected_gradient, rtol=1e-4, atol=1e-6)


def test_recurrent_module_scripts():
    model, inputs = _recurrent_model("GRU", "bidirectional", lengths=True)
    module = bridge.from_onnx(model)
    x = torch.from_numpy(inputs["x"])
    scripted = torch.jit.script(torch.fx.GraphModule(module, module.graph))
    for got, want in zip(scripted(x), module(x)):
        torch.testing.assert_close(got, want)
