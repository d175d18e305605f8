"""Fused RNN/GRU/LSTM kernels against onnxruntime and against bridge's time-step loop."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch

from bridge.onnx.graph import load_model
from bridge.onnx.importer import _GraphBuilder
from bridge.onnx.ops.rnn import OnnxRecurrent
from bridge.onnx.ops.rnn_fused import OnnxFusedRecurrent
from tests.parity import assert_parity, run_onnxruntime

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
HIDDEN, FEATURES, STEPS = 5, 3, 6
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def _model(op, direction="forward", *, batch=3, states=False, bias=True, layout=0,
           weights_as_inputs=False, attributes=None, peepholes=None, lengths=False,
           only_y=False):
    """One recurrent node; returns the model and its feed (graph inputs by name)."""
    directions = 2 if direction == "bidirectional" else 1
    gates = GATES[op]
    rng = np.random.default_rng(7)
    x_shape = (batch, STEPS, FEATURES) if layout else (STEPS, batch, FEATURES)
    feed = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    constants = {
        "w": rng.standard_normal((directions, gates * HIDDEN, FEATURES)).astype(np.float32) * .5,
        "r": rng.standard_normal((directions, gates * HIDDEN, HIDDEN)).astype(np.float32) * .5,
    }
    if bias:
        constants["b"] = rng.standard_normal((directions, 2 * gates * HIDDEN)).astype(np.float32)
    if weights_as_inputs:
        feed.update(constants)
        constants = {}
    names = ["x", "w", "r", "b" if bias else "", "", "", "", ""]
    if lengths:
        constants["lengths"] = np.array([STEPS, 2, 4][:batch], np.int32)
        names[4] = "lengths"
    if states:
        shape = (batch, directions, HIDDEN) if layout else (directions, batch, HIDDEN)
        feed["h0"] = rng.standard_normal(shape).astype(np.float32)
        names[5] = "h0"
        if op == "LSTM":
            feed["c0"] = rng.standard_normal(shape).astype(np.float32)
            names[6] = "c0"
    if peepholes is not None:
        constants["p"] = np.full((directions, 3 * HIDDEN), peepholes, np.float32)
        names[7] = "p"
    while names[-1] == "":
        names.pop()
    outputs = ["y"] if only_y else (["y", "y_h", "y_c"] if op == "LSTM" else ["y", "y_h"])
    node = onnx.helper.make_node(op, names, outputs, direction=direction, hidden_size=HIDDEN,
                                 layout=layout, **(attributes or {}))
    graph = onnx.helper.make_graph(
        [node], "recurrent",
        [onnx.helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, v.shape)
         for k, v in feed.items()],
        [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
         for name in outputs],
        initializer=[onnx.numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 14)])
    model.ir_version = 9
    return onnx.shape_inference.infer_shapes(model), feed


def _import(model, *, fused=True, trainable=False):
    options = {"tree_strategy": "auto", "fused_recurrent": fused}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _GraphBuilder.for_model(load_model(model), trainable, options).build()


def _kinds(module):
    return {type(m) for m in module.modules()} & {OnnxFusedRecurrent, OnnxRecurrent}


def _run(module, feed):
    with torch.no_grad():
        result = module(*[torch.from_numpy(feed[name]) for name in module.input_names])
    return result if isinstance(result, tuple) else (result,)


CELLS = [("RNN", {}), ("RNN", {"activations": ["Relu", "Relu"]}),
         ("GRU", {"linear_before_reset": 1}), ("LSTM", {})]


@pytest.mark.parametrize("op, attributes", CELLS, ids=["rnn-tanh", "rnn-relu", "gru", "lstm"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("states, bias, batch", [(False, True, 3), (True, True, 1),
                                                 (True, False, 4)])
def test_fused_matches_onnxruntime_and_the_loop(op, attributes, direction, states, bias, batch):
    if op == "RNN" and direction != "bidirectional":
        attributes = {"activations": attributes["activations"][:1]} if attributes else {}
    model, feed = _model(op, direction, batch=batch, states=states, bias=bias,
                         attributes=attributes)
    fused, loop = _import(model), _import(model, fused=False)
    assert _kinds(fused) == {OnnxFusedRecurrent} and _kinds(loop) == {OnnxRecurrent}
    expected = run_onnxruntime(model, feed)
    got, looped = _run(fused, feed), _run(loop, feed)
    assert len(got) == len(expected)
    for index, (a, e, slow) in enumerate(zip(got, expected, looped)):
        assert_parity(a, e, **TOLERANCE, what=f"output {index} vs onnxruntime")
        assert_parity(a, slow, **TOLERANCE, what=f"output {index} vs the loop")


@pytest.mark.parametrize("op, attributes", CELLS[1:], ids=["rnn-relu", "gru", "lstm"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_fused_batch_first_layout_matches_the_loop(op, attributes, direction):
    # onnxruntime's CPU kernels reject layout=1: the loop (checked against it) is the reference
    if op == "RNN" and direction != "bidirectional":
        attributes = {"activations": ["Relu"]}
    model, feed = _model(op, direction, states=True, layout=1, attributes=attributes)
    fused, loop = _import(model), _import(model, fused=False)
    assert _kinds(fused) == {OnnxFusedRecurrent}
    for index, (a, slow) in enumerate(zip(_run(fused, feed), _run(loop, feed))):
        assert_parity(a, slow, **TOLERANCE, what=f"output {index}")


@pytest.mark.parametrize("op", ["GRU", "LSTM"])
def test_weights_given_at_run_time_are_reordered_per_call(op):
    attributes = {"linear_before_reset": 1} if op == "GRU" else {}
    model, feed = _model(op, "bidirectional", states=True, weights_as_inputs=True,
                         attributes=attributes)
    fused = _import(model)
    assert _kinds(fused) == {OnnxFusedRecurrent}
    for index, (a, e) in enumerate(zip(_run(fused, feed), run_onnxruntime(model, feed))):
        assert_parity(a, e, **TOLERANCE, what=f"output {index}")


def test_only_y_requested():
    model, feed = _model("LSTM", "bidirectional", only_y=True)
    fused = _import(model)
    assert _kinds(fused) == {OnnxFusedRecurrent}
    assert_parity(_run(fused, feed)[0], run_onnxruntime(model, feed)[0], **TOLERANCE)


def test_zero_peepholes_stay_fused():
    model, feed = _model("LSTM", "forward", states=True, peepholes=0.0)
    fused = _import(model)
    assert _kinds(fused) == {OnnxFusedRecurrent}
    for a, e in zip(_run(fused, feed), run_onnxruntime(model, feed)):
        assert_parity(a, e, **TOLERANCE)


@pytest.mark.parametrize("op, options", [
    ("LSTM", dict(peepholes=0.3)),
    ("LSTM", dict(attributes={"clip": 0.5})),
    ("LSTM", dict(attributes={"input_forget": 1})),
    ("LSTM", dict(lengths=True)),
    ("GRU", dict(attributes={"linear_before_reset": 0})),
    ("GRU", dict(attributes={"activations": ["HardSigmoid", "Tanh"],
                             "linear_before_reset": 1})),
    ("RNN", dict(attributes={"activations": ["Sigmoid"]})),
], ids=["peepholes", "clip", "input-forget", "sequence-lens", "gru-reset-after", "hardsigmoid",
        "rnn-sigmoid"])
def test_what_fused_kernels_cannot_compute_keeps_the_loop(op, options):
    model, feed = _model(op, "forward", states=True, **options)
    module = _import(model)
    assert _kinds(module) == {OnnxRecurrent}
    for a, e in zip(_run(module, feed), run_onnxruntime(model, feed)):
        assert_parity(a, e, **TOLERANCE)


@pytest.mark.parametrize("op", ["GRU", "LSTM"])
def test_gradients_match_the_loop(op):
    attributes = {"linear_before_reset": 1} if op == "GRU" else {}
    model, feed = _model(op, "bidirectional", states=True, attributes=attributes)
    gradients = []
    for fused in (True, False):
        module = _import(model, fused=fused, trainable=True)
        x = torch.from_numpy(feed["x"]).requires_grad_()
        outputs = module(x, *[torch.from_numpy(feed[n]) for n in module.input_names[1:]])
        (outputs[0].pow(2).sum() + outputs[1].sum()).backward()
        weight_norm = sum(p.grad.pow(2).sum() for p in module.parameters())
        assert weight_norm > 0
        gradients.append((x.grad, weight_norm))
    assert_parity(gradients[0][0], gradients[1][0], rtol=1e-4, atol=1e-5, what="input grad")
    # the fused import holds the weights reordered, so compare the total squared gradient
    assert_parity(gradients[0][1], gradients[1][1], rtol=1e-4, atol=1e-5, what="weight grad")


def test_fused_module_traces_scripts_and_exports():
    model, feed = _model("LSTM", "bidirectional", states=True)
    module = _import(model)
    args = tuple(torch.from_numpy(feed[name]) for name in module.input_names)
    expected = module(*args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, args)
        scripted = torch.jit.script(torch.fx.GraphModule(module, module.graph))
    exported = torch.export.export(module, args).module()
    other = tuple(torch.randn_like(a) for a in args)
    for runner in (traced, scripted, exported):
        for got, want in zip(runner(*args), expected):
            torch.testing.assert_close(got, want)
        for got, want in zip(runner(*other), module(*other)):
            torch.testing.assert_close(got, want)


def _zero_state_model(constant_state: float) -> onnx.ModelProto:
    """LSTM whose initial states are ConstantOfShape([1, batch, hidden]) of ``constant_state``,
    the batch read from ``x`` at run time (the TorchScript exporter's pattern)."""
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    rng = np.random.default_rng(3)
    value = numpy_helper.from_array(np.array([constant_state], np.float32), "value")
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "zero_axis"], ["batch_1d"]),
        helper.make_node("Concat", ["directions", "batch_1d", "hidden"], ["state_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["state_shape"], ["state"], value=value),
        helper.make_node("LSTM", ["x", "w", "r", "", "", "state", "state"], ["y"],
                         hidden_size=HIDDEN),
    ]
    initializers = {
        "one": np.array(1, np.int64), "zero_axis": np.array([0], np.int64),
        "directions": np.array([1], np.int64), "hidden": np.array([HIDDEN], np.int64),
        "w": rng.standard_normal((1, 4 * HIDDEN, FEATURES)).astype(np.float32),
        "r": rng.standard_normal((1, 4 * HIDDEN, HIDDEN)).astype(np.float32),
    }
    graph = onnx.helper.make_graph(
        nodes, "zero_state",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [STEPS, "batch", FEATURES])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 9
    return onnx.shape_inference.infer_shapes(model)


@pytest.mark.parametrize("constant_state", [0.0, 0.5])
def test_zero_initial_state_is_dropped_with_the_nodes_computing_its_shape(constant_state):
    model = _zero_state_model(constant_state)
    module = _import(model)
    kinds = {type(m).__name__ for m in module.modules()}
    assert ("OnnxShape" in kinds) == (constant_state != 0.0)
    for batch in (1, 4):
        feed = {"x": np.random.default_rng(batch).standard_normal(
            (STEPS, batch, FEATURES)).astype(np.float32)}
        assert_parity(_run(module, feed)[0], run_onnxruntime(model, feed)[0], **TOLERANCE,
                      what=f"batch {batch}")
