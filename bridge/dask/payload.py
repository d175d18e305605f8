"""A model as compact bytes that a Dask graph carries under one key, rebuilt at most once per
worker process (on that worker's GPU when it has one) and kept for the tasks that follow."""

from __future__ import annotations

import hashlib
import pickle
import threading
from collections import Counter, OrderedDict
from typing import Any

import torch

from bridge.utils import check_device

#: How many rebuilt models a worker process keeps (least recently used dropped first).
CACHE_SIZE = 8

_cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
_cache_lock = threading.Lock()
_loads: Counter = Counter()


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when this process sees a GPU, else the CPU; otherwise ``device``.

    Raises
    ------
    DeviceError
        For a device this process cannot use.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device)
    return torch.device(device)


def _net_for_prediction(net: Any) -> Any:
    """A shallow stand-in for a fitted net without what only training needs (optimizer state,
    callbacks, history), so its bytes hold little more than the module's parameters."""
    from bridge.history import History

    trimmed = object.__new__(type(net))
    state = {key: value for key, value in net.__dict__.items()
             if not (key.startswith("optimizer") and key.endswith("_"))}
    state.update(callbacks_=[], history_=History(), _trimmed=True)
    trimmed.__dict__.update(state)
    return trimmed


def _cpu_converted_model(model: torch.nn.Module) -> torch.nn.Module:
    """The converted model itself when it lives on the CPU, else a CPU copy of it (bytes
    holding CUDA tensors would not load on a worker without a GPU)."""
    import copy

    if model._device().type == "cpu":
        return model
    return copy.deepcopy(model).cpu()


class ModelPayload:
    """A converted model or a fitted net, pickled once on the client.

    Parameters
    ----------
    model : ConvertedModel or NeuralNet
        The model to ship. A net goes without its optimizer, callbacks and history; a
        converted model on a GPU goes as a CPU copy.

    Attributes
    ----------
    token : str
        A digest of the bytes: the cache key on workers and part of the graph key.
    data : bytes
        The pickled model.
    """

    __slots__ = ("token", "data")

    def __init__(self, model: Any):
        from bridge.net.net import NeuralNet

        shipped = _net_for_prediction(model) if isinstance(model, NeuralNet) else (
            _cpu_converted_model(model))
        self.data = pickle.dumps(shipped, protocol=pickle.HIGHEST_PROTOCOL)
        self.token = hashlib.sha1(self.data).hexdigest()

    def __reduce__(self) -> tuple:
        return (_payload_from_bytes, (self.token, self.data))

    def __len__(self) -> int:
        return len(self.data)

    def model(self, device: str | torch.device = "auto") -> Any:
        """The model, unpickled in this process at most once per device and kept.

        Parameters
        ----------
        device : str or torch.device, default "auto"
            Where it runs: ``"auto"`` is CUDA when this process sees a GPU, else the CPU.

        Returns
        -------
        ConvertedModel or NeuralNet
        """
        target = resolve_device(device)
        key = (self.token, str(target))
        with _cache_lock:  # tasks in several threads of one worker wait for one load
            model = _cache.get(key)
            if model is None:
                model = _place(pickle.loads(self.data), target)
                _loads[self.token] += 1
                _cache[key] = model
                while len(_cache) > CACHE_SIZE:
                    _cache.popitem(last=False)
            else:
                _cache.move_to_end(key)
        return model


def _payload_from_bytes(token: str, data: bytes) -> ModelPayload:
    payload = object.__new__(ModelPayload)
    payload.token, payload.data = token, data
    return payload


def _place(model: Any, device: torch.device) -> Any:
    """Move a freshly unpickled model (or net) to ``device``."""
    from bridge.net.net import NeuralNet

    if isinstance(model, NeuralNet):
        if model.device is None or torch.device(model.device) != device:
            model.module_.to(device)
            if isinstance(model.criterion_, torch.nn.Module):
                model.criterion_.to(device)
            model.device = str(device)
        return model
    return model.to(device)


def load_counts() -> dict[str, int]:
    """How many times this process has unpickled each payload (by token); for tests and
    checks such as ``client.run(load_counts)``."""
    return dict(_loads)
