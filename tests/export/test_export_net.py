"""Nets → ONNX: the output contract, metadata, and agreement with onnxruntime, the ONNX
reference evaluator and bridge.from_onnx (roundtrip)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from sklearn.datasets import load_iris
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

import bridge
from bridge.errors import ExportError, NotFittedError
from bridge.export import read_metadata
from tests.parity import assert_parity

# float32 end to end; the exporter may fuse Gemm/Softmax differently from eager torch.
RTOL, ATOL = 1e-5, 1e-6


class Classifier(nn.Module):
    def __init__(self, n_features=4, n_classes=3):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(n_features, 16), nn.ReLU(), nn.Linear(16, n_classes))

    def forward(self, X):
        return self.layers(X)


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, X):
        return self.layers(X)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X.astype(np.float32), y.astype(np.int64)


def _classifier(**kwargs):
    return bridge.NeuralNetClassifier(
        Classifier, criterion=nn.CrossEntropyLoss, max_epochs=3, lr=0.1, train_split=None,
        verbose=0, **kwargs)


def _run_onnxruntime(model, X):
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X})


def test_classifier_exports_label_and_probabilities(iris, tmp_path):
    X, y = iris
    net = _classifier().fit(X, y)
    path = tmp_path / "net.onnx"
    model = bridge.to_onnx(net, path)
    assert [o.name for o in model.graph.output] == ["label", "probabilities"]
    assert path.exists() and not list(tmp_path.glob(".*tmp*"))
    assert onnx.load(str(path)).graph.node
    label, probabilities = _run_onnxruntime(model, X)
    assert_parity(probabilities, net.predict_proba(X), rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(label, net.predict(X))
    # the batch dimension is dynamic
    assert _run_onnxruntime(model, X[:1])[1].shape == (1, 3)
    metadata = read_metadata(model)
    assert metadata["bridge.version"] == bridge.__version__
    assert metadata["bridge.estimator"] == "NeuralNetClassifier"
    assert metadata["bridge.classes"] == "[0, 1, 2]"
    assert model.producer_name == "bridge"


def test_reference_evaluator_and_roundtrip_agree(iris):
    X, y = iris
    net = _classifier().fit(X, y)
    model = bridge.to_onnx(net)
    label, probabilities = ReferenceEvaluator(model).run(None, {"X": X})
    assert_parity(probabilities, net.predict_proba(X), rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(label, net.predict(X))
    module = bridge.from_onnx(model)
    label, probabilities = module(torch.from_numpy(X))
    assert_parity(probabilities, net.predict_proba(X), rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(label.numpy(), net.predict(X))


def test_string_labels_export_indices_and_the_class_list(iris):
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    net = _classifier().fit(X, names)
    model = bridge.to_onnx(net)
    label, _ = _run_onnxruntime(model, X)
    classes = np.array(eval(read_metadata(model)["bridge.classes"]))  # a JSON list of strings
    np.testing.assert_array_equal(classes[label], net.predict(X))


def test_regressor_exports_variable(iris):
    X, _ = iris
    target = (X[:, :1] * 2 - X[:, 1:2]).astype(np.float32)
    net = bridge.NeuralNetRegressor(Regressor, max_epochs=3, lr=0.05, train_split=None,
                                    verbose=0).fit(X, target)
    model = bridge.to_onnx(net)
    assert [o.name for o in model.graph.output] == ["variable"]
    (variable,) = _run_onnxruntime(model, X)
    assert_parity(variable, net.predict(X), rtol=RTOL, atol=ATOL)


def test_pipeline_with_scaler_and_net_is_one_graph(iris):
    X, y = iris
    X = X * 10 + 3  # something for the scaler to do
    pipeline = make_pipeline(StandardScaler(), _classifier()).fit(X, y)
    model = bridge.to_onnx(pipeline, X_sample=X[:2])
    assert not [n for n in model.graph.node if n.domain == "ai.onnx.ml"]
    label, probabilities = _run_onnxruntime(model, X)
    assert_parity(probabilities, pipeline.predict_proba(X), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(label, pipeline.predict(X))
    assert "StandardScaler" in read_metadata(model)["bridge.preprocessing"]


def test_unfitted_net_is_rejected():
    with pytest.raises(NotFittedError, match="unfitted NeuralNetClassifier"):
        bridge.to_onnx(_classifier())


def test_untraceable_forward_says_why_and_what_to_do():
    class DataDependent(nn.Module):
        def forward(self, X):
            if X.sum() > 0:  # Python control flow on a tensor value
                return X * 2
            return X

    with pytest.raises(ExportError, match="control flow"):
        bridge.to_onnx(DataDependent(), X_sample=torch.ones(2, 3))


def test_opset_too_old_is_a_clear_error(iris):
    X, y = iris
    net = _classifier().fit(X, y)
    with pytest.raises(ExportError, match="opset 9 is too old"):
        bridge.to_onnx(net, opset=9)


@pytest.mark.parametrize("opset", [0, 99, 18.0, "18"])
def test_an_opset_onnx_does_not_know_is_refused(iris, opset):
    net = _classifier().fit(*iris)
    with pytest.raises(ExportError, match=f"opset={opset!r} is not valid"):
        bridge.to_onnx(net, opset=opset)


def test_a_newer_opset_is_produced_as_asked(iris):
    net = _classifier().fit(*iris)
    model = bridge.to_onnx(net, opset=21)
    assert [entry.version for entry in model.opset_import if entry.domain == ""] == [21]


def test_opset_of_an_onnx_ml_graph_applies_only_when_lowered(iris):
    from sklearn.linear_model import LogisticRegression

    converted = bridge.from_sklearn(LogisticRegression(max_iter=300).fit(*iris))
    written = [e.version for e in converted.onnx_model["predict"].opset_import if e.domain == ""]
    assert bridge.to_onnx(converted, opset=written[0]).opset_import  # the same opset: fine
    with pytest.raises(ExportError, match="applies to lowered exports"):
        bridge.to_onnx(converted, opset=written[0] - 1)
    lowered = bridge.to_onnx(converted, opset=20, lowered=True)
    assert [e.version for e in lowered.opset_import if e.domain == ""] == [20]


def test_a_path_to_a_folder_or_into_a_missing_folder_is_named(iris, tmp_path):
    net = _classifier().fit(*iris)
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        bridge.to_onnx(net, tmp_path)
    with pytest.raises(FileNotFoundError, match="the folder .*missing.* does not exist"):
        bridge.to_onnx(net, tmp_path / "missing" / "net.onnx")
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_objects_of_other_types_are_rejected():
    with pytest.raises(ExportError, match="cannot export a str; accepted"):
        bridge.to_onnx("model.pkl")


def test_binary_classifier_exports_two_probability_columns(iris):
    X, y = iris
    binary = (y == 2).astype(np.float32)

    class Logit(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 1)

        def forward(self, X):
            return self.linear(X).squeeze(-1)

    net = bridge.NeuralNetBinaryClassifier(Logit, max_epochs=5, lr=0.1, train_split=None,
                                           verbose=0, threshold=0.4).fit(X, binary)
    model = bridge.to_onnx(net)
    label, probabilities = _run_onnxruntime(model, X)
    assert probabilities.shape == (len(X), 2)
    assert_parity(probabilities, net.predict_proba(X), rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(label, net.predict(X))


def test_to_onnx_method_on_nets_and_converted_models(iris, tmp_path):
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    net = _classifier().fit(X, y)
    model = net.to_onnx(tmp_path / "net.onnx")
    assert (tmp_path / "net.onnx").exists()
    np.testing.assert_array_equal(_run_onnxruntime(model, X)[0], net.predict(X))
    converted = bridge.from_sklearn(LogisticRegression(max_iter=300).fit(X, y))
    original = converted.to_onnx(tmp_path / "logreg.onnx")
    lowered = converted.to_onnx(tmp_path / "logreg-lowered.onnx", lowered=True)
    assert any(n.domain == "ai.onnx.ml" for n in original.graph.node)
    assert not any(n.domain == "ai.onnx.ml" for n in lowered.graph.node)
