"""The torch coupling (bridge/svm/coupling.py) against onnxruntime's iteration written out.

The reference below runs libsvm's fixed-point loop as onnxruntime's C++ does, one float32
operation at a time (numpy float32 scalars round every product and sum), summing in index
order. The torch version sums through batched matrix products, which torch computes in
index order for matrices this small: the two must agree bit for bit up to 20 classes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bridge.svm.coupling import COUPLING_SWEEPS, couple_pairwise_probabilities

f32 = np.float32


def reference_coupling(r: np.ndarray, max_sweeps: int = COUPLING_SWEEPS) -> np.ndarray:
    """onnxruntime's coupling of one pairwise matrix ``r [C, C]``, operation by operation."""
    count = r.shape[0]
    q = np.zeros((count, count), np.float32)
    for t in range(count):
        total = f32(0)
        for j in range(count):
            total = f32(total + f32(r[j, t] * r[j, t]))
        for j in range(count):
            q[t, j] = -f32(r[j, t] * r[t, j])
        q[t, t] = f32(total - f32(r[t, t] * r[t, t]))
    p = np.full(count, f32(1.0 / count), np.float32)
    eps = f32(0.005 / count)
    for _ in range(max_sweeps):
        qp = np.zeros(count, np.float32)
        for t in range(count):
            total = f32(0)
            for j in range(count):
                total = f32(total + f32(q[t, j] * p[j]))
            qp[t] = total
        pqp = f32(0)
        for t in range(count):
            pqp = f32(pqp + f32(p[t] * qp[t]))
        errors = [abs(f32(qp[t] - pqp)) for t in range(count)]
        if any(np.isnan(errors)) or not max(errors) >= eps:
            break
        for i in range(count):
            diff = f32(f32(pqp - qp[i]) / q[i, i])
            scale = f32(f32(1) + diff)
            inner = f32(f32(diff * q[i, i]) + f32(f32(2) * qp[i]))
            p[i] = f32(p[i] + diff)
            pqp = f32(f32(f32(pqp + f32(diff * inner)) / scale) / scale)
            for j in range(count):
                qp[j] = f32(f32(qp[j] + f32(diff * q[i, j])) / scale)
            for j in range(count):
                p[j] = f32(p[j] / scale)
    return p


def pairwise_matrices(rng: np.random.Generator, n: int, count: int,
                      low: float = 1e-7, high: float = 1 - 1e-7) -> np.ndarray:
    """``n`` pairwise matrices [n, C, C]: r[i, j] = 1 - r[j, i] in [low, high], zero diagonal."""
    upper = rng.uniform(0, 1, size=(n, count, count)).astype(np.float32).clip(low, high)
    r = np.triu(upper, 1)
    return (r + np.tril(f32(1) - upper.transpose(0, 2, 1), -1)).astype(np.float32)


@pytest.mark.parametrize("count", [2, 3, 4, 5, 7, 10, 13, 20])
def test_torch_coupling_follows_onnxruntimes_order_bit_for_bit(count):
    rng = np.random.default_rng(count)
    r = pairwise_matrices(rng, 6 if count > 10 else 12, count)
    coupled = couple_pairwise_probabilities(torch.from_numpy(r)).numpy()
    for row, matrix in zip(coupled, r):
        np.testing.assert_array_equal(row, reference_coupling(matrix))


def test_sweep_cap_and_frozen_rows():
    # inconsistent pair probabilities need many sweeps: with a cap of 2 the rows stop early,
    # and a row that converged first must not move while the others go on
    rng = np.random.default_rng(1)
    r = pairwise_matrices(rng, 8, 6, low=0.001, high=0.999)
    for sweeps in (0, 1, 2, 5):
        coupled = couple_pairwise_probabilities(torch.from_numpy(r), max_sweeps=sweeps).numpy()
        for row, matrix in zip(coupled, r):
            np.testing.assert_array_equal(row, reference_coupling(matrix, sweeps))
