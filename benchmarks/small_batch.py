"""Time converted SVC and tree ensembles at small batches: onnxruntime vs bridge, one thread.

Run from the repository root::

    python benchmarks/small_batch.py            # writes benchmarks/results/small_batch-<host>.{json,md}
    python benchmarks/small_batch.py --quick    # fewer rounds and batches, for a smoke run
    python benchmarks/small_batch.py --host vm --note "2-core shared AMD EPYC VM"

Models (20 features, 3 classes, float32): SVC(probability=True) with the RBF kernel,
RandomForestClassifier (100 trees, depth 8), GradientBoostingClassifier (100 iterations,
300 trees) and HistGradientBoostingClassifier (100 iterations), all through
``bridge.from_sklearn``. For each at 1, 100 and 10k rows, backends interleaved round by
round (fastest call of each):

* ``onnxruntime``: the same ONNX graph in onnxruntime (CPU provider, one thread);
* ``operator``: bridge's module for the ONNX operator alone (``OnnxSVMClassifier`` or
  ``OnnxTreeEnsembleClassifier``) on a float32 tensor, without autograd;
* ``operator, C loops off``: a copy of the operator without this build's newer C loops (the
  SVM's torch path, as with ``BRIDGE_SVM_KERNEL=0``; for trees the C walk without the leaf
  sums in its loop, leaves aggregated by torch): what the operator cost before them, but for
  the trees' outputs, which keep their new shortcut for always-scored classes;
* ``predict_proba``: the whole ``model.predict_proba(numpy array)`` call.

Every bridge output is checked against onnxruntime's before timing.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trees import cpu_model, timed_together  # noqa: E402  (benchmarks/trees.py, beside this script)

import bridge  # noqa: E402
from bridge.onnx.ops.ml.svm import OnnxSVMClassifier  # noqa: E402
from bridge.onnx.ops.ml.tree import OnnxTreeEnsembleClassifier  # noqa: E402
from bridge.svm import native as svm_native  # noqa: E402
from bridge.trees.aggregate import LeafAggregator  # noqa: E402

BATCHES = (1, 100, 10_000)
BACKENDS = ("onnxruntime", "operator", "operator, C loops off", "predict_proba")


def estimators() -> dict:
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.svm import SVC

    return {
        "SVC rbf, probability": SVC(probability=True, random_state=0),
        "RandomForest 100x8": RandomForestClassifier(100, max_depth=8, random_state=0),
        "GradientBoosting 100x3": GradientBoostingClassifier(n_estimators=100, random_state=0),
        "HistGradientBoosting 100": HistGradientBoostingClassifier(max_iter=100,
                                                                   random_state=0),
    }


class AggregatedByTorch(LeafAggregator):
    """A leaf aggregator that never lets the C walk add up its leaves."""

    sums_in_walk = False


def without_new_c_loops(operator: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``operator`` as it ran before this build's C loops: the SVM's torch path
    (intercepts, votes, coupling), trees' leaves aggregated by torch after the C walk. (The
    trees' outputs keep their shortcut for always-scored classes.)"""
    twin = copy.deepcopy(operator)
    if isinstance(twin, OnnxSVMClassifier):
        twin._native_tables = lambda x: None  # (what _native_runs reads)
    for module in twin.modules():
        if isinstance(module, LeafAggregator):
            module.__class__ = AggregatedByTorch
    return twin


def backends(session, feed_name: str, operator: torch.nn.Module, before: torch.nn.Module,
             model, rows: np.ndarray) -> dict:
    """The calls timed for one model and batch (see the module docstring)."""
    tensor = torch.from_numpy(rows)

    def operator_call():
        with torch.no_grad():
            operator(tensor)

    def operator_off():
        with torch.no_grad():
            before(tensor)

    return {"onnxruntime": lambda: session.run(None, {feed_name: rows}),
            "operator": operator_call, "operator, C loops off": operator_off,
            "predict_proba": lambda: model.predict_proba(rows)}


