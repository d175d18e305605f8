"""Run the ONNX backend node conformance suite through bridge.from_onnx and print the counts.

Usage: ``python benchmarks/conformance.py [--failures] [--prefix test_conv]``.
"""

from __future__ import annotations

import argparse
import collections
import time

import onnx

from bridge.onnx.conformance import load_cases, run_cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failures", action="store_true", help="list failing and erroring cases")
    parser.add_argument("--prefix", default="test_", help="only cases whose name starts with this")
    args = parser.parse_args()
    started = time.perf_counter()
    cases = [case for case in load_cases() if case.name.startswith(args.prefix)]
    results = run_cases(cases)
    counts = collections.Counter(result.status for result in results)
    print(f"onnx {onnx.__version__}: {len(results)} node cases in "
          f"{time.perf_counter() - started:.0f} s")
    for status in ("passed", "failed", "error", "unsupported"):
        print(f"  {status:<12}{counts.get(status, 0):>5}")
    ml = [r for r in results if any(d == "ai.onnx.ml" for d, _ in r.operators)]
    print(f"  ai.onnx.ml cases passed: {sum(r.status == 'passed' for r in ml)} of {len(ml)}")
    missing = collections.Counter(
        r.message.split(" opset")[0] for r in results if r.status == "unsupported"
    )
    print("most common unsupported operators: "
          + ", ".join(f"{op} ({n})" for op, n in missing.most_common(12)))
    if args.failures:
        for result in results:
            if result.status in ("failed", "error"):
                print(f"{result.name}: {result.message}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
