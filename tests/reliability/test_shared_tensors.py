"""Catalogue: an imported module whose graph reads one tensor under several names behaves like
any torch module: it traces, exports, saves with safetensors, deep-copies and pickles.

The TorchScript exporter writes a weight used twice (the same ``Linear`` called twice, tied
embeddings) as one initializer plus ``Identity`` nodes; folding those at import must not
register one tensor under several buffer names.
"""

from __future__ import annotations

import copy
import io
import pickle
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import load_file, save_file

import bridge
from bridge.errors import InvalidInputError


class TiedModel(torch.nn.Module):
    """Embeddings tied to the output projection, and one Linear applied twice."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 6)
        self.hidden = torch.nn.Linear(6, 6)
        self.project = torch.nn.Linear(6, 10, bias=False)
        self.project.weight = self.embed.weight

    def forward(self, tokens):
        h = torch.relu(self.hidden(self.embed(tokens)))
        return self.project(torch.relu(self.hidden(h)))


def _torchscript_tied_model() -> tuple[onnx.ModelProto, torch.nn.Module]:
    torch.manual_seed(0)
    model = TiedModel().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randint(0, 10, (2, 5)),), buffer, dynamo=False,
                          opset_version=17, input_names=["tokens"],
                          dynamic_axes={"tokens": {0: "batch", 1: "time"}})
    return onnx.load_from_string(buffer.getvalue()), model


def _identity_of_an_initializer() -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4) / 10, "W")
    nodes = [helper.make_node("Identity", ["W"], ["W_copy"]),
             helper.make_node("Identity", ["W_copy"], ["W_again"]),
             helper.make_node("MatMul", ["x", "W"], ["a"]),
             helper.make_node("MatMul", ["x", "W_copy"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["c"]),
             helper.make_node("Reshape", ["W_again", "same"], ["W_view"]),  # shares memory
             helper.make_node("MatMul", ["x", "W_view"], ["d"]),
             helper.make_node("Add", ["c", "d"], ["y"])]
    same = numpy_helper.from_array(np.array([3, 4], np.int64), "same")
    graph = helper.make_graph(nodes, "identity", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [weight, same])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(params=["torchscript_tied", "identity_by_hand"])
def imported(request):
    """(module, an input, the expected output) for each kind of graph."""
    if request.param == "torchscript_tied":
        model, original = _torchscript_tied_model()
        tokens = torch.randint(0, 10, (3, 4))
        with torch.no_grad():
            return bridge.from_onnx(model), tokens, original(tokens)
    x = torch.randn(5, 3)
    weight = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 10
    return bridge.from_onnx(_identity_of_an_initializer()), x, 3 * x @ weight


def _tensor_ids(module: torch.nn.Module) -> list[int]:
    tensors = list(module.named_buffers(remove_duplicate=False))
    tensors += list(module.named_parameters(remove_duplicate=False))
    return [id(t) for _, t in tensors]


def test_each_tensor_is_registered_once(imported):
    module, _, _ = imported
    ids = _tensor_ids(module)
    assert len(ids) == len(set(ids))
    pointers = [t.untyped_storage().data_ptr() for t in module.state_dict().values()]
    assert len(pointers) == len(set(pointers))  # no two entries share memory either


def test_imported_module_computes_the_graph(imported):
    module, x, expected = imported
    torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-5)


def test_torch_jit_trace(imported):
    module, x, expected = imported
    traced = torch.jit.trace(module, (x,))
    torch.testing.assert_close(traced(x), expected, rtol=1e-5, atol=1e-5)


def test_torch_export(imported):
    module, x, expected = imported
    exported = torch.export.export(module, (x,))
    torch.testing.assert_close(exported.module()(x), expected, rtol=1e-5, atol=1e-5)


def test_safetensors_save_and_load_the_state_dict(imported, tmp_path):
    module, x, expected = imported
    save_file(module.state_dict(), tmp_path / "weights.safetensors")
    fresh = copy.deepcopy(module)
    for tensor in fresh.state_dict().values():
        tensor.zero_()
    fresh.load_state_dict(load_file(tmp_path / "weights.safetensors"))
    torch.testing.assert_close(fresh(x), expected, rtol=1e-5, atol=1e-5)


def test_deepcopy_and_pickle_keep_results_and_input_checks(imported):
    module, x, expected = imported
    for copied in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        torch.testing.assert_close(copied(x), expected, rtol=1e-5, atol=1e-5)
        with pytest.raises(InvalidInputError, match="has rank 2"):
            copied(x[None])


def test_trainable_import_keeps_the_tie():
    model = _torchscript_tied_model()[0]
    trainable = bridge.from_onnx(model, trainable=True)
    ids = _tensor_ids(trainable)
    assert len(ids) == len(set(ids))
    assert len(list(trainable.parameters())) == len(model.graph.initializer)


def test_a_folded_view_of_an_initializer_is_stored_dense(tmp_path):
    """Constant folding a Transpose (or Unsqueeze) of an initializer gives a strided view;
    it is registered dense, so safetensors (which refuses non-contiguous tensors) saves it."""
    weight = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "W")
    nodes = [helper.make_node("Transpose", ["W"], ["W_t"], perm=[1, 0]),
             helper.make_node("MatMul", ["x", "W_t"], ["y"])]
    graph = helper.make_graph(nodes, "view", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [weight])
    module = bridge.from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert all(t.is_contiguous() for t in module.state_dict().values())
    save_file(module.state_dict(), tmp_path / "view.safetensors")
    x = torch.randn(2, 3)
    expected = x @ torch.arange(12, dtype=torch.float32).reshape(4, 3).T
    torch.testing.assert_close(module(x), expected)
