"""Regularisation applied between the backward pass and the optimizer step: gradient clipping."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.nn.utils import clip_grad_norm_

from bridge.callbacks.base import Callback

__all__ = ["GradientNormClipping"]


class GradientNormClipping(Callback):
    """Rescale the gradients so that their joint norm is at most ``gradient_clip_value``.

    The norm is taken over all gradients together, as if they were one vector, and
    the gradients are modified in place (see :func:`torch.nn.utils.clip_grad_norm_`).
    Runs in ``on_grad_computed``, after ``backward`` and before ``optimizer.step``.

    Parameters
    ----------
    gradient_clip_value : float or None, default=None
        The largest allowed norm; ``None`` disables clipping.
    gradient_clip_norm_type : float or str, default=2
        The order of the norm (``2`` for L2, ``'inf'`` for the largest absolute value).
    """

    def __init__(
        self,
        gradient_clip_value: float | None = None,
        gradient_clip_norm_type: float | str = 2,
    ):
        self.gradient_clip_value = gradient_clip_value
        self.gradient_clip_norm_type = gradient_clip_norm_type

    def on_grad_computed(
        self,
        net: Any,
        named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
        **kwargs: Any,
    ) -> None:
        """Clip the gradients of ``named_parameters`` in place."""
        if self.gradient_clip_value is None:
            return
        value = self.gradient_clip_value
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            # torch would scale the gradients by a negative factor: gradient ascent
            raise ValueError(f"gradient_clip_value={value!r} is not valid; expected a number >= 0 "
                             "(0 stops every update), or None for no clipping")
        norm_type = self.gradient_clip_norm_type
        if isinstance(norm_type, str):
            if norm_type != "inf":
                raise ValueError(
                    f"gradient_clip_norm_type={norm_type!r} is not supported; "
                    "pass a number (e.g. 2) or 'inf'"
                )
            norm_type = float("inf")
        params = [param for _, param in named_parameters if getattr(param, "grad", None) is not None]
        if params:
            clip_grad_norm_(params, max_norm=self.gradient_clip_value, norm_type=norm_type)
