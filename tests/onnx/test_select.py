"""bridge/onnx/select.py: TopK's C selection gives what the torch path gives (values,
indices, ONNX's lower-index-first ties, NaN ranked above every number)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bridge.onnx import select
from bridge.onnx.ops.indexing import OnnxTopK

pytestmark = pytest.mark.skipif(select._select is None, reason="the C extension is not built")


def torch_path(module: OnnxTopK, x: torch.Tensor, monkeypatch) -> tuple:
    with monkeypatch.context() as patch:
        patch.setattr(select, "_select", None)
        return module(x)


def data(kind: str, dtype, shape, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    if kind == "ties":  # few distinct values: most entries tie with another
        values = rng.integers(0, 4, size=shape).astype(np.float64)
    elif kind == "special":
        values = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, 1.0], size=shape)
    else:
        values = rng.normal(size=shape)
    return torch.from_numpy(values).to(dtype)


@pytest.mark.parametrize("kind", ["normal", "ties", "special"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("largest", [False, True])
@pytest.mark.parametrize("k", [1, 3, 7])
def test_c_selection_equals_the_torch_path(kind, dtype, largest, k, monkeypatch):
    x = data(kind, dtype, (40, 7), seed=k)
    module = OnnxTopK(k, axis=1, largest=largest)
    assert select.usable(x, k)
    values, indices = module(x)
    expected_values, expected_indices = torch_path(module, x, monkeypatch)
    assert torch.equal(indices, expected_indices)
    torch.testing.assert_close(values, expected_values, equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_any_axis_of_a_3d_tensor(axis, monkeypatch):
    x = data("ties", torch.float32, (5, 6, 7), seed=axis + 5)
    module = OnnxTopK(3, axis=axis, largest=False)
    values, indices = module(x)
    expected_values, expected_indices = torch_path(module, x, monkeypatch)
    assert torch.equal(indices, expected_indices) and torch.equal(values, expected_values)


def test_ties_keep_the_lower_index_first():
    x = torch.tensor([[2.0, 1.0, 1.0, 0.0, 1.0, float("nan"), 0.0]])
    values, indices = select.select(x, 4, largest=False)
    assert indices.tolist() == [[3, 6, 1, 2]] and values.tolist() == [[0.0, 0.0, 1.0, 1.0]]
    values, indices = select.select(x, 3, largest=True)
    assert indices.tolist()[0][:2] == [5, 0] and indices.tolist()[0][2] == 1


def test_autograd_exports_and_other_dtypes_take_the_torch_path():
    x = torch.randn(3, 5, requires_grad=True)
    assert not select.usable(x, 2)
    with torch.no_grad():
        assert select.usable(x, 2)
    assert not select.usable(torch.arange(10).reshape(2, 5), 2)
    assert not select.usable(torch.randn(2, 5), 6) and not select.usable(torch.randn(2, 500), 300)
    values, _ = OnnxTopK(2, axis=1, largest=True)(x)
    values.sum().backward()
    assert x.grad is not None and int((x.grad != 0).sum()) == 6
    with pytest.raises(ValueError, match="no C selection"):
        select.select(torch.arange(10).reshape(2, 5), 2, largest=False)


def test_the_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv(select.SWITCH, "0")
    assert not select.usable(torch.randn(2, 5), 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("root", [True, False])
def test_distances_made_while_selecting_equal_torchs_steps(dtype, root, monkeypatch):
    """select_distances: max(products + norms, 0), rounded, rooted, then the k smallest,
    bit for bit what the separate steps and the TopK module give with a correctly rounded
    square root (numpy's, onnxruntime's; torch's vectorized float32 sqrt is 1 ulp off for
    some values on AVX-512 CPUs); negative parts are clamped, NaN ranks last, ties (equal
    rows) go to the lower index."""
    rng = np.random.default_rng(3)
    products = torch.from_numpy(rng.normal(size=(9, 40)) * 4.0)
    products[:, 5] = products[:, 2]  # ties
    products[1, 7] = -1e3  # negative after the norm: clamped to 0
    products[2, 3] = float("nan")
    norms = torch.from_numpy(np.abs(rng.normal(size=9)) * 10.0)
    distances = (products + norms.unsqueeze(1)).clamp_min(0.0).to(dtype)
    if root:
        distances = torch.from_numpy(np.sqrt(distances.numpy()))
    expected = torch_path(OnnxTopK(6, -1, False), distances, monkeypatch)
    values, indices = select.select_distances(products, norms, 6, root, dtype)
    assert values.dtype == dtype and indices.dtype == torch.int64
    torch.testing.assert_close(values, expected[0], rtol=0, atol=0, equal_nan=True)
    assert torch.equal(indices, expected[1])
    with pytest.raises(ValueError, match="no C selection"):
        select.select_distances(products.float(), norms, 6, root, dtype)
    with pytest.raises(ValueError, match="k=41"):
        select.select_distances(products, norms, 41, root, dtype)
