"""Tensors derived from a module's buffers and kept between eager calls while the buffers
stay unchanged (a transposed table, a dtype copy, a per-row norm): each costs a torch
operation, ~1.5 us, on every call that recomputes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")  # what a Derived keeps: a tensor, or a tuple of them


def eager_call() -> bool:
    """Whether this call runs eagerly (not traced, exported or compiled; Python code run
    at all is not being scripted): what is kept between eager calls, and the eager-only
    paths (C loops, remembered picks), must not end up in a trace or a compiled graph.
    Asked on every converted-model call, so it reads torch's C flags directly where
    ``torch.jit.is_tracing`` would wrap them."""
    return not (torch.compiler.is_compiling() or torch.compiler.is_exporting()
                or torch._C._is_tracing())  # (dynamo cannot trace this one: asked last)


class EagerMemo:
    """State kept between eager calls that copies and pickles never carry: they start
    empty (a copy's tensors are other tensors, so what was remembered would not apply)."""

    def __init__(self) -> None:
        self._state: tuple | None = None

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self._state = None


class Derived(EagerMemo):
    """A tensor computed from a buffer, kept while the buffer is the same tensor, unmodified.

    In-place edits and ``load_state_dict`` bump the buffer's version counter, ``.to()`` and
    ``_apply`` replace it; either way the value is computed again. Copies and pickles start
    empty. For eager calls only: a trace would record the kept tensor as a constant. Writes
    that bypass the version counter (``.data``, a numpy view) are not seen.
    """

    def get(self, source: torch.Tensor, compute: Callable[[torch.Tensor], T],
            key: object = None) -> T:
        """``compute(source)``, from the last call when ``source`` has not changed since and
        ``key`` (anything else ``compute`` depends on, e.g. a batch size) is the same."""
        if source.requires_grad and torch.is_grad_enabled():  # a kept graph would go stale
            return compute(source)
        if torch.is_inference_mode_enabled() or source.is_inference():
            # an inference tensor has no version counter, and one kept from an
            # inference_mode call could not take part in a later call's autograd
            return compute(source)
        state = self._state
        if (state is None or state[0] is not source or state[1] != source._version
                or state[2] != key):
            state = self._state = (source, source._version, key, compute(source))
        return state[3]
