"""bridge is a typed package: it ships ``py.typed``, every public name's bridge-defined
callables are annotated in full, and ``mypy --config-file mypy.ini`` (strict on the public
API, see tests/typing/public_api.py) passes where mypy is installed."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import bridge

ROOT = Path(bridge.__file__).parents[1]


def test_the_package_ships_py_typed():
    assert (Path(bridge.__file__).parent / "py.typed").is_file()


def public_callables():
    for name in bridge.__all__:
        value = getattr(bridge, name)
        if inspect.isfunction(value):
            yield name, value
        elif inspect.isclass(value):
            for attribute, member in inspect.getmembers(value, inspect.isfunction):
                public = not attribute.startswith("_") or attribute == "__init__"
                if public and member.__module__.startswith("bridge"):
                    yield f"{name}.{attribute}", member


@pytest.mark.parametrize(("name", "function"), list(public_callables()),
                         ids=[name for name, _ in public_callables()])
def test_public_callables_are_fully_annotated(name, function):
    signature = inspect.signature(function)
    missing = [p.name for p in signature.parameters.values()
               if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
    assert not missing, f"{name}: parameters without annotations: {missing}"
    if not name.endswith("__init__"):
        assert signature.return_annotation is not inspect.Signature.empty, f"{name}: no return type"


def test_mypy_strict_on_the_public_api(monkeypatch):
    api = pytest.importorskip("mypy.api")
    monkeypatch.chdir(ROOT)  # mypy.ini names its files from the repository root
    stdout, stderr, status = api.run(["--config-file", str(ROOT / "mypy.ini"),
                                      "--cache-dir", str(ROOT / ".mypy_cache")])
    assert status == 0, stdout + stderr
