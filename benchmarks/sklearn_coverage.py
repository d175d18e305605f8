"""The conversion census: every estimator of ``sklearn.utils.all_estimators()``, fitted with
default parameters, converted by ``bridge.from_sklearn`` and by skl2onnx + onnxruntime, each
inference method checked against scikit-learn on new rows.

Usage::

    python benchmarks/sklearn_coverage.py                 # both engines, writes the report
    python benchmarks/sklearn_coverage.py --only PCA SVC  # a few estimators, report printed

A method *agrees* when labels match scikit-learn on at least 99.5% of the rows and values
lie within 1e-3 relative (of the larger of 1 and the largest reference magnitude). An
estimator counts once, in one of three columns: every inference method it has agrees, some
do, none does. skl2onnx + onnxruntime runs in a separate process that never imports bridge,
so bridge's own converters (registered in skl2onnx's registry) do not help it; it reads the
same graph outputs bridge's conversion plan reads (``bridge/sklearn/plan.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.coverage_estimators import (  # noqa: E402
    METHODS,
    Case,
    census_cases,
    label_method,
)

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "benchmarks" / "results" / "sklearn_coverage-cpu.md"
LABEL_SHARE = 0.995
RELATIVE = 1e-3
ENGINES = ("bridge", "skl2onnx")


@dataclass
class Row:
    """One estimator's census line for one engine."""

    name: str
    methods: list[str] = field(default_factory=list)  # scikit-learn's inference methods
    agreed: list[str] = field(default_factory=list)
    disagreed: dict[str, str] = field(default_factory=dict)  # converted, but wrong or failing
    onnxruntime: dict[str, str] = field(default_factory=dict)  # bridge's graphs: method → verdict
    error: str = ""  # why nothing converted
    seconds: float = 0.0

    @property
    def column(self) -> str:
        """``all``, ``some`` or ``nothing``."""
        if self.methods and len(self.agreed) == len(self.methods):
            return "all"
        return "some" if self.agreed else "nothing"


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise _Timeout in the main thread after ``seconds`` (SIGALRM; no-op elsewhere)."""
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def _ring(signum, frame):
        raise _Timeout(f"took more than {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, _ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _dense(values) -> np.ndarray:
    if hasattr(values, "toarray"):
        values = values.toarray()
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def compare(method: str, labels: bool, actual, expected) -> str:
    """``""`` when ``actual`` agrees with scikit-learn's ``expected``, else what differs."""
    if isinstance(expected, list):  # one array per output (multi-output predict_proba)
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            return f"{type(actual).__name__} where scikit-learn gives {len(expected)} arrays"
        return next((d for a, e in zip(actual, expected)
                     if (d := compare(method, labels, a, e))), "")
    actual, expected = _dense(actual), _dense(expected)
    if labels:
        actual = actual.reshape(expected.shape) if actual.size == expected.size else actual
        if actual.shape != expected.shape:
            return f"shape {actual.shape} != {expected.shape}"
        same = actual.astype(str) == expected.astype(str) if (
            actual.dtype.kind in "OUS" or expected.dtype.kind in "OUS") else actual == expected
        rows = same.reshape(len(same), -1).all(axis=1)
        share = float(rows.mean()) if rows.size else 1.0
        return "" if share >= LABEL_SHARE else f"labels agree on {share:.1%} of rows"
    actual = actual.astype(np.float64)
    expected = expected.astype(np.float64)
    if actual.shape != expected.shape and actual.size == expected.size:
        actual = actual.reshape(expected.shape)
    if actual.shape != expected.shape:
        return f"shape {actual.shape} != {expected.shape}"
    if method == "predict_log_proba":  # compare where the probability is not negligible
        keep = expected > np.log(1e-4)
        if not np.all(actual[~keep] < np.log(1e-3)):
            return "a negligible probability is not negligible"
        actual, expected = actual[keep], expected[keep]
    finite = np.isfinite(expected)
    if not np.array_equal(finite, np.isfinite(actual)) or not np.array_equal(
            expected[~finite], actual[~finite], equal_nan=True):
        return "NaN/inf in different places"
    scale = max(1.0, float(np.abs(expected[finite]).max()) if finite.any() else 1.0)
    error = np.abs(actual[finite] - expected[finite])
    allowed = RELATIVE * np.maximum(np.abs(expected[finite]), scale)
    if np.all(error <= allowed):
        return ""
    worst = float((error / scale).max())
    return f"differs by up to {worst:.2g} relative"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:240]


def _expected(case: Case, estimator) -> tuple[list[str], dict]:
    """scikit-learn's deterministic inference methods on the new rows, with their results."""
    methods, results = [], {}
    for method in METHODS:
        if not hasattr(estimator, method):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                first = getattr(estimator, method)(case.X_new)
                second = getattr(estimator, method)(case.X_new)
        except Exception:  # scikit-learn itself cannot run it on these rows
            continue
        if compare(method, False, first, second) and not label_method(estimator, method):
            continue  # random by design (BernoulliRBM.score_samples)
        methods.append(method)
        results[method] = first
    return methods, results


