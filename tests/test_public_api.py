"""The public names of ``bridge`` resolve, lazily, to the objects DESIGN.md names."""

from __future__ import annotations

import subprocess
import sys

import pytest

import bridge


@pytest.mark.parametrize("name", bridge.__all__)
def test_every_public_name_resolves(name):
    assert getattr(bridge, name) is not None


def test_skorch_style_module_paths_exist():
    from bridge.callbacks import Checkpoint, EpochScoring, Freezer, LRScheduler  # noqa: F401
    from bridge.dataset import Dataset, ValidSplit  # noqa: F401
    from bridge.helper import SliceDataset, SliceDict, predefined_split  # noqa: F401
    from bridge.utils import to_numpy, to_tensor  # noqa: F401


def test_unknown_names_list_the_public_ones():
    with pytest.raises(AttributeError, match="public names"):
        bridge.NeuralNetClasifier  # noqa: B018 - the typo is the point


def test_importing_bridge_loads_neither_torch_training_nor_the_importer():
    code = ("import sys, bridge; print('bridge.net' in sys.modules, "
            "'bridge.onnx.importer' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["False", "False"]
