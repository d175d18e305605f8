"""Indexing converters against onnxruntime, plus TorchScript, autograd and CUDA checks."""

import numpy as np
import onnx
import pytest
import torch

import bridge
from bridge.errors import UnsupportedOperatorError
from bridge.onnx.ops.indexing import (
    OnnxGather,
    OnnxGatherND,
    OnnxScatterND,
    OnnxSlice,
    OnnxTopK,
    OnnxUnique,
)
from tests.parity import assert_matches_onnxruntime, single_node_model

I64 = np.int64


def randn(*shape, dtype=np.float32):
    return np.random.randn(*shape).astype(dtype)


def check(op, inputs, outputs=("y",), *, attributes=None, initializers=None, opset=18, tol=1e-6):
    model = single_node_model(op, inputs, outputs, attributes=attributes,
                              initializers=initializers, opset=opset)
    model = onnx.shape_inference.infer_shapes(model)  # onnxruntime needs typed outputs
    return assert_matches_onnxruntime(model, inputs, rtol=tol, atol=tol)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_with_negative_and_matrix_indices(axis):
    indices = np.array([[0, -1], [2, 1]], dtype=I64)
    check("Gather", {"x": randn(3, 4, 3), "i": indices}, attributes={"axis": axis})


@pytest.mark.parametrize(("op", "indices"), [
    ("Gather", np.array([0, 3], dtype=I64)),
    ("GatherElements", np.array([[0, -4, 1]], dtype=I64)),
    ("GatherND", np.array([[3, 0]], dtype=I64)),
    ("ScatterElements", np.array([[0, 3, 1]], dtype=I64)),
])
def test_index_out_of_range_names_the_operator_and_the_valid_range(op, indices):
    x = randn(3, 3)
    inputs = {"x": x, "i": indices}
    if op == "ScatterElements":
        inputs["u"] = randn(*indices.shape)
    module = bridge.from_onnx(single_node_model(op, inputs, ("y",), opset=18))
    with pytest.raises(IndexError, match=rf"{op}: index -?\d+ is out of range .* -3\.\.2"):
        module(*(torch.from_numpy(v) for v in inputs.values()))


def test_gather_with_int32_and_scalar_indices():
    check("Gather", {"x": randn(5, 2), "i": np.array([-2, 4], dtype=np.int32)})
    x = torch.randn(5, 2)
    assert torch.equal(OnnxGather(0)(x, torch.tensor(-2, dtype=torch.int32)), x[-2])


@pytest.mark.parametrize("axis, index", [(0, 2), (1, -1), (-1, 0), (2, -3)])
def test_gather_with_a_constant_scalar_index_selects(axis, index):
    check("Gather", {"x": randn(3, 4, 3)}, attributes={"axis": axis},
          initializers={"i": np.array(index, dtype=I64)})


def test_gather_with_a_constant_scalar_index_out_of_range_names_the_range():
    model = single_node_model("Gather", {"x": randn(3, 4)}, ("y",), attributes={"axis": 1},
                              initializers={"i": np.array(4, dtype=I64)})
    module = bridge.from_onnx(model)
    with pytest.raises(IndexError, match=r"Gather: index 4 is out of range .* -4\.\.3"):
        module(torch.randn(3, 4))


def test_gather_elements():
    indices = np.array([[0, -1, 2], [1, 0, 0]], dtype=I64)
    check("GatherElements", {"x": randn(2, 3), "i": indices}, attributes={"axis": 1})


@pytest.mark.parametrize("batch_dims,indices", [
    (0, np.array([[0, 1], [1, -1]], dtype=I64)),
    (0, np.array([[1], [0]], dtype=I64)),
    (1, np.array([[[1], [0]], [[0], [2]]], dtype=I64)),
])
def test_gather_nd(batch_dims, indices):
    check("GatherND", {"x": randn(2, 3, 4), "i": indices}, attributes={"batch_dims": batch_dims})


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([1, 0], [3, 10], [0, 1], [1, 2]),
    ([-1, 20], [-10, -100], [1, 2], [-1, -3]),
    ([0], [-1], [-1], [1]),
    ([2, 1], [1000, 2], [0, 2], [-2, 1]),
])
def test_slice_inputs_with_clamping_and_negative_steps(starts, ends, axes, steps):
    initializers = {n: np.array(v, I64) for n, v in
                    (("starts", starts), ("ends", ends), ("axes", axes), ("steps", steps))}
    check("Slice", {"x": randn(4, 5, 6)}, initializers=initializers)


