"""The ONNX backend node conformance suite through ``bridge.from_onnx``.

Every case whose operators are all registered must pass, unless it is listed with its
reason in ``conformance_expected/<family>.txt`` (one ``case_name: reason`` per line).
A listed case that starts passing fails the test too, so the lists stay true.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.onnx.conformance import load_cases, run_cases
from bridge.onnx.registry import registered_operators

EXPECTED_DIR = Path(__file__).parent / "conformance_expected"
MINIMUM_PASSED = 1000


def expected_failures() -> dict[str, str]:
    listed = {}
    for path in sorted(EXPECTED_DIR.glob("*.txt")):
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, reason = line.partition(":")
                listed[name.strip()] = reason.strip() or f"listed in {path.name}"
    return listed


@pytest.fixture(scope="module")
def results():
    return run_cases(load_cases())


def test_every_case_of_every_registered_operator_passes(results):
    registered = set(registered_operators())
    listed = expected_failures()
    unexpected = [
        f"{r.name}: {r.message}"
        for r in results
        if r.operators <= registered and r.status != "passed" and r.name not in listed
    ]
    assert not unexpected, f"{len(unexpected)} cases fail:\n" + "\n".join(unexpected[:50])


def test_listed_failures_still_fail(results):
    listed = expected_failures()
    passing = [r.name for r in results if r.name in listed and r.status == "passed"]
    assert not passing, f"listed as failing but pass now (remove them): {passing}"


def test_pass_count_reaches_the_target(results):
    passed = sum(r.status == "passed" for r in results)
    assert passed >= MINIMUM_PASSED, f"{passed} of {len(results)} cases pass"


def test_every_ml_case_except_tree_ensembles_passes(results):
    failing = [
        r.name for r in results
        if any(domain == "ai.onnx.ml" for domain, _ in r.operators)
        and not any(op.startswith("TreeEnsemble") for _, op in r.operators)
        and r.status != "passed"
    ]
    assert not failing, failing
