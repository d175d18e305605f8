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


# os.environ's own mapping, where it keeps encoded keys and values (CPython on POSIX): one
# dict lookup (~0.03 us) where os.environ.get encodes the key and decodes the value (~0.5
# us, a tenth of a one-row tree call in C); it is the mapping os.environ writes through
_RAW = getattr(os.environ, "_data", None)
_RAW_KEY = os.environ.encodekey(SWITCH) if hasattr(os.environ, "encodekey") else None
_RAW_OFF = os.environ.encodevalue("0") if hasattr(os.environ, "encodevalue") else None


def enabled() -> bool:
    """Whether the fused walks may run (``BRIDGE_TREE_KERNEL`` is not ``0``)."""
    if _RAW_KEY is not None and isinstance(_RAW, dict):
        return _RAW.get(_RAW_KEY) != _RAW_OFF
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