def _run_bridge(case: Case, estimator, row: Row, expected: dict) -> None:
    import bridge

    model = bridge.from_sklearn(estimator, X_sample=case.sample)
    for method in row.methods:
        if method not in model._method_outputs:
            continue
        labels = label_method(estimator, method)
        try:
            actual = getattr(model, method)(case.X_new)
            verdict = compare(method, labels, actual, expected[method])
        except Exception as error:
            verdict = _first_line(error)
        if verdict:
            row.disagreed[method] = verdict
        else:
            row.agreed.append(method)
        row.onnxruntime[method] = _bridge_graph_in_onnxruntime(
            case, estimator, model, method, labels, expected[method])


def _bridge_graph_in_onnxruntime(case, estimator, model, method, labels, expected) -> str:
    """Run the graph bridge converted in onnxruntime: ``agrees``, or why not."""
    from bridge.sklearn.model import shaped

    output = model._method_outputs[method]
    graph = model._graphs[output.graph]
    try:
        outputs = _onnxruntime(graph, case.onnx_feed(graph, model._input_spec.dtype))
    except Exception as error:
        return f"onnxruntime fails: {_first_line(error)}"
    import torch

    values = outputs[output.output]
    if not isinstance(values, list) and values.dtype.kind not in "OUS":
        binary = model._classes is not None and len(model._classes) == 2
        values = shaped(torch.from_numpy(np.ascontiguousarray(values)), output.kind,
                        binary).numpy()
        if output.kind == "label" and model._classes is not None and (
                model._classes.dtype.kind in "iub"):
            values = values.astype(model._classes.dtype)
    verdict = compare(method, labels, values, expected)
    return verdict or "agrees"


