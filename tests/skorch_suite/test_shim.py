"""The skorch shim maps skorch's module names onto bridge's; skorch's own tests run when present.

The suite itself runs only when ``BRIDGE_SKORCH_SUITE`` names the ``skorch`` folder of an
unpacked skorch wheel (nothing is downloaded here); the shim's mapping is tested always.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.skorch_suite import shim

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def installed():
    saved = {name: module for name, module in sys.modules.items() if name == "skorch" or name.startswith("skorch.")}
    shim.uninstall()
    yield shim.install()
    shim.uninstall()
    sys.modules.update(saved)


def test_every_mapped_module_is_bridges(installed):
    import importlib

    for alias, target in shim.MODULE_MAP.items():
        assert importlib.import_module(alias) is importlib.import_module(target)
    from skorch import NeuralNetClassifier
    from skorch.exceptions import NotInitializedError, SkorchException

    import bridge
    from bridge.errors import BridgeError, NotFittedError

    assert NeuralNetClassifier is bridge.NeuralNetClassifier
    assert NotInitializedError is NotFittedError and SkorchException is BridgeError


def test_unmapped_skorch_modules_are_refused(installed):
    with pytest.raises(ModuleNotFoundError, match="skorch.hf"):
        import skorch.hf  # noqa: F401


def test_root_without_tests_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        shim.install(tmp_path)


@pytest.mark.skipif(not os.environ.get("BRIDGE_SKORCH_SUITE"),
                    reason="set BRIDGE_SKORCH_SUITE to the 'skorch' folder of an unpacked skorch wheel")
def test_skorch_toy_tests_pass_on_bridge():
    root = os.environ["BRIDGE_SKORCH_SUITE"]
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "skorch_suite.py"), root, "--only", "test_toy.py"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    line = result.stdout.strip().splitlines()[-1]
    passed, _, total = line.split("passed ")[1].split(" (")[0].partition(" of ")
    assert line.startswith("skorch suite on bridge:") and int(passed) == int(total) > 10, line
