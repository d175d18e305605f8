"""What ``torch.jit.script`` compiles for a converted model: its methods on tensors alone.

``ConvertedModel`` takes numpy arrays, DataFrames and tensors and decodes string labels in
Python, which TorchScript cannot compile. ``torch.jit.script(model)`` therefore compiles
:class:`ScriptableModel` instead (through ``ConvertedModel.__prepare_scriptable__``): one
small fx module per method (cast the input, run the graph, pick the output, decode it) and
every method of scikit-learn's inference API, those without a conversion raising.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.inputs import TORCH_DTYPES
from bridge.sklearn.model import METHODS, shaped


class Decode(nn.Module):
    """Turn one graph output into the method's tensor result, as the eager model does
    (:func:`bridge.sklearn.model.shaped`)."""

    def __init__(self, kind: str, binary: bool):
        super().__init__()
        self.kind = kind
        self.binary = binary

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return shaped(values, self.kind, self.binary)


class Missing(nn.Module):
    """A method the estimator has but that has no conversion: raises when called."""

    def __init__(self, message: str):
        super().__init__()
        self.message = message

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(self.message)


def method_module(graph: nn.Module, n_outputs: int, output: int, dtype: torch.dtype,
                  decode: Decode) -> fx.GraphModule:
    """x → x.to(dtype) → graph → output ``output`` → decode, as one fx module."""
    root = nn.Module()
    root.onnx_graph = graph  # ("graph" is the GraphModule's own fx graph)
    root.decode = decode
    program = fx.Graph()
    x = program.call_method("to", (program.placeholder("x"), dtype))
    result = program.call_module("onnx_graph", (x,))
    if n_outputs > 1:
        result = program.call_function(operator.getitem, (result, output))
    program.output(program.call_module("decode", (result,)))
    return fx.GraphModule(root, program)


class ScriptableModel(nn.Module):
    """A converted model's inference methods on tensors, compilable by ``torch.jit.script``.

    Inputs are tensors (cast to the graph's dtype); labels come back as int64 tensors of
    the class values. ``forward`` is the model's main method.
    """

    def __init__(self, methods: dict[str, nn.Module], main: str):
        super().__init__()
        self.main = methods[main]
        self.predict_ = methods["predict"]
        self.predict_proba_ = methods["predict_proba"]
        self.predict_log_proba_ = methods["predict_log_proba"]
        self.decision_function_ = methods["decision_function"]
        self.transform_ = methods["transform"]
        self.score_samples_ = methods["score_samples"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)

    @torch.jit.export
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_(x)

    @torch.jit.export
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_proba_(x)

    @torch.jit.export
    def predict_log_proba(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_log_proba_(x)

    @torch.jit.export
    def decision_function(self, x: torch.Tensor) -> torch.Tensor:
        return self.decision_function_(x)

    @torch.jit.export
    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform_(x)

    @torch.jit.export
    def score_samples(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_samples_(x)


def _not_scriptable(module: nn.Module) -> str | None:
    """Why TorchScript cannot compile ``module`` (an op module of an imported graph), or None."""
    from bridge.onnx.ops.control_flow import OnnxLoop, OnnxScan
    from bridge.trees import TreeEnsembleModule

    if isinstance(module, TreeEnsembleModule):
        return "tree ensembles (they pick a strategy per call in Python)"
    if isinstance(module, OnnxLoop | OnnxScan):
        return f"an ONNX {type(module).__name__[4:]} (run as a Python loop or a fused kernel)"
    return None


def scriptable(model) -> ScriptableModel:
    """The :class:`ScriptableModel` of a ``ConvertedModel``.

    Raises
    ------
    UnsupportedEstimatorError
        For models whose input is not one tensor (text columns, one input per column) or
        whose labels are strings (a tensor cannot hold them).
    """
    spec = model._input_spec
    name = model.estimator_name
    if spec.per_column:
        raise UnsupportedEstimatorError(
            f"the converted {name} takes one input per column, which a scripted method "
            "taking one tensor cannot feed; script its graph modules (model.graph_modules) "
            "or trace it"
        )
    for graph in model.graph_modules.values():
        for part in graph.modules():
            reason = _not_scriptable(part)
            if reason:
                raise UnsupportedEstimatorError(
                    f"torch.jit.script cannot compile the converted {name}: it holds {reason}; "
                    "use torch.jit.trace (which records one path for the example input) or "
                    "torch.compile(model.graph_modules[...], fullgraph=True)"
                )
    binary = model.binary_classes
    methods: dict[str, nn.Module] = {}
    for method in METHODS:
        output = model._method_outputs.get(method)
        if output is None:
            reason = model._unconverted_methods.get(method, "the estimator has no such method")
            methods[method] = Missing(f"{name}.{method} has no conversion: {reason}")
            continue
        graph = model.graph_modules[output.graph]
        if graph.output_names[output.output] in graph.output_vocabularies:
            methods[method] = Missing(
                f"{name}.{method} returns string labels, which a tensor cannot hold")
            continue
        methods[method] = method_module(graph, len(graph.output_names), output.output,
                                        TORCH_DTYPES[spec.dtype], Decode(output.kind, binary))
    return ScriptableModel(methods, model.main_method)
