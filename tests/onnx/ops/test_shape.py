"""Shape and layout converters against onnxruntime, plus TorchScript, autograd and CUDA checks."""

import numpy as np
import onnx
import pytest
import torch

import bridge
from bridge.errors import UnsupportedOperatorError
from bridge.onnx.ops.layout import OnnxPad
from bridge.onnx.ops.shape import OnnxReshape, OnnxSplit, OnnxSqueeze, OnnxUnsqueeze
from tests.parity import assert_matches_onnxruntime, single_node_model

I64 = np.int64


def randn(*shape, dtype=np.float32):
    return np.random.randn(*shape).astype(dtype)


def check(op, inputs, outputs=("y",), *, attributes=None, initializers=None, opset=18, tol=1e-6):
    model = single_node_model(op, inputs, outputs, attributes=attributes,
                              initializers=initializers, opset=opset)
    model = onnx.shape_inference.infer_shapes(model)  # onnxruntime needs typed outputs
    return assert_matches_onnxruntime(model, inputs, rtol=tol, atol=tol)


@pytest.mark.parametrize("start,end", [(None, None), (1, None), (-2, None), (0, -1), (5, 9), (3, 1)])
def test_shape_slices_like_python(start, end):
    attributes = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    check("Shape", {"x": randn(2, 3, 4, 1)}, attributes=attributes, opset=21)


def test_size_counts_elements():
    check("Size", {"x": randn(2, 0, 3)})
    check("Size", {"x": randn(2, 5, 3)})


@pytest.mark.parametrize("shape", [[0, -1], [4, 0, 2], [-1], [2, 3, 2, 2], [0, 0, -1]])
def test_reshape_with_constant_shape(shape):
    check("Reshape", {"x": randn(4, 3, 2)}, initializers={"shape": np.array(shape, I64)})


def test_reshape_allowzero_keeps_zero_as_a_dimension():
    check("Reshape", {"x": randn(0, 3)}, initializers={"shape": np.array([3, 0], I64)},
          attributes={"allowzero": 1}, opset=14)


def test_reshape_with_run_time_shape():
    check("Reshape", {"x": randn(6, 4), "shape": np.array([3, -1, 2], I64)})


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -3])
def test_flatten(axis):
    check("Flatten", {"x": randn(2, 3, 4, 5)}, attributes={"axis": axis})


def test_squeeze_attribute_input_and_default_forms():
    x = randn(1, 3, 1, 2)
    check("Squeeze", {"x": x}, attributes={"axes": [0, -2]}, opset=11)
    check("Squeeze", {"x": x}, initializers={"axes": np.array([2], I64)}, opset=13)
    check("Squeeze", {"x": x}, opset=13)


def test_squeeze_rejects_an_axis_that_is_not_one():
    with pytest.raises(ValueError, match="not 1"):
        OnnxSqueeze([1])(torch.zeros(1, 3))


def test_unsqueeze_attribute_and_input_forms():
    x = randn(3, 4)
    check("Unsqueeze", {"x": x}, attributes={"axes": [0, 3]}, opset=11)
    check("Unsqueeze", {"x": x}, initializers={"axes": np.array([-1, 1, 0], I64)}, opset=13)


@pytest.mark.parametrize("perm", [None, [0, 2, 1], [2, 0, 1]])
def test_transpose(perm):
    check("Transpose", {"x": randn(2, 3, 4)}, attributes={"perm": perm} if perm else None)


@pytest.mark.parametrize("x_shape,shape", [((3, 1), [2, 1, 6]), ((1, 4), [3, 1]), ((2,), [1])])
def test_expand_broadcasts_both_ways(x_shape, shape):
    check("Expand", {"x": randn(*x_shape)}, initializers={"shape": np.array(shape, I64)})


def test_concat_three_inputs_negative_axis():
    check("Concat", {"a": randn(2, 1), "b": randn(2, 3), "c": randn(2, 2)},
          attributes={"axis": -1})


def test_split_forms():
    x = randn(7, 4)
    check("Split", {"x": x}, ("a", "b", "c"), attributes={"axis": 0, "num_outputs": 3})
    check("Split", {"x": x}, ("a", "b"), initializers={"split": np.array([5, 2], I64)}, opset=13)
    check("Split", {"x": x}, ("a", "b"), attributes={"axis": -1, "split": [1, 3]}, opset=11)
    check("Split", {"x": randn(6)}, ("a", "b", "c"), opset=13)


def test_split_scripts_and_runs():
    scripted = torch.jit.script(OnnxSplit(0, None, 3))
    parts = scripted(torch.arange(7))
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4, 5], [6]]


def test_tile():
    check("Tile", {"x": randn(2, 3)}, initializers={"repeats": np.array([2, 3], I64)})


def test_constant_of_shape_takes_dtype_from_value():
    value = onnx_tensor(np.array([7], dtype=np.int32))
    check("ConstantOfShape", {"shape": np.array([2, 3], I64)}, attributes={"value": value})
    check("ConstantOfShape", {"shape": np.array([0], I64)})