def probability_graph(model) -> tuple:
    """The ONNX graph ``predict_proba`` runs, the position of its probabilities among the
    graph's outputs, and bridge's operator module in it."""
    source = model._method_outputs["predict_proba"]  # (a benchmark may read the plan)
    graphs = model.onnx_model
    graph = graphs["predict_proba"] if isinstance(graphs, dict) else graphs
    operator = next(m for m in model.graph_modules[source.graph].modules()
                    if isinstance(m, (OnnxSVMClassifier, OnnxTreeEnsembleClassifier)))
    return graph, source.output, operator


def run(quick: bool) -> dict:
    import onnxruntime
    from sklearn.datasets import make_classification

    torch.set_num_threads(1)
    x, y = make_classification(n_samples=600, n_features=20, n_informative=10, n_classes=3,
                               random_state=0)
    x = x.astype(np.float32)
    rng = np.random.default_rng(0)
    batches = BATCHES[:2] if quick else BATCHES
    results = []
    for name, estimator in estimators().items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator.fit(x, y)
            model = bridge.from_sklearn(estimator)
        graph, output, operator = probability_graph(model)
        before = without_new_c_loops(operator)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(graph.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])
        feed_name = session.get_inputs()[0].name
        for batch in batches:
            rows = np.ascontiguousarray(x[rng.integers(0, len(x), batch)]
                                        + rng.normal(scale=0.01, size=(batch, 20))
                                        .astype(np.float32))
            tensor = torch.from_numpy(rows)
            expected = session.run(None, {feed_name: rows})[output]
            with torch.no_grad():
                actual = operator(tensor)[1].numpy()
                off = before(tensor)[1].numpy()
            for what, values in (("operator", actual), ("C loops off", off),
                                 ("predict_proba", model.predict_proba(rows))):
                np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-5,
                                           err_msg=f"{name}, {batch} rows, {what}")

            functions = backends(session, feed_name, operator, before, model, rows)
            budget = 0.05 if quick else (0.4 if batch < 10_000 else 3.0)
            seconds = timed_together(functions, budget, rounds=2000)
            results.append({"model": name, "rows": batch,
                            "us": {key: value * 1e6 for key, value in seconds.items()}})
            print(f"{name:26s} {batch:>6d} rows  " + "  ".join(
                f"{key} {value * 1e6:10.1f}" for key, value in seconds.items()), flush=True)
    return {"machine": machine(), "results": results}


def machine() -> dict:
    import onnxruntime
    import sklearn

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": 1,
            "python": platform.python_version(), "torch": torch.__version__,
            "scikit-learn": sklearn.__version__, "onnxruntime": onnxruntime.__version__,
            "svm C loops": svm_native.available()}


def markdown(report: dict, host: str) -> str:
    lines = [f"# Small batches, one thread ({host})", "",
             "`python benchmarks/small_batch.py`: " + ", ".join(
                 f"{key} {value}" for key, value in report["machine"].items()) + ".",
             "µs per call, fastest of interleaved rounds; ratios to onnxruntime, and of the "
             "operator with this build's C loops off to the operator with them.", "",
             "| model | rows | onnxruntime | operator | C loops off | predict_proba | "
             "operator / ort | predict_proba / ort | off / on |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in report["results"]:
        us = row["us"]
        ort, op, off, whole = (us[key] for key in BACKENDS)
        lines.append(f"| {row['model']} | {row['rows']:,} | {ort:.1f} | {op:.1f} | {off:.1f} | "
                     f"{whole:.1f} | {op / ort:.2f} | {whole / ort:.2f} | {off / op:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 100 rows, short rounds")
    parser.add_argument("--host", default=platform.node() or "host",
                        help="name for the results files (default: the host name)")
    parser.add_argument("--note", default="", help="what the machine is, for the title")
    arguments = parser.parse_args()
    report = run(arguments.quick)
    if arguments.quick:
        return
    folder = Path(__file__).resolve().parent / "results"
    folder.mkdir(exist_ok=True)
    (folder / f"small_batch-{arguments.host}.json").write_text(json.dumps(report, indent=1))
    title = f"{arguments.host}: {arguments.note}" if arguments.note else arguments.host
    (folder / f"small_batch-{arguments.host}.md").write_text(markdown(report, title))


if __name__ == "__main__":
    main()
