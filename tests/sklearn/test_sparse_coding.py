"""Sparse coding (DictionaryLearning, MiniBatchDictionaryLearning, SparseCoder transform):
orthogonal matching pursuit unrolled and thresholding, against scikit-learn and onnxruntime,
including rows where scikit-learn's pursuit stops early."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.decomposition import DictionaryLearning, SparseCoder

import bridge
from bridge.errors import UnsupportedEstimatorError
from tests.parity import assert_parity, run_onnxruntime


@pytest.fixture(scope="module")
def atoms_and_rows():
    rng = np.random.default_rng(1)
    atoms = rng.normal(size=(10, 6))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    rows = rng.normal(size=(40, 6))
    rows[:5] = 2.0 * atoms[:5]  # one atom explains the row: the pursuit stops after it
    rows[5] = 0.0  # nothing to explain: an all-zero code
    return atoms, rows


def _both(estimator, rows, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scikit-learn's early-stop warning
        expected = estimator.transform(rows)
    model = bridge.from_sklearn(estimator, X_sample=rows[:2], dtype=dtype)
    graph = model.onnx_model
    (reference,) = run_onnxruntime(graph, {graph.graph.input[0].name: rows.astype(dtype)})
    return model.transform(rows), reference, expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("steps", [1, 3, 6, 10])
def test_orthogonal_matching_pursuit(atoms_and_rows, steps, dtype):
    atoms, rows = atoms_and_rows
    coder = SparseCoder(atoms, transform_n_nonzero_coefs=steps).fit(rows)
    actual, reference, expected = _both(coder, rows, dtype)
    tolerance = 1e-5 if dtype == np.float32 else 1e-10
    assert_parity(actual, expected, rtol=tolerance, atol=tolerance, what="bridge")
    assert_parity(reference, expected, rtol=tolerance, atol=tolerance, what="onnxruntime")
    assert np.count_nonzero(expected[:5], axis=1).max() == 1  # stopped after one atom


@pytest.mark.parametrize(("positive", "split_sign"), [(False, False), (True, False),
                                                      (False, True)])
def test_threshold(atoms_and_rows, positive, split_sign):
    atoms, rows = atoms_and_rows
    coder = SparseCoder(atoms, transform_algorithm="threshold", transform_alpha=0.4,
                        positive_code=positive, split_sign=split_sign).fit(rows)
    actual, reference, expected = _both(coder, rows, np.float32)
    assert_parity(actual, expected, rtol=1e-5, atol=1e-5, what="bridge")
    assert_parity(reference, expected, rtol=1e-5, atol=1e-5, what="onnxruntime")


def test_dictionary_learning_default_steps():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 30))
    estimator = DictionaryLearning(8, max_iter=10, random_state=0).fit(X)  # 3 steps
    actual, reference, expected = _both(estimator, rng.normal(size=(30, 30)), np.float32)
    assert np.count_nonzero(expected, axis=1).max() == 3
    assert_parity(actual, expected, rtol=1e-4, atol=1e-4, what="bridge")
    assert_parity(reference, expected, rtol=1e-4, atol=1e-4, what="onnxruntime")


def test_iterative_algorithms_are_refused(atoms_and_rows):
    atoms, rows = atoms_and_rows
    coder = SparseCoder(atoms, transform_algorithm="lasso_lars").fit(rows)
    with pytest.raises(UnsupportedEstimatorError, match="transform_algorithm='lasso_lars'"):
        bridge.from_sklearn(coder, X_sample=rows[:2])
