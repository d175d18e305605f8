"""Backends prepared side by side keep their own devices."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

import bridge
from bridge.bench.backends import Target, TorchBackend


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
