"""The ``bridge-bench`` command line: pick models, backends and batch sizes, run, report."""

from __future__ import annotations

import argparse
import difflib
import os
import pickle
import sys
import zipfile
from collections.abc import Sequence

import numpy as np
import torch

from bridge.bench.backends import DEFAULT_BACKENDS, Target, all_backends
from bridge.bench.report import format_markdown, format_report, write_json, write_plot
from bridge.bench.runner import onnx_output_for, run_benchmark, run_target
from bridge.bench.suite import CASES, SUITES
from bridge.files import check_writable_path

DESCRIPTION = """\
Time the same models on scikit-learn (CPU), onnxruntime (CPU/CUDA) and torch
(CPU/CUDA/compiled), check that their outputs agree, and report a table
(and optionally JSON, Markdown and a PNG plot). With no arguments: the quick suite.
"""

EPILOG = """\
--pickle loads a pickled scikit-learn estimator with Python's pickle module.
Unpickling runs arbitrary code: only pass files you created or trust.
--skops loads scikit-learn's secure format (skops.io, pip install skops), which
builds only types it trusts; --trust adds the ones you reviewed (skops names them).
"""


class _Progress:
    """A one-line progress indicator on stderr (silent when stderr is not a terminal)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled = max(total, 1), 0, enabled

    def __call__(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        filled = int(30 * min(self.done, self.total) / self.total)
        bar = "█" * filled + "·" * (30 - filled)
        sys.stderr.write(f"\r[{bar}] {label[:60]:<60}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 95 + "\r")


def _names(value: str, valid: Sequence[str], what: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    for name in names:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise argparse.ArgumentTypeError(
                f"unknown {what} {name!r}{hint}; valid: {', '.join(valid)}"
            )
    return names


def _batch_sizes(value: str) -> list[int]:
    sizes = []
    for item in value.split(","):
        try:
            size = int(item)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"batch size {item!r} is not an integer; give e.g. 1,100,10000"
            ) from None
        if size < 1:
            raise argparse.ArgumentTypeError(f"batch size {size} is < 1; sizes must be ≥ 1")
        sizes.append(size)
    return sizes


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} must be ≥ 1")
    return number


def build_parser() -> argparse.ArgumentParser:
    backends = list(all_backends())
    parser = argparse.ArgumentParser(
        prog="bridge-bench", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--suite", choices=sorted(SUITES), default="quick",
                        help="which set of models and batch sizes (default: quick)")
    parser.add_argument("--models", help=f"comma-separated models; valid: {', '.join(CASES)}")
    parser.add_argument("--backends",
                        help=f"comma-separated backends; valid: {', '.join(backends)} "
                             f"(default: {', '.join(DEFAULT_BACKENDS)})")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="keep only backends on this device (default: all)")
    parser.add_argument("--batch-sizes", type=_batch_sizes, help="e.g. 1,100,10000")
    parser.add_argument("--train-rows", type=_positive, help="rows of synthetic training data")
    parser.add_argument("--features", type=_positive, default=20, help="feature count (default 20)")
    parser.add_argument("--repeats", type=_positive, help="timed repeats per cell")
    parser.add_argument("--threads", type=_positive,
                        help="CPU threads for torch and onnxruntime alike (default: each "
                             "library's own default); on a busy machine, 1 gives steadier figures")
    own = parser.add_mutually_exclusive_group()
    own.add_argument("--model", metavar="PATH.onnx", help="time your own ONNX file instead")
    own.add_argument("--pickle", metavar="PATH", help="time your own pickled, fitted estimator "
                     "(trusted files only, see below)")
    own.add_argument("--skops", metavar="PATH", help="time your own fitted estimator saved "
                     "with skops.io.dump (the secure format)")
    parser.add_argument("--trust", metavar="TYPE,...", default="",
                        help="with --skops: types to load beyond skops' trusted ones")
    parser.add_argument("--json", metavar="PATH", help="write every figure and the machine as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a log-log PNG plot")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table too")
    parser.add_argument("--list", action="store_true", help="list models, backends and suites")
    return parser


def _selected_backends(args, parser):
    known = all_backends()
    try:
        names = _names(args.backends, list(known), "backend") if args.backends else DEFAULT_BACKENDS
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    chosen = [known[name] for name in names]
    if args.device != "all":
        chosen = [b for b in chosen if b.name == "sklearn" or b.device == args.device]
    return chosen


class _SessionOutput(torch.nn.Module):
    """One output of a :class:`bridge.InferenceSession`'s module, as the torch backends call
    it: a tensor, or string labels decoded through the output's vocabulary as ``run`` does."""

    def __init__(self, module: torch.nn.Module, index: int):
        super().__init__()
        self.module, self.index = module, index
        labels = module.output_vocabularies.get(module.output_names[index])
        self.labels = None if labels is None else np.asarray(labels, dtype=object)

    def output(self, X: torch.Tensor):
        result = self.module(X)
        result = result[self.index] if isinstance(result, tuple) else result
        return result if self.labels is None else self.labels[result.cpu().numpy()]


