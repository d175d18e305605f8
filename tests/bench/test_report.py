"""The report as users read it: one answer per model first, skipped backends said once under
the table (and kept in the JSON); --skops beside --pickle, which says it runs the file's code."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from bridge.bench.cli import main
from bridge.bench.report import fastest, format_markdown, format_report, to_json
from bridge.bench.runner import BenchResult

skops_io = pytest.importorskip("skops.io")


def cell(backend, batch, median, parity_ok=True, model="logreg"):
    return BenchResult(model, backend, batch, "ok", median_s=median, p25_s=median,
                       p75_s=median, rows_per_s=batch / median, repeats=3, parity_ok=parity_ok,
                       parity="max|Δ| 1e-07")


def skipped(backend, batch, reason, model="logreg"):
    return BenchResult(model, backend, batch, "skipped", reason)


RESULTS = [
    cell("sklearn", 1, 3e-4), cell("onnxruntime-cpu", 1, 2e-5), cell("torch-cpu", 1, 2e-4),
    cell("sklearn", 1000, 4e-3), cell("onnxruntime-cpu", 1000, 1e-3),
    cell("torch-cpu", 1000, 5e-4), cell("torch-compile", 1000, 1e-4, parity_ok=False),
    *(skipped(b, n, "no CUDA device") for b in ("onnxruntime-cuda", "torch-cuda")
      for n in (1, 1000)),
]


def test_the_answer_names_the_fastest_agreeing_backend_and_its_lead():
    answers = {a["batch_size"]: a for a in fastest(RESULTS)}
    assert answers[1]["backend"] == "onnxruntime-cpu" and answers[1]["runner_up"] == "torch-cpu"
    assert answers[1]["times_faster"] == pytest.approx(10.0)
    # torch-compile is faster at 1000 rows but disagrees with the reference: it cannot win
    assert answers[1000]["backend"] == "torch-cpu" and answers[1000]["runner_up"] == "onnxruntime-cpu"
    assert answers[1000]["times_faster"] == pytest.approx(2.0)


def test_the_report_starts_with_the_answer_and_says_skips_once_under_the_table():
    report = format_report(RESULTS).splitlines()
    assert report[1] == ("  logreg fastest: batch 1: onnxruntime-cpu 20 µs (10× torch-cpu); "
                         "batch 1000: torch-cpu 500 µs (2.0× onnxruntime-cpu)")
    table = report[report.index("") + 1:]
    assert not any("skipped" in line for line in table[:-2])
    assert table[-1:] == ["skipped torch-cuda: no CUDA device"]
    assert table[-2] == "skipped onnxruntime-cuda: no CUDA device"
    assert sum("torch-compile" in line for line in table) == 1  # measured, shown, not the winner
    markdown = format_markdown(RESULTS)
    assert markdown.startswith("- logreg fastest:") and "*skipped torch-cuda: no CUDA device*" in markdown


def test_the_json_keeps_every_skipped_cell_and_the_answers():
    report = json.loads(json.dumps(to_json(RESULTS, {})))
    assert sum(r["status"] == "skipped" for r in report["results"]) == 4
    assert [a["backend"] for a in report["fastest"]] == ["onnxruntime-cpu", "torch-cpu"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4)).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


RUN = ["--backends", "sklearn,torch-cpu", "--batch-sizes", "4", "--repeats", "1"]


def test_skops_file_is_timed(data, tmp_path, capsys):
    path = tmp_path / "logreg.skops"
    skops_io.dump(LogisticRegression().fit(*data), path)
    assert main(["--skops", str(path)] + RUN) == 0
    captured = capsys.readouterr()
    assert "logreg.skops fastest: batch 4:" in captured.out
    assert "pickle" not in captured.err


def test_skops_names_untrusted_types_and_loads_them_once_trusted(data, tmp_path, capsys):
    path = tmp_path / "hgb.skops"
    skops_io.dump(HistGradientBoostingClassifier(max_iter=3).fit(*data), path)
    with pytest.raises(SystemExit):
        main(["--skops", str(path)] + RUN)
    error = capsys.readouterr().err
    assert "does not trust: ['sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor']" in error
    trusted = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
    assert main(["--skops", str(path), "--trust", trusted, "--backends", "sklearn",
                 "--batch-sizes", "4", "--repeats", "1"]) == 0


@pytest.mark.parametrize(("arguments", "message"), [
    (["--trust", "x.Y"], "--trust goes with --skops"),
    (["--skops", "a.skops", "--pickle", "a.pkl"], "not allowed with argument"),
])
def test_skops_usage_errors(arguments, message, capsys):
    with pytest.raises(SystemExit):
        main(arguments)
    assert message in capsys.readouterr().err


def test_a_file_that_is_not_skops_is_named(tmp_path, capsys):
    path = tmp_path / "model.skops"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(SystemExit):
        main(["--skops", str(path)])
    assert f"--skops: cannot load {str(path)!r}" in capsys.readouterr().err


def test_pickle_says_at_run_time_that_it_executes_the_files_code(data, tmp_path, capsys):
    path = tmp_path / "logreg.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression().fit(*data)))
    assert main(["--pickle", str(path)] + RUN) == 0
    assert "executes any code the file holds" in capsys.readouterr().err
