"""Random generators: distributions, shapes, dtypes, seeds, and that they are never folded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bridge
from tests.parity import single_node_model


def test_random_uniform_is_not_folded_and_respects_range_and_dtype():
    model = single_node_model("RandomUniform", {}, opset=22, output_types={"y": 11},
                              attributes={"shape": [2000], "low": -2.0, "high": 3.0,
                                          "dtype": 11})
    module = bridge.from_onnx(model)
    first, second = module(), module()
    assert first.dtype == torch.float64 and first.shape == (2000,)
    assert not torch.equal(first, second)  # drawn at each call, not a folded constant
    assert first.min() >= -2.0 and first.max() < 3.0
    assert abs(first.mean().item() - 0.5) < 0.15


def test_random_normal_with_seed_repeats():
    model = single_node_model("RandomNormal", {}, opset=22, output_types={"y": 1},
                              attributes={"shape": [4000], "mean": 1.0, "scale": 2.0,
                                          "seed": 3.0})
    module = bridge.from_onnx(model)
    first = module()
    torch.testing.assert_close(first, module())
    assert abs(first.mean().item() - 1.0) < 0.15
    assert abs(first.std().item() - 2.0) < 0.15


@pytest.mark.parametrize("op", ["RandomUniformLike", "RandomNormalLike"])
def test_like_ops_take_shape_and_dtype_from_input(op):
    x = np.zeros((3, 5), np.float64)
    model = single_node_model(op, {"x": x}, opset=22)
    y = bridge.from_onnx(model)(torch.from_numpy(x))
    assert y.shape == (3, 5) and y.dtype == torch.float64


def test_bernoulli_frequencies_and_dtype():
    probabilities = np.tile(np.array([0.0, 0.25, 1.0], np.float32), (4000, 1))
    model = single_node_model("Bernoulli", {"p": probabilities}, opset=22,
                              attributes={"dtype": 7})
    y = bridge.from_onnx(model)(torch.from_numpy(probabilities))
    assert y.dtype == torch.int64
    assert y[:, 0].sum() == 0 and y[:, 2].sum() == 4000
    assert abs(y[:, 1].float().mean().item() - 0.25) < 0.05


def test_multinomial_samples_follow_the_softmax():
    logits = np.log(np.array([[0.1, 0.0, 0.9], [1.0, 0.0, 0.0]], np.float32) + 1e-30)
    model = single_node_model("Multinomial", {"logits": logits}, opset=22,
                              attributes={"sample_size": 3000, "seed": 1.0})
    y = bridge.from_onnx(model)(torch.from_numpy(logits))
    assert y.shape == (2, 3000) and y.dtype == torch.int32
    assert set(y[1].tolist()) == {0}
    assert abs((y[0] == 2).float().mean().item() - 0.9) < 0.05
    assert not (y[0] == 1).any()
