"""Sequence operators against onnxruntime: graphs that build, read, edit and join sequences."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import bridge
from tests.parity import assert_parity, run_onnxruntime

FLOAT = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "sequences", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    return model


def _tensor(name, shape, elem_type=FLOAT):
    return helper.make_tensor_value_info(name, elem_type, shape)


def _int(name, value):
    return helper.make_tensor(name, TensorProto.INT64, [], [value])


def _both(model, feeds):
    reference = run_onnxruntime(model, feeds)
    module = bridge.from_onnx(model)
    with torch.no_grad():
        actual = module(*[torch.from_numpy(feeds[n]) for n in module.input_names])
    return (list(actual) if isinstance(actual, tuple) else [actual]), reference


@pytest.fixture
def abc():
    rng = np.random.default_rng(0)
    return {k: rng.normal(size=(3, 4)).astype(np.float32) for k in "abc"}


@pytest.mark.parametrize("position", [0, 2, -1])
def test_construct_then_at_and_length(abc, position):
    model = _model(
        [helper.make_node("SequenceConstruct", ["a", "b", "c"], ["s"]),
         helper.make_node("SequenceAt", ["s", "i"], ["y"]),
         helper.make_node("SequenceLength", ["s"], ["n"])],
        [_tensor(k, [3, 4]) for k in "abc"],
        [_tensor("y", [3, 4]), _tensor("n", [], TensorProto.INT64)],
        [_int("i", position)])
    (y, n), (y_ref, n_ref) = _both(model, abc)
    assert_parity(y, y_ref, rtol=0, atol=0)
    assert int(n) == int(n_ref) == 3


@pytest.mark.parametrize(("axis", "new_axis"), [(0, 0), (1, 0), (0, 1), (2, 1)])
def test_insert_erase_then_concat(abc, axis, new_axis):
    model = _model(
        [helper.make_node("SequenceEmpty", [], ["empty"], dtype=FLOAT),
         helper.make_node("SequenceInsert", ["empty", "a"], ["s1"]),
         helper.make_node("SequenceInsert", ["s1", "b", "zero"], ["s2"]),  # b, a
         helper.make_node("SequenceInsert", ["s2", "c"], ["s3"]),  # b, a, c
         helper.make_node("SequenceErase", ["s3", "one"], ["s4"]),  # b, c
         helper.make_node("ConcatFromSequence", ["s4"], ["y"], axis=axis, new_axis=new_axis)],
        [_tensor(k, [3, 4]) for k in "abc"], [_tensor("y", None)],
        [_int("zero", 0), _int("one", 1)])
    (y,), (y_ref,) = _both(model, abc)
    assert_parity(y, y_ref, rtol=0, atol=0)


@pytest.mark.parametrize(("split", "keepdims"), [(None, 1), (None, 0), (2, 1), ([1, 3], 1)])
def test_split_to_sequence_then_concat(abc, split, keepdims):
    initializers, inputs = [], ["a"]
    if split is not None:
        values = [split] if isinstance(split, int) else split
        dims = [] if isinstance(split, int) else [len(values)]
        initializers.append(helper.make_tensor("split", TensorProto.INT64, dims, values))
        inputs.append("split")
    model = _model(
        [helper.make_node("SplitToSequence", inputs, ["s"], axis=1, keepdims=keepdims),
         helper.make_node("SequenceLength", ["s"], ["n"]),
         helper.make_node("ConcatFromSequence", ["s"], ["y"], axis=1,
                          new_axis=1 - keepdims if split is None else 0)],
        [_tensor("a", [3, 4])], [_tensor("y", None), _tensor("n", [], TensorProto.INT64)],
        initializers)
    (y, n), (y_ref, n_ref) = _both(model, {"a": abc["a"]})
    assert_parity(y, y_ref, rtol=0, atol=0)
    assert int(n) == int(n_ref)


def test_a_sequence_graph_output_comes_back_as_a_list(abc):
    model = _model([helper.make_node("SequenceConstruct", ["a", "b"], ["s"])],
                   [_tensor(k, [3, 4]) for k in "ab"],
                   [helper.make_tensor_sequence_value_info("s", FLOAT, None)])
    (actual,), (reference,) = _both(model, {k: abc[k] for k in "ab"})
    assert isinstance(actual, list) and len(actual) == len(reference) == 2
    for a, r in zip(actual, reference):
        assert_parity(a, r, rtol=0, atol=0)


def test_a_position_outside_the_sequence_is_refused(abc):
    model = _model(
        [helper.make_node("SequenceConstruct", ["a", "b"], ["s"]),
         helper.make_node("SequenceAt", ["s", "i"], ["y"])],
        [_tensor(k, [3, 4]) for k in "ab"], [_tensor("y", [3, 4])], [_int("i", 5)])
    module = bridge.from_onnx(model)
    with pytest.raises(IndexError, match="position 5 is out of range for a sequence of 2"):
        module(torch.from_numpy(abc["a"]), torch.from_numpy(abc["b"]))
