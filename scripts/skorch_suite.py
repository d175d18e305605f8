"""Run skorch's own tests against bridge and print ``skorch suite on bridge: passed P of N``.

Usage: ``python scripts/skorch_suite.py PATH [--all] [--json OUT] [--only FILE...] [PYTEST_ARGS...]`` where PATH
is the ``skorch`` directory of an unpacked skorch wheel (``pip download --no-deps skorch==1.4.0``,
then unzip). Nothing is downloaded; skorch itself is never imported, only its tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


#: (cause, pattern over the test id) for the failures that are not about message wording; the
#: table in docs/coming-from-skorch.md is printed by ``--causes`` from these.
_CAUSES = [
 ("design: atomic checkpoints (staged files renamed together; one save_params call per target on a staging path)", r"test_save_all_targets|test_saves_at_end|TestCheckpoint::test_save_custom_module|TestTrainEndCheckpoint::test_save_custom_module|test_string_monitor_and_formatting"),
 ("design: a failed checkpoint write raises (nothing half-written) instead of printing to the sink", r"test_outputs_to_sink_when_save_params_errors"),
 ("design: callbacks validate their arguments in initialize(), not __init__ (scikit-learn's convention)", r"test_init_with_dirname_and_file_like_object_error|test_init_with_f_optimizer_and_safetensors_raises|test_init_with_wrong_kwarg_name_raises|test_init_with_f_params_and_f_module_raises"),
 ("design: parameters load with torch.load(weights_only=True) always", r"torch_load_kwargs"),
 ("design: the device is checked up front (an unknown device string is refused); device=None is kept on unpickling", r"moving_custom_modules_to_device|preserves_its_device|device_is_none"),
 ("design: in-memory inference runs in 8192-row chunks (forward_iter and predict_nonlinearity see chunks, not batch_size batches)", r"multioutput_forward_iter|predict_nonlinearity_called_with_predict"),
 ("design: a user callback named like a default replaces the default; automatic names are numbered", r"callback_name_collides_with_default|callback_unique_naming_avoids_conflicts"),
 ("design: scipy sparse X is refused with a message (densify, or a Dataset)", r"test_fit_sparse_csr_learns|test_sparse_tensor_not_accepted"),
 ("design: SliceDict[int] returns one row (DataLoaders index rows); non-array values raise TypeError", r"TestSliceDict::test_slice_int|test_set_first_item_no_shape_raises"),
 ("design: 1-D regression targets are matched to a single-output module without a warning", r"test_dimension_mismatch_warning"),
 ("design: classes_ is None (not an AttributeError) when no class could be inferred", r"test_pass_empty_classes_raises|test_error_when_classes_could_not_be_inferred"),
 ("design: to_numpy converts Python scalars, lists and dicts too", r"TestToNumpy::test_invalid_inputs"),
 ("design: PrintLog draws its own table (no tabulate; column widths differ)", r"TestPrintLog::test_lines|test_print_not_skipped_if_verbose|test_args_passed_to_tabulate"),
 ("not implemented: scikit-learn metadata routing (set_fit_request / set_partial_fit_request)", r"TestMetadataRouting"),
 ("internals: skorch.utils private helpers (Ansi, TeeGenerator, _infer_predict_nonlinearity) and to_tensor internals", r"TestTeeGenerator|TestInferPredictNonlinearity|test_first_row|test_tensor_conversion_cuda"),
 ("internals: mocks of skorch private methods or call counts (_get_scheduler, _initialize_module, get_iterator/forward counts, patched module globals)", r"TestReduceLROnPlateau::test_reduce_lr_monitor|test_save_params_not_init_optimizer|test_with_caching_get_iterator_not_called|test_net_overrides_caching|test_multiple_scorings_share_cache|test_parameters_passed_correctly_to_torch_cgn|test_get_params_works|test_lr_callback_batch_steps_correctly_fallback|test_net_input_is_scoring_input|test_reduce_lr_record_batch_step"),
 ("environment: test data not shipped in the wheel (CUDA-saved files) or pickles written by skorch itself", r"test_load_cuda_params_to_cpu|test_pickle_load"),
 ("environment: needs a Hugging Face download (the run is offline)", r"tokenizer|Tokenizers"),
 ("flaky in skorch too: seeded with time.time()", r"test_fit_lbfgs_optimizer"),
 ("timing: 4 spawned processes finish at different times and the last one reads after rank 0's store closed (passes unloaded)", r"TestDistributedHistoryMultiprocessing"),
 ("design: a Checkpoint monitor missing from the history raises KeyError naming the keys present", r"test_default_without_validation_raises_meaningful_error"),
 ("wording: skorch compares exact message text; bridge's messages name the value and the accepted ones", r"setting_callback_to_none_and_more_params|test_set_item_incorrect_key_type|test_one_dimensional_x_raises"),
]
_WORDING = "wording: skorch compares exact message text; bridge's messages name the value and the accepted ones"


def _is_wording(reason: str) -> bool:
    """Whether a failure only compares message text (a regex match or an exact string)."""
    return ("Regex pattern did not match" in reason or reason.startswith("assert (False or False)")
            or re.match(r"(AssertionError: )?assert ['\"].*['\"] == ['\"]", reason) is not None)


def failure_causes(outcomes: dict[str, str], reasons: dict[str, str]) -> tuple[Counter, list[str]]:
    """Count the failures per cause; the ids that no cause explains are returned apart."""
    counts: Counter = Counter()
    unexplained = []
    for node, outcome in outcomes.items():
        if outcome != "failed":
            continue
        cause = next((name for name, pattern in _CAUSES if re.search(pattern, node)), None)
        if cause is None and _is_wording(reasons.get(node, "")):
            cause = _WORDING
        if cause is None:
            unexplained.append(f"{node}: {reasons.get(node, '')[:160]}")
        else:
            counts[cause] += 1
    return counts, unexplained


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
    """Run the suite; returns 1 only when fewer than ``--min-passed`` tests pass."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="the 'skorch' directory of an unpacked skorch wheel")
    parser.add_argument("--all", action="store_true", help="every test file, not only the core ones")
    parser.add_argument("--json", type=lambda p: Path(p).resolve(), help="write each test's outcome and failure message here")
    parser.add_argument("--causes", action="store_true", help="print the failures counted by cause")
    parser.add_argument("--min-passed", type=int, default=0,
                        help="exit with status 1 when fewer tests pass (a regression guard for CI)")
    parser.add_argument("--only", nargs="*", help="these test files/node ids (relative to PATH/tests) instead")
    args, pytest_args = parser.parse_known_args(argv)
    pytest_args = [arg for arg in pytest_args if arg != "--"]
    args.path = args.path.resolve()
    tests = args.path / "tests"
    os.environ[_SHIM_ENV] = str(args.path.resolve())  # for processes the tests spawn (see below)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = "1"  # tests that would fetch a Hugging Face model fail instead of downloading
    # MLflow 3 refuses a file-store tracking URI (the tests' tmp_path) unless this opts in.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    install(args.path)
    _provide_flaky()
    if args.only:
        targets = [str(tests / name) for name in args.only]
    elif args.all:
        targets = [str(tests)]
    else:
        targets = [str(tests / name) for name in CORE_FILES]
    recorder = OutcomeRecorder(args.json)
    with tempfile.TemporaryDirectory() as empty:
        ini = Path(empty) / "pytest.ini"
        ini.write_text("[pytest]\n")
        cwd = os.getcwd()
        os.chdir(empty)  # tests that write files relative to the working directory write them here
        started = time.perf_counter()
        pytest.main(["-q", "-p", "no:cacheprovider", "-c", str(ini), "--rootdir", str(args.path.parent),
                     "-W", "ignore::DeprecationWarning",
                     "--continue-on-collection-errors", *pytest_args, *targets], plugins=[recorder])
        elapsed = time.perf_counter() - started
        os.chdir(cwd)
    counts = Counter(recorder.outcomes.values())
    if args.json:
        recorder.write(args.json, elapsed)
    if args.causes:
        by_cause, unexplained = failure_causes(recorder.outcomes, recorder.reasons)
        for cause, count in by_cause.most_common():
            print(f"| {count} | {cause} |")
        for line in unexplained:
            print(f"unexplained failure: {line}")
    for error in recorder.collection_errors:
        print(f"collection error: {error}")
    print(f"skorch suite on bridge: passed {counts['passed']} of {recorder.collected} "
          f"({counts['failed']} failed, {counts['skipped']} skipped, {len(recorder.collection_errors)} "
          f"files not collected; {elapsed:.0f} s)")
    if counts["passed"] < args.min_passed:
        print(f"skorch suite regressed: {counts['passed']} passed, fewer than --min-passed {args.min_passed}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
