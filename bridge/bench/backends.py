"""The backends a model is timed on: scikit-learn, onnxruntime (CPU/CUDA) and torch (CPU/CUDA/compiled).

Each backend says whether it can run here (and why not), then prepares a runner
that maps a numpy batch to a numpy result and reports where the time went:
host→device transfer, compute, device→host transfer, each measured separately.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import torch


@dataclass
class Target:
    """What is timed: an estimator method, and the ONNX graph/torch module that mirror it."""

    name: str
    method: str
    onnx_model: onnx.ModelProto
    output_index: int
    estimator: object | None = None
    converted: object | None = None  # a bridge ConvertedModel (None for a bare .onnx file)


@dataclass
class Timing:
    transfer_in: float
    compute: float
    transfer_out: float

    @property
    def total(self) -> float:
        return self.transfer_in + self.compute + self.transfer_out


Runner = Callable[[np.ndarray], tuple[np.ndarray, Timing]]


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _numpy(result) -> np.ndarray:
    if isinstance(result, torch.Tensor):
        return result.detach().cpu().numpy()
    return np.asarray(result)


class Backend:
    """Base class: ``unavailable_reason()`` is None when the backend can run here."""

    name = ""
    device = "cpu"
    threads: int | None = None  # CPU threads (None: the library's default)

    def unavailable_reason(self, target: Target) -> str | None:
        return None

    def prepare(self, target: Target) -> Runner:
        raise NotImplementedError


class SklearnBackend(Backend):
    name = "sklearn"

    def unavailable_reason(self, target):
        return None if target.estimator is not None else "no scikit-learn estimator (an .onnx file)"

    def prepare(self, target):
        method = getattr(target.estimator, target.method)

        def run(X):
            start = time.perf_counter()
            result = method(X)
            return np.asarray(result), Timing(0.0, time.perf_counter() - start, 0.0)

        return run


class OnnxruntimeBackend(Backend):
    def __init__(self, device: str):
        self.device = device
        self.name = f"onnxruntime-{device}"
        self.provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"

    def unavailable_reason(self, target):
        try:
            import onnxruntime
        except ImportError:
            return "onnxruntime is not installed"
        available = onnxruntime.get_available_providers()
        if self.provider not in available:
            return f"{self.provider} is not available (providers: {', '.join(available)})"
        if self.device == "cuda" and not torch.cuda.is_available():
            return "no CUDA device"
        return None

    def prepare(self, target):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
        providers = [self.provider] + (["CPUExecutionProvider"] if self.device == "cuda" else [])
        session = onnxruntime.InferenceSession(
            target.onnx_model.SerializeToString(), options, providers=providers
        )
        input_name = session.get_inputs()[0].name
        output_name = session.get_outputs()[target.output_index].name

        def run(X):
            start = time.perf_counter()
            (result,) = session.run([output_name], {input_name: X})
            # onnxruntime moves data itself: transfers are inside the compute figure
            return result, Timing(0.0, time.perf_counter() - start, 0.0)

        return run


class TorchBackend(Backend):
    def __init__(self, device: str, compiled: bool = False):
        self.device = device
        self.compiled = compiled
        self.name = "torch-compile" if compiled else f"torch-{device}"

    def unavailable_reason(self, target):
        if self.device == "cuda" and not torch.cuda.is_available():
            return "no CUDA device (torch.cuda.is_available() is False)"
        if self.compiled and not hasattr(torch, "compile"):
            return "this torch has no torch.compile"
        return None

    def prepare(self, target):
        call = self._callable(target)
        device = self.device

        def run(X):
            _synchronize(device)
            start = time.perf_counter()
            tensor = torch.from_numpy(X).to(device)
            _synchronize(device)
            moved = time.perf_counter()
            with torch.no_grad():  # (what users run; inference tensors cannot be cached)
                result = call(tensor)
            _synchronize(device)
            computed = time.perf_counter()
            output = _numpy(result)
            finished = time.perf_counter()
            return output, Timing(moved - start, computed - moved, finished - computed)

        return run

    def _callable(self, target):
        if self.compiled or target.converted is None:
            from bridge.onnx.importer import from_onnx

            module = from_onnx(target.onnx_model).to(self.device).eval()
            if self.compiled:
                module = torch.compile(module, dynamic=True)
            index = target.output_index

            def call(tensor):
                result = module(tensor)
                return result[index] if isinstance(result, tuple) else result

            return call
        # a copy per device: Module.to moves in place, and the torch-cpu runner prepared
        # before a torch-cuda one must keep its CPU module
        converted = (target.converted if self.device == "cpu"
                     else copy.deepcopy(target.converted).to(self.device))
        return getattr(converted, target.method)


class TorchServingBackend(TorchBackend):
    """A converted model served the fast ways: ``torch-aot`` compiles each method ahead
    of time (:func:`bridge.compile_for_serving`, compile time not timed), and
    ``torch-cuda-graphs`` replays captured CUDA graphs (``enable_cuda_graphs``)."""

    def __init__(self, kind: str):
        device = "cuda" if kind == "cuda-graphs" or torch.cuda.is_available() else "cpu"
        super().__init__(device)
        self.kind = kind
        self.name = f"torch-{kind}"

    def unavailable_reason(self, target):
        if self.kind == "cuda-graphs" and not torch.cuda.is_available():
            return "no CUDA device (CUDA graphs replay on a GPU)"
        if target.converted is None:
            return "serves converted scikit-learn models (not a bare .onnx file)"
        return super().unavailable_reason(target)

    def _callable(self, target):
        converted = (target.converted if self.device == "cpu"
                     else copy.deepcopy(target.converted).to(self.device))
        if self.kind == "aot":
            from bridge.sklearn.compiled import compile_for_serving

            return getattr(compile_for_serving(converted, [target.method]), target.method)
        converted = copy.deepcopy(converted).enable_cuda_graphs()
        return getattr(converted, target.method)


def all_backends() -> dict[str, Backend]:
    """Every backend bridge-bench knows, by name."""
    backends: list[Backend] = [
        SklearnBackend(),
        OnnxruntimeBackend("cpu"),
        OnnxruntimeBackend("cuda"),
        TorchBackend("cpu"),
        TorchBackend("cuda"),
        TorchBackend("cuda" if torch.cuda.is_available() else "cpu", compiled=True),
        TorchServingBackend("aot"),
        TorchServingBackend("cuda-graphs"),
    ]
    return {backend.name: backend for backend in backends}


DEFAULT_BACKENDS = ["sklearn", "onnxruntime-cpu", "onnxruntime-cuda", "torch-cpu", "torch-cuda",
                    "torch-cuda-graphs"]
