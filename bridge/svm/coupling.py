"""libsvm's pairwise coupling (Wu, Lin, Weng 2004) as torch operations, as onnxruntime runs it.

Multi-class probabilities come from the pair probabilities ``r [N, C, C]`` by a fixed-point
iteration in float32: at most 100 sweeps, a sample stopping once its error is below
``0.005 / C``. Sums go through batched matrix products, which torch computes in index order
for matrices this small (up to 20 classes measured), the order of onnxruntime's loops and of
the C version (:mod:`bridge.svm.native`), which agrees with this one bit for bit.
"""

from __future__ import annotations

import warnings

import torch

COUPLING_SWEEPS = 100  # libsvm's (and onnxruntime's) cap on coupling sweeps


def coupling_matrix(pairwise: torch.Tensor) -> torch.Tensor:
    """libsvm's ``Q [N, C, C]`` for pairwise probabilities ``r [N, C, C]``."""
    count = pairwise.shape[-1]
    squared = pairwise.square()
    ones = squared.new_ones((squared.shape[0], 1, count))
    diagonal = (ones @ squared).squeeze(1) - torch.diagonal(squared, dim1=1, dim2=2)
    q = -(pairwise.transpose(1, 2) * pairwise)
    eye = torch.eye(count, dtype=torch.bool, device=pairwise.device)
    return torch.where(eye, torch.diag_embed(diagonal), q)


def _products(q: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``Q p [N, C]`` and ``p' Q p [N]``."""
    qp = q @ p.unsqueeze(-1)
    pqp = (p.unsqueeze(1) @ qp).reshape(-1)
    return qp.squeeze(-1), pqp


def coupling_unconverged(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Per sample, whether ``p [N, C]`` still misses libsvm's stopping rule (``0.005 / C``)."""
    qp, pqp = _products(q, p)
    return (qp - pqp.unsqueeze(1)).abs().max(dim=1).values >= 0.005 / p.shape[1]


def coupling_sweep(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """One sweep of libsvm's fixed-point update over every class, for every sample."""
    count = p.shape[1]
    qp, pqp = _products(q, p)
    eye = torch.eye(count, dtype=torch.bool, device=p.device)
    for i in range(count):
        q_ii = q[:, i, i]
        diff = (pqp - qp[:, i]) / q_ii
        p = torch.where(eye[i], p + diff.unsqueeze(1), p)
        scale = 1.0 + diff
        pqp = (pqp + diff * (diff * q_ii + 2.0 * qp[:, i])) / scale / scale
        qp = (qp + diff.unsqueeze(1) * q[:, i, :]) / scale.unsqueeze(1)
        p = p / scale.unsqueeze(1)
    return p


def couple_pairwise_probabilities(pairwise: torch.Tensor,
                                  max_sweeps: int = COUPLING_SWEEPS) -> torch.Tensor:
    """libsvm's multi-class probabilities from pairwise ones ``r [N, C, C]`` (Wu, Lin, Weng 2004).

    Runs onnxruntime's float32 fixed-point iteration (at most 100 sweeps, stopping a sample
    once its error is below ``0.005 / C``); converged samples are frozen, not recomputed.
    """
    q = coupling_matrix(pairwise)
    p = torch.full(pairwise.shape[:2], 1.0 / pairwise.shape[-1], dtype=pairwise.dtype,
                   device=pairwise.device)
    for _ in range(max_sweeps):
        active = coupling_unconverged(q, p)
        if not bool(active.any()):
            break
        p = torch.where(active.unsqueeze(1), coupling_sweep(q, p), p)
    return p


def couple_while_exporting(pairwise: torch.Tensor) -> torch.Tensor:
    """The same iteration as a ``while_loop`` (an ONNX ``Loop``): torch.export cannot stop a
    Python loop on a tensor value, but records this loop with its data-dependent stop."""
    from torch._higher_order_ops import while_loop

    q = coupling_matrix(pairwise)
    p = torch.full(pairwise.shape[:2], 1.0 / pairwise.shape[-1], dtype=pairwise.dtype,
                   device=pairwise.device)
    sweeps = torch.zeros((), dtype=torch.int64, device=pairwise.device)

    def keep_going(sweeps, p):
        return (sweeps < COUPLING_SWEEPS) & coupling_unconverged(q, p).any()

    def sweep(sweeps, p):
        active = coupling_unconverged(q, p)
        return sweeps + 1, torch.where(active.unsqueeze(1), coupling_sweep(q, p), p)

    return while_loop(keep_going, sweep, (sweeps, p))[1]


_SCRIPTED_COUPLING: list = []


@torch.jit.unused
def couple_while_tracing(pairwise):  # unannotated: TorchScript reads it as Tensor -> Tensor
    """A trace cannot record the coupling's data-dependent stop; a scripted copy of it can."""
    if not _SCRIPTED_COUPLING:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            _SCRIPTED_COUPLING.append(torch.jit.script(couple_pairwise_probabilities))
    return _SCRIPTED_COUPLING[0](pairwise)
