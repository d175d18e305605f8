"""The Triton walk (bridge/trees/kernel.py) against the torch walk it replaces on CUDA.

Without a GPU the kernel runs in Triton's interpreter (``TRITON_INTERPRET=1``, in a
subprocess: the variable must be set before the kernel is defined); without Triton those
tests skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bridge
from bridge.trees import TreeEnsembleModule, fused, kernel
from bridge.trees.traversal import filled_rows
from tests.onnx.ops.ml.test_tree import grid_inputs, legacy_model

MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ")
ROOT = Path(__file__).resolve().parents[2]


def forest(mode: str, missing: bool, seed: int = 0):
    """A regressor graph of one branch mode (some trees shallower than others)."""
    rng = np.random.RandomState(seed)
    return legacy_model("regressor", rng, n_trees=7, depth=6, n_features=4, modes=(mode,),
                        missing=missing, n_outputs=2)


def traversal_of(module) -> torch.nn.Module:
    trees = next(m for m in module.modules() if isinstance(m, TreeEnsembleModule))
    return trees.strategies["traversal"]


def kernel_cases():
    """(mode, missing, dtype) of every forest the kernel runs: NaN-tracking tests only where
    the walk replaces NaN by a fill value (ordering modes)."""
    for mode in MODES:
        for missing in (False, True):
            if missing and mode in ("BRANCH_EQ", "BRANCH_NEQ"):
                continue
            for dtype in (np.float32, np.float64):
                yield mode, missing, dtype


def fused_walk_cases():
    """(traversal module, x, terminal slots of the torch walk on CPU, case) for each of
    :func:`kernel_cases`."""
    for mode, missing, dtype in kernel_cases():
        walk = traversal_of(bridge.from_onnx(forest(mode, missing), tree_strategy="traversal"))
        assert walk.tests.simple, (mode, missing)
        x = torch.from_numpy(grid_inputs(np.random.RandomState(1), 257, n_features=4,
                                         nan=True, dtype=dtype))
        with fused.switched_off():
            expected = walk(x)
        yield walk, x, expected, (mode, missing, dtype)


def fused_walk(function, walk, x: torch.Tensor) -> torch.Tensor:
    """``function`` (:func:`kernel.walk` or :func:`native.walk`) on ``walk``'s tables."""
    filled = filled_rows(x, walk.n_features, walk.missing_fill)
    return function(filled, walk.feature, walk.tests.thresholds(filled.dtype), walk.first_child,
                    walk.roots, walk.depths, walk.tests.single_mode)


def check_kernel_matches_torch_walk(device: str) -> int:
    """Terminal slots from :func:`kernel.walk` on ``device`` equal the torch walk's on CPU;
    returns the number of forests checked."""
    checked = 0
    for walk, x, expected, case in fused_walk_cases():
        actual = fused_walk(kernel.walk, walk.to(device), x.to(device))
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        assert torch.equal(actual.cpu(), expected), case
        checked += 1
    return checked


@pytest.mark.skipif(kernel.triton is None, reason="needs Triton (its interpreter runs on CPU)")
def test_kernel_matches_the_torch_walk_in_the_interpreter():
    script = ("from tests.trees.test_kernel import check_kernel_matches_torch_walk as check; "
              "print('checked', check('cpu'))")
    environment = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checked 20" in result.stdout


def test_the_environment_switch_turns_the_kernel_off(monkeypatch):
    monkeypatch.setenv(fused.SWITCH, "1")
    assert kernel.available() == (kernel.triton is not None)
    monkeypatch.setenv(fused.SWITCH, "0")
    assert not kernel.available()


def test_cpu_calls_never_run_the_triton_kernel(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the kernel ran on a CPU call")

    monkeypatch.setattr(kernel, "walk", refuse)
    module = bridge.from_onnx(forest("BRANCH_LEQ", False), tree_strategy="traversal")
    module(torch.from_numpy(grid_inputs(np.random.RandomState(2), 10, n_features=4)))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.skipif(not kernel.available(), reason="needs Triton")
def test_kernel_matches_the_torch_walk_on_cuda():
    assert check_kernel_matches_torch_walk("cuda") == 20


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.skipif(not kernel.available(), reason="needs Triton")
@pytest.mark.parametrize("mode", ["BRANCH_LEQ", "BRANCH_GT", "BRANCH_NEQ"])
def test_cuda_traversal_runs_the_kernel_and_matches_cpu(monkeypatch, mode):
    calls = []
    original = kernel.walk
    monkeypatch.setattr(kernel, "walk", lambda *a, **k: calls.append(1) or original(*a, **k))
    module = bridge.from_onnx(forest(mode, mode != "BRANCH_NEQ"), tree_strategy="traversal")
    x = torch.from_numpy(grid_inputs(np.random.RandomState(3), 1000, n_features=4, nan=True))
    expected = module(x)
    actual = module.to("cuda")(x.to("cuda"))
    assert calls, "the CUDA call did not run the kernel"
    torch.testing.assert_close(actual.cpu(), expected, rtol=1e-6, atol=1e-6)
