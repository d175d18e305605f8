"""``bridge.InferenceSession`` answers the same calls as ``onnxruntime.InferenceSession`` on
the same files: skl2onnx graphs of the coverage list (ZipMap and string outputs included),
string inputs through vocabularies, a pipeline with text columns, a torch export and the
examples' artifact; plus the errors for missing, unknown and mis-typed inputs."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest
import torch
from skl2onnx import to_onnx
from skl2onnx.common.data_types import Int64TensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler
from torch import nn

import bridge
from bridge.errors import DeviceError, InvalidInputError, InvalidModelError
from bridge.sklearn.converters import register_missing_converters
from tests.sklearn.cases import CASES, LOOSE_TOLERANCE, fitted

CPU = ["CPUExecutionProvider"]
RTOL, ATOL = 1e-4, 1e-5  # float32 graphs: the two runtimes accumulate in different orders

# one dataset per estimator keeps the run short; string classes where the case has them
COVERAGE = [(case, "strings" if "strings" in names else names[0])
            for case, (_, names) in CASES.items()]


def sessions(model: onnx.ModelProto):
    data = model.SerializeToString()
    return bridge.InferenceSession(data, providers=CPU), onnxruntime.InferenceSession(
        data, providers=CPU)


def assert_same(ours, theirs, what: str, factor: float = 1.0) -> None:
    """Same structure (type, length, keys, dtype, shape) and values within tolerance."""
    assert type(ours) is type(theirs), f"{what}: {type(ours)} != {type(theirs)}"
    if isinstance(theirs, list):
        assert len(ours) == len(theirs), what
        for position, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{what}[{position}]", factor)
    elif isinstance(theirs, dict):
        assert list(ours) == list(theirs), f"{what}: keys {list(ours)} != {list(theirs)}"
        assert all(type(a) is type(b) for a, b in zip(ours, theirs)), f"{what}: key types"
        np.testing.assert_allclose(list(ours.values()), list(theirs.values()),
                                   rtol=RTOL * factor, atol=ATOL * factor, err_msg=what)
    else:
        assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype} != {theirs.dtype}"
        assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
        if theirs.dtype.kind in "fc":
            np.testing.assert_allclose(ours, theirs, rtol=RTOL * factor, atol=ATOL * factor,
                                       err_msg=what)
        else:
            np.testing.assert_array_equal(ours, theirs, err_msg=what)


def assert_same_session(ours, theirs, feed: dict, factor: float = 1.0) -> None:
    for get in ("get_inputs", "get_outputs"):
        assert [(a.name, a.type, a.shape) for a in getattr(ours, get)()] == [
            (a.name, a.type, a.shape) for a in getattr(theirs, get)()], get
    mine, reference = ours.get_modelmeta(), theirs.get_modelmeta()
    for attribute in ("producer_name", "graph_name", "domain", "description",
                      "graph_description", "version", "custom_metadata_map"):
        assert getattr(mine, attribute) == getattr(reference, attribute), attribute
    assert_same(ours.run(None, feed), theirs.run(None, feed), "run(None)", factor)
    last = [theirs.get_outputs()[-1].name]
    assert_same(ours.run(last, feed), theirs.run(last, feed), f"run({last})", factor)


@pytest.mark.parametrize(("case", "data_name"), COVERAGE, ids=[c for c, _ in COVERAGE])
def test_coverage_list_graphs_match_onnxruntime(case, data_name):
    register_missing_converters()
    estimator, data = fitted(case, data_name)
    X = np.asarray(data.X if case != "LabelBinarizer" else data.X, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case in ("LabelBinarizer", "LabelEncoder"):  # they take the labels themselves
            model = to_onnx(estimator, initial_types=[("y", Int64TensorType([None]))])
            X = X.astype(np.int64)
        else:
            model = to_onnx(estimator, X[:1], target_opset=(
                {"": 17, "ai.onnx.ml": 3} if case == "IsolationForest" else None))
    ours, theirs = sessions(model)
    name = theirs.get_inputs()[0].name
    assert_same_session(ours, theirs, {name: X[:40]}, LOOSE_TOLERANCE.get(case, 1.0))


def test_zipmap_outputs_are_lists_of_dicts_keyed_by_the_classes():
    estimator, data = fitted("LogisticRegression", "strings")
    ours, theirs = sessions(to_onnx(estimator, data.X[:1].astype(np.float32)))
    labels, probabilities = ours.run(None, {"X": data.X[:3].astype(np.float32)})
    assert labels.dtype == object and set(labels) <= {"cat", "dog", "emu"}
    assert [list(row) for row in probabilities] == [["cat", "dog", "emu"]] * 3
    assert isinstance(probabilities[0]["cat"], float)
    assert ours.get_outputs()[1].type == "seq(map(string,tensor(float)))"


def test_string_input_and_output_through_vocabularies():
    encoder = LabelEncoder().fit(["x", "y", "z"])
    model = to_onnx(encoder, initial_types=[("input", StringTensorType([None]))])
    ours, theirs = sessions(model)
    for feed in (np.array(["z", "x", "q"]), np.array(["y", "y"], dtype=object)):
        assert_same_session(ours, theirs, {"input": feed})
    labels = np.array([2, 0, 1, 7], dtype=np.int64)
    int_to_string = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("LabelEncoder", ["i"], ["s"], domain="ai.onnx.ml",
                               keys_int64s=[0, 1, 2], values_strings=["a", "b", "c"],
                               default_string="none")],
        "decode", [onnx.helper.make_tensor_value_info("i", onnx.TensorProto.INT64, ["n"])],
        [onnx.helper.make_tensor_value_info("s", onnx.TensorProto.STRING, ["n"])]),
        opset_imports=[onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("ai.onnx.ml", 3)],
        ir_version=9)
    ours, theirs = sessions(int_to_string)
    assert ours.get_inputs()[0].shape == ["n"]  # a symbolic dimension stays a string
    assert_same_session(ours, theirs, {"i": labels})


def test_pipeline_with_text_and_number_columns():
    frame = pd.DataFrame({"colour": ["red", "blue", "red", "green"] * 10,
                          "size": np.arange(40, dtype=np.float32)})
    y = np.arange(40) % 2
    pipeline = make_pipeline(ColumnTransformer([("text", OneHotEncoder(), ["colour"]),
                                                ("number", StandardScaler(), ["size"])]),
                             LogisticRegression()).fit(frame, y)
    model = to_onnx(pipeline, initial_types=[("colour", StringTensorType([None, 1])),
                                             ("size", bridge_float([None, 1]))])
    ours, theirs = sessions(model)
    feed = {"colour": frame[["colour"]].to_numpy()[:7], "size": frame[["size"]].to_numpy()[:7]}
    assert_same_session(ours, theirs, feed)


def bridge_float(shape):
    from skl2onnx.common.data_types import FloatTensorType

    return FloatTensorType(shape)


def test_torch_export_matches_onnxruntime():
    module = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(2, 6),), buffer, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                          dynamo=False)
    ours, theirs = sessions(onnx.load_from_string(buffer.getvalue()))
    assert ours.get_inputs()[0].shape == ["batch", 6]
    assert_same_session(ours, theirs, {"x": np.random.default_rng(0).normal(
        size=(5, 6)).astype(np.float32)})


def test_the_deploy_examples_artifact_from_a_path(tmp_path):
    from bridge import NeuralNetClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    net = NeuralNetClassifier(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)),
                              max_epochs=2, train_split=None, verbose=0).fit(X, y)
    path = tmp_path / "net.onnx"
    bridge.to_onnx(net, path)
    ours = bridge.InferenceSession(str(path), providers=CPU)
    theirs = onnxruntime.InferenceSession(str(path), providers=CPU)
    assert_same_session(ours, theirs, {ours.get_inputs()[0].name: X[:9]})
    assert ours.get_modelmeta().custom_metadata_map  # bridge's metadata came through


@pytest.fixture(scope="module")
def classifier_session():
    estimator, data = fitted("LogisticRegression", "multiclass")
    return bridge.InferenceSession(to_onnx(estimator, data.X[:1].astype(np.float32)),
                                   providers=CPU), data.X[:4].astype(np.float32)


@pytest.mark.parametrize(("feed", "message"), [
    ({}, r"missing input\(s\) \['X'\]"),
    ({"X": None, "Z": 1}, r"unknown input\(s\) \['Z'\]"),
])
def test_missing_and_unknown_inputs_are_named(classifier_session, feed, message):
    session, X = classifier_session
    feed = {k: (X if v is None else v) for k, v in feed.items()}
    with pytest.raises(InvalidInputError, match=message):
        session.run(None, feed)


def test_mistyped_and_misshapen_inputs_are_named(classifier_session):
    session, X = classifier_session
    with pytest.raises(InvalidInputError, match=r"'X' is tensor\(float\).*tensor\(double\)"):
        session.run(None, {"X": X.astype(np.float64)})
    with pytest.raises(InvalidInputError, match=r"'X' has rank 2"):
        session.run(None, {"X": X[0]})
    with pytest.raises(InvalidInputError, match=r"'X' has shape \[None, 6\].*axis 1"):
        session.run(None, {"X": X[:, :2]})
    with pytest.raises(InvalidInputError, match=r"unknown output name\(s\) \['nope'\]"):
        session.run(["nope"], {"X": X})
    with pytest.raises(InvalidInputError, match="is tensor.string.; got a float32 array"):
        encoder = LabelEncoder().fit(["x", "y"])
        bridge.InferenceSession(to_onnx(encoder, initial_types=[(
            "input", StringTensorType([None]))])).run(None, {"input": np.zeros(2, np.float32)})


def test_errors_are_valueerrors_as_onnxruntime_users_catch_them(classifier_session):
    session, _ = classifier_session
    with pytest.raises(ValueError):
        session.run(None, {})


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InvalidModelError, match="missing.onnx"):
        bridge.InferenceSession(str(tmp_path / "missing.onnx"))


def test_providers(classifier_session):
    session, X = classifier_session
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert session.get_provider_options() == {"CPUExecutionProvider": {}}
    with pytest.raises(TypeError, match="list of provider names"):
        session.set_providers("CPUExecutionProvider")
    if torch.cuda.is_available():
        return
    with pytest.warns(UserWarning, match="CUDAExecutionProvider"):
        session.set_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert next(session.module.buffers()).device.type == "cpu"


@pytest.mark.cuda
def test_cuda_provider_runs_on_the_device_and_agrees(classifier_session):
    estimator, data = fitted("RandomForestClassifier", "multiclass")
    model = to_onnx(estimator, data.X[:1].astype(np.float32))
    ours = bridge.InferenceSession(model, providers=[("CUDAExecutionProvider", {"device_id": 0})])
    assert ours.get_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert ours.get_provider_options()["CUDAExecutionProvider"] == {"device_id": "0"}
    assert next(ours.module.buffers()).device.type == "cuda"
    theirs = onnxruntime.InferenceSession(model.SerializeToString(), providers=CPU)
    assert_same_session(ours, theirs, {"X": data.X[:30].astype(np.float32)})
    with pytest.raises(DeviceError, match="device_id=99"):
        bridge.InferenceSession(model, providers=["CUDAExecutionProvider"],
                                provider_options=[{"device_id": 99}])