def test_slice_attribute_form_and_run_time_inputs():
    check("Slice", {"x": randn(4, 5)},
          attributes={"starts": [1, -3], "ends": [3, 100], "axes": [0, 1]}, opset=9)
    check("Slice", {"x": randn(4, 5), "s": np.array([3], I64), "e": np.array([0], I64),
                    "a": np.array([1], I64), "t": np.array([-1], I64)})


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements_reductions(reduction):
    indices = np.array([[1, 0, -1], [0, 2, 1]], dtype=I64)
    check("ScatterElements", {"x": randn(3, 3), "i": indices, "u": randn(2, 3)},
          attributes={"axis": 0, "reduction": reduction})


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd_reductions(reduction):
    indices = np.array([[0, 1], [2, -1], [0, 1]], dtype=I64)
    if reduction == "none":
        indices = indices[:2]
    updates = randn(len(indices), 4)
    check("ScatterND", {"x": randn(3, 2, 4), "i": indices, "u": updates},
          attributes={"reduction": reduction})


def test_scatter_reduction_before_its_opset_is_unsupported():
    model = single_node_model("ScatterElements", {"x": randn(2), "i": np.array([0], I64),
                                                  "u": randn(1)},
                              attributes={"reduction": "max"}, opset=16)
    with pytest.raises(UnsupportedOperatorError, match="reduction='max'"):
        bridge.from_onnx(model)


def test_deprecated_scatter():
    check("Scatter", {"x": randn(3, 3), "i": np.array([[2, 0]], I64), "u": randn(1, 2)},
          attributes={"axis": 1}, opset=10)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot_with_negative_and_out_of_range_indices(axis):
    indices = np.array([[0, 3, -1], [5, -5, 2]], dtype=I64)
    check("OneHot", {"i": indices}, initializers={
        "depth": np.array(4, I64), "values": np.array([-1.0, 2.0], np.float32)},
        attributes={"axis": axis})


def test_non_zero():
    x = (np.random.rand(3, 4) > 0.5).astype(np.float32)
    check("NonZero", {"x": x})


@pytest.mark.parametrize("axis", [None, 0, -1])
def test_compress(axis):
    condition = np.array([True, False, True], dtype=bool)
    check("Compress", {"x": randn(3, 3), "c": condition},
          attributes=None if axis is None else {"axis": axis})


@pytest.mark.parametrize("largest", [0, 1])
@pytest.mark.parametrize("axis", [0, -1])
def test_top_k_breaks_ties_by_lower_index(largest, axis):
    x = np.array([[3, 1, 3, 2], [1, 1, 0, 1], [2, 2, 2, 2]], dtype=np.float32)
    check("TopK", {"x": x}, ("values", "indices"), initializers={"k": np.array([2], I64)},
          attributes={"largest": largest, "axis": axis})


def test_top_k_attribute_form_and_integers():
    check("TopK", {"x": randn(4, 6)}, ("v", "i"), attributes={"k": 3}, opset=9)
    check("TopK", {"x": np.random.randint(-5, 5, (4, 6)).astype(I64)}, ("v", "i"),
          initializers={"k": np.array([4], I64)}, attributes={"axis": 1, "largest": 0})


@pytest.mark.parametrize("batch_axis,time_axis", [(1, 0), (0, 1)])
def test_reverse_sequence(batch_axis, time_axis):
    x = randn(4, 4, 2)
    lengths = np.array([4, 1, 3, 2], dtype=I64)
    check("ReverseSequence", {"x": x, "lens": lengths},
          attributes={"batch_axis": batch_axis, "time_axis": time_axis})


@pytest.mark.parametrize("sorted_output", [0, 1])
def test_unique_without_axis(sorted_output):
    x = np.array([[2, 1, 1], [3, 4, 3]], dtype=np.float32)
    check("Unique", {"x": x}, ("y", "indices", "inverse", "counts"),
          attributes={"sorted": sorted_output})


