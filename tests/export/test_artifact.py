"""Artifact finishing: metadata, the checker, atomic writes and external data for large models."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bridge.errors import ExportError
from bridge.export import artifact


def _model(size: int = 64) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((size, size), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", size])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", size])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_metadata_is_stored_as_strings():
    model = artifact.set_metadata(_model(), {"bridge.classes": [0, 1], "note": "text"})
    metadata = artifact.read_metadata(model)
    assert metadata["bridge.classes"] == "[0, 1]" and metadata["note"] == "text"
    assert metadata["bridge.version"] == artifact.bridge_version()


def test_a_model_over_the_protobuf_limit_is_written_with_external_data(tmp_path, monkeypatch):
    # the 2 GiB limit, scaled down so the test is quick: the same code path runs
    monkeypatch.setattr(artifact, "EXTERNAL_DATA_THRESHOLD", 1000)
    path = tmp_path / "large.onnx"
    artifact.check_and_save(_model(), path)
    assert (tmp_path / "large.onnx.data").stat().st_size == 64 * 64 * 4
    loaded = onnx.load(str(path))
    assert numpy_helper.to_array(loaded.graph.initializer[0]).sum() == 64 * 64


def test_a_large_model_that_fails_the_checker_leaves_earlier_files(tmp_path, monkeypatch):
    monkeypatch.setattr(artifact, "EXTERNAL_DATA_THRESHOLD", 1000)
    path = tmp_path / "large.onnx"
    artifact.check_and_save(_model(), path)
    before = path.read_bytes(), (tmp_path / "large.onnx.data").read_bytes()
    broken = _model()
    broken.graph.node[0].input[0] = "nowhere"  # reads a value nothing defines
    with pytest.raises(ExportError, match="onnx.checker"):
        artifact.check_and_save(broken, path)
    assert (path.read_bytes(), (tmp_path / "large.onnx.data").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["large.onnx", "large.onnx.data"]


def test_a_large_model_without_a_path_is_refused(monkeypatch):
    monkeypatch.setattr(artifact, "EXTERNAL_DATA_THRESHOLD", 1000)
    with pytest.raises(ExportError, match="give a path"):
        artifact.check_and_save(_model(), None)


def test_an_invalid_graph_is_refused_by_the_checker(tmp_path):
    model = _model()
    model.graph.node[0].input[1] = "missing"
    with pytest.raises(ExportError, match="fails onnx.checker"):
        artifact.check_and_save(model, tmp_path / "bad.onnx")
    assert not list(tmp_path.iterdir())  # nothing written, no temp file left
