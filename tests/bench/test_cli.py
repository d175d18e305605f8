"""bridge-bench end to end on a tiny suite: table, JSON schema, parity column, skips, plot."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from bridge.bench.cli import main
from bridge.bench.runner import compare

TINY = ["--models", "logreg", "--batch-sizes", "1,10", "--repeats", "1", "--train-rows", "120", "--threads", "1",
        "--features", "5"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    json_path, plot_path = folder / "out.json", folder / "out.png"
    threads = torch.get_num_threads()
    status = main(TINY + ["--backends", "sklearn,onnxruntime-cpu,torch-cpu,torch-cuda",
                          "--json", str(json_path), "--plot", str(plot_path), "--markdown"])
    torch.set_num_threads(threads)  # --threads sets it process-wide
    return status, json.loads(json_path.read_text()), plot_path


def test_tiny_suite_succeeds_and_writes_the_json_schema(tiny_run):
    status, report, _ = tiny_run
    assert status == 0
    assert report["schema_version"] == 1
    assert set(report["machine"]) >= {"cpu", "cpu_count", "gpu", "versions", "python"}
    assert "torch" in report["machine"]["versions"]
    assert report["settings"]["batch_sizes"] == [1, 10]
    assert report["settings"]["threads"] == 1
    keys = {"model", "backend", "batch_size", "status", "reason", "median_s", "p25_s", "p75_s",
            "transfer_in_s", "compute_s", "transfer_out_s", "rows_per_s", "parity_ok", "parity"}
    for row in report["results"]:
        assert keys <= set(row)


def test_every_measured_backend_agrees_with_sklearn(tiny_run):
    _, report, _ = tiny_run
    measured = [r for r in report["results"] if r["status"] == "ok"]
    assert {r["backend"] for r in measured} >= {"sklearn", "onnxruntime-cpu", "torch-cpu"}
    for row in measured:
        assert row["parity_ok"] is True, row
        assert row["median_s"] > 0 and row["rows_per_s"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip path of torch-cuda")
def test_unavailable_backend_is_listed_with_its_reason(tiny_run):
    _, report, _ = tiny_run
    skipped = [r for r in report["results"] if r["backend"] == "torch-cuda"]
    assert skipped and all(r["status"] == "skipped" and "CUDA" in r["reason"] for r in skipped)


def test_plot_is_a_png(tiny_run):
    _, _, plot_path = tiny_run
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--models", "logregg"], "did you mean 'logreg'"),
        (["--backends", "tensorflow"], "valid: sklearn"),
        (["--batch-sizes", "0"], "must be ≥ 1"),
        (["--batch-sizes", "ten"], "not an integer"),
        (["--json", "/no/such/folder/results.json"], "the folder '/no/such/folder' does not exist"),
        (["--plot", "."], "it is a folder"),
        (["--pickle", "/no/such/model.pkl"], "--pickle: cannot load '/no/such/model.pkl'"),
    ],
)
def test_bad_arguments_name_the_valid_values(arguments, message, capsys):
    with pytest.raises(SystemExit) as raised:
        main(arguments)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_a_file_that_is_not_onnx_is_rejected(tmp_path, capsys):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"this is not a protobuf at all")
    with pytest.raises(SystemExit):
        main(["--model", str(path)])
    assert "not a readable ONNX model" in capsys.readouterr().err


def test_a_graph_without_one_float_input_is_rejected(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 3]) for n in "ab"]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g", inputs, [output])
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(SystemExit):
        main(["--model", str(path)])
    assert "one floating-point input" in capsys.readouterr().err


def test_a_pickle_that_is_not_an_estimator_is_rejected(tmp_path, capsys):
    import pickle

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(SystemExit):
        main(["--pickle", str(path)])
    assert "holds a dict, not a fitted scikit-learn estimator" in capsys.readouterr().err


def test_a_users_onnx_file_is_timed_against_onnxruntime(tmp_path, capsys):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    estimator = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    path = tmp_path / "logreg.onnx"
    path.write_bytes(to_onnx(estimator, X[:1], options={"zipmap": False}).SerializeToString())
    status = main(["--model", str(path), "--backends", "onnxruntime-cpu,torch-cpu",
                   "--batch-sizes", "4", "--repeats", "1"])
    out = capsys.readouterr().out
    assert status == 0
    assert "reference" in out and "torch-cpu" in out


def test_compare_reports_label_agreement_and_float_differences():
    assert compare(np.array([1, 2, 3]), np.array([1, 2, 3])) == (True, "labels 100.00%")
    agrees, text = compare(np.array([0.5, 0.5001]), np.array([0.5, 0.5]))
    assert agrees and text.startswith("max|Δ|")
    assert compare(np.array([1.0, 2.0]), np.array([1.0, 3.0]))[0] is False


def test_module_entry_point_prints_help():
    result = subprocess.run([sys.executable, "-m", "bridge.bench", "--help"],
                            capture_output=True, text=True, check=True)
    assert "bridge-bench" in result.stdout and "trust" in result.stdout


def test_a_zipmap_classifier_file_runs_through_the_inference_session(tmp_path, capsys):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    labels = np.array(["no", "yes"])[(X[:, 0] > 0).astype(int)]
    path = tmp_path / "strings.onnx"  # string classes, ZipMap probabilities: skl2onnx defaults
    path.write_bytes(to_onnx(LogisticRegression().fit(X, labels), X[:1]).SerializeToString())
    status = main(["--model", str(path), "--backends", "onnxruntime-cpu,torch-cpu",
                   "--batch-sizes", "4", "--repeats", "1"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "labels 100.00%" in out  # the timed output is the label tensor, decoded alike