def test_unique_with_axis_and_fewer_outputs():
    x = np.array([[1, 0, 0], [1, 0, 0], [2, 3, 4]], dtype=np.float32)
    check("Unique", {"x": x}, ("y", "indices", "inverse", "counts"), attributes={"axis": 0})
    check("Unique", {"x": x}, ("y",), attributes={"axis": -1})


def test_modules_script_and_match_eager():
    x = torch.randn(4, 5)
    slice_module = OnnxSlice([3, 0], [0, 5], [0, 1], [-1, 2])
    assert torch.equal(torch.jit.script(slice_module)(x), slice_module(x))
    top_k = OnnxTopK(2, -1, True)
    for eager, scripted in zip(top_k(x), torch.jit.script(top_k)(x)):
        assert torch.equal(eager, scripted)
    gather_nd = OnnxGatherND(0)
    index = torch.tensor([[1, 2], [3, -1]])
    assert torch.equal(torch.jit.script(gather_nd)(x, index), gather_nd(x, index))
    unique = OnnxUnique(None, False, 4)
    for eager, scripted in zip(unique(x.round()), torch.jit.script(unique)(x.round())):
        assert torch.equal(eager, scripted)


def test_gather_slice_and_scatter_are_differentiable():
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(OnnxSlice([3], [0], [1], [-2]), (x,))
    updates = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    scatter = OnnxScatterND("sum")
    index = torch.tensor([[1], [3]])
    assert torch.autograd.gradcheck(lambda a, b: scatter(a, index, b), (x, updates))


@pytest.mark.cuda
def test_indexing_ops_run_on_cuda():
    x = torch.randn(4, 5)
    index = torch.tensor([[1, -1], [0, 2]])
    for module, arguments in (
        (OnnxGatherND(0), (x, index)),
        (OnnxScatterND("amax"), (x, index, torch.randn(2))),
        (OnnxSlice([3], [0], [1], [-1]), (x,)),
        (OnnxTopK(3, 1, False), (x,)),
        (OnnxUnique(None, False, 4), (x.round(),)),
    ):
        on_cpu = module(*arguments)
        on_cuda = module(*[a.cuda() for a in arguments])
        on_cpu = on_cpu if isinstance(on_cpu, (list, tuple)) else [on_cpu]
        on_cuda = on_cuda if isinstance(on_cuda, (list, tuple)) else [on_cuda]
        for a, b in zip(on_cpu, on_cuda):
            assert b.is_cuda and torch.equal(a, b.cpu())


@pytest.mark.parametrize("largest", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_top_k_with_many_ties_matches_onnxruntime(largest, dtype):
    # the keyed selection path: ties (and -0.0 vs 0.0) resolve toward the lower index
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 4, size=(5, 40)).astype(dtype)
    if dtype == np.float32:
        x[x == 0] = np.where(rng.random((x == 0).sum()) < 0.5, -0.0, 0.0)
    model = single_node_model("TopK", {"x": x}, ("values", "indices"),
                              initializers={"k": np.array([7], np.int64)},
                              attributes={"largest": largest}, opset=11)
    assert_matches_onnxruntime(model, {"x": x}, rtol=0, atol=0)


@pytest.mark.parametrize("largest", [0, 1])
@pytest.mark.parametrize("axis", [1, 0])
def test_top_k_sorts_only_the_rows_that_need_it(largest, axis):
    """Rows with a tie straddling the k-th place or a NaN take the whole stable sort; the
    others keep topk's answer. Every row must match onnxruntime either way."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 30)).astype(np.float32)
    x[1, [3, 17, 25]] = 9.0 if largest else -9.0  # three equal leaders, k = 2: a straddling tie
    if not largest:  # (for the largest, onnxruntime passes over NaN and torch's sort puts
        x[2, 4] = np.nan  # it first: a difference older than this path, left as it is)
    x[4, :] = 1.0  # every entry tied
    x = x if axis == 1 else np.ascontiguousarray(x.T)
    model = single_node_model("TopK", {"x": x}, ("values", "indices"),
                              initializers={"k": np.array([2], np.int64)},
                              attributes={"largest": largest, "axis": axis}, opset=11)
    assert_matches_onnxruntime(model, {"x": x}, rtol=0, atol=0)
