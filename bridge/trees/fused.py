"""The switch the fused walks share: the C loop on CPU (:mod:`bridge.trees.native`) and the
Triton kernel on CUDA (:mod:`bridge.trees.kernel`). ``BRIDGE_TREE_KERNEL=0`` in the
environment turns both off, and the level walk runs as torch operations; it is read on every
call, so it can change while a program runs (:func:`switched_off`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

SWITCH = "BRIDGE_TREE_KERNEL"


def enabled() -> bool:
    """Whether the fused walks may run (``BRIDGE_TREE_KERNEL`` is not ``0``)."""
    return os.environ.get(SWITCH, "1") != "0"


@contextlib.contextmanager
def switched_off() -> Iterator[None]:
    """Run the block with the fused walks off (the torch walk), then restore the setting."""
    before = os.environ.get(SWITCH)
    os.environ[SWITCH] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ[SWITCH]
        else:
            os.environ[SWITCH] = before
