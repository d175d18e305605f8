"""bridge's KernelDensity converter: every kernel, sample weights, float64, onnxruntime, and
rows outside every compact kernel's support."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KernelDensity

import bridge
from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters.kernel_density import KERNELS
from tests.parity import assert_parity, run_onnxruntime

# scikit-learn's tree sum bounds whole nodes: a row outside every compact kernel's support
# gets about -37 (a density near 1e-16) there, -inf in bridge (no term is non-zero)
NO_SUPPORT = -30.0


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(150, 3)), rng.normal(size=(400, 3)) * 2.0, rng.random(150)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_every_kernel_matches_scikit_learn_and_onnxruntime(kernel, weighted):
    X, new, weights = _data()
    density = KernelDensity(kernel=kernel, bandwidth=1.2).fit(
        X, sample_weight=weights if weighted else None)
    expected = density.score_samples(new)
    supported = expected > NO_SUPPORT
    for dtype, tolerance in ((np.float64, 1e-9), (np.float32, 1e-4)):
        model = bridge.from_sklearn(density, dtype=dtype)
        graph = model.onnx_model
        in_onnxruntime = run_onnxruntime(graph, {graph.graph.input[0].name: new.astype(dtype)})
        for what, actual in (("bridge", model.score_samples(new)),
                             ("onnxruntime", in_onnxruntime[0].ravel())):
            assert np.isneginf(actual[~supported]).all(), f"{what}: rows without support"
            assert_parity(actual[supported], expected[supported], rtol=tolerance,
                          atol=tolerance, what=f"{kernel} {dtype.__name__} {what}")
    if kernel in ("gaussian", "exponential"):
        assert supported.all()
    else:
        assert (~supported).any()  # the data reaches outside the support


def _exact_gaussian(density, X, rows):
    """The gaussian log-density summed term by term in float64 (scipy's log-sum-exp)."""
    from scipy.special import logsumexp

    h = density.bandwidth_
    squared = ((rows[:, None, :] - X[None]) ** 2).sum(axis=2)
    return (logsumexp(-0.5 * squared / h ** 2, axis=1) - np.log(len(X))
            - 0.5 * X.shape[1] * np.log(2 * np.pi) - X.shape[1] * np.log(h))


@pytest.mark.parametrize("bandwidth", ["scott", "silverman"])
def test_bandwidth_rules_and_far_rows(bandwidth):
    X, new, _ = _data()
    density = KernelDensity(bandwidth=bandwidth).fit(X)
    model = bridge.from_sklearn(density, dtype=np.float64)
    # scikit-learn's tree sum (atol=rtol=0) drifts on low-density rows (1e-7 near -26,
    # 5e-3 near -40): compared where it is tight, the exact sum everywhere
    expected = density.score_samples(new)
    dense = expected > -20.0
    assert_parity(model.score_samples(new)[dense], expected[dense], rtol=1e-9, atol=1e-9,
                  what=bandwidth)
    assert_parity(model.score_samples(new), _exact_gaussian(density, X, new), rtol=1e-12,
                  atol=1e-10, what=f"{bandwidth}: exact sum")
    # far away every gaussian term underflows; the shifted log-sum-exp stays exact, where
    # scikit-learn's node bounds drift (tens of nats at 10x the data's scale)
    far = new * 10.0
    actual = model.score_samples(far)
    assert np.isfinite(actual).all()
    assert_parity(actual, _exact_gaussian(density, X, far), rtol=1e-12, atol=1e-9,
                  what=f"{bandwidth}: far rows")


def test_other_metrics_are_refused_by_name():
    X, _, _ = _data()
    density = KernelDensity(metric="manhattan").fit(X)
    with pytest.raises(UnsupportedEstimatorError, match="metric='manhattan'.*euclidean"):
        bridge.from_sklearn(density)
