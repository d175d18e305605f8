"""Backends prepared side by side keep their own devices."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

import bridge
from bridge.bench.backends import Target, TorchBackend, TorchServingBackend


def logreg_target(seed: int):
    """Test rows, the fitted estimator and its bench Target (predict_proba)."""
    X = np.random.RandomState(seed).randn(60, 4).astype(np.float32)
    estimator = LogisticRegression().fit(X, X[:, 0] > 0)
    converted = bridge.from_sklearn(estimator)
    return X, estimator, Target("logreg", "predict_proba", converted.onnx_model, 1, estimator,
                                converted)


def test_a_second_device_does_not_move_the_first_runners_module():
    X, estimator, target = logreg_target(0)
    on_cpu = TorchBackend("cpu").prepare(target)
    TorchBackend("meta").prepare(target)  # stands in for CUDA: another device, any machine
    output, _ = on_cpu(X)
    np.testing.assert_allclose(output, estimator.predict_proba(X), rtol=1e-4, atol=1e-5)


def test_a_device_copy_of_a_converted_model_runs():
    X, estimator, target = logreg_target(1)
    copied = TorchBackend("cpu:0").prepare(target)  # not "cpu": a deep copy, as for CUDA
    output, _ = copied(X)
    np.testing.assert_allclose(output, estimator.predict_proba(X), rtol=1e-4, atol=1e-5)


def test_aot_backend_serves_the_compiled_method():
    X, estimator, target = logreg_target(2)
    backend = TorchServingBackend("aot")
    assert backend.unavailable_reason(target) is None
    output, timing = backend.prepare(target)(X)
    np.testing.assert_allclose(output, estimator.predict_proba(X), rtol=1e-4, atol=1e-5)
    assert timing.compute > 0


def test_serving_backends_say_why_they_cannot_run():
    _, _, target = logreg_target(3)
    bare_file = Target("file", "predict_proba", target.onnx_model, 1)
    assert "converted scikit-learn" in TorchServingBackend("aot").unavailable_reason(bare_file)
    if not torch.cuda.is_available():
        assert "no CUDA device" in TorchServingBackend("cuda-graphs").unavailable_reason(target)
