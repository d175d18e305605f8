"""Per-call latency of converted models: scikit-learn, onnxruntime, bridge (numpy in/out,
tensor in/out, compiled for serving), side by side in one run, with ratios to onnxruntime.

The models are ``bridge-bench``'s suite (3 classes or a regression target, 20 float32
features). Every runtime runs on one thread; each cell is the fastest of ``--repeats``
timed loops (a loop runs long enough to last ~20 ms), the columns' loops taking turns. The tensor column runs its loop with
autograd off (``torch.no_grad()`` around the loop, as a server sets it once). Each output is checked against
scikit-learn (max absolute difference; labels must be equal).

Run: ``python benchmarks/latency.py [--suite full] [--batch-sizes 1,100,10000]
[--models logreg,svc] [--no-compiled] [--output latency-cpu]`` (writes
``benchmarks/results/NAME.md`` and ``.json`` when ``--output`` is given).
``--threads-check`` instead times scikit-learn and bridge under library-default threads,
with bridge's small-input thread rule on and off (bridge/sklearn/threads.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from trees import cpu_model  # benchmarks/trees.py (this script's folder is on sys.path)

import bridge
from bridge.bench.suite import CASES, SUITES, make_data

RESULTS = Path(__file__).parent / "results"
COLUMNS = ("sklearn", "onnxruntime", "bridge numpy", "bridge tensor", "compiled")
GOALS = {"bridge numpy": 3.0, "bridge tensor": 2.0, "compiled": 1.5}  # × onnxruntime at batch 1


def calls_per_loop(function, budget: float) -> int:
    """How many calls make a timed loop of about ``budget`` seconds (after a warm-up call:
    the first builds caches)."""
    function()
    start = time.perf_counter()
    function()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, min(10_000, int(budget / once)))


def interleaved(functions: dict, repeats: int, budget: float = 0.02) -> dict[str, float]:
    """Seconds per call of each function: the fastest of ``repeats`` loops, the functions'
    loops taking turns (one loop each per round), so that a burst of load on a shared
    machine falls on all of them rather than on one column of the table. A function is a
    pair ``(callable, context)``: the context (e.g. ``torch.no_grad()``) is entered around
    each of its loops."""
    counts = {}
    for name, (function, context) in functions.items():
        with context():
            counts[name] = calls_per_loop(function, budget)
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(repeats):
        for name, (function, context) in functions.items():
            with context():
                start = time.perf_counter()
                for _ in range(counts[name]):
                    function()
                best[name] = min(best[name], (time.perf_counter() - start) / counts[name])
    return best


def onnxruntime_runner(model, method: str):
    graphs = model.onnx_model
    graph = graphs[method] if isinstance(graphs, dict) else graphs
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(graph.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    index = model._method_outputs[method].output
    return lambda X: session.run(None, {name: X})[index]


def difference(actual, expected) -> float:
    actual, expected = np.asarray(actual), np.asarray(expected)
    if expected.dtype.kind not in "fc":
        return float(np.mean(actual.reshape(expected.shape) != expected))  # label mismatch rate
    return float(np.max(np.abs(actual.reshape(expected.shape).astype(np.float64) - expected),
                        initial=0.0))


def fitted(name: str, train_rows: int):
    """The suite's case ``name``: its fitted estimator and the converted model."""
    case = CASES[name]
    X, y = make_data(case.task, train_rows, 20)
    estimator = case.build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(X) if case.task == "transform" else estimator.fit(X, y)
    return estimator, bridge.from_sklearn(estimator)


