"""Scoring a net by its own loss: :func:`loss_scoring`, usable as ``score`` or as a sklearn scorer.

The loss is the net's ``get_loss`` on each batch, combined as the criterion's ``reduction``
asks: the mean over all rows, their sum, or one value per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bridge.dataset import get_len, unpack_data

__all__ = ["loss_scoring"]


def loss_scoring(net: Any, X: Any, y: Any = None, sample_weight: Any = None) -> float | np.ndarray:
    """The net's loss on ``(X, y)``, reduced as its criterion's ``reduction`` says.

    Parameters
    ----------
    net : NeuralNet
        A fitted net.
    X : array-like, tensor, dict or torch Dataset
        The inputs.
    y : array-like or None
        The targets (labels for classifiers).
    sample_weight : None
        Not supported (weights would have to reach the criterion).

    Returns
    -------
    float or ndarray
        A float for ``reduction`` 'mean' or 'sum'; one value per row for 'none'.

    Raises
    ------
    NotFittedError
        Before the net is fitted.
    NotImplementedError
        When ``sample_weight`` is given.
    ValueError
        For a reduction other than 'mean', 'sum' or 'none'.
    """
    net.check_is_fitted()
    if sample_weight is not None:
        raise NotImplementedError("loss_scoring does not support sample_weight; pass sample_weight=None")
    reduction = getattr(net.criterion_, "reduction", "mean")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"loss_scoring expects 'mean', 'sum' or 'none' for reduction but got {reduction!r}")
    X, y = net._prepare_fit_data(X, y, reset=False)
    dataset = net.get_dataset(X, y)
    losses: list[torch.Tensor] = []
    sizes: list[int] = []
    for batch in net.get_iterator(dataset, training=False):
        Xi, yi = unpack_data(batch)
        y_pred = net.evaluation_step(batch, training=False)
        with torch.inference_mode():
            loss = net.get_loss(y_pred, yi, X=Xi, training=False)
        losses.append(loss.detach().float().reshape(-1) if reduction == "none" else loss.detach().float())
        sizes.append(get_len(Xi))
    if reduction == "none":
        return torch.cat(losses).cpu().numpy()
    values = torch.stack(losses).cpu().numpy()
    if reduction == "sum":
        return float(values.sum())
    return float(np.average(values, weights=sizes))
