"""The layers point one way: ``bridge.export`` knows the models, the models (nets, converted
models, the importer, trees, callbacks) never import ``bridge.export``, not even inside a
function; their ``to_onnx`` methods delegate through the public ``bridge.to_onnx``."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import bridge

PACKAGE = Path(bridge.__file__).parent
MODEL_LAYERS = ("net", "sklearn", "onnx", "trees", "callbacks", "dataset.py", "helper.py",
                "history.py", "utils.py", "errors.py")


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` anywhere in the file names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def model_files() -> list[Path]:
    files = []
    for layer in MODEL_LAYERS:
        target = PACKAGE / layer
        files += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    return [f for f in files if f.exists()]


@pytest.mark.parametrize("path", model_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_model_layers_never_import_export(path):
    offending = sorted(n for n in imported_modules(path)
                       if n == "bridge.export" or n.startswith("bridge.export."))
    assert not offending, f"{path.relative_to(PACKAGE)} imports {offending}"


def test_the_delegating_methods_still_export():
    X = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    converted = bridge.from_sklearn(LogisticRegression().fit(X, X[:, 0] > 0))
    model = converted.to_onnx(method="predict_proba")
    original = converted.onnx_model["predict_proba"]
    assert [o.name for o in model.graph.output] == [o.name for o in original.graph.output]
    assert {p.key for p in model.metadata_props} >= {"bridge.version", "bridge.form"}
