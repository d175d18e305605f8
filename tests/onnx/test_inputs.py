"""Imported modules check their inputs against the graph's declared ones on entry."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

import bridge


def add_model(batch: int | str = "N"):
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [batch, 3]) for n in "ab"]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g", inputs, [output])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(("args", "error", "message"), [
    ((torch.ones(2, 3),), TypeError, "missing 1 required positional argument: 'b'"),
    ((np.ones((2, 3), np.float32), torch.ones(2, 3)), TypeError, "'a' must be a torch.Tensor"),
    ((torch.ones(2, 3), torch.ones(2, 4)), ValueError, r"'b' has shape \(\?, 3\); got \(2, 4\)"),
    ((torch.ones(2, 3), torch.ones(1, 2, 3)), ValueError, "'b' has rank 2"),
])
def test_inputs_that_do_not_fit_the_graph_are_named(args, error, message):
    module = bridge.from_onnx(add_model())
    with pytest.raises(error, match=message):
        module(*args)


def test_a_fixed_batch_size_is_honoured_and_a_single_row_still_runs():
    module = bridge.from_onnx(add_model(batch=1))  # exported with a fixed batch of one
    with pytest.raises(ValueError, match=r"'a' has shape \(1, 3\); got \(4, 3\) \(axis 0"):
        module(torch.ones(4, 3), torch.ones(4, 3))
    assert module(torch.ones(3), torch.ones(3)).shape == (3,)
    assert bridge.from_onnx(add_model())(torch.ones(4, 3), torch.ones(4, 3)).shape == (4, 3)


def test_the_check_survives_a_deep_copy_and_stays_out_of_traces():
    module = copy.deepcopy(bridge.from_onnx(add_model()))
    with pytest.raises(ValueError, match="axis 1 differs"):
        module(torch.ones(2, 3), torch.ones(2, 5))
    traced = torch.jit.trace(module, (torch.ones(2, 3), torch.ones(2, 3)))
    assert torch.equal(traced(torch.ones(5, 3), torch.ones(5, 3)), torch.full((5, 3), 2.0))


def test_every_imported_module_compiles_past_dynamos_recompile_limit():
    """The check sits in each module's own generated forward, not in a ``__call__`` shared
    by all imported modules: torch.compile caches per code object, so a shared one would
    send the ninth compiled module back to eager execution without a word."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    x = torch.ones(2, 3)
    for k in range(10):
        module = bridge.from_onnx(add_model())
        before = counters["stats"]["unique_graphs"]
        assert torch.equal(torch.compile(module)(x, x * k), x * (k + 1))
        assert counters["stats"]["unique_graphs"] == before + 1, f"module {k} ran eagerly"
    torch._dynamo.reset()


def test_values_and_nodes_named_like_module_attributes_import():
    """An initializer named ``half`` or a node named ``forward`` would clash with
    nn.Module's own attributes; they are registered under other names."""
    from onnx import numpy_helper

    half = numpy_helper.from_array(np.array([0.5], np.float32), "half")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "half"], ["y"], name="forward")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], [half])
    module = bridge.from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert torch.equal(module(torch.ones(3, 2)), torch.full((3, 2), 0.5))
    assert callable(module.half) and callable(module.forward)
