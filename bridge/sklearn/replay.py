"""CUDA-graph replay for a converted model's methods: capture once per input shape, replay.

On a GPU a small model's call is its kernel launches: tens of launches at ~5 us each,
whatever the batch. A captured CUDA graph replays all of them as one launch. Each
(method, input shapes and dtypes) gets its own graph, captured on its first call, with
static input buffers the next calls copy into and static outputs the replay refreshes.

Captured graphs are dropped when the model's tensors change: a tensor replaced (``.to()``,
assignment, ``load_state_dict`` with ``assign=True``) or edited in place (its version
counter moved) re-captures on the next call, so a replay never answers from stale
parameters. Only calls without autograd replay (numpy in, or tensors under
``torch.no_grad()``); a method whose graph cannot be captured (it synchronises with the
host, e.g. the SVC probability coupling's convergence test) runs eagerly, and the reason
is kept in ``failures`` and said once in a warning.

The capture itself is a function argument (:func:`capture_cuda` by default), so the
bookkeeping around it is tested on machines without a GPU.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

Capture = Callable[[Callable[[], tuple], torch.device], tuple[Callable[[], None], tuple]]


def capture_cuda(run: Callable[[], tuple], device: torch.device) -> tuple[Callable[[], None], tuple]:
    """Capture ``run`` (a function of static buffers) as a CUDA graph on ``device``.

    Two warm-up runs on a side stream first (lazy tables, cuBLAS handles and Triton
    compilation must not happen during capture). Returns ``(replay, outputs)``: calling
    ``replay()`` refreshes ``outputs`` in place.
    """
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(2):
            run()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        outputs = run()
    return graph.replay, outputs


@dataclass
class Captured:
    """One captured call: the static inputs to copy into, the replay, its outputs."""

    inputs: list[torch.Tensor]
    replay: Callable[[], None]
    outputs: tuple


def tensor_slots(module: nn.Module) -> list[tuple[dict, str]]:
    """Where ``module``'s parameters and buffers live: (the owning dict, the name)."""
    return [(table, name) for sub in module.modules()
            for table in (sub._parameters, sub._buffers) for name in table]


class CudaGraphs:
    """The captured graphs of one converted model (see the module docstring).

    Parameters
    ----------
    model : nn.Module
        The converted model whose tensors decide when captures go stale.
    max_graphs : int
        Captures kept (least recently used dropped first): each holds its inputs,
        outputs and intermediate memory on the device.
    capture : callable
        ``capture(run, device) -> (replay, outputs)``; :func:`capture_cuda` on GPUs.
    """

    def __init__(self, model: nn.Module, max_graphs: int = 16,
                 capture: Capture = capture_cuda):
        if isinstance(max_graphs, bool) or not isinstance(max_graphs, int) or max_graphs < 1:
            raise ValueError(f"max_graphs must be a positive int; got {max_graphs!r}")
        self.model = model
        self.max_graphs = max_graphs
        self.capture = capture
        self.graphs: OrderedDict[tuple, Captured] = OrderedDict()
        self.failures: dict[tuple, str] = {}
        self.captures = 0  # how many captures ran (re-captures included)
        self._slots = tensor_slots(model)
        self._state: tuple | None = None
        self._lock = threading.Lock()  # static buffers are shared: one call at a time

    def state(self) -> tuple:
        """Identity, storage and version of every tensor of the model: any change in it
        (replacement, a move, an in-place edit) means the captures may be stale."""
        return tuple((id(t), t.data_ptr(), t._version) if t is not None else None
                     for table, name in self._slots for t in (table.get(name),))

    def clear(self) -> None:
        """Drop every capture (and the recorded failures)."""
        self.graphs.clear()
        self.failures.clear()

    def run(self, method: str, function: Callable[..., tuple],
            inputs: Sequence[torch.Tensor]) -> tuple:
        """``function(*inputs)`` through a captured graph: captured on the first call of
        this method and input signature, replayed after. Returns fresh tensors (copies of
        the static outputs, which the next replay overwrites)."""
        with self._lock:
            return self._run(method, function, inputs)

    def _run(self, method: str, function: Callable[..., tuple],
             inputs: Sequence[torch.Tensor]) -> tuple:
        state = self.state()
        if state != self._state:  # tensors changed since the captures: recapture all
            self.clear()
            self._slots = tensor_slots(self.model)
            self._state = self.state()
        key = (method,) + tuple((tuple(t.shape), t.dtype, t.device) for t in inputs)
        if key in self.failures:
            return function(*inputs)
        captured = self.graphs.get(key)
        if captured is None:
            captured = self._capture(key, function, inputs)
            if captured is None:
                return function(*inputs)
        else:
            self.graphs.move_to_end(key)
            for static, value in zip(captured.inputs, inputs):
                static.copy_(value)
        captured.replay()
        return tuple(value.clone() for value in captured.outputs)

    def _capture(self, key: tuple, function: Callable[..., tuple],
                 inputs: Sequence[torch.Tensor]) -> Captured | None:
        static = [value.clone() for value in inputs]
        try:
            replay, outputs = self.capture(lambda: function(*static), static[0].device)
        except Exception as error:  # capture refuses host syncs, among others: run eagerly
            reason = f"{type(error).__name__}: {error}".splitlines()[0]
            self.failures[key] = reason
            warnings.warn(f"CUDA-graph capture of {key[0]} for inputs {key[1:]} failed "
                          f"({reason}); this call and its repeats run eagerly",
                          RuntimeWarning, stacklevel=4)
            return None
        self.captures += 1
        captured = Captured(static, replay, tuple(outputs))
        self.graphs[key] = captured
        while len(self.graphs) > self.max_graphs:
            self.graphs.popitem(last=False)
        return captured
