"""The registry: explicit module list, version resolution and the unsupported-operator error."""

from __future__ import annotations

from pathlib import Path

import pytest

import bridge.onnx.ops as ops
from bridge.errors import UnsupportedOperatorError
from bridge.onnx.registry import lookup, registered_operators, supported_versions


def test_every_op_module_is_listed():
    root = Path(ops.__file__).parent
    on_disk = {
        str(path.relative_to(root).with_suffix("")).replace("/", ".")
        for path in root.rglob("*.py")
        if path.name != "__init__.py"
    }
    assert on_disk == set(ops.OP_MODULES)


def test_lookup_resolves_the_model_opset_to_the_schema_version():
    # Identity changed at 13, 14, 16, ...: a model at opset 15 uses the version-14 converter.
    assert lookup("", "Identity", 15) is lookup("", "Identity", 14)


def test_unknown_operator_names_domain_op_and_opset():
    with pytest.raises(UnsupportedOperatorError, match=r"ai.onnx::NoSuchOp opset 17"):
        lookup("", "NoSuchOp", 17)


def test_unsupported_version_lists_the_supported_ones():
    versions = supported_versions("", "Identity")
    with pytest.raises(NotImplementedError, match="supported: " + ", ".join(map(str, versions))):
        lookup("", "Identity", 0)


def test_registered_operators_are_sorted_and_non_empty():
    operators = registered_operators()
    assert list(operators) == sorted(operators)
    assert all(operators.values())
