"""Every example runs end to end in its fast ``--smoke`` mode, offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_tested_here():
    tested = {"iris_mlp", "digits_scaling", "mnist_style", "transfer_learning",
              "sklearn_to_torch", "svm_vector_field", "deploy_onnxruntime", "finetune_sklearn",
              "dask_scoring", "ddp_training"}
    assert {path.stem for path in EXAMPLES.glob("*.py")} == tested


def test_iris_mlp():
    assert load("iris_mlp").main(smoke=True) > 0.6


def test_digits_scaling(tmp_path):
    plot = tmp_path / "timings.png"
    rows = load("digits_scaling").main(smoke=True, plot=str(plot))
    assert {r["model"] for r in rows} == {"NeuralNetClassifier", "LogisticRegression"}
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_mnist_style(tmp_path):
    plot = tmp_path / "confusion.png"
    results = load("mnist_style").main(smoke=True, plot=str(plot))
    assert results["confusion"].sum() == 450  # the 25% test split of 1,797 digits
    assert len(results["cv_scores"]) == 2
    assert plot.exists()


def test_transfer_learning(tmp_path):
    results = load("transfer_learning").main(smoke=True, output=str(tmp_path))
    assert results["frozen"]
    assert (tmp_path / "checkpoints" / "params.pt").exists()


def test_sklearn_to_torch(tmp_path):
    results = load("sklearn_to_torch").main(smoke=True, output=str(tmp_path))
    assert results["agree"] == 1.0 and results["agree_lowered"] == 1.0
    assert results["domains"] == {"ai.onnx"}


def test_svm_vector_field(tmp_path):
    path = load("svm_vector_field").main(["--smoke", "--output", str(tmp_path / "field.png")])
    assert Path(path).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_deploy_onnxruntime(tmp_path):
    answer = load("deploy_onnxruntime").main(smoke=True, output=str(tmp_path))
    assert len(answer["labels"]) == 8 and answer["classes"] == list(range(10))


def test_dask_scoring():
    pytest.importorskip("distributed")
    pytest.importorskip("dask.dataframe")
    results = load("dask_scoring").main(smoke=True)
    assert results["rows"] == 4_000 and results["agree"] == 1.0
    assert results["net_gap"] < 1e-6 and results["most_loads"] == 1


def test_ddp_training(tmp_path):
    """Without a launcher the example trains as one process (tests/net/test_distributed.py
    runs distributed=True under torchrun)."""
    results = load("ddp_training").main(smoke=True, output=str(tmp_path))
    assert results["world"] == 1 and results["accuracy"] > 0.8
    assert (tmp_path / "params.pt").exists()


def test_finetune_sklearn(tmp_path):
    scores = load("finetune_sklearn").main(smoke=True, output=str(tmp_path))
    for start in ("frozen_scaler", "trained_scaler"):  # the nets start from scikit-learn's fit
        assert scores[f"{start}_before"] == scores["sklearn_on_shifted"]
        assert scores[f"{start}_after"] > scores[f"{start}_before"] + 0.05
    assert scores["onnxruntime_agrees"] == 1.0
    assert (tmp_path / "finetuned_digits.onnx").exists()
