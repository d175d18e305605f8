"""Catalogue: ONNX files ``from_onnx`` refuses, and the words each refusal must contain.

Every case asserts the exception type (a :mod:`bridge.errors` class, so also the builtin one
a caller would catch) and that the message names the file and what is wrong with it.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bridge import InferenceSession, from_onnx
from bridge.errors import (
    ConversionError,
    InvalidModelError,
    ModelFileError,
    UnsupportedOperatorError,
)


def _matmul_model() -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((3, 2), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_file_cut_after_its_graph_says_no_opset_not_unsupported_operator(tmp_path):
    model = _matmul_model()
    full = model.SerializeToString()
    del model.opset_import[:]
    head = model.SerializeToString()  # fields are written by number: graph (7) before opsets (8)
    assert full.startswith(head)
    path = tmp_path / "cut.onnx"
    path.write_bytes(head)
    with pytest.raises(InvalidModelError, match="declares no opset.*truncated") as caught:
        from_onnx(path)
    assert str(path) in str(caught.value)
    assert not isinstance(caught.value, UnsupportedOperatorError)


def test_node_of_a_domain_the_model_does_not_import(tmp_path):
    model = _matmul_model()
    model.graph.node[0].domain = "ai.onnx.ml"
    path = tmp_path / "domain.onnx"
    onnx.save_model(model, path)
    with pytest.raises(InvalidModelError, match="'mm' uses domain 'ai.onnx.ml', which the model "
                                                "does not import"):
        from_onnx(path)


def test_directory_says_it_is_a_directory(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory") as caught:
        from_onnx(tmp_path)
    assert str(tmp_path) in str(caught.value)
    assert isinstance(caught.value, OSError) and isinstance(caught.value, ValueError)


def test_missing_file_says_it_does_not_exist(tmp_path):
    with pytest.raises(ModelFileError, match="missing.onnx.*does not exist"):
        from_onnx(tmp_path / "missing.onnx")


def test_missing_external_data_names_the_data_file(tmp_path):
    path = tmp_path / "external.onnx"
    onnx.save_model(_matmul_model(), path, save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    os.remove(tmp_path / "weights.bin")
    with pytest.raises(ModelFileError, match="initializer 'W' in the external file .*weights.bin"
                                             ".*does not exist") as caught:
        from_onnx(path)
    assert str(path) in str(caught.value)
    assert not type(caught.value).__module__.startswith("onnx")


def test_external_data_that_loads(tmp_path):
    path = tmp_path / "external.onnx"
    onnx.save_model(_matmul_model(), path, save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    import torch

    assert from_onnx(path)(torch.ones(2, 3)).tolist() == [[3.0, 3.0], [3.0, 3.0]]


def test_bytes_that_are_not_onnx():
    with pytest.raises(InvalidModelError, match="the given bytes is not a readable ONNX model"):
        from_onnx(b"\xff\xff\xff not a protobuf")


def test_empty_file_holds_no_graph(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(InvalidModelError, match="empty.onnx.*holds no ONNX graph"):
        from_onnx(path)


@pytest.mark.parametrize("load", [from_onnx, InferenceSession], ids=["from_onnx", "session"])
def test_initializer_whose_data_does_not_fit_its_dims(tmp_path, load):
    model = _matmul_model()
    model.graph.initializer[0].dims[:] = [4, 2]  # 6 values stored
    path = tmp_path / "dims.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(InvalidModelError, match=r"initializer 'W' \(dims \[4, 2\]\) cannot be "
                                                "decoded") as caught:
        load(path)
    assert str(path) in str(caught.value)


def test_attribute_of_the_wrong_type_names_the_node():
    model = _matmul_model()
    model.graph.node[0].CopyFrom(helper.make_node("Gemm", ["x", "W"], ["y"], name="gemm",
                                                  alpha="fast"))
    with pytest.raises(ConversionError, match="Gemm node 'gemm' cannot be converted"):
        from_onnx(model)


def test_object_that_is_not_a_model():
    with pytest.raises(InvalidModelError, match="expected an onnx.ModelProto, a path or bytes, "
                                                "got int"):
        from_onnx(3)