def onnx_tensor(array):
    return onnx.numpy_helper.from_array(array, name="value")


@pytest.mark.parametrize("start,limit,delta,dtype", [
    (3, 10, 3, np.int64), (10, 4, -2, np.int32), (0.5, 3.0, 0.7, np.float32),
    (1.0, -2.5, -0.5, np.float64), (5, 5, 1, np.int64),
])
def test_range(start, limit, delta, dtype):
    inputs = {n: np.array(v, dtype=dtype) for n, v in (("s", start), ("l", limit), ("d", delta))}
    check("Range", inputs)


@pytest.mark.parametrize("k,dtype", [(0, None), (1, 7), (-2, 1)])
def test_eye_like(k, dtype):
    attributes = {"k": k} if dtype is None else {"k": k, "dtype": dtype}
    check("EyeLike", {"x": randn(3, 5)}, attributes=attributes)


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [-1, 0, 2])
def test_trilu(upper, k):
    check("Trilu", {"x": randn(2, 4, 5)}, initializers={"k": np.array(k, I64)},
          attributes={"upper": upper})


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("pads", [[1, 2, 0, 2, 1, 3], [0, -1, 1, 1, 2, -2]])
def test_pad_modes(mode, pads):
    initializers = {"pads": np.array(pads, I64)}
    if mode == "constant":
        initializers["value"] = np.array(1.5, np.float32)
    check("Pad", {"x": randn(3, 4, 5)}, initializers=initializers, attributes={"mode": mode},
          opset=19)


def test_pad_integers_and_old_attribute_form():
    check("Pad", {"x": np.arange(12, dtype=np.int64).reshape(3, 4)},
          initializers={"pads": np.array([1, 0, 0, 2], I64), "value": np.array(9, I64)})
    check("Pad", {"x": randn(3, 4)}, attributes={"pads": [1, 0, 0, 2], "value": 9.0}, opset=2)


def test_pad_wrap_before_opset_19_is_unsupported():
    model = single_node_model("Pad", {"x": randn(2, 2)}, initializers={
        "pads": np.array([1, 1, 1, 1], I64)}, attributes={"mode": "wrap"}, opset=18)
    with pytest.raises(UnsupportedOperatorError, match="mode='wrap'"):
        bridge.from_onnx(model)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space(mode):
    check("DepthToSpace", {"x": randn(2, 8, 3, 2)}, attributes={"blocksize": 2, "mode": mode})


def test_space_to_depth():
    check("SpaceToDepth", {"x": randn(2, 3, 4, 6)}, attributes={"blocksize": 2})


def test_modules_script_and_match_eager():
    x = torch.randn(3, 4)
    reshape = torch.jit.script(OnnxReshape([0, 2, -1], False))
    assert torch.equal(reshape(x), x.reshape(3, 2, 2))
    assert torch.equal(reshape(x, torch.tensor([-1])), x.reshape(-1))
    pad = OnnxPad("reflect", [1, 2, 2, 1], None, 0.0)
    assert torch.equal(torch.jit.script(pad)(x), pad(x))


def test_imported_graph_traces_with_run_time_shape():
    model = single_node_model("Reshape", {"x": randn(6, 4), "shape": np.array([3, 8], I64)})
    module = bridge.from_onnx(model)
    x, shape = torch.randn(6, 4), torch.tensor([3, 8])
    traced = torch.jit.trace(module, (x, shape), check_trace=False)
    assert torch.equal(traced(x, shape), x.reshape(3, 8))


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_is_differentiable(mode):
    module = OnnxPad(mode, [1, 0, 2, 1], None, 0.5)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))


@pytest.mark.cuda
def test_shape_ops_run_on_cuda():
    model = single_node_model("Pad", {"x": randn(3, 4)}, initializers={
        "pads": np.array([1, 2, 0, 1], I64)}, attributes={"mode": "reflect"})
    module = bridge.from_onnx(model)
    x = torch.randn(3, 4)
    assert torch.equal(module.to("cuda")(x.cuda()).cpu(), module.cpu()(x))
    model = single_node_model("Reshape", {"x": randn(6, 4), "shape": np.array([3, 8], I64)})
    module = bridge.from_onnx(model)
    result = module(torch.randn(6, 4, device="cuda"), torch.tensor([3, 8], device="cuda"))
    assert result.is_cuda and result.shape == (3, 8)
    shape = bridge.from_onnx(single_node_model("Shape", {"x": randn(2, 3)}))
    assert shape(torch.zeros(2, 3, device="cuda")).is_cuda


def test_squeeze_and_unsqueeze_script():
    x = torch.randn(1, 3, 1)
    squeeze = torch.jit.script(OnnxSqueeze(None))
    assert squeeze(x, torch.tensor([0, -1])).shape == (3,)
    unsqueeze = torch.jit.script(OnnxUnsqueeze([0, -1]))
    assert unsqueeze(torch.randn(3)).shape == (1, 3, 1)