def _onnx_target(args, parser):
    """``--model``: the file read by :class:`bridge.InferenceSession`, whose module the torch
    backends time; the input must be one float tensor, the timed output a tensor."""
    from bridge.errors import BridgeError
    from bridge.session import InferenceSession

    try:
        session = InferenceSession(args.model)
    except BridgeError as error:
        parser.error(f"--model: {error}")
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].type not in _FLOAT_TENSORS:
        parser.error(f"--model: bridge-bench times graphs with one floating-point input "
                     f"(a batch of rows); this one takes {[(i.name, i.type) for i in inputs]}")
    shape = inputs[0].shape
    features = shape[-1] if shape and isinstance(shape[-1], int) else args.features
    outputs = [(i, o.name) for i, o in enumerate(session.get_outputs())
               if o.type.startswith("tensor(")]
    if not outputs:
        parser.error(f"--model: no output of {args.model!r} is a tensor; bridge-bench times "
                     "tensor outputs (convert scikit-learn classifiers with zipmap=False)")
    index = next((i for i, name in outputs if "prob" in name.lower()), outputs[0][0])
    name = os.path.basename(args.model)
    return Target(name, "output", session.onnx_model, index, None,
                  _SessionOutput(session.module, index)), features


_FLOAT_TENSORS = ("tensor(float)", "tensor(double)", "tensor(float16)")


def _user_target(args, parser):
    """A Target (and test data) for ``--model``, ``--pickle`` or ``--skops``."""
    if args.model:
        return _onnx_target(args, parser)
    option, path = ("--pickle", args.pickle) if args.pickle else ("--skops", args.skops)
    estimator = _unpickled(path, parser) if args.pickle else _from_skops(args, parser)
    from sklearn.base import BaseEstimator

    from bridge.sklearn.convert import from_sklearn

    if not isinstance(estimator, BaseEstimator):
        parser.error(f"{option}: {path!r} holds a {type(estimator).__name__}, not a fitted "
                     "scikit-learn estimator")

    features = getattr(estimator, "n_features_in_", args.features)
    sample = np.zeros((1, features), dtype=np.float32)
    converted = from_sklearn(estimator, sample)
    method = next(m for m in ("predict_proba", "predict", "transform") if hasattr(estimator, m))
    graph, index = onnx_output_for(converted, method)
    return Target(os.path.basename(path), method, graph, index, estimator, converted), features


def _unpickled(path: str, parser):
    """The object pickled in ``path``, after saying on stderr that unpickling runs its code."""
    print(f"bridge-bench: --pickle runs Python's pickle on {path!r}, which executes any code the "
          "file holds; going on because you vouch for the file (--skops loads the secure format)",
          file=sys.stderr)
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)  # the user vouches for this file (said above)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as error:
        parser.error(f"--pickle: cannot load {path!r}: {type(error).__name__}: {error}")


def _from_skops(args, parser):
    """The estimator in a skops file, built from skops' trusted types plus ``--trust``."""
    try:
        import skops.io
    except ImportError:
        parser.error("--skops needs the skops package: pip install skops")
    trusted = [t.strip() for t in args.trust.split(",") if t.strip()]
    try:
        untrusted = [t for t in skops.io.get_untrusted_types(file=args.skops) if t not in trusted]
        if untrusted:
            parser.error(f"--skops: {args.skops!r} holds types skops does not trust: {untrusted}; "
                         "after reviewing them, pass them with --trust "
                         f"{','.join(untrusted)}")
        return skops.io.load(args.skops, trusted=trusted or None)
    except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as error:
        parser.error(f"--skops: cannot load {args.skops!r}: {type(error).__name__}: {error}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print("models:   " + ", ".join(f"{n} ({c.description})" for n, c in CASES.items()))
        print("backends: " + ", ".join(all_backends()))
        print("suites:   " + ", ".join(f"{n}: {', '.join(s['models'])}" for n, s in SUITES.items()))
        return 0
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path:  # before the run, so that a typo does not cost its results
            try:
                check_writable_path(path)
            except OSError as error:
                parser.error(f"{option}: {error}")
    suite = SUITES[args.suite]
    batch_sizes = args.batch_sizes or suite["batch_sizes"]
    repeats = args.repeats or suite["repeats"]
    backends = _selected_backends(args, parser)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        for backend in backends:
            backend.threads = args.threads
    settings = {"threads": args.threads,"suite": args.suite, "batch_sizes": batch_sizes, "repeats": repeats,
                "features": args.features, "backends": [b.name for b in backends]}
    if args.trust and not args.skops:
        parser.error("--trust goes with --skops")
    if args.model or args.pickle or args.skops:
        target, features = _user_target(args, parser)
        rng = np.random.default_rng(0)
        X_test = rng.normal(size=(1000, features)).astype(np.float32)
        progress = _Progress(len(backends) * len(batch_sizes), sys.stderr.isatty())
        results = run_target(target, X_test, backends, batch_sizes, repeats, progress)
    else:
        try:
            models = _names(args.models, list(CASES), "model") if args.models else suite["models"]
        except argparse.ArgumentTypeError as error:
            parser.error(str(error))
        train_rows = args.train_rows or suite["train_rows"]
        settings.update(models=models, train_rows=train_rows)
        progress = _Progress(len(models) * (1 + len(backends) * len(batch_sizes)),
                             sys.stderr.isatty())
        results = run_benchmark([CASES[m] for m in models], backends, batch_sizes,
                                train_rows=train_rows, n_features=args.features,
                                repeats=repeats, progress=progress)
    progress.close()
    print(format_report(results))
    if args.markdown:
        print()
        print(format_markdown(results))
    if args.json:
        write_json(args.json, results, settings)
    if args.plot:
        write_plot(args.plot, results)
    failures = [r for r in results if r.status == "error" or r.parity_ok is False]
    if failures:
        print(f"\n{len(failures)} cells failed or disagree with the reference", file=sys.stderr)
    return 1 if failures else 0
