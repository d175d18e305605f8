"""DFT, STFT, windows and MelWeightMatrix against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import numpy_helper

from bridge.onnx.ops.signal import OnnxDFT
from tests.parity import assert_matches_onnxruntime, single_node_model


def _random(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize(("inverse", "onesided", "complex_input"), [
    (0, 0, False), (0, 0, True), (0, 1, False), (1, 0, True), (1, 1, True),
])
@pytest.mark.parametrize("axis", [1, 2, -2])
def test_dft_opset20(inverse, onesided, complex_input, axis):
    x = _random(2, 8, 6, 2 if complex_input else 1)
    model = single_node_model("DFT", {"x": x}, opset=20,
                              attributes={"inverse": inverse, "onesided": onesided})
    model.graph.node[0].input.extend(["", "axis"])
    model.graph.initializer.append(numpy_helper.from_array(np.array(axis, np.int64), "axis"))
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("length", [5, 12])
def test_dft_opset17_with_dft_length(length):
    x = _random(3, 8, 2)
    model = single_node_model("DFT", {"x": x}, opset=17, attributes={"axis": 1},
                              initializers={"length": np.array(length, np.int64)})
    assert_matches_onnxruntime(model, {"x": x}, rtol=1e-4, atol=1e-4)


def test_dft_has_gradients():
    x = torch.randn(1, 8, 1, requires_grad=True)
    OnnxDFT(1, False, True)(x).pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("onesided", [0, 1])
@pytest.mark.parametrize("with_window", [False, True])
def test_stft(onesided, with_window):
    signal = _random(2, 64, 1)
    initializers = {"step": np.array(6, np.int64)}
    if with_window:
        initializers["window"] = np.hanning(16).astype(np.float32)
    else:
        initializers["window"] = np.ones(16, np.float32)
    initializers["length"] = np.array(16, np.int64)
    model = single_node_model("STFT", {"signal": signal}, opset=17, initializers=initializers,
                              attributes={"onesided": onesided})
    assert_matches_onnxruntime(model, {"signal": signal}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op", ["HannWindow", "HammingWindow", "BlackmanWindow"])
@pytest.mark.parametrize("periodic", [0, 1])
@pytest.mark.parametrize("output_datatype", [1, 11])
def test_windows(op, periodic, output_datatype):
    model = single_node_model(op, {}, opset=17, initializers={"size": np.array(10, np.int64)},
                              attributes={"periodic": periodic,
                                          "output_datatype": output_datatype})
    assert_matches_onnxruntime(model, {}, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("bins", "length", "rate", "low", "high"), [
    (8, 16, 8192, 0.0, 4096.0), (10, 64, 16000, 100.0, 7000.0)])
def test_mel_weight_matrix(bins, length, rate, low, high):
    model = single_node_model("MelWeightMatrix", {}, opset=17, initializers={
        "bins": np.array(bins, np.int32), "length": np.array(length, np.int32),
        "rate": np.array(rate, np.int32), "low": np.array(low, np.float32),
        "high": np.array(high, np.float32)})
    assert_matches_onnxruntime(model, {}, rtol=1e-6, atol=1e-6)
