"""How many CPU threads a converted model's call uses: one for small calls.

torch's CPU operators (and MKL's matrix products) use a team of OpenMP threads. For small
inputs the team costs more than it saves, and on a busy machine it costs far more: on a
2-core VM with other work running, a 100-row LogisticRegression call took 44 ms on two
threads and 0.03 ms on one (``python benchmarks/latency.py --threads-check`` shows it),
because each parallel region waits for a thread the OS has given to someone else.

So a call whose inputs hold at most :data:`SINGLE_THREAD_ELEMENTS` values (rows ×
features; default 2**18, e.g. 13,000 rows of 20 features) runs on one thread, and larger
calls use torch's setting (``torch.set_num_threads``).

A second limit, :data:`SINGLE_THREAD_WORK` (off by default), also counts the model's
constant values (weights, support vectors, training rows, tree tables: a proxy for the
arithmetic per row): a call whose rows times those values exceed it keeps torch's threads.
On a quiet machine that helps kNN (10,000 query rows against 5,000 training rows: 88 ms on
two threads, 171 ms on one); on a busy one it hurts far more (the same call took 430 to
1,940 ms on two threads and 149 ms on one, with another job on the second core), so the
busy machine's answer is the default: one thread for every small input.

The environment variables ``BRIDGE_SINGLE_THREAD_ELEMENTS`` and ``BRIDGE_SINGLE_THREAD_WORK``
change the limits (0: never switch; for the work limit, 0 leaves it out). torch keeps the
OpenMP thread count per calling thread, so concurrent calls from other threads are not
affected (MKL's count is process-wide: at worst another thread's product runs on one
thread for the duration of a small call).
"""

from __future__ import annotations

import os
import weakref

import torch
from torch import nn

SINGLE_THREAD_ELEMENTS = int(os.environ.get("BRIDGE_SINGLE_THREAD_ELEMENTS", 1 << 18))
SINGLE_THREAD_WORK = int(os.environ.get("BRIDGE_SINGLE_THREAD_WORK", 0))  # 0: off

_CONSTANTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def constant_values(module: nn.Module) -> int:
    """How many values ``module``'s buffers and parameters hold (counted once per module:
    a heuristic's input, so later edits of their sizes need not be followed)."""
    count = _CONSTANTS.get(module)
    if count is None:
        tensors = {id(t): t for t in (*module.buffers(), *module.parameters())}
        count = _CONSTANTS[module] = sum(t.numel() for t in tensors.values())
    return count


def enter_single_thread(inputs: list[torch.Tensor], module: nn.Module | None = None) -> int:
    """Switch this thread to one CPU thread when the call on ``inputs`` (by ``module``,
    when given: its constants count towards the work) is small, see the module docstring.

    Returns the thread count to restore with :func:`leave_single_thread`, or 0 when
    nothing was changed.
    """
    threads = torch.get_num_threads()
    if threads == 1 or not inputs or not inputs[0].is_cpu:
        return 0
    if sum(t.numel() for t in inputs) > SINGLE_THREAD_ELEMENTS:
        return 0
    if module is not None and SINGLE_THREAD_WORK:
        rows = inputs[0].shape[0] if inputs[0].dim() else 1
        if rows * constant_values(module) > SINGLE_THREAD_WORK:
            return 0
    torch.set_num_threads(1)
    return threads


def leave_single_thread(previous: int) -> None:
    """Undo :func:`enter_single_thread` (``previous`` is what it returned)."""
    if previous:
        torch.set_num_threads(previous)
