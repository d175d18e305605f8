"""Import-time folding of shape arithmetic: fewer nodes, same results at every batch size."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import bridge
from bridge.onnx.graph import load_model
from bridge.onnx.importer import _GraphBuilder
from bridge.onnx.static_shapes import StaticShapes
from tests.parity import assert_parity, run_onnxruntime

TOLERANCE = dict(rtol=1e-4, atol=1e-5)


class Windowed(nn.Module):
    """Swin-like shape arithmetic: pad to a multiple of the window, split into windows,
    attend inside each, merge back; every size comes from ``x.shape`` at run time."""

    def __init__(self, channels: int = 8, window: int = 3):
        super().__init__()
        self.window = window
        self.project = nn.Linear(channels, channels)

    def forward(self, x):  # x: [batch, height, width, channels]
        b, h, w, c = x.shape
        pad_h, pad_w = (self.window - h % self.window) % self.window, \
            (self.window - w % self.window) % self.window
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = x.shape[1], x.shape[2]
        s = self.window
        windows = x.view(b, hp // s, s, wp // s, s, c).permute(0, 1, 3, 2, 4, 5)
        windows = windows.reshape(-1, s * s, c)
        scores = torch.softmax(windows @ windows.transpose(1, 2) / c ** 0.5, -1)
        mixed = self.project(scores @ windows)
        merged = mixed.view(b, hp // s, wp // s, s, s, c).permute(0, 1, 3, 2, 4, 5)
        merged = merged.reshape(b, hp, wp, c)[:, :h, :w, :]
        return merged.flatten(1).sum(1, keepdim=True) + x.size(1) * x.size(-1)


def _torchscript_export(module, x, dynamic_batch: bool) -> onnx.ModelProto:
    buffer = io.BytesIO()
    axes = {"x": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes=axes)
    return onnx.load_from_string(buffer.getvalue())


def _import(model, fold: bool = True):
    # the fusion passes would turn the Reshape counted below into a plain torch call
    options = {"tree_strategy": "auto", "fold_static_shapes": fold, "fuse_graph": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _GraphBuilder.for_model(load_model(model), False, options).build()


def _shape_nodes(module) -> int:
    return sum(type(m).__name__ in ("OnnxShape", "OnnxSize") for m in module.modules())


@pytest.fixture(scope="module")
def windowed():
    torch.manual_seed(0)
    return Windowed().eval()


def test_torchscript_export_with_dynamic_batch_matches_onnxruntime_at_any_batch(windowed):
    model = _torchscript_export(windowed, torch.randn(2, 7, 5, 8), dynamic_batch=True)
    folded, unfolded = _import(model), _import(model, fold=False)
    assert _shape_nodes(unfolded) > 0 and _shape_nodes(folded) == 0
    assert len(folded.graph.nodes) < len(unfolded.graph.nodes) / 2
    for batch in (1, 3, 7):
        x = torch.randn(batch, 7, 5, 8)
        with torch.no_grad():
            got = folded(x)
            assert_parity(got, unfolded(x), **TOLERANCE, what=f"batch {batch} vs unfolded")
        expected = run_onnxruntime(model, {"x": x.numpy()})[0]
        assert_parity(got, expected, **TOLERANCE, what=f"batch {batch} vs onnxruntime")


def test_fixed_batch_export_folds_and_matches_at_its_batch_size(windowed):
    # the TorchScript exporter bakes a fixed batch into some reshape targets, so such a
    # graph runs at its own batch size only (folded or not)
    model = _torchscript_export(windowed, torch.randn(2, 7, 5, 8), dynamic_batch=False)
    folded = _import(model)
    assert _shape_nodes(folded) == 0
    x = torch.randn(2, 7, 5, 8)
    with torch.no_grad():
        assert_parity(folded(x), windowed(x), **TOLERANCE)


def test_a_free_axis_past_the_batch_keeps_its_shape_arithmetic(windowed):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(windowed, (torch.randn(2, 7, 5, 8),), buffer, dynamo=False,
                          opset_version=17, input_names=["x"],
                          dynamic_axes={"x": {0: "batch", 1: "height"}})
    model = onnx.load_from_string(buffer.getvalue())
    folded = _import(model)
    assert _shape_nodes(folded) > 0
    for height in (4, 7, 9):
        x = torch.randn(3, height, 5, 8)
        expected = run_onnxruntime(model, {"x": x.numpy()})[0]
        with torch.no_grad():
            assert_parity(folded(x), expected, **TOLERANCE, what=f"height {height}")


def _flatten_by_shape_model(extra_rank: int = 2) -> onnx.ModelProto:
    """Reshape(x, Concat(Shape(x)[0:1], [prod of the rest])): the TorchScript flatten idiom."""
    dims = [4, 5, 6][:extra_rank]
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes"], ["batch_1d"]),
        helper.make_node("Shape", ["x"], ["rest"], start=1),
        helper.make_node("ReduceProd", ["rest"], ["features"], keepdims=1),
        helper.make_node("Concat", ["batch_1d", "features"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "flatten",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch"] + dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.array(0, np.int64), "zero"),
                     numpy_helper.from_array(np.array([0], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


def test_reshape_target_with_only_the_batch_unknown_becomes_constant():
    model = _flatten_by_shape_model()
    folded = _import(model)
    kinds = [type(m).__name__ for m in folded.modules()]
    assert kinds.count("OnnxReshape") == 1 and _shape_nodes(folded) == 0
    assert "OnnxConcat" not in kinds and "OnnxGather" not in kinds
    for batch in (1, 3, 7):
        x = np.random.default_rng(batch).standard_normal((batch, 4, 5)).astype(np.float32)
        got = folded(torch.from_numpy(x))
        assert got.shape == (batch, 20)
        assert_parity(got, x.reshape(batch, 20), rtol=0, atol=0)


def test_graphs_of_the_ml_domain_and_graphs_without_shape_are_left_alone():
    model = _flatten_by_shape_model()
    model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
    assert StaticShapes.for_model(model) is None
    without_shape = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]))
    assert StaticShapes.for_model(without_shape) is None


def test_imported_folded_model_traces_and_exports(windowed):
    model = _torchscript_export(windowed, torch.randn(2, 7, 5, 8), dynamic_batch=True)
    module = bridge.from_onnx(model)
    x = torch.randn(3, 7, 5, 8)
    with torch.no_grad():
        expected = module(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, (x,))
        exported = torch.export.export(module, (x,)).module()
        torch.testing.assert_close(traced(x), expected)
        torch.testing.assert_close(exported(x), expected)


class Heads(nn.Module):
    """BERT-like head split: a ``-1`` beside the batch size read at run time."""

    def forward(self, x):  # x: [batch, 6, 8]
        heads = x.view(x.size(0), x.size(1), -1, 4).transpose(1, 2)
        mask = torch.zeros(x.size(0), x.size(1)).expand(x.size(0), -1)
        return heads.reshape(x.size(0), -1) + mask.sum(-1, keepdim=True)


def test_minus_one_beside_the_batch_is_resolved_and_expand_keeps_sizes():
    module = Heads().eval()
    model = _torchscript_export(module, torch.randn(2, 6, 8), dynamic_batch=True)
    folded, unfolded = _import(model), _import(model, fold=False)
    # one Shape stays: the zeros mask needs the batch size; both views get constant targets
    assert _shape_nodes(folded) == 1 and _shape_nodes(unfolded) > 2
    assert len(folded.graph.nodes) < len(unfolded.graph.nodes) - 10
    for batch in (1, 3, 7):
        x = torch.randn(batch, 6, 8)
        expected = run_onnxruntime(model, {"x": x.numpy()})[0]
        with torch.no_grad():
            assert_parity(folded(x), expected, **TOLERANCE, what=f"batch {batch}")