def measure_model(name: str, batch_sizes: list[int], repeats: int, train_rows: int,
                  compiled: bool) -> dict:
    case = CASES[name]
    estimator, model = fitted(name, train_rows)
    record = {"model": name, "method": case.method, "cells": {}}
    runners = {"sklearn": getattr(estimator, case.method),
               "onnxruntime": onnxruntime_runner(model, case.method),
               "bridge numpy": getattr(model, case.method)}
    tensor_method = getattr(model, case.method)
    if compiled and hasattr(bridge, "compile_for_serving"):
        start = time.perf_counter()
        served = bridge.compile_for_serving(model, [case.method], batch_hint=1)
        record["compile_seconds"] = time.perf_counter() - start
        runners["compiled"] = getattr(served, case.method)
    data, _ = make_data(case.task, max(batch_sizes), 20, seed=1)
    for batch in batch_sizes:
        X_batch = np.ascontiguousarray(data[:batch])
        tensor = torch.from_numpy(X_batch)
        expected = runners["sklearn"](X_batch)
        cell, timed = {}, {}
        cell_repeats = repeats if batch <= 1000 else max(2, repeats // 3)
        for column in COLUMNS:
            context = torch.no_grad if column == "bridge tensor" else contextlib.nullcontext
            if column == "bridge tensor":  # autograd off around the loop, as a server has it
                def run(t=tensor):
                    return tensor_method(t)
            elif column in runners:
                def run(function=runners[column], values=X_batch):
                    return function(values)
            else:
                continue
            with context():
                result = run()
            if isinstance(result, torch.Tensor):
                result = result.numpy()
            cell[column] = {"difference": difference(result, expected)}
            timed[column] = (run, context)
        for column, seconds in interleaved(timed, cell_repeats).items():
            cell[column]["seconds"] = seconds
        record["cells"][batch] = cell
    return record


def table(records: list[dict]) -> str:
    lines = ["| model | batch | " + " | ".join(f"{c} (µs)" for c in COLUMNS)
             + " | numpy ÷ ort | tensor ÷ ort | compiled ÷ ort |",
             "|---" * (len(COLUMNS) + 5) + "|"]
    for record in records:
        for batch, cell in record["cells"].items():
            ort = cell["onnxruntime"]["seconds"]
            times = [f"{cell[c]['seconds'] * 1e6:.3g}" if c in cell else "–" for c in COLUMNS]
            ratios = [f"{cell[c]['seconds'] / ort:.2f}" if c in cell else "–"
                      for c in ("bridge numpy", "bridge tensor", "compiled")]
            lines.append(f"| {record['model']} | {batch} | " + " | ".join(times + ratios) + " |")
    return "\n".join(lines)


def goal_lines(records: list[dict]) -> list[str]:
    lines = []
    for column, goal in GOALS.items():
        cells = [(r["model"], r["cells"][1]) for r in records if 1 in r["cells"]]
        ratios = [(model, cell[column]["seconds"] / cell["onnxruntime"]["seconds"])
                  for model, cell in cells if column in cell]
        if not ratios:
            continue
        missed = [f"{model} {ratio:.2f}×" for model, ratio in ratios if ratio > goal]
        lines.append(f"- {column} at batch 1 within {goal}× onnxruntime: "
                     f"{len(ratios) - len(missed)} of {len(ratios)} models"
                     + (f" (missed: {', '.join(missed)})" if missed else ""))
    return lines


def disagreements(records: list[dict]) -> list[str]:
    found = []
    for record in records:
        for batch, cell in record["cells"].items():
            for column, entry in cell.items():
                if entry["difference"] > 1e-4:
                    found.append(f"{record['model']} batch {batch} {column}: "
                                 f"{entry['difference']:.3g}")
    return found


def threads_check(models: list[str], batch_sizes: list[int], train_rows: int) -> str:
    """Library-default threads (no ``torch.set_num_threads(1)``): scikit-learn against
    bridge with its small-input rule (bridge/sklearn/threads.py) and with the rule off.
    The median of 30 calls each; on a busy machine the rule is what keeps bridge close."""
    from bridge.sklearn import threads

    lines = [f"| model | batch | sklearn (ms) | bridge (ms) | bridge, rule off (ms) | "
             f"bridge ÷ sklearn | (torch threads: {torch.get_num_threads()}) |",
             "|---|---|---|---|---|---|---|"]
    limit = threads.SINGLE_THREAD_ELEMENTS
    for name in models:
        case = CASES[name]
        estimator, model = fitted(name, train_rows)
        data, _ = make_data(case.task, max(batch_sizes), 20, seed=1)
        for batch in batch_sizes:
            X_batch = np.ascontiguousarray(data[:batch])
            timed = {}
            for label, function, rule in (("sklearn", getattr(estimator, case.method), limit),
                                          ("bridge", getattr(model, case.method), limit),
                                          ("off", getattr(model, case.method), 0)):
                threads.SINGLE_THREAD_ELEMENTS = rule
                function(X_batch)
                samples = []
                for _ in range(30):
                    start = time.perf_counter()
                    function(X_batch)
                    samples.append(time.perf_counter() - start)
                timed[label] = float(np.median(samples)) * 1e3
            threads.SINGLE_THREAD_ELEMENTS = limit
            lines.append(f"| {name} | {batch} | {timed['sklearn']:.3g} | {timed['bridge']:.3g} | "
                         f"{timed['off']:.3g} | {timed['bridge'] / timed['sklearn']:.2f} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="full")
    parser.add_argument("--models", help="comma-separated case names (default: the suite's)")
    parser.add_argument("--batch-sizes", default="1,100,10000")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-compiled", action="store_true", help="skip compile_for_serving")
    parser.add_argument("--output", help="name under benchmarks/results/ for .md and .json")
    parser.add_argument("--threads-check", action="store_true",
                        help="library-default threads: bridge's small-input rule vs sklearn")
    args = parser.parse_args()
    suite = SUITES[args.suite]
    models = args.models.split(",") if args.models else suite["models"]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.threads_check:
        text = threads_check(models, batch_sizes, suite["train_rows"])
        print(text)
        if args.output:
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / f"{args.output}.md").write_text(text + "\n")
        return
    torch.set_num_threads(1)
    records = []
    for name in models:
        records.append(measure_model(name, batch_sizes, args.repeats, suite["train_rows"],
                                     not args.no_compiled))
        print(f"measured {name}", flush=True)
    machine = (f"{cpu_model()} ({os.cpu_count()} cores), torch {torch.__version__} on "
               f"{torch.get_num_threads()} thread, onnxruntime {onnxruntime.__version__}")
    report = [f"# Latency per call (µs), one thread each — {machine}", "", table(records), "",
              *goal_lines(records)]
    compile_times = [f"{r['model']} {r['compile_seconds']:.1f} s" for r in records
                     if "compile_seconds" in r]
    if compile_times:
        report.append("- compile time (export + AOTInductor): " + ", ".join(compile_times))
    wrong = disagreements(records)
    report.append("- outputs vs scikit-learn: " + ("all within 1e-4" if not wrong
                                                   else "DIFFER: " + "; ".join(wrong)))
    text = "\n".join(report)
    print(text)
    if args.output:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.output}.md").write_text(text + "\n")
        (RESULTS / f"{args.output}.json").write_text(json.dumps(
            {"machine": machine, "records": records}, indent=1, default=str))


if __name__ == "__main__":
    main()
