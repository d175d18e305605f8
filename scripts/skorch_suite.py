"""Run skorch's own tests against bridge and print ``skorch suite on bridge: passed P of N``.

Usage: ``python scripts/skorch_suite.py PATH [--all] [--json OUT] [--only FILE...] [PYTEST_ARGS...]`` where PATH
is the ``skorch`` directory of an unpacked skorch wheel (``pip download --no-deps skorch==1.4.0``,
then unzip). Nothing is downloaded; skorch itself is never imported, only its tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import types
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.skorch_suite.shim import install  # noqa: E402

_SHIM_ENV = "BRIDGE_SKORCH_SHIM_ROOT"
if __name__ == "__mp_main__" and os.environ.get(_SHIM_ENV):
    # A process started by multiprocessing's spawn re-imports this script under this name
    # before unpickling its task: map skorch onto bridge there too, so no skorch code runs.
    install(os.environ[_SHIM_ENV])

#: The core test files of skorch 1.4.0 (the extras: Hugging Face, CLI, probabilistic, LLM, are left out).
CORE_FILES = (
    "test_net.py", "test_classifier.py", "test_regressor.py", "test_history.py", "test_dataset.py",
    "test_helper.py", "test_utils.py", "test_setter.py", "test_scoring.py", "test_toy.py",
    "test_doctor.py", "callbacks",
)


class OutcomeRecorder:
    """A pytest plugin that records one outcome per test and the collection errors."""

    def __init__(self, progress_path: Path | None = None) -> None:
        self.progress_path = progress_path
        self.outcomes: dict[str, str] = {}
        self.reasons: dict[str, str] = {}
        self.collected = 0
        self.collection_errors: list[str] = []

    def pytest_collection_finish(self, session):  # noqa: D102 - pytest hook
        self.collected = len(session.items)

    def pytest_collectreport(self, report):  # noqa: D102 - pytest hook
        if report.failed:
            self.collection_errors.append(f"{report.nodeid}: {str(report.longrepr).splitlines()[-1]}")

    def pytest_runtest_logreport(self, report):  # noqa: D102 - pytest hook
        previous = self.outcomes.get(report.nodeid)
        if report.failed:
            self.outcomes[report.nodeid] = "failed"
            crash = getattr(report.longrepr, "reprcrash", None)
            self.reasons[report.nodeid] = crash.message.splitlines()[0][:300] if crash else str(report.longrepr)[-300:]
        elif report.skipped and previous is None:
            self.outcomes[report.nodeid] = "skipped"
        elif report.when == "call" and report.passed and previous is None:
            self.outcomes[report.nodeid] = "passed"
        if report.when == "teardown" and self.progress_path is not None and len(self.outcomes) % 100 == 0:
            self.write(self.progress_path)

    def write(self, path: Path, seconds: float | None = None) -> None:
        """Write each test's outcome and failure message (and the wall time when known) as JSON."""
        path.write_text(json.dumps({"outcomes": self.outcomes, "reasons": self.reasons,
                                    "collection_errors": self.collection_errors, "seconds": seconds}, indent=1))


def _provide_flaky() -> None:
    """skorch's tests import ``flaky`` (reruns of timing-sensitive tests); without it, run each once."""
    try:
        import flaky  # noqa: F401
    except ImportError:
        module = types.ModuleType("flaky", "stand-in: tests marked flaky run once")

        def flaky(*args, **kwargs):
            if len(args) == 1 and callable(args[0]) and not kwargs:
                return args[0]
            return lambda function: function

        module.flaky = flaky
        sys.modules["flaky"] = module


def main(argv: list[str] | None = None) -> int:
    """Run the suite; returns 0 (the count, not the exit status, is the result)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="the 'skorch' directory of an unpacked skorch wheel")
    parser.add_argument("--all", action="store_true", help="every test file, not only the core ones")
    parser.add_argument("--json", type=lambda p: Path(p).resolve(), help="write each test's outcome and failure message here")
    parser.add_argument("--only", nargs="*", help="these test files/node ids (relative to PATH/tests) instead")
    args, pytest_args = parser.parse_known_args(argv)
    pytest_args = [arg for arg in pytest_args if arg != "--"]
    args.path = args.path.resolve()
    tests = args.path / "tests"
    os.environ[_SHIM_ENV] = str(args.path.resolve())  # for processes the tests spawn (see below)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = "1"  # tests that would fetch a Hugging Face model fail instead of downloading
    install(args.path)
    _provide_flaky()
    if args.only:
        targets = [str(tests / name) for name in args.only]
    elif args.all:
        targets = [str(tests)]
    else:
        targets = [str(tests / name) for name in CORE_FILES]
    recorder = OutcomeRecorder(args.json)
    os.chdir(args.path.parent)  # some tests read files relative to the wheel's root
    with tempfile.TemporaryDirectory() as empty:
        ini = Path(empty) / "pytest.ini"
        ini.write_text("[pytest]\n")
        started = time.perf_counter()
        pytest.main(["-q", "-p", "no:cacheprovider", "-c", str(ini), "--rootdir", str(args.path.parent),
                     "-W", "ignore::DeprecationWarning",
                     "--continue-on-collection-errors", *pytest_args, *targets], plugins=[recorder])
        elapsed = time.perf_counter() - started
    counts = Counter(recorder.outcomes.values())
    if args.json:
        recorder.write(args.json, elapsed)
    for error in recorder.collection_errors:
        print(f"collection error: {error}")
    print(f"skorch suite on bridge: passed {counts['passed']} of {recorder.collected} "
          f"({counts['failed']} failed, {counts['skipped']} skipped, {len(recorder.collection_errors)} "
          f"files not collected; {elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
