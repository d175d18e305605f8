"""``ConvertedModel``: a fitted estimator's inference methods, run by torch modules imported
from its ONNX graph(s), with numpy-in/numpy-out and tensor-in/tensor-out behaviour."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
from sklearn.utils.metaestimators import available_if
from torch import nn

from bridge.dask import is_dask_collection
from bridge.dask import score as dask_score
from bridge.derived import eager_call
from bridge.errors import InvalidInputError, UnsupportedEstimatorError
from bridge.onnx.plans import array_plan_for, call_plan
from bridge.sklearn.inputs import InputSpec
from bridge.sklearn.threads import enter_single_thread, leave_single_thread

# torch.set_grad_enabled without its context-manager object (a quarter of a microsecond)
set_grad_enabled = torch._C._set_grad_enabled

METHODS = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
    "score_samples",
)


@dataclass(frozen=True)
class MethodOutput:
    """Where a method's result comes from: graph key, output position and how to decode it.

    ``kind`` is ``"label"`` (class labels), ``"decision"`` (decision_function scores: the
    positive-class column for binary problems), ``"values"`` (one column → 1-D) or
    ``"matrix"`` (returned as the graph gives it).
    """

    graph: str
    output: int
    kind: str


def shaped(values: torch.Tensor, kind: str, binary: bool) -> torch.Tensor:
    """A method's tensor result from its graph output (see :class:`MethodOutput`): labels
    flat, a binary problem's decision scores as the positive class's column, one-column
    values flat. Label outputs hold the class values themselves (or vocabulary indices).
    TorchScript compiles this too (:mod:`bridge.sklearn.scripting`). (``ravel`` flattens
    as ``reshape(-1)`` does, a view where one can be, in 0.55 us rather than 0.75.)"""
    if kind == "label":
        return values.ravel()
    if kind == "decision" and binary and values.dim() == 2 and values.shape[1] == 2:
        values = values[:, 1]
    if kind != "matrix" and values.dim() == 2 and values.shape[1] == 1:
        values = values.ravel()
    return values


def _to_numpy(values: torch.Tensor) -> np.ndarray:
    """A result as numpy: a view of a CPU tensor that records no gradient, else a copy."""
    if values.is_cpu and not values.requires_grad:
        return values.numpy()
    return values.detach().cpu().numpy()


def _has_method(name: str):
    return lambda self: name in self._method_outputs or name in self._unconverted_methods


class ConvertedModel(nn.Module):
    """A fitted scikit-learn estimator as a torch module (built by :func:`bridge.from_sklearn`).

    It has exactly the inference methods the estimator has among ``predict``,
    ``predict_proba``, ``predict_log_proba``, ``decision_function``, ``transform`` and
    ``score_samples``; the others raise ``AttributeError`` as in scikit-learn.

    * numpy arrays, lists or pandas DataFrames in → numpy arrays out (class labels in the
      estimator's own class values and dtype, strings included; component ids for
      clusterers and mixtures). Computation runs without autograd on the module's device.
    * a ``torch.Tensor`` in → a ``torch.Tensor`` out on the same device, differentiable
      with respect to the input where the graph is. Class labels come back as an int64
      tensor of the class values; when the classes are strings torch cannot hold them,
      so labels come back as a numpy array of objects instead (note this in your code).

    ``forward`` is the main method (``predict`` for predictors, ``transform`` for
    transformers) on tensors. ``onnx_model`` holds the ONNX graph, or a dict method →
    graph when the methods needed several graphs. ``row_error``, where set, is what a
    call says (``InvalidInputError``, a ValueError) when the graph fails a row by design
    (a RadiusNeighborsClassifier row without neighbours).
    """

    def __init__(
        self,
        *,
        estimator_name: str,
        graphs: dict[str, onnx.ModelProto],
        modules: dict[str, nn.Module],
        method_outputs: dict[str, MethodOutput],
        unconverted_methods: dict[str, str],
        input_spec: InputSpec,
        classes: np.ndarray | None,
    ):
        super().__init__()
        self.estimator_name = estimator_name
        self.graph_modules = nn.ModuleDict(modules)
        self._graphs = dict(graphs)
        self._method_outputs = dict(method_outputs)
        self._unconverted_methods = dict(unconverted_methods)
        self._input_spec = input_spec
        self._classes = None if classes is None else np.asarray(classes)
        main = "predict" if "predict" in method_outputs else "transform"
        self.main_method = main if main in method_outputs else next(iter(method_outputs))
        self.row_error: str | None = None

    @property
    def binary_classes(self) -> bool:
        """Whether the model classifies into two classes (its decision scores are then the
        positive class's column, as :func:`shaped` makes them)."""
        return self._classes is not None and len(self._classes) == 2

    @property
    def methods(self) -> tuple[str, ...]:
        """The inference methods this model has (converted or not), in canonical order."""
        return tuple(m for m in METHODS if _has_method(m)(self))

    @property
    def onnx_model(self) -> onnx.ModelProto | dict[str, onnx.ModelProto]:
        """The ONNX graph, or a dict method → graph when several graphs were needed."""
        if len(self._graphs) == 1:
            return next(iter(self._graphs.values()))
        return {m: self._graphs[o.graph] for m, o in self._method_outputs.items()}

    def raw_outputs(self, method: str, X) -> tuple[torch.Tensor, ...]:
        """Run the graph behind ``method`` and return all its outputs undecoded (for parity checks)."""
        output = self._output_of(method)
        module = self.graph_modules[output.graph]
        inputs, _ = self._input_spec.prepare(X, self._device(), module.input_vocabularies)
        with torch.no_grad():
            result = module(*inputs)
        return result if isinstance(result, tuple) else (result,)

    def to_onnx(self, path: str | os.PathLike[str] | None = None,
                **kwargs: Any) -> onnx.ModelProto:
        """Export to a checked ONNX model; the same as ``bridge.to_onnx(self, path, **kwargs)``.

        Parameters
        ----------
        path : str or PathLike, optional
            Where to write the file (atomically).
        **kwargs
            ``X_sample``, ``opset``, ``exporter``, ``lowered`` (standard ops only), ``method``: see :func:`bridge.to_onnx`.

        Returns
        -------
        onnx.ModelProto
        """
        import bridge  # the public API: models know nothing of bridge.export's internals

        return bridge.to_onnx(self, path, **kwargs)

    def forward(self, X: torch.Tensor):
        """Run the main method (``predict`` or ``transform``) on a tensor."""
        return self._run(self.main_method, X)

    @available_if(_has_method("predict"))
    def predict(self, X):
        """Predict labels (classifiers), targets (regressors) or inlier flags (outlier detectors)."""
        return self._run("predict", X)

    @available_if(_has_method("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities, shape ``(n_samples, n_classes)``."""
        return self._run("predict_proba", X)

    @available_if(_has_method("predict_log_proba"))
    def predict_log_proba(self, X):
        """Natural log of the class probabilities (``-inf`` where a probability underflows)."""
        return self._run("predict_log_proba", X)

    @available_if(_has_method("decision_function"))
    def decision_function(self, X):
        """Decision scores: ``(n_samples,)`` for binary problems, else one column per class."""
        return self._run("decision_function", X)

    @available_if(_has_method("transform"))
    def transform(self, X):
        """The transformed features."""
        return self._run("transform", X)

    @available_if(_has_method("score_samples"))
    def score_samples(self, X):
        """Per-sample scores (e.g. IsolationForest's opposite anomaly score)."""
        return self._run("score_samples", X)

    def enable_cuda_graphs(self, max_graphs: int = 16) -> ConvertedModel:
        """Replay captured CUDA graphs for repeated calls on a GPU (see
        :mod:`bridge.sklearn.replay`): one capture per method and input shape, dropped
        when the model's tensors change. Calls with autograd, and CPU calls, run as usual.

        Parameters
        ----------
        max_graphs : int, default 16
            Captures kept, least recently used dropped first (each holds device memory).

        Returns
        -------
        ConvertedModel
            ``self``.
        """
        from bridge.sklearn.replay import CudaGraphs

        self.__dict__["_cuda_graphs"] = CudaGraphs(self, max_graphs)
        return self

    def disable_cuda_graphs(self) -> None:
        """Drop the captured graphs; later calls run eagerly."""
        self.__dict__.pop("_cuda_graphs", None)

    @property
    def cuda_graphs(self):
        """The :class:`~bridge.sklearn.replay.CudaGraphs` in use, or None."""
        return self.__dict__.get("_cuda_graphs")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_cuda_graphs", None)  # device graphs do not travel: enable after loading
        return state

    def __prepare_scriptable__(self) -> nn.Module:
        """What ``torch.jit.script(model)`` compiles: the methods on tensors alone (see
        :mod:`bridge.sklearn.scripting`)."""
        from bridge.sklearn.scripting import scriptable

        return scriptable(self)

    def _apply(self, fn, *args, **kwargs):
        """``Module._apply`` (behind ``.to()``, ``.cuda()``, ``.double()``, ...), refusing a
        change of float dtype: the graph computes in the dtypes skl2onnx declared, and
        float64 or float16 tables would meet float32 inputs deep inside it."""
        for dtype in (torch.float32, torch.float64):
            probe = fn(torch.empty(0, dtype=dtype))
            if isinstance(probe, torch.Tensor) and probe.dtype != dtype:
                raise TypeError(
                    f"the converted {self.estimator_name} computes in the dtypes of its ONNX "
                    f"graph; its {dtype} tensors cannot become {probe.dtype}. For a "
                    "double-precision graph convert with bridge.from_sklearn(estimator, "
                    "dtype=numpy.float64); .to(device) moves it"
                )
        return super()._apply(fn, *args, **kwargs)

    def _device(self) -> torch.device:
        """The device of the graphs' first buffer (or parameter): where inputs go.

        Which submodule holds it is found once (a walk over every module: ~15 us per call
        otherwise); its tensor is read each call, so ``.to()`` on the model or on any part
        of it is followed.
        """
        probe = self.__dict__.get("_device_probe")
        if probe is not None:
            tensor = getattr(probe[0], probe[1]).get(probe[2])
            if tensor is not None:
                return tensor.device
        for table in ("_buffers", "_parameters"):
            for module in self.graph_modules.modules():
                for name, tensor in getattr(module, table).items():
                    if tensor is not None:
                        self.__dict__["_device_probe"] = (module, table, name)
                        return tensor.device
        return torch.device("cpu")

    def _output_of(self, method: str) -> MethodOutput:
        output = self._method_outputs.get(method)
        if output is None:
            raise UnsupportedEstimatorError(
                f"{self.estimator_name}.{method} has no ONNX conversion: "
                f"{self._unconverted_methods[method]}; converted methods: "
                f"{', '.join(self._method_outputs)} (see SUPPORTED.md)"
            )
        return output

    def _run(self, method: str, X):
        output = self._method_outputs.get(method) or self._output_of(method)
        # (ModuleDict's [] and nn.Module.__getattr__ cost ~0.4 us each)
        module = self._modules["graph_modules"]._modules[output.graph]
        device = self._device()
        if type(X) is np.ndarray and self._input_spec.serves_array(X, device):
            result = self._run_array(output, module, X)  # numpy rows run by C, numpy out
            if result is not None:
                return result
            tensor = torch.from_numpy(X)
        else:
            tensor = self._input_spec.served(X, device)  # the serving case, checked cheaply
        if tensor is not None:
            inputs, as_numpy = [tensor], type(X) is not torch.Tensor
        elif is_dask_collection(X):  # Dask in: a lazy Dask result (bridge/dask)
            return dask_score(self, X, method)
        else:
            inputs, as_numpy = self._input_spec.prepare(X, device, module.input_vocabularies)
        grad_was_enabled = torch.is_grad_enabled()
        threads = enter_single_thread(inputs, module)  # small calls: one thread (threads.py)
        try:
            if as_numpy and grad_was_enabled:  # numpy out: no graph to record
                set_grad_enabled(False)
            if eager_call():  # only the outputs this method reads (bridge/onnx/plans.py)
                outputs = (output.output,)
                replay = self.__dict__.get("_cuda_graphs")
                if replay is not None and inputs[0].is_cuda and not torch.is_grad_enabled():
                    values = replay.run(method, lambda *xs: call_plan(module, outputs, xs),
                                        inputs)[0]
                else:
                    values = call_plan(module, outputs, inputs)[0]
            else:
                result = module(*inputs)
                values = result[output.output] if isinstance(result, tuple) else result
        except IndexError as error:  # a graph that fails a row by design: say why
            hint = self.__dict__.get("row_error")
            if hint is None:
                raise
            raise InvalidInputError(hint) from error
        finally:
            if as_numpy and grad_was_enabled:
                set_grad_enabled(True)
            leave_single_thread(threads)
        name = module.output_names[output.output]
        return self._decode(output, values, module.output_vocabularies.get(name), as_numpy)

    def _run_array(self, output: MethodOutput, module: nn.Module, X: np.ndarray):
        """The method's result for numpy rows of the serving case when the graph's numpy
        plan serves them (:func:`bridge.onnx.plans.array_plan_for`: tree ensembles), else
        None. Outputs in a vocabulary (text labels) take the tensor path. Graphs without
        a numpy plan are remembered (a missed plan after a graph is rebuilt costs speed
        only), so other models pay one set lookup."""
        declined = self.__dict__.setdefault("_array_declined", set())
        key = (output.graph, output.output)
        if key in declined:
            return None
        plan = None
        if module.output_names[output.output] not in module.output_vocabularies:
            plan = array_plan_for(module, (output.output,))
        if plan is None:
            declined.add(key)
            return None
        values = plan(X)
        if values is None:
            return None
        binary = self.binary_classes
        return self._decoded_array(output.kind, values[0], binary)

    def _decode(self, output: MethodOutput, values: torch.Tensor, vocabulary, as_numpy: bool):
        if isinstance(values, list):  # an ONNX sequence: one array per output (multi-output)
            return [self._decode(output, v, vocabulary, as_numpy) for v in values]
        binary = self.binary_classes
        if as_numpy and vocabulary is None:  # reshaped by numpy: cheaper than torch's calls
            return self._decoded_array(output.kind, _to_numpy(values), binary)
        values = shaped(values, output.kind, binary)
        if output.kind == "label":
            return self._decode_labels(values, vocabulary, as_numpy)
        return _to_numpy(values) if as_numpy else values

    def _decoded_array(self, kind: str, values: np.ndarray, binary: bool) -> np.ndarray:
        """:func:`shaped` and the label dtype, for a numpy result."""
        if kind == "label":
            values = values.reshape(-1)
            if self._classes is not None and self._classes.dtype.kind != "O":
                values = values.astype(self._classes.dtype, copy=False)
            return values
        if kind == "decision" and binary and values.ndim == 2 and values.shape[1] == 2:
            values = values[:, 1]
        if kind != "matrix" and values.ndim == 2 and values.shape[1] == 1:
            values = values.reshape(-1)
        return values

    def _decode_labels(self, indices: torch.Tensor, vocabulary, as_numpy: bool):
        if vocabulary is not None:
            labels = np.asarray(vocabulary, dtype=object)[_to_numpy(indices)]
            if self._classes is not None and as_numpy:
                labels = labels.astype(self._classes.dtype)
            return labels
        return indices  # (numpy without a vocabulary: _decoded_array)