def _onnxruntime(graph, feeds: dict) -> list:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(graph.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _run_skl2onnx(case: Case, estimator, row: Row, expected: dict) -> None:
    """skl2onnx's registry only (this process never imports bridge's converters)."""
    from skl2onnx import to_onnx

    from bridge.sklearn.plan import final_estimator, plan_conversion

    plan = plan_conversion(estimator)
    if not plan.graphs:
        raise RuntimeError("no graph output answers any of its methods")
    target_opset = ({"": 17, "ai.onnx.ml": 3}
                    if type(final_estimator(estimator)).__name__ == "IsolationForest" else None)
    outputs, failures = {}, {}
    for key, graph_plan in plan.graphs.items():
        options = {id(final_estimator(graph_plan.estimator)): graph_plan.options} if (
            graph_plan.options) else None
        try:
            graph = to_onnx(graph_plan.estimator, initial_types=case.initial_types(),
                            options=options, target_opset=target_opset)
            outputs[key] = _onnxruntime(graph, case.onnx_feed(graph, np.float32))
        except Exception as error:
            failures[key] = _first_line(error)
    if not outputs:
        raise RuntimeError(next(iter(failures.values())))
    row.error = "; ".join(f"graph {k}: {v}" for k, v in failures.items())
    classes = getattr(final_estimator(estimator), "classes_", None)
    binary = isinstance(classes, np.ndarray) and len(classes) == 2
    for method in row.methods:
        output = plan.method_outputs.get(method)
        if output is None or output.graph not in outputs:
            continue
        graph_outputs = outputs[output.graph]
        log = method == "predict_log_proba"
        values = graph_outputs[1 if log else output.output]
        if isinstance(values, list):
            values = [np.asarray(v) for v in values]
        else:
            values = np.asarray(values)
            if log:
                with np.errstate(divide="ignore"):
                    values = np.log(values)
            if output.kind == "decision" and binary and values.ndim == 2 and (
                    values.shape[1] == 2):
                values = values[:, 1]
            if output.kind != "matrix" and values.ndim == 2 and values.shape[1] == 1:
                values = values.ravel()
        verdict = compare(method, label_method(estimator, method), values, expected[method])
        if verdict:
            row.disagreed[method] = verdict
        else:
            row.agreed.append(method)


def census(engine: str, names: list[str] | None = None, timeout: float = 300.0) -> list[Row]:
    """One :class:`Row` per census estimator (see ``census_cases``), for ``engine``."""
    runner = {"bridge": _run_bridge, "skl2onnx": _run_skl2onnx}[engine]
    rows = []
    for case in census_cases(names):
        row = Row(case.name)
        start = time.perf_counter()
        try:
            with _time_limit(timeout), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                estimator = case.fit()
                row.methods, expected = _expected(case, estimator)
                if row.methods:
                    runner(case, estimator, row, expected)
        except (Exception, _Timeout) as error:
            row.error = _first_line(error)
            if os.environ.get("COVERAGE_TRACEBACKS"):
                traceback.print_exc()
        row.seconds = time.perf_counter() - start
        if not row.methods and not row.error:
            row.error = "scikit-learn itself runs none of its inference methods on new rows"
        rows.append(row)
    return rows


def _counts(rows: list[Row]) -> dict[str, int]:
    counts = {"all": 0, "some": 0, "nothing": 0}
    for row in rows:
        counts[row.column] += 1
    return counts


def report(results: dict[str, list[Row]], command: str) -> str:
    """The markdown report: the counts, then one line per estimator."""
    import onnxruntime
    import skl2onnx
    import sklearn

    bridge_rows = {r.name: r for r in results.get("bridge", [])}
    onnx_rows = {r.name: r for r in results.get("skl2onnx", [])}
    names = sorted(set(bridge_rows) | set(onnx_rows))
    lines = [
        "# scikit-learn coverage census", "",
        f"`{command}` — scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}, "
        f"onnxruntime {onnxruntime.__version__}; {len(names)} estimators of "
        "`sklearn.utils.all_estimators()` with an inference method on new rows (default "
        "parameters; 3-class, regression or blob data; see benchmarks/coverage_estimators.py). "
        "A method agrees when labels match scikit-learn on ≥ 99.5% of rows and values lie "
        "within 1e-3 relative.", "",
        "| | all methods agree | some methods | nothing | converted but disagreeing |",
        "|---|---|---|---|---|",
    ]
    for engine, title in (("bridge", "bridge.from_sklearn"),
                          ("skl2onnx", "skl2onnx + onnxruntime")):
        if engine in results:
            counts = _counts(results[engine])
            wrong = sum(1 for r in results[engine] if r.disagreed)
            lines.append(f"| {title} | {counts['all']} | {counts['some']} | "
                         f"{counts['nothing']} | {wrong} |")
    if "bridge" in results:
        graphs = [r for r in results["bridge"] if r.onnxruntime]
        agree = sum(1 for r in graphs if all(v == "agrees" for v in r.onnxruntime.values()))
        lines += ["", f"bridge's own graphs in onnxruntime: every converted method agrees "
                      f"with scikit-learn for {agree} of the {len(graphs)} estimators bridge "
                      "converts (the others are listed below)."]
    lines += ["", "| estimator | methods | bridge | skl2onnx + onnxruntime | notes |",
              "|---|---|---|---|---|"]
    for name in names:
        b, o = bridge_rows.get(name), onnx_rows.get(name)
        methods = (b or o).methods
        notes = []
        for label, row in (("bridge", b), ("onnxruntime", o)):
            if row is None:
                continue
            if row.error:
                notes.append(f"{label}: {row.error}")
            notes += [f"{label} {m}: {why}" for m, why in row.disagreed.items()]
        if b is not None:
            notes += [f"bridge's graph in onnxruntime, {m}: {v}"
                      for m, v in b.onnxruntime.items() if v != "agrees"]
        cells = [_cell(r, methods) for r in (b, o)]
        lines.append(f"| {name} | {', '.join(methods)} | {cells[0]} | {cells[1]} | "
                     + "; ".join(n.replace("|", "/") for n in notes) + " |")
    return "\n".join(lines) + "\n"


def _cell(row: Row | None, methods: list[str]) -> str:
    if row is None:
        return "—"
    if row.column == "all":
        return "all"
    return ", ".join(row.agreed) if row.agreed else "—"


def _skl2onnx_in_subprocess(names, timeout) -> subprocess.Popen:
    handle, path = tempfile.mkstemp(suffix=".json")
    os.close(handle)
    command = [sys.executable, str(Path(__file__).resolve()), "--engine", "skl2onnx",
               "--json", path, "--timeout", str(timeout)]
    if names:
        command += ["--only", *names]
    process = subprocess.Popen(command, cwd=ROOT)
    process.json_path = path
    return process


def load_rows(path: str | Path) -> list[Row]:
    """Rows written by ``--json``."""
    return [Row(**entry) for entry in json.loads(Path(path).read_text())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=(*ENGINES, "both"), default="both")
    parser.add_argument("--only", nargs="*", help="estimator class names")
    parser.add_argument("--json", help="write the rows of one engine here")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds per estimator (fit, conversion and checks)")
    parser.add_argument("--out", default=None, help=f"report path (default {REPORT} for a "
                        "full run of both engines; printed only with --only)")
    args = parser.parse_args(argv)
    if args.engine != "both":
        rows = census(args.engine, args.only, args.timeout)
        if args.json:
            Path(args.json).write_text(json.dumps([asdict(r) for r in rows]))
        else:
            print(report({args.engine: rows}, "python " + " ".join(sys.argv)))
        return 0
    process = _skl2onnx_in_subprocess(args.only, args.timeout)
    results = {"bridge": census("bridge", args.only, args.timeout)}
    process.wait()
    results["skl2onnx"] = load_rows(process.json_path)
    os.unlink(process.json_path)
    text = report(results, "python benchmarks/sklearn_coverage.py"
                  + (" --only " + " ".join(args.only) if args.only else ""))
    print(text)
    out = args.out or (None if args.only else REPORT)
    if out:
        Path(out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
