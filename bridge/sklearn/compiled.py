"""``compile_for_serving``: a converted model's methods compiled ahead of time (AOTInductor).

Eager torch pays about a microsecond of Python and dispatch per operation, which a
one-row call of a small model cannot hide (onnxruntime answers a LogisticRegression in
~5 us). For serving, each method's graph is exported (``torch.export``, batch axis free)
and compiled by AOTInductor into one native function; a call validates its input with
the model's own rules, then runs that function directly. What it gives up, by design:

* compile time (seconds per method, a C++ compiler at compile time);
* autograd (inference only: a tensor that requires grad is refused);
* the device and dtype of the compiled model are fixed (compile again after ``.to()``);
* methods with a tree ensemble stay eager by default (the eager C walk is faster than any
  compiled strategy measured); compiled on request, they run the strategy ``batch_hint``
  picks, chosen once at compile time.

docs/serving.md has the figures.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils.metaestimators import available_if
from torch import nn

from bridge.errors import ConversionError
from bridge.onnx.ops.control_flow import PAIRWISE_WHILE_EXPORTING
from bridge.sklearn.model import ConvertedModel, MethodOutput, shaped
from bridge.sklearn.threads import enter_single_thread, leave_single_thread


class MethodGraph(nn.Module):
    """One output of an imported graph as a module (what ``torch.export`` records), shaped
    as the method returns it (:func:`~bridge.sklearn.model.shaped`: a one-column result
    flat, a binary decision's positive column), so that reshape is inside the compiled
    function rather than one more torch call per call."""

    def __init__(self, graph: nn.Module, output: int, kind: str, binary: bool):
        super().__init__()
        self.imported = graph  # (not "graph": GraphModule's own attribute name)
        self.output, self.kind, self.binary = output, kind, binary

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        result = self.imported(*inputs)
        result = result[self.output] if isinstance(result, tuple) else result
        return shaped(result, self.kind, self.binary)


class _FixedTreeStrategies:
    """Within the block, every tree ensemble in ``module`` runs the strategy its rule picks
    for ``batch`` rows on ``device_type`` (export must not branch on the batch size)."""

    def __init__(self, module: nn.Module, batch: int, device_type: str):
        from bridge.trees.module import TreeEnsembleModule

        self.trees = [m for m in module.modules() if isinstance(m, TreeEnsembleModule)]
        self.batch, self.device_type = batch, device_type
        self.saved: list[str] = []

    def __enter__(self) -> _FixedTreeStrategies:
        self.saved = [tree.strategy for tree in self.trees]
        for tree in self.trees:
            tree.strategy = tree.choose(self.batch, self.device_type)
        return self

    @property
    def max_rows(self) -> int | None:
        """The most rows one call may hold: trees split larger batches into chunks, a
        branch on the batch size that an exported graph cannot hold, so the compiled
        function takes at most one chunk and the caller splits (None: no limit)."""
        chunks = [tree.rows_per_chunk(tree.strategy, self.device_type) for tree in self.trees]
        return min(chunks) if chunks else None

    def __exit__(self, *exc) -> None:
        for tree, strategy in zip(self.trees, self.saved):
            tree.strategy = strategy


def compile_method(model: ConvertedModel, method: str, batch_hint: int = 1) -> CompiledMethod:
    """Export and AOT-compile ``model.method`` (its graph output, before decoding).

    Raises
    ------
    ConversionError
        When the method's graph cannot be exported or compiled (the cause is chained).
    """
    output = model._output_of(method)
    graph = model.graph_modules[output.graph]
    device = model._device()
    example = _example_inputs(model, graph, device)
    wrapper = MethodGraph(graph, output.output, output.kind, model.binary_classes).eval()
    try:
        program, max_rows = _export(wrapper, example, graph, batch_hint, device.type)
        with tempfile.TemporaryDirectory() as folder:
            path = torch._inductor.aoti_compile_and_package(
                program, package_path=os.path.join(folder, f"{method}.pt2"))
            package = torch._inductor.aoti_load_package(path)
    except Exception as error:  # export/inductor raise many types; say which method failed
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise ConversionError(
            f"{model.estimator_name}.{method} could not be compiled for serving "
            f"({type(error).__name__}: {first_line}); call the converted model itself, "
            "which runs every method eagerly"
        ) from error
    return CompiledMethod(package.loader, max_rows)


@dataclass(frozen=True)
class CompiledMethod:
    """One compiled method: AOTInductor's runner and the most rows one run takes."""

    runner: object  # torch._C._aoti.AOTIModelPackageLoader: run(list of tensors) -> list
    max_rows: int | None

    def __call__(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        rows = inputs[0].shape[0]
        if self.max_rows is None or rows <= self.max_rows:
            if len(inputs) == 1 and inputs[0].is_contiguous():  # the serving case
                return self.runner.run(inputs)[0]
            return self.runner.run([t.contiguous() for t in inputs])[0]
        parts = [self.runner.run([t[start:start + self.max_rows].contiguous() for t in inputs])[0]
                 for start in range(0, rows, self.max_rows)]
        return torch.cat(parts)


def _export(wrapper: MethodGraph, example: list[torch.Tensor], graph: nn.Module,
            batch_hint: int, device_type: str):
    """``torch.export`` of one method with a free batch axis (up to a tree chunk), the
    pairwise-distance Scan as one ``cdist``; returns the program and its row limit."""
    pairwise = PAIRWISE_WHILE_EXPORTING.set(True)
    try:
        with torch.no_grad(), _FixedTreeStrategies(graph, batch_hint, device_type) as trees:
            batch = torch.export.Dim("batch", min=1, max=trees.max_rows)
            program = torch.export.export(
                wrapper, tuple(example), dynamic_shapes=(tuple({0: batch} for _ in example),))
            return program, trees.max_rows
    finally:
        PAIRWISE_WHILE_EXPORTING.reset(pairwise)


def _example_inputs(model: ConvertedModel, graph: nn.Module, device) -> list[torch.Tensor]:
    """Two rows shaped as the graph takes them (text columns as index 0)."""
    spec = model._input_spec
    width = 1 if spec.per_column else (spec.n_features or 1)
    dtype = torch.int64 if spec.dtype.kind == "i" else (
        torch.float64 if spec.dtype.itemsize == 8 else torch.float32)
    shape = (2, width) if spec.rank == 2 else (2,)
    count = len(graph.input_names)
    inputs = []
    declared = getattr(graph, "input_shapes", None) or [None] * count
    for position in range(count):
        is_text = graph.input_names[position] in graph.input_vocabularies
        here = shape
        if len(shape) == 2 and declared[position] and isinstance(declared[position][-1], int):
            here = (2, declared[position][-1])  # a vectorized text column: its full width
        inputs.append(torch.zeros(here, dtype=torch.int64 if is_text else dtype, device=device))
    return inputs


def _has(name: str):
    return lambda self: name in self._runners or name in self.eager_methods


class CompiledModel:
    """A converted model's methods, compiled by :func:`compile_for_serving`.

    Each compiled method takes what the converted model takes (numpy, DataFrames or
    tensors on its device) and returns what it returns, checked by the same input rules;
    tensors come back without autograd history. ``compile_seconds`` records the time
    each method took to export and compile; ``eager_methods`` names the methods served by
    the converted model itself, with the reason.
    """

    def __init__(self, model: ConvertedModel, runners: dict, compile_seconds: dict[str, float],
                 device: torch.device, eager_methods: dict[str, str] | None = None):
        self.model = model
        self._runners = runners
        self.compile_seconds = compile_seconds
        self.device = device
        self.eager_methods = dict(eager_methods or {})
        self._calls = {method: _Call.of(model, method, runner, device)
                       for method, runner in runners.items()}

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods served: compiled ones, then those left eager."""
        return tuple(self._runners) + tuple(self.eager_methods)

    @available_if(_has("predict"))
    def predict(self, X):
        """The converted model's ``predict``, compiled."""
        return self._run("predict", X)

    @available_if(_has("predict_proba"))
    def predict_proba(self, X):
        """The converted model's ``predict_proba``, compiled."""
        return self._run("predict_proba", X)

    @available_if(_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """The converted model's ``predict_log_proba``, compiled."""
        return self._run("predict_log_proba", X)

    @available_if(_has("decision_function"))
    def decision_function(self, X):
        """The converted model's ``decision_function``, compiled."""
        return self._run("decision_function", X)

    @available_if(_has("transform"))
    def transform(self, X):
        """The converted model's ``transform``, compiled."""
        return self._run("transform", X)

    @available_if(_has("score_samples"))
    def score_samples(self, X):
        """The converted model's ``score_samples``, compiled."""
        return self._run("score_samples", X)

    def _run(self, method: str, X):
        model = self.model
        call = self._calls.get(method)
        if call is None:  # left eager: the model's own call (its method minus a lookup)
            return model._run(method, X)
        tensor = model._input_spec.served(X, self.device)  # the serving case, checked cheaply
        if tensor is None:
            return self._run_prepared(method, call, X)
        threads = enter_single_thread((tensor,), call.graph)
        try:
            if call.run is not None and tensor.is_contiguous():  # no row limit to keep
                values = call.run([tensor])[0]
            else:
                values = call.runner([tensor])
        finally:
            leave_single_thread(threads)
        if type(X) is torch.Tensor:
            return values if call.vocabulary is None else model._decode(
                call.output, values, call.vocabulary, False)
        if call.numpy_labels is not False:  # numpy out: the outputs come shaped already
            values = values.numpy()
            return values if call.numpy_labels is None else values.astype(call.numpy_labels,
                                                                           copy=False)
        return model._decode(call.output, values, call.vocabulary, True)

    def _run_prepared(self, method: str, call: _Call, X):
        """Any input but the serving case: the model's conversions and checks first."""
        model = self.model
        inputs, as_numpy = model._input_spec.prepare(X, self.device,
                                                     call.graph.input_vocabularies)
        if not as_numpy and any(t.requires_grad for t in inputs):
            raise ValueError(
                f"the compiled {model.estimator_name}.{method} runs without autograd; got "
                "a tensor that requires grad. Call the converted model itself to "
                "differentiate")
        if inputs[0].shape[0] == 0:  # compiled for one row or more: empty runs eagerly
            return getattr(model, method)(X)
        threads = enter_single_thread(inputs, call.graph)
        try:
            values = call.runner(inputs)
        finally:
            leave_single_thread(threads)
        return model._decode(call.output, values, call.vocabulary, as_numpy)


@dataclass(frozen=True)
class _Call:
    """What one compiled method's call reads, found once: its runner, graph, output and
    vocabulary, and how a numpy result is finished: ``numpy_labels`` is the class labels'
    dtype, None for values as they come (both on CPU without a vocabulary), or False:
    through the model's own decoding. ``run`` is AOTInductor's own ``run`` where no row
    limit applies (a call then skips :class:`CompiledMethod`'s checks)."""

    runner: CompiledMethod
    run: object | None
    graph: nn.Module
    output: MethodOutput
    vocabulary: list | None
    numpy_labels: np.dtype | None | bool

    @classmethod
    def of(cls, model: ConvertedModel, method: str, runner: CompiledMethod,
           device: torch.device) -> _Call:
        output = model._method_outputs[method]
        graph = model._modules["graph_modules"]._modules[output.graph]
        vocabulary = graph.output_vocabularies.get(graph.output_names[output.output])
        classes = model._classes
        numpy_labels: np.dtype | None | bool = None
        if vocabulary is not None or device.type != "cpu":
            numpy_labels = False
        elif output.kind == "label" and classes is not None and classes.dtype.kind != "O":
            numpy_labels = classes.dtype
        run = runner.runner.run if runner.max_rows is None else None
        return cls(runner, run, graph, output, vocabulary, numpy_labels)


TREES_STAY_EAGER = (
    "its graph holds a tree ensemble, whose eager C walk beats the compiled torch walk "
    "(RandomForest 100x8 at 1 row: 29 against 61 us; gradient boosting at 10k rows: 10 "
    "against 403 ms); compile_for_serving(..., trees='compile') compiles it anyway")


def _has_trees(model: ConvertedModel, method: str) -> bool:
    from bridge.trees.module import TreeEnsembleModule

    graph = model.graph_modules[model._method_outputs[method].graph]
    return any(isinstance(part, TreeEnsembleModule) for part in graph.modules())


def compile_for_serving(model: ConvertedModel, methods: Sequence[str] | None = None, *,
                        batch_hint: int = 1, trees: str = "eager") -> CompiledModel:
    """Compile a converted model's methods ahead of time for fast calls (serving).

    Parameters
    ----------
    model : ConvertedModel
        What :func:`bridge.from_sklearn` returned; it stays usable as it is.
    methods : sequence of str, optional
        Which methods to compile (default: every converted method).
    batch_hint : int, default 1
        The batch size calls will mostly have: compiled tree ensembles run the strategy
        bridge's rule picks for it (docs/trees.md), fixed at compile time.
    trees : {"eager", "compile"}, default "eager"
        Methods whose graph holds a tree ensemble stay with the converted model's eager
        call (its C walk is faster than any compiled strategy measured), listed in
        ``eager_methods``; ``"compile"`` compiles them too.

    Returns
    -------
    CompiledModel
        With the compiled methods; ``compile_seconds`` says what each cost.

    Raises
    ------
    ValueError
        A method the model does not have, a ``batch_hint`` below 1, or another ``trees``.
    ConversionError
        A method whose graph torch.export or AOTInductor cannot compile.
    """
    if not isinstance(model, ConvertedModel):
        hint = ("; for an imported ONNX graph (bridge.from_onnx) use "
                "bridge.onnx.compile_for_serving(module, example_inputs)"
                if isinstance(model, nn.Module) else "")
        raise TypeError(f"compile_for_serving takes a converted model (bridge.from_sklearn); "
                        f"got {type(model).__name__}{hint}")
    if isinstance(batch_hint, bool) or not isinstance(batch_hint, int) or batch_hint < 1:
        raise ValueError(f"batch_hint must be a positive int; got {batch_hint!r}")
    converted = tuple(model._method_outputs)
    methods = converted if methods is None else tuple(methods)
    for method in methods:
        if method not in converted:
            raise ValueError(f"{model.estimator_name} has no converted method {method!r}; "
                             f"converted: {', '.join(converted)}")
    if trees not in ("eager", "compile"):
        raise ValueError(f"trees must be 'eager' or 'compile'; got {trees!r}")
    runners, seconds, eager = {}, {}, {}
    for method in methods:
        if trees == "eager" and _has_trees(model, method):
            eager[method] = TREES_STAY_EAGER
            continue
        start = time.perf_counter()
        runners[method] = compile_method(model, method, batch_hint)
        seconds[method] = time.perf_counter() - start
    return CompiledModel(model, runners, seconds, model._device(), eager)
