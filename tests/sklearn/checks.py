"""Parity assertions between a fitted estimator and its converted model, with stated tolerances.

Tolerances (float32 graphs): probabilities ``atol=1e-4``; decision scores, regression
values, transforms and sample scores ``rtol=1e-4`` and ``atol=1e-4 * max(1, max|reference|)``
(float32 keeps ~7 significant digits, and long sums such as kernels lose a few more);
log-probabilities ``atol=1e-3`` where the probability is above 1e-4 (float32 underflows
below). Labels must agree exactly, except on rows whose reference scores are tied within
``1e-4`` (float32 rounding can break such ties the other way).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import is_classifier, is_clusterer
from sklearn.utils import get_tags

from tests.parity import assert_parity, to_numpy

TIE_MARGIN = 1e-4


def _scale(reference: np.ndarray) -> float:
    finite = np.abs(reference[np.isfinite(reference)]) if reference.size else np.zeros(1)
    return max(1.0, float(finite.max()) if finite.size else 1.0)


def _tie_rows(estimator, X, margin: float = TIE_MARGIN) -> np.ndarray:
    """Rows whose reference top-two scores differ by less than TIE_MARGIN (relative)."""
    for method in ("decision_function", "predict_proba"):
        if hasattr(estimator, method):
            scores = np.asarray(getattr(estimator, method)(X), dtype=np.float64)
            if scores.ndim == 1:
                return np.abs(scores) < margin * _scale(scores)
            top = np.sort(scores, axis=1)
            return (top[:, -1] - top[:, -2]) < margin * _scale(scores)
    return np.zeros(len(X), dtype=bool)


def predicts_labels(estimator) -> bool:
    """Whether ``predict`` gives labels (classes, cluster or mixture component ids)."""
    return (is_classifier(estimator) or is_clusterer(estimator)
            or get_tags(estimator).estimator_type == "density_estimator")


def assert_labels_match(estimator, X, actual, expected, loose: float = 1.0) -> None:
    """Exact label agreement except documented float32 ties."""
    actual = to_numpy(actual)
    assert actual.shape == expected.shape, f"labels shape {actual.shape} != {expected.shape}"
    mismatched = actual != expected
    if mismatched.any():
        ties = _tie_rows(estimator, X, TIE_MARGIN * loose)
        unexplained = np.flatnonzero(mismatched & ~ties)
        assert unexplained.size == 0, (
            f"labels differ on rows {unexplained[:10].tolist()} (not ties): "
            f"{actual[unexplained[:5]].tolist()} != {expected[unexplained[:5]].tolist()}"
        )


def assert_method_matches(estimator, model, method: str, X, predicts_labels: bool,
                          loose: float = 1.0) -> None:
    """Compare ``model.method(X)`` with ``estimator.method(X)`` under the module's tolerances
    (``predicts_labels``: classifiers, clusterers, mixtures)."""
    expected = getattr(estimator, method)(X)
    # a sparse result (RandomTreesEmbedding, KBinsDiscretizer(encode="onehot")) converts dense
    expected = np.asarray(expected.toarray() if hasattr(expected, "toarray") else expected)
    actual = getattr(model, method)(X)
    if method == "predict" and predicts_labels:
        assert isinstance(actual, np.ndarray), "numpy in must give numpy out"
        assert actual.dtype == expected.dtype, f"label dtype {actual.dtype} != {expected.dtype}"
        assert_labels_match(estimator, X, actual, expected, loose)
        return
    actual = to_numpy(actual)
    if method == "predict_proba":
        assert_parity(actual, expected, rtol=0, atol=1e-4 * loose, what=method)
    elif method == "predict_log_proba":
        assert actual.shape == expected.shape, f"{method}: {actual.shape} != {expected.shape}"
        keep = expected > np.log(1e-4)
        assert_parity(actual[keep], expected[keep], rtol=0, atol=1e-3, what=method)
        assert np.all(actual[~keep] < np.log(1e-3)), f"{method}: small probabilities"
    else:
        scale = _scale(expected.astype(np.float64))
        assert_parity(actual, expected, rtol=1e-4 * loose, atol=1e-4 * scale * loose, what=method)
