"""``held(module, name)``: an operator's buffer or parameter, read without ``nn.Module.__getattr__``.

Attribute reads of a module's tensors go through ``nn.Module.__getattr__`` (about 0.4 µs
each: buffers and parameters live in tables, not in the instance dictionary). The
operators a one-row serving call runs read their tensors with this instead. A tensor may
sit in either table: fine-tuning (:mod:`bridge.sklearn.finetune`) turns buffers into
parameters.
"""

from __future__ import annotations

import torch
from torch import nn


def held(module: nn.Module, name: str) -> torch.Tensor:
    """``module.<name>`` for a registered buffer or parameter, read from its table."""
    tensor = module._buffers.get(name)
    return tensor if tensor is not None else module._parameters[name]
