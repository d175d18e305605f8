"""The import-time fx passes (bridge/onnx/fusion.py) against onnxruntime, against the import
without them, and where they must leave a node alone."""

from __future__ import annotations

import io
import operator
import pickle
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import bridge
from bridge.onnx.ops.rnn import OnnxRecurrent
from bridge.onnx.ops.rnn_fused import OnnxFusedRecurrent, OnnxRecurrentStack
from bridge.onnx.plans import matmul_add
from tests.parity import assert_parity, run_onnxruntime

TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def _import(model, *, fuse=True, trainable=False):
    return bridge.from_onnx(model, trainable=trainable, fuse_graph=fuse)


def _run(module, *arrays):
    with torch.no_grad():
        result = module(*[torch.from_numpy(a) for a in arrays])
    return result if isinstance(result, tuple) else (result,)


def _modules(module, kind) -> list:
    return [m for m in module.modules() if type(m) is kind]


def _export(module: nn.Module, x: torch.Tensor, outputs: int = 1) -> onnx.ModelProto:
    """The TorchScript exporter's graph, the batch axis dynamic."""
    buffer = io.BytesIO()
    names = [f"y{i}" for i in range(outputs)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (x,), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=names,
                          dynamic_axes={"x": {0: "batch"}, **{n: {0: "batch"} for n in names}})
    return onnx.load_from_string(buffer.getvalue())


class Stacked(nn.Module):
    """Two stacked recurrent layers (batch first) and a linear head on the last step."""

    def __init__(self, cell: str, bidirectional: bool, **kwargs):
        super().__init__()
        self.recurrent = getattr(nn, cell)(3, 5, num_layers=2, batch_first=True,
                                           bidirectional=bidirectional, **kwargs)
        self.head = nn.Linear(10 if bidirectional else 5, 2)

    def forward(self, x):
        output, _ = self.recurrent(x)
        return self.head(output[:, -1])


CELLS = [("LSTM", {}), ("GRU", {}), ("RNN", {}), ("RNN", {"nonlinearity": "relu"})]


