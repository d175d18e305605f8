"""Make ``import skorch.*`` resolve to bridge's modules, so skorch's own tests run against bridge.

Only the module names are mapped; every class and function the tests reach is bridge's.
Test modules (``skorch.tests.*``) load from a directory holding skorch's unpacked wheel;
any other ``skorch.*`` module (the Hugging Face, CLI and probabilistic extras) is refused.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import types
from pathlib import Path

__all__ = ["MODULE_MAP", "install", "uninstall"]

#: skorch module name -> the bridge module that stands in for it.
MODULE_MAP = {
    "skorch.net": "bridge.net.net",
    "skorch.classifier": "bridge.net.classifier",
    "skorch.regressor": "bridge.net.regressor",
    "skorch.callbacks": "bridge.callbacks",
    "skorch.callbacks.base": "bridge.callbacks.base",
    "skorch.callbacks.logging": "bridge.callbacks.logging",
    "skorch.callbacks.lr_scheduler": "bridge.callbacks.lr_scheduler",
    "skorch.callbacks.regularization": "bridge.callbacks.regularization",
    "skorch.callbacks.scoring": "bridge.callbacks.scoring",
    "skorch.callbacks.training": "bridge.callbacks.training",
    "skorch.dataset": "bridge.dataset",
    "skorch.helper": "bridge.helper",
    "skorch.history": "bridge.history",
    "skorch.utils": "bridge.utils",
    "skorch.exceptions": "bridge.exceptions",
    "skorch.toy": "bridge.toy",
    "skorch.scoring": "bridge.scoring",
    "skorch.setter": "bridge.setter",
    "skorch._doctor": "bridge.doctor",
}

_TOP_LEVEL_NAMES = ("NeuralNet", "NeuralNetClassifier", "NeuralNetBinaryClassifier", "NeuralNetRegressor")


class _VersionModule(types.ModuleType):
    """``skorch._version``: the tests only compare versions, which ``packaging`` does."""

    def __init__(self) -> None:
        super().__init__("skorch._version")
        from packaging.version import Version

        self.Version = Version


class _Blocker(importlib.abc.MetaPathFinder):
    """Refuses ``skorch.*`` modules that bridge does not stand in for, so no skorch code runs."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102 - importlib protocol
        if fullname.startswith("skorch.") and not fullname.startswith("skorch.tests"):
            raise ModuleNotFoundError(f"{fullname} has no bridge counterpart in the skorch shim", name=fullname)
        return None


_blocker = _Blocker()


def install(skorch_root: str | Path | None = None) -> types.ModuleType:
    """Register ``skorch`` and its submodules in ``sys.modules`` as aliases of bridge's modules.

    Parameters
    ----------
    skorch_root : str, Path or None
        The ``skorch`` directory of an unpacked skorch wheel; ``skorch.tests`` is loaded from
        its ``tests`` folder. None maps the library modules only.

    Returns
    -------
    module
        The synthetic ``skorch`` package.

    Raises
    ------
    FileNotFoundError
        When ``skorch_root`` has no ``tests`` folder.
    """
    search_path: list[str] = []
    if skorch_root is not None:
        root = Path(skorch_root)
        if not (root / "tests").is_dir():
            raise FileNotFoundError(f"{root} has no 'tests' folder; pass the 'skorch' directory of an unpacked "
                                    "skorch wheel (e.g. unpacked/skorch)")
        search_path.append(str(root))
    import bridge

    package = types.ModuleType("skorch", "bridge standing in for skorch")
    package.__path__ = search_path
    package.__version__ = bridge.__version__
    sys.modules["skorch"] = package
    for name in _TOP_LEVEL_NAMES:
        setattr(package, name, getattr(bridge, name))
    for alias, target in MODULE_MAP.items():
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as error:
            if error.name != target:
                raise
            continue  # no counterpart yet: imports of the alias fail like any missing module
        sys.modules[alias] = module
        parent, _, child = alias.rpartition(".")
        parent_module = sys.modules[parent]
        if parent_module is package or not hasattr(parent_module, child):
            setattr(parent_module, child, module)
    sys.modules["skorch._version"] = package._version = _VersionModule()
    if _blocker not in sys.meta_path:
        sys.meta_path.insert(0, _blocker)
    return package


def uninstall() -> None:
    """Remove every ``skorch`` entry from ``sys.modules`` and the import blocker."""
    for name in [n for n in sys.modules if n == "skorch" or n.startswith("skorch.")]:
        del sys.modules[name]
    if _blocker in sys.meta_path:
        sys.meta_path.remove(_blocker)
