"""The SVM vector-field example runs end to end in its --smoke mode."""

from __future__ import annotations

import importlib.util
import os

import pytest

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "svm_vector_field.py")


def test_svm_vector_field_smoke(tmp_path):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("svm_vector_field", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    output = module.main(["--smoke", "--output", str(tmp_path / "field.png")])
    assert os.path.getsize(output) > 1000
