"""How many CPU threads a converted model's call uses: one for small inputs.

torch's CPU operators (and MKL's matrix products) use a team of OpenMP threads. For small
inputs the team costs more than it saves, and on a busy machine it costs far more: on a
2-core VM with other work running, a 100-row LogisticRegression call took 44 ms on two
threads and 0.03 ms on one (``python benchmarks/latency.py --threads-check`` shows it),
because each parallel region waits for a thread the OS has given to someone else.

So a call whose inputs hold at most :data:`SINGLE_THREAD_ELEMENTS` values (rows × features;
default 2**18, e.g. 13,000 rows of 20 features) runs on one thread, and larger calls use
torch's setting (``torch.set_num_threads``). The environment variable
``BRIDGE_SINGLE_THREAD_ELEMENTS`` changes the limit (0: never switch). torch keeps the
OpenMP thread count per calling thread, so concurrent calls from other threads are not
affected (MKL's count is process-wide: at worst another thread's product runs on one
thread for the duration of a small call).
"""

from __future__ import annotations

import os

import torch

SINGLE_THREAD_ELEMENTS = int(os.environ.get("BRIDGE_SINGLE_THREAD_ELEMENTS", 1 << 18))


def enter_single_thread(inputs: list[torch.Tensor]) -> int:
    """Switch this thread to one CPU thread when ``inputs`` are small CPU tensors.

    Returns the thread count to restore with :func:`leave_single_thread`, or 0 when
    nothing was changed.
    """
    threads = torch.get_num_threads()
    if threads == 1 or not inputs or inputs[0].device.type != "cpu":
        return 0
    if sum(t.numel() for t in inputs) > SINGLE_THREAD_ELEMENTS:
        return 0
    torch.set_num_threads(1)
    return threads


def leave_single_thread(previous: int) -> None:
    """Undo :func:`enter_single_thread` (``previous`` is what it returned)."""
    if previous:
        torch.set_num_threads(previous)
