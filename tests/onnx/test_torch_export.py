"""Models exported by ``torch.onnx.export`` come back through ``bridge.from_onnx`` unchanged.

Covers the dynamo exporter and the legacy TorchScript exporter, an MLP, a small CNN and
RNN/LSTM/GRU nets; the imported modules are compared with the original module and with
onnxruntime, traced, scripted, exported with ``torch.export`` and differentiated.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import bridge
from tests.parity import assert_parity, run_onnxruntime

# float32 models; differences come from accumulation order only
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.layers(x)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


class RecurrentNet(nn.Module):
    def __init__(self, cell: str):
        super().__init__()
        self.recurrent = getattr(nn, cell)(4, 8, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        output, _ = self.recurrent(x)
        return self.head(output[:, -1])


def _module_and_input(name: str):
    torch.manual_seed(0)
    if name == "mlp":
        return MLP().eval(), torch.randn(5, 6)
    if name == "cnn":
        module = SmallCNN().eval()
        with torch.no_grad():  # non-trivial running statistics
            module.features[1].running_mean.uniform_(-0.5, 0.5)
            module.features[1].running_var.uniform_(0.5, 2.0)
        return module, torch.randn(2, 3, 8, 8)
    return RecurrentNet(name.upper()).eval(), torch.randn(3, 7, 4)


def _export(module: nn.Module, x: torch.Tensor, dynamo: bool) -> onnx.ModelProto:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(module, (x,), dynamo=True, verbose=False)
            return program.model_proto
        buffer = io.BytesIO()
        torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17)
        return onnx.load_from_string(buffer.getvalue())


MODELS = ["mlp", "cnn", "rnn", "lstm", "gru"]
DYNAMO_MODELS = ["mlp", "cnn", "lstm", "gru"]  # the dynamo exporter takes ~7 s per model


@pytest.fixture(scope="module")
def exported():
    cache = {}

    def get(name: str, dynamo: bool):
        if (name, dynamo) not in cache:
            module, x = _module_and_input(name)
            cache[name, dynamo] = (module, x, _export(module, x, dynamo))
        return cache[name, dynamo]

    return get


@pytest.mark.parametrize(
    "name, dynamo",
    [(name, True) for name in DYNAMO_MODELS] + [(name, False) for name in MODELS],
)
def test_imported_model_matches_torch_and_onnxruntime(exported, name, dynamo):
    module, x, model = exported(name, dynamo)
    imported = bridge.from_onnx(model)
    with torch.no_grad():
        expected = module(x)
        actual = imported(x)
    assert_parity(actual, expected, **TOLERANCE, what=f"{name} vs torch")
    runtime = run_onnxruntime(model, {model.graph.input[0].name: x.numpy()})[0]
    assert_parity(actual, runtime, **TOLERANCE, what=f"{name} vs onnxruntime")


@pytest.mark.parametrize("name", DYNAMO_MODELS)
def test_gradient_with_respect_to_input_matches_torch(exported, name):
    module, x, model = exported(name, True)
    imported = bridge.from_onnx(model)
    mine = x.clone().requires_grad_()
    imported(mine).pow(2).sum().backward()
    theirs = x.clone().requires_grad_()
    module(theirs).pow(2).sum().backward()
    assert_parity(mine.grad, theirs.grad, rtol=1e-4, atol=1e-5, what=f"{name} input gradient")


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_imported_model_traces_scripts_and_exports(exported, name):
    module, x, model = exported(name, True)
    imported = bridge.from_onnx(model)
    with torch.no_grad():
        expected = imported(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            traced = torch.jit.trace(imported, (x,))
            # OnnxGraphModule's class annotations are not TorchScript types, so script the
            # same graph held by a plain fx.GraphModule
            scripted = torch.jit.script(torch.fx.GraphModule(imported, imported.graph))
        program = torch.export.export(imported, (x,))
        torch.testing.assert_close(traced(x), expected)
        torch.testing.assert_close(scripted(x), expected)
        torch.testing.assert_close(program.module()(x), expected)
        other = torch.randn_like(x)
        torch.testing.assert_close(program.module()(other), imported(other))


def test_imported_cnn_fine_tunes_when_trainable(exported):
    module, x, model = exported("cnn", True)
    imported = bridge.from_onnx(model, trainable=True)
    parameters = [p for p in imported.parameters() if p.requires_grad]
    assert parameters, "trainable import exposes no parameters"
    optimizer = torch.optim.SGD(parameters, lr=0.05)
    target = torch.zeros(x.shape[0], 5)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = (imported(x) - target).pow(2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert np.isfinite(losses).all()


def _mask_expand_model() -> onnx.ModelProto:
    """A transformer-style mask: a (1, 1, 4) constant expanded to [batch, 1, 4] (the
    target a Concat of the input's batch size and constants), then broadcast against the
    (batch, 2, 4) scores."""
    from onnx import TensorProto, helper, numpy_helper

    mask = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 1, 4), "mask")
    rest = numpy_helper.from_array(np.array([1, 4], np.int64), "rest")
    nodes = [helper.make_node("Shape", ["x"], ["shape"], start=0, end=1),
             helper.make_node("Concat", ["shape", "rest"], ["target"], axis=0),
             helper.make_node("Expand", ["mask", "target"], ["wide"]),
             helper.make_node("Add", ["x", "wide"], ["y"])]
    graph = helper.make_graph(nodes, "mask", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 4])],
        [mask, rest])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_expand_to_a_partly_known_run_time_target_exports():
    """The target's constant entries stay numbers under torch.export (read from the tensor
    they were sizes torch knew nothing of, and the 1 was assumed to be the 2 it meets).
    The batch entry is still read at run time: torch assumes it is not 1, so the exported
    program runs batches of 2 or more (an export at batch 1 specialises to 1)."""
    module = bridge.from_onnx(_mask_expand_model())
    expand = next(m for m in module.modules() if type(m).__name__ == "OnnxExpand")
    assert expand.known == [-1, 1, 4]
    x = torch.randn(3, 2, 4)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(module, (x,), dynamic_shapes=({0: batch},))
    for rows in (2, 3, 5):
        x = torch.randn(rows, 2, 4)
        torch.testing.assert_close(program.module()(x), module(x))
        torch.testing.assert_close(module(x), x + torch.arange(4.0))
