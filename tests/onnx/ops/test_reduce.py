"""Reduction and scan converters against onnxruntime, plus TorchScript, autograd and CUDA checks."""

import numpy as np
import onnx
import pytest
import torch

from bridge.onnx.ops.reduce import OnnxArgExtreme, OnnxCumulative, OnnxReduce
from tests.parity import assert_matches_onnxruntime, single_node_model

I64 = np.int64
REDUCTIONS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
              "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]


def check(op, inputs, outputs=("y",), *, attributes=None, initializers=None, opset=18, tol=1e-5):
    model = single_node_model(op, inputs, outputs, attributes=attributes,
                              initializers=initializers, opset=opset)
    model = onnx.shape_inference.infer_shapes(model)  # onnxruntime needs typed outputs
    return assert_matches_onnxruntime(model, inputs, rtol=tol, atol=tol)


def positive(*shape):
    return (np.random.rand(*shape) + 0.5).astype(np.float32)


@pytest.mark.parametrize("op", REDUCTIONS)
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([0, -1], 0), (None, 1), (None, 0)])
def test_reductions_with_axes_input(op, axes, keepdims):
    initializers = None if axes is None else {"axes": np.array(axes, I64)}
    check(op, {"x": positive(3, 4, 2)}, initializers=initializers,
          attributes={"keepdims": keepdims})


@pytest.mark.parametrize("op", REDUCTIONS)
def test_reductions_with_axes_attribute(op):
    check(op, {"x": positive(3, 4, 2)}, attributes={"axes": [-2], "keepdims": 0}, opset=13
          if op != "ReduceSum" else 11)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceMax"])
def test_empty_axes_with_noop_applies_only_the_elementwise_part(op):
    check(op, {"x": np.random.randn(3, 4).astype(np.float32)},
          initializers={"axes": np.array([], I64)}, attributes={"noop_with_empty_axes": 1})


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2",
                                "ReduceLogSum", "ReduceLogSumExp"])
def test_reductions_over_an_empty_set(op):
    check(op, {"x": np.zeros((2, 0, 4), np.float32)}, initializers={"axes": np.array([1], I64)})


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"])
def test_integer_reductions_keep_their_dtype(op):
    x = np.random.randint(-4, 5, (3, 5)).astype(np.int32)
    check(op, {"x": x}, initializers={"axes": np.array([1], I64)})


def test_run_time_axes():
    check("ReduceMean", {"x": positive(3, 4), "axes": np.array([0], I64)})


def test_empty_max_follows_the_dtype():
    ints = OnnxReduce("max", [0], True, False)(torch.zeros(0, 3, dtype=torch.int32))
    assert ints.tolist() == [[torch.iinfo(torch.int32).min] * 3]
    flags = OnnxReduce("min", None, False, False)(torch.zeros(0, dtype=torch.bool))
    assert flags.item() is True


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("select_last_index", [0, 1])
@pytest.mark.parametrize("axis,keepdims", [(0, 1), (-1, 0)])
def test_arg_extremes_with_ties(op, select_last_index, axis, keepdims):
    x = np.array([[2, 1, 2, 1], [3, 3, 0, 0], [1, 1, 1, 1]], dtype=np.float32)
    check(op, {"x": x}, attributes={"axis": axis, "keepdims": keepdims,
                                    "select_last_index": select_last_index})


@pytest.mark.parametrize("op", ["CumSum"])
@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_cumulative_sum(op, exclusive, reverse, dtype):
    x = (np.random.randn(3, 4) * 4).astype(dtype)
    check(op, {"x": x}, initializers={"axis": np.array(-1, I64)},
          attributes={"exclusive": exclusive, "reverse": reverse})


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
def test_cumulative_product_against_numpy(exclusive, reverse):
    # onnxruntime has no CumProd kernel yet (opset 26): compare with numpy directly.
    x = torch.tensor([[1.5, -2.0, 3.0, 0.5], [2.0, 2.0, 0.0, 4.0]], dtype=torch.float64)
    result = OnnxCumulative(True, 1, bool(exclusive), bool(reverse))(x).numpy()
    values = x.numpy()[:, ::-1] if reverse else x.numpy()
    if exclusive:
        values = np.concatenate([np.ones((2, 1)), values[:, :-1]], axis=1)
    expected = np.cumprod(values, axis=1)
    np.testing.assert_allclose(result, expected[:, ::-1] if reverse else expected, rtol=1e-12)


def test_modules_script_and_match_eager():
    x = torch.rand(3, 4, 5)
    for kind in ("sum", "mean", "max", "prod", "l2", "log_sum_exp"):
        module = OnnxReduce(kind, [0, -1], False, False)
        torch.testing.assert_close(torch.jit.script(module)(x), module(x))
    arg = OnnxArgExtreme(1, True, True, True)
    assert torch.equal(torch.jit.script(arg)(x), arg(x))
    cumulative = OnnxCumulative(False, None, True, True)
    axis = torch.tensor(2)
    assert torch.equal(torch.jit.script(cumulative)(x, axis), cumulative(x, axis))


@pytest.mark.parametrize("kind", ["sum", "mean", "max", "prod", "l1", "l2", "log_sum",
                                  "log_sum_exp", "sum_square"])
def test_reductions_are_differentiable(kind):
    x = (torch.rand(3, 4, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(OnnxReduce(kind, [1], True, False), (x,))


def test_cumulative_ops_are_differentiable():
    x = (torch.rand(2, 4, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(OnnxCumulative(True, 1, True, True), (x,))
    assert torch.autograd.gradcheck(OnnxCumulative(False, 0, False, True), (x,))


@pytest.mark.cuda
def test_reductions_run_on_cuda():
    x = torch.rand(3, 4, 5)
    for module, arguments in (
        (OnnxReduce("log_sum_exp", [1], False, False), (x,)),
        (OnnxReduce("max", None, True, False), (torch.zeros(0, 2),)),
        (OnnxArgExtreme(-1, False, True, False), (x.round(),)),
        (OnnxCumulative(False, 1, True, True), (x,)),
    ):
        on_cuda = module(*[a.cuda() for a in arguments])
        assert on_cuda.is_cuda
        torch.testing.assert_close(on_cuda.cpu(), module(*arguments))
