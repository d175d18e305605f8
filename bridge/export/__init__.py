"""``bridge.to_onnx``: nets, converted models, estimators and modules as checked ONNX files."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import onnx
import torch
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from torch import nn

from bridge.errors import ExportError, NotFittedError
from bridge.export.artifact import check_and_save, read_metadata, set_metadata
from bridge.export.lowering import (
    LOWERING_SUPPORT,
    decode_output,
    lowering_support,
    ml_operators,
    output_vocabularies,
)
from bridge.export.modules import check_opset, default_opset, export_module
from bridge.export.net import SampleLike, net_head, sample_array, sample_for, sample_tensor
from bridge.export.portable import make_portable

if TYPE_CHECKING:
    from bridge.net import NeuralNet

__all__ = [
    "LOWERING_SUPPORT",
    "decode_output",
    "export_module",
    "lowering_support",
    "output_vocabularies",
    "read_metadata",
    "to_onnx",
]

ACCEPTED = (
    "a fitted bridge NeuralNet*, a scikit-learn Pipeline ending in one, a model from "
    "bridge.from_sklearn / bridge.from_onnx, an onnx.ModelProto, a fitted scikit-learn "
    "estimator, or a torch.nn.Module with X_sample"
)


class _SelectOutput(nn.Module):
    """Runs an imported graph and keeps one output (used to put preprocessing before a net)."""

    def __init__(self, graph_module: nn.Module, index: int):
        super().__init__()
        self.graph_module = graph_module
        self.index = index

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        result = self.graph_module(X)
        selected: torch.Tensor = result[self.index] if isinstance(result, tuple) else result
        return selected


def _is_net(obj: object) -> bool:
    from bridge.net import NeuralNet

    return isinstance(obj, NeuralNet)


def _export_net(net: NeuralNet, X_sample: SampleLike | None, opset: int | None, exporter: str,
                preprocess: nn.Module | None = None, metadata: str | None = None,
                ) -> onnx.ModelProto:
    try:
        net.check_is_fitted()
    except NotFittedError as error:
        raise NotFittedError(
            f"cannot export an unfitted {type(net).__name__}: call fit (or initialize) first"
        ) from error
    head, outputs, net_metadata = net_head(net, preprocess)
    if preprocess is None or X_sample is None:
        sample = sample_for(net, X_sample)
    else:
        sample = sample_tensor(X_sample)
    model = export_module(head.cpu(), sample, output_names=outputs, opset=opset,
                          exporter=exporter)
    net_metadata["bridge.input"] = {"name": "X", "dtype": str(sample.dtype).replace("torch.", ""),
                                    "shape": ["batch", *sample.shape[1:]]}
    net_metadata["bridge.preprocessing"] = metadata or (
        "none: feed the same features the net was fitted on, as a float tensor"
    )
    return set_metadata(model, net_metadata)


def _export_pipeline(pipeline: Pipeline, X_sample: SampleLike | None, opset: int | None,
                     exporter: str) -> onnx.ModelProto:
    from bridge.onnx.importer import from_onnx
    from bridge.sklearn.convert import from_sklearn

    if X_sample is None:
        raise ExportError("exporting a Pipeline needs X_sample (a few raw input rows)")
    steps = pipeline.steps[:-1]
    net = pipeline.steps[-1][1]
    preprocessing = Pipeline(steps) if len(steps) > 1 else steps[0][1]
    values = sample_array(X_sample)
    converted = from_sklearn(preprocessing, values[:2])
    preprocess = _SelectOutput(from_onnx(_graph_of(converted, "transform")), 0)
    description = "included: " + " → ".join(f"{name} ({type(step).__name__})"
                                           for name, step in steps)
    return _export_net(net, values[:2], opset, exporter, preprocess, description)


# With one graph per method, the file exported by default is the first of these present.
_MAIN_METHODS = ("predict_proba", "predict", "transform", "decision_function", "score_samples")


def _graph_of(model: Any, method: str | None) -> onnx.ModelProto:
    graph: onnx.ModelProto | dict[str, onnx.ModelProto] = model.onnx_model
    if not isinstance(graph, dict):
        if method is not None and not hasattr(model, method):
            raise ExportError(f"the converted model has no method {method!r}")
        return graph
    if method is None:
        method = next((m for m in _MAIN_METHODS if m in graph), next(iter(graph)))
    if method not in graph:
        raise ExportError(f"method={method!r} has no graph; this model has {sorted(graph)}")
    return graph[method]


def _export_graph(graph: onnx.ModelProto, X_sample: SampleLike | None, opset: int | None,
                  exporter: str, lowered: bool) -> onnx.ModelProto:
    if not lowered:
        check_opset(opset)
        if opset is not None and opset != default_opset(graph):
            raise ExportError(
                f"opset={opset} applies to lowered exports; this ONNX-ML graph is written at "
                f"opset {default_opset(graph)} (from_sklearn's target_opset sets it), so pass "
                "lowered=True or leave opset out"
            )
        return set_metadata(onnx.ModelProto.FromString(graph.SerializeToString()),
                            {"bridge.form": "onnx-ml"})
    return _lower_graph(graph, X_sample, opset, exporter)


def _lower_graph(graph: onnx.ModelProto, X_sample: SampleLike | None, opset: int | None,
                 exporter: str) -> onnx.ModelProto:
    """Re-export an ONNX(-ML) graph through its torch module: standard ai.onnx ops only."""
    from bridge.onnx.importer import from_onnx

    module = from_onnx(graph)
    _fix_tree_strategies(module)
    input_names: list[str] = module.__dict__["input_names"]
    output_names: list[str] = module.__dict__["output_names"]
    vocabularies: dict[str, list[Any]] = module.__dict__["output_vocabularies"]
    if len(input_names) != 1:
        raise ExportError(
            f"lowering supports graphs with one input; this one has {input_names}"
        )
    sample = _graph_sample(graph, X_sample)
    lowered = export_module(module, sample, input_name=input_names[0],
                            output_names=output_names, opset=opset, exporter=exporter)
    ml_nodes = ml_operators(lowered)
    if ml_nodes:
        raise ExportError(f"lowering left ai.onnx.ml operators in the graph: {ml_nodes}")
    make_portable(lowered)
    metadata: dict[str, Any] = {"bridge.form": "lowered (standard ai.onnx operators only)"}
    if vocabularies:
        metadata["bridge.output_vocabularies"] = vocabularies
    original = read_metadata(graph)
    metadata.update({k: v for k, v in original.items() if not k.startswith("bridge.version")})
    return set_metadata(lowered, metadata)


# A lowered graph runs at batch sizes unknown at export: its tree ensembles use the strategy
# "auto" picks for this many rows on CPU, whatever the export sample's size.
LOWERED_TREE_BATCH = 10_000


def _fix_tree_strategies(module: nn.Module) -> None:
    from bridge.trees import TreeEnsembleModule

    for trees in module.modules():
        if isinstance(trees, TreeEnsembleModule):
            trees.strategy = trees.choose(LOWERED_TREE_BATCH, "cpu")


def _graph_sample(graph: onnx.ModelProto, X_sample: SampleLike | None) -> torch.Tensor:
    """The tracing input for a graph: ``X_sample`` (or zeros of the graph's input shape) in
    the element type the graph's input declares, so a double graph stays double."""
    from bridge.onnx.dtypes import torch_dtype

    tensor_type = graph.graph.input[0].type.tensor_type
    dtype = torch_dtype(tensor_type.elem_type)
    if X_sample is not None:
        return sample_tensor(X_sample, dtype)
    dims = [d.dim_value if d.HasField("dim_value") else 2 for d in tensor_type.shape.dim]
    if not dims:
        raise ExportError("cannot infer the input shape of the graph; pass X_sample")
    dims[0] = 2
    return torch.zeros(dims, dtype=dtype)


def to_onnx(
    obj: object,
    path: str | os.PathLike[str] | None = None,
    *,
    X_sample: SampleLike | None = None,
    opset: int | None = None,
    lowered: bool = False,
    method: str | None = None,
    exporter: str = "dynamo",
) -> onnx.ModelProto:
    """Export ``obj`` as a checked ONNX model (and write it to ``path`` when given).

    Parameters
    ----------
    obj
        A fitted ``NeuralNet*`` (classifiers give ``label`` + ``probabilities``, others
        ``variable``); a scikit-learn ``Pipeline`` whose last step is a fitted net (the
        preprocessing goes into the same graph); a model from ``bridge.from_sklearn`` or
        ``bridge.from_onnx``; a fitted scikit-learn estimator; or an ``nn.Module``.
    path : str or PathLike, optional
        Where to write the file (atomically; tensors as external data over 2 GiB).
    X_sample : array-like or tensor, optional
        Example input rows. Needed for an ``nn.Module`` and a Pipeline; otherwise
        inferred from the fitted feature count or the graph's input.
    opset : int, optional
        Target ai.onnx opset (default: the exporter's choice).
    lowered : bool, default False
        For converted models and estimators: re-export the graph through its torch
        module so that it holds standard ai.onnx operators only (no ai.onnx.ml), for
        runtimes without that domain (onnxruntime's CUDA provider, TensorRT, ...).
        An ``onnx.ModelProto`` given as ``obj`` is lowered the same way.
    method : str, optional
        For converted models that keep one graph per method: which method's graph to
        export (default: the first of predict_proba, predict, transform, ... present).
    exporter : {"dynamo", "torchscript"}
        Which torch ONNX exporter traces torch code.

    Returns
    -------
    onnx.ModelProto
        Checked with ``onnx.checker.check_model(full_check=True)``; metadata holds the
        bridge version, the estimator, the class list and the input expectations.

    Raises
    ------
    NotFittedError
        ``obj`` is an unfitted net or estimator.
    ExportError
        ``obj`` is of another type, its forward cannot be traced, or the opset is too old.
    """
    model: onnx.ModelProto
    if _is_net(obj):
        model = _export_net(obj, X_sample, opset, exporter)  # type: ignore[arg-type]
    elif isinstance(obj, Pipeline) and obj.steps and _is_net(obj.steps[-1][1]):
        model = _export_pipeline(obj, X_sample, opset, exporter)
    elif isinstance(obj, onnx.ModelProto):
        model = _export_graph(obj, X_sample, opset, exporter, lowered)
    elif isinstance(obj, nn.Module) and hasattr(obj, "onnx_model"):
        model = _export_graph(_graph_of(obj, method), X_sample, opset, exporter, lowered)
    elif isinstance(obj, BaseEstimator):
        from bridge.sklearn.convert import from_sklearn

        rows = None if X_sample is None else sample_array(X_sample)[:2]
        converted = from_sklearn(obj, rows)
        model = _export_graph(_graph_of(converted, method), X_sample, opset, exporter, lowered)
    elif isinstance(obj, nn.Module):
        if X_sample is None:
            raise ExportError(f"exporting a {type(obj).__name__} module needs X_sample")
        sample = sample_tensor(X_sample)
        names = getattr(obj, "output_names", None) or ["output"]
        input_name = (getattr(obj, "input_names", None) or ["X"])[0]
        model = export_module(obj, sample, input_name=input_name, output_names=names,
                              opset=opset, exporter=exporter)
        model = set_metadata(model, {"bridge.estimator": type(obj).__name__})
    else:
        raise ExportError(f"cannot export a {type(obj).__name__}; accepted: {ACCEPTED}")
    return check_and_save(model, path)
