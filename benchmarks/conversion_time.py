"""How long ``bridge.from_sklearn`` takes per estimator, with skl2onnx's share apart.

Every estimator of the census (``benchmarks/coverage_estimators.py``: ``all_estimators()``
with default parameters, fitted on the census data) is converted once, timed as a whole and
with the time spent inside skl2onnx's ``to_onnx`` summed separately (the remainder is
bridge: planning, the importer, plans). A conversion that fails is listed with its error.

Run: ``python benchmarks/conversion_time.py [--names QuantileTransformer,PCA] [--top 25]
[--output conversion_time-cpu]`` (writes ``benchmarks/results/NAME.md``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coverage_estimators import census_cases  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


class Skl2onnxClock:
    """Wraps ``to_onnx`` where ``bridge.sklearn.convert`` calls it, summing its time."""

    def __init__(self):
        from bridge.sklearn import convert

        self.module, self.original, self.seconds = convert, convert.to_onnx, 0.0

    def __enter__(self) -> Skl2onnxClock:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        self.module.to_onnx = timed
        return self

    def __exit__(self, *exc) -> None:
        self.module.to_onnx = self.original


def measure(names: list[str] | None) -> list[tuple[str, float, float, str]]:
    """(estimator, total seconds, skl2onnx seconds, error or "") per census estimator."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    import bridge

    X = np.random.default_rng(0).normal(size=(20, 3))  # first conversion pays the imports
    bridge.from_sklearn(LogisticRegression().fit(X, X[:, 0] > 0))
    rows = []
    for case in census_cases(names):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                estimator = case.fit()
            except Exception as error:  # noqa: BLE001  (scikit-learn cannot fit it here)
                rows.append((case.name, 0.0, 0.0, f"fit: {type(error).__name__}"))
                continue
            with Skl2onnxClock() as clock:
                start = time.perf_counter()
                try:
                    bridge.from_sklearn(estimator, X_sample=case.sample)
                    error_text = ""
                except Exception as error:  # noqa: BLE001  (a refusal is a result to list)
                    error_text = f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"
                total = time.perf_counter() - start
        rows.append((case.name, total, clock.seconds, error_text))
        print(f"{case.name:40s} {total:8.3f} s (skl2onnx {clock.seconds:.3f} s) {error_text}",
              flush=True)
    return rows


def report(rows: list, top: int, command: str) -> str:
    converted = [r for r in rows if not r[3]]
    totals = [r[1] for r in converted]
    shares = [r[2] / r[1] for r in converted if r[1] > 0]
    lines = [f"# from_sklearn conversion time per estimator — `{command}`", "",
             f"- {len(converted)} of {len(rows)} estimators converted; total "
             f"{sum(totals):.1f} s, median {statistics.median(totals):.3f} s, slowest "
             f"{max(totals):.2f} s; skl2onnx's share of the time: median "
             f"{statistics.median(shares):.0%}", "",
             f"| estimator (slowest {top}) | from_sklearn (s) | skl2onnx (s) | bridge (s) |",
             "|---|---|---|---|"]
    for name, total, skl2onnx, _ in sorted(converted, key=lambda r: -r[1])[:top]:
        lines.append(f"| {name} | {total:.3f} | {skl2onnx:.3f} | {total - skl2onnx:.3f} |")
    failed = [r for r in rows if r[3]]
    if failed:
        lines += ["", "Not converted:", *(f"- {name}: {error}" for name, _, _, error in failed)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", help="comma-separated estimator names (default: all)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--output", help="name under benchmarks/results/ for the .md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = measure(args.names.split(",") if args.names else None)
    command = "python benchmarks/conversion_time.py " + " ".join(argv or sys.argv[1:])
    text = report(rows, args.top, command.strip())
    print(text)
    if args.output:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.output}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
