"""``bridge-bench``: time the same models on scikit-learn, onnxruntime and torch, and check they agree."""

from bridge.bench.runner import BenchResult, run_benchmark
from bridge.bench.suite import CASES, SUITES, BenchCase

__all__ = ["BenchCase", "BenchResult", "CASES", "SUITES", "run_benchmark"]