@pytest.mark.parametrize("cell, kwargs", CELLS, ids=["lstm", "gru", "rnn-tanh", "rnn-relu"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
def test_stacked_layers_run_as_one_batch_first_call(cell, kwargs, bidirectional):
    torch.manual_seed(0)
    model = _export(Stacked(cell, bidirectional, **kwargs), torch.randn(1, 6, 3))
    fused, plain = _import(model), _import(model, fuse=False)
    stacks = _modules(fused, OnnxRecurrentStack)
    assert len(stacks) == 1 and stacks[0].num_layers == 2 and stacks[0].batch_first
    assert not _modules(fused, OnnxFusedRecurrent) and len(_modules(plain, OnnxFusedRecurrent)) == 2
    for batch in (1, 4):
        x = np.random.default_rng(batch).standard_normal((batch, 6, 3)).astype(np.float32)
        got = _run(fused, x)[0]
        assert_parity(got, run_onnxruntime(model, {"x": x})[0], **TOLERANCE, what=f"batch {batch}")
        assert_parity(got, _run(plain, x)[0], **TOLERANCE, what="vs the import without passes")


class _FirstOutput(nn.Module):
    def __init__(self, inner: nn.Module, keep_states: bool = False):
        super().__init__()
        self.inner = inner
        self.keep_states = keep_states

    def forward(self, x):
        output, states = self.inner(x)
        return (output, states[0]) if self.keep_states else output


def test_layers_whose_final_state_is_read_stay_apart():
    torch.manual_seed(0)
    module = _FirstOutput(nn.GRU(3, 5, num_layers=2, batch_first=True), keep_states=True)
    model = _export(module, torch.randn(2, 6, 3), outputs=2)
    fused = _import(model)
    assert not _modules(fused, OnnxRecurrentStack)
    assert len(_modules(fused, OnnxFusedRecurrent)) == 2
    x = np.random.default_rng(2).standard_normal((3, 6, 3)).astype(np.float32)
    for got, want in zip(_run(fused, x), run_onnxruntime(model, {"x": x})):
        assert_parity(got, want, **TOLERANCE)


def _two_lstms(second_inputs: dict, direction: str = "forward",
               layout: int = 0) -> tuple[onnx.ModelProto, dict]:
    """LSTM → Squeeze(directions axis) → LSTM, time major unless ``layout=1``;
    ``second_inputs`` adds inputs to the second node by position (5: initial_h given at
    run time, 7: peepholes) or attributes."""
    rng = np.random.default_rng(5)
    hidden, features = 4, 3

    def weights(prefix, inputs):
        return {f"{prefix}w": rng.standard_normal((1, 4 * hidden, inputs)).astype(np.float32),
                f"{prefix}r": rng.standard_normal((1, 4 * hidden, hidden)).astype(np.float32),
                f"{prefix}b": rng.standard_normal((1, 8 * hidden)).astype(np.float32)}

    constants = {**weights("a", features), **weights("b", hidden),
                 "axis": np.array([2 if layout else 1], np.int64)}
    names = ["middle", "bw", "br", "bb", "", "", "", ""]
    feed = {"x": rng.standard_normal((5, 2, features)).astype(np.float32)}
    attributes = {"layout": layout}
    for position, value in second_inputs.items():
        if isinstance(position, str):
            attributes[position] = value
        elif position == 5:
            names[5] = "h0"
            feed["h0"] = value
        else:
            names[position] = f"input{position}"
            constants[f"input{position}"] = value
    while names[-1] == "":
        names.pop()
    nodes = [helper.make_node("LSTM", ["x", "aw", "ar", "ab"], ["y1"], hidden_size=hidden,
                              layout=layout),
             helper.make_node("Squeeze", ["y1", "axis"], ["middle"]),
             helper.make_node("LSTM", names, ["y2"], hidden_size=hidden, direction=direction,
                              **attributes)]
    graph = helper.make_graph(
        nodes, "two_lstms",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in feed.items()],
        [helper.make_tensor_value_info("y2", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in constants.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=9)
    return onnx.shape_inference.infer_shapes(model), feed


@pytest.mark.parametrize("second, looped", [
    ({7: np.full((1, 12), 0.3, np.float32)}, True),  # peepholes: the time-step loop
    ({"clip": 0.5}, True),
    ({5: np.ones((1, 2, 4), np.float32)}, False),  # an initial state given at run time
    ({}, False),
], ids=["peepholes", "clip", "initial-state", "reverse"])
def test_what_a_stack_cannot_compute_keeps_its_node(second, looped):
    direction = "reverse" if not second else "forward"
    model, feed = _two_lstms(second, direction)
    fused = _import(model)
    (stack,) = _modules(fused, OnnxRecurrentStack)  # the first layer alone
    assert stack.num_layers == 1
    kind = OnnxRecurrent if looped else OnnxFusedRecurrent
    assert len(_modules(fused, kind)) == 1
    arrays = [feed[name] for name in fused.input_names]
    assert_parity(_run(fused, *arrays)[0], run_onnxruntime(model, feed)[0], **TOLERANCE)


def test_batch_first_onnx_layout_stacks_too():
    # onnxruntime's CPU kernels reject layout=1: the import without passes is the reference
    model, feed = _two_lstms({}, layout=1)
    fused = _import(model)
    (stack,) = _modules(fused, OnnxRecurrentStack)  # the first layer: Squeeze(2) reads it
    assert stack.num_layers == 1 and stack.batch_first
    assert len(_modules(fused, OnnxFusedRecurrent)) == 1  # the second's Y is the output
    assert_parity(_run(fused, feed["x"])[0], _run(_import(model, fuse=False), feed["x"])[0],
                  **TOLERANCE)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
def test_time_major_stack_keeps_its_layout(bidirectional):
    torch.manual_seed(0)
    recurrent = nn.LSTM(3, 5, num_layers=3, bidirectional=bidirectional)  # no transposes
    model = _export(_FirstOutput(recurrent), torch.randn(6, 2, 3))
    fused = _import(model)
    (stack,) = _modules(fused, OnnxRecurrentStack)
    assert stack.num_layers == 3 and not stack.batch_first
    x = np.random.default_rng(1).standard_normal((6, 2, 3)).astype(np.float32)
    assert_parity(_run(fused, x)[0], run_onnxruntime(model, {"x": x})[0], **TOLERANCE)


def _dense_model(op: str, attributes: dict | None = None, rows: tuple = (5,),
                 bias_shape: tuple = (6,)) -> tuple[onnx.ModelProto, np.ndarray]:
    """x [*rows, 4] → MatMul(W)+Add(b) (or Gemm) → Relu → Softmax, a float graph."""
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((4, 6)).astype(np.float32)
    bias = rng.standard_normal(bias_shape).astype(np.float32)
    if op == "Gemm":
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], **(attributes or {}))]
        if (attributes or {}).get("transB"):
            weight = np.ascontiguousarray(weight.T)
    else:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["p"]),
                 helper.make_node("Add", ["p", "b"], ["y"])]
    nodes += [helper.make_node("Relu", ["y"], ["r"]),
              helper.make_node("Softmax", ["r"], ["z"], axis=-1)]
    graph = helper.make_graph(
        nodes, "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *rows[1:], 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    return model, rng.standard_normal((*rows, 4)).astype(np.float32)


def _targets(module) -> list:
    return [node.target for node in module.graph.nodes if node.op == "call_function"]


@pytest.mark.parametrize("op, attributes, bias_shape", [
    ("MatMul", None, (6,)), ("MatMul", None, (1, 6)), ("Gemm", {"transB": 1}, (6,)),
    ("Gemm", {}, (6,))], ids=["matmul-add", "matmul-add-row", "gemm-b-t", "gemm"])
def test_dense_layer_becomes_linear_on_the_torch_layout(op, attributes, bias_shape):
    rows = (5, 3) if op == "MatMul" else (5,)  # a MatMul of a matrix stays on W: see below
    model, x = _dense_model(op, attributes, rows, bias_shape)
    fused = _import(model)
    assert F.linear in _targets(fused) and torch.softmax in _targets(fused)
    assert not [n for n in fused.graph.nodes if n.op == "call_module"]
    weight = [v for k, v in fused.named_buffers() if v.shape == (6, 4)]
    assert len(weight) == 1 and weight[0].is_contiguous()  # [out, in], as nn.Linear holds it
    assert len(list(fused.buffers())) == 2  # the ONNX-layout copy went
    assert_parity(_run(fused, x)[0], run_onnxruntime(model, {"x": x})[0], **TOLERANCE)


@pytest.mark.parametrize("bias_shape", [(6,), (1, 6)])
def test_dense_layer_of_a_matrix_becomes_one_addmm(bias_shape):
    # the graph declares x [batch, 4]; one row without its axis still works (MatMul's 1-D rule)
    model, x = _dense_model("MatMul", rows=(5,), bias_shape=bias_shape)
    fused = _import(model)
    assert matmul_add in _targets(fused) and F.linear not in _targets(fused)
    assert {name for name, _ in fused.named_buffers()} == {"w", "b"}  # no copy
    assert_parity(_run(fused, x)[0], run_onnxruntime(model, {"x": x})[0], **TOLERANCE)
    assert_parity(_run(fused, x[0])[0], _run(_import(model, fuse=False), x[0])[0], **TOLERANCE)


def test_scaled_gemm_and_trainable_weights_keep_their_modules():
    model, x = _dense_model("Gemm", {"alpha": 2.0})
    assert F.linear not in _targets(_import(model))
    model, x = _dense_model("MatMul")
    trainable = _import(model, trainable=True)
    assert not {F.linear, matmul_add} & set(_targets(trainable))  # W stays a MatMul input
    assert {name for name, _ in trainable.named_parameters()} == {"w", "b"}
    assert_parity(_run(trainable, x)[0], run_onnxruntime(model, {"x": x})[0], **TOLERANCE)


def _shape_model(batch) -> onnx.ModelProto:
    """Transpose, Reshape to a constant target, Unsqueeze, Squeeze, Gather, Mul, Conv."""
    rng = np.random.default_rng(4)
    constants = {"target": np.array([-1, 2, 12], np.int64), "one": np.array([1], np.int64),
                 "index": np.array(1, np.int64), "scale": np.array(0.5, np.float32),
                 "kernel": rng.standard_normal((2, 1, 3)).astype(np.float32)}
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
             helper.make_node("Reshape", ["t", "target"], ["r"]),
             helper.make_node("Unsqueeze", ["r", "one"], ["u"]),
             helper.make_node("Squeeze", ["u", "one"], ["s"]),
             helper.make_node("Gather", ["s", "index"], ["g"], axis=1),
             helper.make_node("Mul", ["g", "scale"], ["m"]),
             helper.make_node("Unsqueeze", ["m", "one"], ["c_in"]),
             helper.make_node("Conv", ["c_in", "kernel"], ["z"], pads=[1, 1])]
    graph = helper.make_graph(
        nodes, "shapes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4, 6])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in constants.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    return onnx.shape_inference.infer_shapes(model)


def test_common_operators_become_torch_calls_where_constants_decide():
    model = _shape_model("batch")
    fused, plain = _import(model), _import(model, fuse=False)
    targets = _targets(fused)
    for function in (torch.permute, torch.reshape, torch.unsqueeze, operator.mul, F.conv1d):
        assert function in targets, function
    kinds = {type(m).__name__ for m in fused.modules()}
    # Gather and Squeeze keep their checks (index range; the axis has size 1)
    assert {"OnnxGatherScalar", "OnnxSqueeze"} <= kinds
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 4, 6)).astype(np.float32)
        got = _run(fused, x)[0]
        assert_parity(got, run_onnxruntime(model, {"x": x})[0], **TOLERANCE)
        assert_parity(got, _run(plain, x)[0], rtol=0, atol=0, what="vs the import without passes")
    assert all(node.op != "call_function" or node.target is operator.getitem
               for node in plain.graph.nodes)


