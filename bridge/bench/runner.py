"""Measurement: fit, convert, warm up, time each backend per batch size, and check parity."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from bridge.bench.backends import Backend, Target, Timing
from bridge.bench.suite import BenchCase, make_data

PARITY_RTOL = 1e-3  # float32 graphs against float64 scikit-learn: see docs/bench.md
PARITY_ATOL = 1e-4
TIME_BUDGET_S = 3.0  # per (model, batch size, backend): stop repeating once spent


@dataclass
class BenchResult:
    """One measured (or skipped) cell of the table."""

    model: str
    backend: str
    batch_size: int
    status: str  # "ok", "skipped" or "error"
    reason: str = ""
    median_s: float | None = None
    p25_s: float | None = None
    p75_s: float | None = None
    transfer_in_s: float | None = None
    compute_s: float | None = None
    transfer_out_s: float | None = None
    rows_per_s: float | None = None
    repeats: int = 0
    parity_ok: bool | None = None
    parity: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def target_for_case(case: BenchCase, train_rows: int, n_features: int, seed: int = 0):
    """Fit the case's estimator on synthetic data and convert it; return (target, X_test)."""
    from bridge.sklearn.convert import from_sklearn

    X, y = make_data(case.task, train_rows, n_features, seed)
    estimator = case.build()
    with warnings.catch_warnings():  # convergence/deprecation notes about the synthetic fit
        warnings.simplefilter("ignore", category=(FutureWarning, ConvergenceWarning))
        estimator.fit(X) if case.task == "transform" else estimator.fit(X, y)
        converted = from_sklearn(estimator, X[:1])
    onnx_model, index = onnx_output_for(converted, case.method)
    X_test, _ = make_data(case.task, 1000, n_features, seed + 1)
    return Target(case.name, case.method, onnx_model, index, estimator, converted), X_test


def onnx_output_for(converted, method: str):
    """Return the ONNX graph behind ``converted.<method>`` and the index of its output."""
    graph = converted.onnx_model
    if isinstance(graph, dict):
        graph = graph.get(method) or next(iter(graph.values()))
    names = [output.name for output in graph.graph.output]
    if method == "predict_proba":
        matches = [i for i, name in enumerate(names) if "prob" in name.lower()]
        return graph, matches[0] if matches else min(1, len(names) - 1)
    if method == "predict" and "label" in names:
        return graph, names.index("label")
    return graph, 0


def batch_of(X: np.ndarray, size: int) -> np.ndarray:
    """The first ``size`` rows of ``X`` tiled as often as needed (C-contiguous float32)."""
    repeats = -(-size // len(X))
    return np.ascontiguousarray(np.tile(X, (repeats, 1))[:size], dtype=np.float32)


def compare(output: np.ndarray, reference: np.ndarray) -> tuple[bool, str]:
    """Return (agrees, description) for one backend's output against the reference."""
    output, reference = np.asarray(output), np.asarray(reference)
    if output.size != reference.size:
        return False, f"shape {output.shape} vs {reference.shape}"
    output = output.reshape(reference.shape)
    if reference.dtype.kind in "fc" and output.dtype.kind in "fc":
        difference = float(np.max(np.abs(output.astype(np.float64) - reference)))
        agrees = bool(np.allclose(output, reference, rtol=PARITY_RTOL, atol=PARITY_ATOL))
        return agrees, f"max|Δ| {difference:.1e}"
    agreement = float(np.mean(output == reference))
    return agreement == 1.0, f"labels {agreement:.2%}"


def measure(run, X: np.ndarray, repeats: int, warmup: int = 2):
    """Warm up, then time ``run(X)`` up to ``repeats`` times within the time budget."""
    output = None
    for _ in range(warmup):
        output, _ = run(X)
    timings: list[Timing] = []
    spent = 0.0
    while len(timings) < repeats and (len(timings) < 3 or spent < TIME_BUDGET_S):
        output, timing = run(X)
        timings.append(timing)
        spent += timing.total
    return output, timings


def _summary(timings: Sequence[Timing], batch_size: int) -> dict:
    totals = np.array([t.total for t in timings])
    median = float(np.median(totals))
    return {
        "median_s": median,
        "p25_s": float(np.percentile(totals, 25)),
        "p75_s": float(np.percentile(totals, 75)),
        "transfer_in_s": float(np.median([t.transfer_in for t in timings])),
        "compute_s": float(np.median([t.compute for t in timings])),
        "transfer_out_s": float(np.median([t.transfer_out for t in timings])),
        "rows_per_s": batch_size / median if median > 0 else float("inf"),
        "repeats": len(timings),
    }


def _unmeasured(model: str, backends: Sequence[Backend], batch_sizes: Sequence[int],
                status: str, reason: str) -> list[BenchResult]:
    """One skipped or failed cell per backend and batch size, carrying the reason."""
    return [BenchResult(model, backend.name, size, status, reason)
            for backend in backends for size in batch_sizes]


def run_target(
    target: Target,
    X_test: np.ndarray,
    backends: Sequence[Backend],
    batch_sizes: Sequence[int],
    repeats: int,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Time one target on every backend and batch size; the first runnable backend of
    sklearn / onnxruntime-cpu is the parity reference."""
    results: list[BenchResult] = []
    runners = {}
    for backend in backends:
        reason = backend.unavailable_reason(target)
        if reason is not None:
            results += _unmeasured(target.name, [backend], batch_sizes, "skipped", reason)
            continue
        try:
            runners[backend.name] = backend.prepare(target)
        except Exception as error:  # reported in the table, never hidden
            reason = f"preparation failed: {type(error).__name__}: {error}"
            results += _unmeasured(target.name, [backend], batch_sizes, "error", reason)
    reference_name = next((n for n in ("sklearn", "onnxruntime-cpu") if n in runners), None)
    for batch_size in batch_sizes:
        X = batch_of(X_test, batch_size)
        reference = None
        if reference_name is not None:
            reference, _ = runners[reference_name](X)
        for name, run in runners.items():
            if progress:
                progress(f"{target.name} · batch {batch_size} · {name}")
            try:
                output, timings = measure(run, X, repeats)
            except Exception as error:
                results.append(BenchResult(target.name, name, batch_size, "error",
                                           f"{type(error).__name__}: {error}"))
                continue
            result = BenchResult(target.name, name, batch_size, "ok",
                                 **_summary(timings, batch_size))
            if reference is not None:
                result.parity_ok, result.parity = compare(output, reference)
                if name == reference_name:
                    result.parity = f"reference ({result.parity})"
            results.append(result)
    return results


def run_benchmark(
    cases: Sequence[BenchCase],
    backends: Sequence[Backend],
    batch_sizes: Sequence[int],
    *,
    train_rows: int,
    n_features: int,
    repeats: int,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Fit, convert and time every case; see :func:`run_target`."""
    results: list[BenchResult] = []
    for case in cases:
        if progress:
            progress(f"{case.name} · fit + convert")
        try:
            target, X_test = target_for_case(case, train_rows, n_features)
        except Exception as error:
            reason = f"conversion failed: {type(error).__name__}: {error}"
            results += _unmeasured(case.name, backends, batch_sizes, "error", reason)
            continue
        results += run_target(target, X_test, backends, batch_sizes, repeats, progress)
    return results