def test_squeeze_keeps_its_check_of_the_axis_size():
    model = _shape_model("batch")
    model.graph.node[3].input[1] = "zero"  # squeeze the free batch axis
    model.graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "zero"))
    model.graph.node[4].attribute[0].i = 0
    fused = _import(model)
    assert "OnnxSqueeze" in {type(m).__name__ for m in fused.modules()}
    with pytest.raises(ValueError, match="Squeeze: axis 0 has size 3"):
        fused(torch.zeros(3, 4, 6))


def test_fused_modules_script_trace_export_and_pickle():
    torch.manual_seed(0)
    model = _export(Stacked("LSTM", True), torch.randn(1, 6, 3))
    fused = _import(model)
    dense = _import(_dense_model("MatMul", rows=(5, 3))[0])
    for module, x in ((fused, torch.randn(2, 6, 3)), (dense, torch.randn(2, 3, 4))):
        expected = module(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.script(torch.fx.GraphModule(module, module.graph))
            traced = torch.jit.trace(module, (x,))
        exported = torch.export.export(module, (x,)).module()
        copied = pickle.loads(pickle.dumps(module))
        for runner in (scripted, traced, exported, copied):
            torch.testing.assert_close(runner(x), expected)


def _erf_gelu_model(half: float) -> onnx.ModelProto:
    """The TorchScript exporter's exact GELU: x * (erf(x / sqrt(2)) + 1) * half."""
    constants = {"root": np.array(2 ** 0.5, np.float32), "one": np.array(1.0, np.float32),
                 "half": np.array(half, np.float32)}
    nodes = [helper.make_node("Div", ["x", "root"], ["d"]),
             helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"]),
             helper.make_node("Mul", ["x", "a"], ["m"]),
             helper.make_node("Mul", ["m", "half"], ["y"])]
    graph = helper.make_graph(
        nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.mark.parametrize("half, fused", [(0.5, True), (0.6, False)], ids=["gelu", "other"])
def test_erf_formula_of_gelu_becomes_one_call(half, fused):
    model = _erf_gelu_model(half)
    module = _import(model)
    assert (F.gelu in _targets(module)) == fused
    assert (torch.erf in _targets(module)) != fused
    x = np.random.default_rng(6).standard_normal((3, 8)).astype(np.float32) * 3
    assert_parity(_run(module, x)[0], run_onnxruntime(model, {"x": x})[0], **TOLERANCE)


def test_trainable_stack_trains_the_imported_parameters():
    torch.manual_seed(0)
    model = _export(Stacked("GRU", True), torch.randn(1, 6, 3))
    gradients = []
    for fuse in (True, False):
        module = _import(model, fuse=fuse, trainable=True)
        assert bool(_modules(module, OnnxRecurrentStack)) == fuse
        x = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(1)).requires_grad_()
        module(x).pow(2).sum().backward()
        # (the reverse direction's last recurrent weight may get zeros: the head reads the
        # last step, one step of that direction from a zero state)
        assert all(p.grad is not None for p in module.parameters())
        assert sum(int(p.grad.abs().sum() > 0) for p in module.parameters()) >= 12
        gradients.append(x.grad)
    assert_parity(gradients[0], gradients[1], rtol=1e-4, atol=1e-6, what="input gradient")


def test_fuse_graph_must_be_a_bool():
    with pytest.raises(TypeError, match="fuse_graph must be True or False; got 'no'"):
        bridge.from_onnx(_shape_model("batch"), fuse_graph="no")
