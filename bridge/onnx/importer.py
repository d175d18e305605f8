"""``from_onnx``: an ONNX ``ModelProto`` → a ``torch.fx.GraphModule``.

Walks the graph's nodes in order, asks the registry for each node's converter and
wires the returned modules into an fx graph. Nodes whose inputs are all constants are
evaluated once at import time ("constant folding"), so converters see shapes, axes and
other run-time inputs as constants whenever the graph allows it.
"""

from __future__ import annotations

import copy
import operator
import os
import re
import warnings

import onnx
import torch
from torch import fx, nn

from bridge.errors import (
    BridgeError,
    ConversionError,
    InvalidInputError,
    UnsupportedOperatorError,
)
from bridge.onnx import ops as _ops  # noqa: F401  (registers every converter)
from bridge.onnx.context import ClosedVocabulary, ConversionContext
from bridge.onnx.dtypes import STRING, numpy_to_torch
from bridge.onnx.fusion import fuse_graph
from bridge.onnx.graph import (
    ML_DOMAIN,
    OnnxGraph,
    OnnxNode,
    free_names,
    load_model,
    normalize_domain,
)
from bridge.onnx.plans import eager_call
from bridge.onnx.registry import Converted, lookup, schema_version
from bridge.onnx.static_shapes import StaticShapes, remove_dead_nodes

_IDENTIFIER = re.compile(r"[^0-9a-zA-Z_]")


def _python_name(name: str, taken: set[str]) -> str:
    base = _IDENTIFIER.sub("_", name) or "value"
    if base[0].isdigit():
        base = "v_" + base
    candidate, counter = base, 1
    while candidate in taken:
        counter += 1
        candidate = f"{base}_{counter}"
    taken.add(candidate)
    return candidate


def _map_spec(spec, function):
    """Apply ``function`` to the value name(s) of one module input: ``None`` (an omitted
    optional input) stays ``None``, a list of names maps to a list."""
    if spec is None:
        return None
    if isinstance(spec, (list, tuple)):
        return [function(name) for name in spec]
    return function(spec)


def check_forward_inputs(module: fx.GraphModule, args: tuple) -> None:
    """The input check each imported graph's ``forward`` starts with: in eager calls (not
    traced, compiled or exported), ``args`` against the graph's declared inputs (count,
    tensors, rank, fixed sizes: see :func:`check_inputs`), as onnxruntime does, so a wrong
    input fails there rather than deep inside an operator. Subgraph modules (Loop, Scan and
    If bodies) declare no shapes and are not checked."""
    shapes = module.__dict__.get("input_shapes")
    if shapes is not None and eager_call():
        check_inputs(module.input_names, shapes, args)


class CheckedInputsCodeGen(fx.graph.CodeGen):
    """fx code generation whose ``forward`` first calls :func:`check_forward_inputs`.

    The check lives in each module's own generated code, not in a shared ``__call__``:
    ``torch.compile`` keeps its compiled code per code object, so a check shared by every
    imported module would send the ninth compiled module back to eager execution (dynamo's
    recompile limit). TorchScript skips the check (``torch.jit.is_scripting()``)."""

    def gen_fn_def(self, free_vars: list[str], maybe_return_annotation: str) -> str:
        header = super().gen_fn_def(free_vars, maybe_return_annotation)
        names = [var.split(":")[0].strip() for var in free_vars[1:]]  # after ``self``
        values = "".join(f"{name}, " for name in names)
        return (header + "\n    if not torch.jit.is_scripting():"
                f"\n        bridge_check_forward_inputs(self, ({values}))")

    def additional_globals(self) -> list[tuple[str, object]]:
        return [("torch", torch), ("bridge_check_forward_inputs", check_forward_inputs)]


class OnnxGraphModule(fx.GraphModule):
    """The ``fx.GraphModule`` produced by :func:`from_onnx`.

    Besides the usual GraphModule behaviour it records ``input_names`` and
    ``output_names`` (the ONNX names, in order), ``opsets`` (domain → version) and, for
    string-typed values at the graph edges, ``input_vocabularies`` /
    ``output_vocabularies`` (name → the labels their int64 indices stand for). They are
    plain attributes, set by :func:`from_onnx`; no class-level annotations, which
    ``torch.jit.script`` would try to read. ``copy.deepcopy`` keeps them (fx's own deepcopy
    rebuilds the module from its graph and code alone).
    """

    def __init__(self, root, graph: fx.Graph, class_name: str = "OnnxGraphModule"):
        graph.set_codegen(CheckedInputsCodeGen())
        super().__init__(root, graph, class_name)

    def __deepcopy__(self, memo: dict) -> OnnxGraphModule:
        copied = super().__deepcopy__(memo)
        for name in EDGE_ATTRIBUTES:
            if name in self.__dict__:
                setattr(copied, name, copy.deepcopy(self.__dict__[name], memo))
        return copied

    def __reduce__(self) -> tuple:
        """Pickle the graph as nodes, not code: loading then never traces, which would
        disturb calls in other threads (see :mod:`bridge.onnx.pickling`)."""
        from bridge.onnx.pickling import reduce_graph_module

        return reduce_graph_module(self)


EDGE_ATTRIBUTES = ("input_names", "output_names", "opsets", "input_vocabularies",
                   "output_vocabularies", "input_shapes")


def check_inputs(names: list[str], shapes: list, args: tuple) -> None:
    """Raise TypeError/InvalidInputError naming the graph input that ``args`` do not fit.

    ``shapes`` holds, per input, its declared dims (int for a fixed size, None otherwise)
    or None when the graph declares no shape. Checked: the count, that each is a tensor,
    no more axes than declared, and every fixed size, the batch axis included: like
    onnxruntime, a graph exported with a fixed batch size runs at that size only, since
    nothing proves its operators batch-independent (reshape targets and other shapes baked
    in at export would give wrong results, not errors). Graphs whose batch axis is
    symbolic (skl2onnx's, exports with dynamic axes) run at any batch size. A missing
    leading axis is accepted where the declared batch is free or 1 (tree ensembles take
    one row as a vector).
    """
    if len(args) != len(names):
        raise TypeError(f"the graph takes {len(names)} input(s) {names}; got {len(args)}")
    for name, shape, value in zip(names, shapes, args):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"graph input {name!r} must be a torch.Tensor; got "
                            f"{type(value).__name__} (torch.from_numpy converts an array)")
        if shape is None:
            continue
        if value.dim() > len(shape):
            raise InvalidInputError(f"graph input {name!r} has rank {len(shape)} (shape "
                             f"{_shown(shape)}); got shape {tuple(value.shape)}")
        for back in range(1, min(len(shape), value.dim()) + 1):
            if shape[-back] is not None and value.shape[-back] != shape[-back]:
                axis = len(shape) - back
                raise InvalidInputError(f"graph input {name!r} has shape {_shown(shape)}; got "
                                 f"{tuple(value.shape)} (axis {axis} differs)"
                                 + (_FIXED_BATCH if axis == 0 else ""))
        if value.dim() == len(shape) - 1 and shape[0] not in (None, 1):
            raise InvalidInputError(f"graph input {name!r} has shape {_shown(shape)}; got "
                             f"{tuple(value.shape)}, one row of a fixed batch of {shape[0]}"
                             + _FIXED_BATCH)


_FIXED_BATCH = ("; the graph was exported with a fixed batch size, so it runs at that size "
                "only (as in onnxruntime): re-export it with a dynamic batch axis "
                "(torch.onnx.export(..., dynamic_axes=...) or dynamic_shapes=...) to call it "
                "with other batch sizes")


def _shown(shape: list) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


# Names a submodule or constant of an imported module cannot take: the module's own
# attributes (an initializer named "half" or "forward" would clash with nn.Module's methods)
RESERVED_NAMES = frozenset(dir(OnnxGraphModule)) | frozenset(EDGE_ATTRIBUTES) | frozenset(
    {"training", "graph", "code", "meta", "self"})


class _GraphBuilder:
    """Builds one fx graph from one ONNX graph; used once per (sub)graph.

    A subgraph (the body of Loop/Scan, the branches of If) may read values of the
    enclosing graphs by name: those that are constants there become constants here,
    the others become extra placeholders after the subgraph's own inputs
    (``outer_inputs``), which the control-flow module passes in at run time.
    """

    def __init__(self, graph: OnnxGraph, opsets: dict[str, int], trainable: bool,
                 options: dict, outer: ConversionContext | None = None):
        self.trainable = trainable
        self.options = options
        self.opsets = opsets
        self.graph = graph
        self.context = ConversionContext(self.graph, self.opsets, options)
        self.context.convert_subgraph = self.convert_subgraph
        self.outer = outer
        self.outer_inputs: list[str] = []
        self.root = nn.Module()
        self.fx_graph = fx.Graph()
        self.values: dict[str, fx.Node] = {}
        self.names: set[str] = set(RESERVED_NAMES)  # taken: see RESERVED_NAMES
        self.registered: dict[int, tuple[torch.Tensor, fx.Node]] = {}  # see _value
        self.storages: set[int] = set()
        self.static_shapes: StaticShapes | None = None  # top-level graphs only

    @classmethod
    def for_model(cls, model: onnx.ModelProto, trainable: bool, options: dict) -> _GraphBuilder:
        opsets = {normalize_domain(o.domain): o.version for o in model.opset_import}
        graph = OnnxGraph(cls._with_inferred_types(model).graph,
                          options.get("source", "the ONNX model"))
        builder = cls(graph, opsets, trainable, options)
        if options.get("fold_static_shapes", True):
            builder.static_shapes = StaticShapes.for_model(model)
        return builder

    @staticmethod
    def _with_inferred_types(model: onnx.ModelProto) -> onnx.ModelProto:
        try:
            return onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception:  # inference is a convenience; converters cope without types
            return model

    def convert_subgraph(self, graph: onnx.GraphProto) -> tuple[OnnxGraphModule, list[str]]:
        """Convert a subgraph attribute; return its module and the outer values it reads.

        The module takes the subgraph's own inputs, then the values named in the
        returned list (in that order).
        """
        builder = _GraphBuilder(OnnxGraph(graph), self.opsets, self.trainable, self.options,
                                outer=self.context)
        return builder.build(), builder.outer_inputs

    def build(self) -> OnnxGraphModule:
        for name, array in self.graph.initializers.items():
            if array.dtype.kind not in "OUS":
                self.context.constants[name] = numpy_to_torch(array)
        for name in self.graph.inputs:
            value_type = self.graph.type_of(name)
            if value_type is not None and value_type.kind != "tensor":
                raise ConversionError(
                    f"graph input {name!r} is a {value_type.kind}; bridge converts graphs "
                    "whose inputs are tensors"
                )
            self.values[name] = self.fx_graph.placeholder(_python_name(name, self.names))
            if value_type is not None:  # for the passes of bridge.onnx.fusion
                self.values[name].meta["onnx_type"] = value_type
        if self.outer is not None:
            self._bind_outer_values()
        for node in self.graph.nodes():
            if self.static_shapes is not None:
                node = self.static_shapes.rewrite(node, self.context)
                if node is None:  # its outputs are known whatever the free axis' size
                    continue
            self._convert_node(node)
        outputs = [self._value(name, "graph output") for name in self.graph.outputs]
        self.fx_graph.output(outputs[0] if len(outputs) == 1 else tuple(outputs))
        module = OnnxGraphModule(self.root, self.fx_graph, class_name="OnnxGraphModule")
        if self.static_shapes is not None:  # drop what folding (or a converter) left unread
            remove_dead_nodes(module)
        if self.outer is None and ML_DOMAIN not in self.opsets and self.options.get(
                "fuse_graph", True):
            fuse_graph(module, self.trainable)
        module.input_names = self.graph.inputs
        module.output_names = self.graph.outputs
        module.opsets = dict(self.opsets)
        if self.outer is not None:  # vocabularies matter at the edges of the whole model only
            module.input_vocabularies, module.output_vocabularies = {}, {}
            return module
        module.input_vocabularies = self._edge_vocabularies(self.graph.inputs, "input")
        module.input_shapes = [self._declared_shape(name) for name in self.graph.inputs]
        module.output_vocabularies = self._edge_vocabularies(self.graph.outputs, "output")
        return module

    def _bind_outer_values(self) -> None:
        """Constants of enclosing graphs become constants; other outer values, placeholders."""
        for name in free_names(self.graph.proto):
            constant = self.outer.constant(name)
            if constant is not None:
                self.context.constants[name] = constant
            else:
                self.values[name] = self.fx_graph.placeholder(_python_name(name, self.names))
                self.outer_inputs.append(name)

    def _declared_shape(self, name: str) -> list | None:
        """The input's declared dims (fixed sizes as ints, others None), or None."""
        value_type = self.graph.type_of(name)
        if value_type is None or value_type.shape is None:
            return None
        return [d if isinstance(d, int) and d > 0 else None for d in value_type.shape]

    def _edge_vocabularies(self, names: list[str], role: str) -> dict[str, list]:
        vocabularies = {}
        for name in names:
            vocabulary = self.context.vocabulary(name)
            value_type = self.graph.type_of(name)
            is_string = value_type is not None and value_type.elem_type == STRING
            if vocabulary is not None and name in self.context.closed_inputs:
                vocabularies[name] = ClosedVocabulary(vocabulary,
                                                      self.context.closed_inputs[name])
            elif vocabulary is not None:
                vocabularies[name] = vocabulary
            elif is_string:
                raise ConversionError(
                    f"graph {role} {name!r} is a string tensor that no operator maps to or "
                    "from a known vocabulary; bridge carries strings only as int64 indices "
                    "into a vocabulary fixed by the graph (e.g. LabelEncoder, class labels)"
                )
        return vocabularies

    def _convert_node(self, node: OnnxNode) -> None:
        opset = self.opsets.get(node.domain)
        function = lookup(node.domain, node.op_type, opset)
        node.since_version = schema_version(node.domain, node.op_type, opset) or opset
        try:
            result = function(node, self.context)
        except BridgeError:
            raise
        except Exception as error:  # a malformed node (wrong attribute type, missing input)
            raise ConversionError(
                f"{node.op_type} node {node.name!r} cannot be converted ({type(error).__name__}: "
                f"{error}); is the graph malformed?"
            ) from error
        converted = result if isinstance(result, Converted) else Converted(result)
        inputs = converted.inputs if converted.inputs is not None else node.inputs
        inputs = [None if spec == "" else spec for spec in inputs]
        if self._foldable(converted.module, inputs):
            self._fold(node, converted.module, inputs)
            return
        submodule_name = _python_name(node.name, self.names)
        self.root.add_module(submodule_name, converted.module)
        arguments = tuple(self._argument(spec, node) for spec in inputs)
        call = self.fx_graph.call_module(submodule_name, arguments)
        outputs = node.outputs
        if len(outputs) == 1:
            self.values[outputs[0]] = call
        else:
            for position, name in enumerate(outputs):
                if name:
                    self.values[name] = self.fx_graph.call_function(
                        operator.getitem, (call, position)
                    )
        for name in outputs:  # what shape inference knows, for the passes of bridge.onnx.fusion
            value_type = self.context.type_of(name) if name else None
            if value_type is not None:
                self.values[name].meta["onnx_type"] = value_type

    def _argument(self, spec, node: OnnxNode):
        role = f"input of {node.op_type} {node.name!r}"
        return _map_spec(spec, lambda name: self._value(name, role))

    def _foldable(self, module: nn.Module, inputs) -> bool:
        if not getattr(module, "deterministic", True):
            return False
        names = [n for spec in inputs if spec is not None
                 for n in (spec if isinstance(spec, (list, tuple)) else [spec])]
        return all(self.context.is_constant(n) for n in names)

    def _fold(self, node: OnnxNode, module: nn.Module, inputs) -> None:
        def constant(spec):
            return _map_spec(spec, self.context.constants.__getitem__)

        with torch.no_grad():
            try:
                result = module(*[constant(spec) for spec in inputs])
            except (ConversionError, UnsupportedOperatorError):
                raise
            except Exception as error:
                raise ConversionError(
                    f"{node.op_type} node {node.name!r} failed on its constant inputs: {error}"
                ) from error
        results = [result] if len(node.outputs) == 1 else list(result)
        for name, value in zip(node.outputs, results):
            if name and isinstance(value, torch.Tensor):
                self.context.constants[name] = value

    def _value(self, name: str, role: str) -> fx.Node:
        value = self.values.get(name)
        if value is not None:
            return value
        constant = self.context.constants.get(name)
        if constant is None:
            raise ConversionError(
                f"value {name!r} ({role}) is used before any node produces it; "
                "the graph is not in topological order or is missing a node"
            )
        # One tensor under several names (Identity of an initializer, folded away) is
        # registered once, and one that shares memory with a registered tensor is copied:
        # torch.jit.trace refuses a tensor under two names, safetensors shared memory.
        registered = self.registered.get(id(constant))
        if registered is not None and registered[0] is constant:
            self.values[name] = registered[1]
            return registered[1]
        storage = constant.untyped_storage().data_ptr() if constant.numel() else None
        if storage in self.storages:
            stored = constant.clone()
        else:  # a folded view (Unsqueeze, Transpose) is stored dense: safetensors needs it
            stored = constant.contiguous()
        attribute = _python_name(name, self.names)
        if self.trainable and stored.is_floating_point():
            self.root.register_parameter(attribute, nn.Parameter(stored.clone()))
        else:
            self.root.register_buffer(attribute, stored)
        self.values[name] = self.fx_graph.get_attr(attribute)
        self.registered[id(constant)] = (constant, self.values[name])
        if storage is not None:
            self.storages.add(storage)
        return self.values[name]


def inline_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return ``model`` with every call of a model-local function (``model.functions``,
    e.g. skl2onnx's ``local_domain`` helpers for KNNImputer) replaced by the function's
    body, recursively; ``model`` itself when it defines none.

    A function may import an older opset of a domain than the model (skl2onnx writes 21
    into a model of 22); its operators are then read at the model's opset, which is
    allowed only where each of them has the same definition at both.

    Raises
    ------
    ConversionError
        An operator of a function changed between its opset and the model's, or ONNX's
        inliner rejects a function (a malformed or recursive definition).
    """
    if not model.functions:
        return model
    import onnx.inliner

    model_opsets = {normalize_domain(o.domain): o.version for o in model.opset_import}
    aligned = copy.deepcopy(model)
    for function in aligned.functions:
        for entry in function.opset_import:
            domain = normalize_domain(entry.domain)
            if domain not in model_opsets or entry.version == model_opsets[domain]:
                continue
            for node in function.node:
                if normalize_domain(node.domain) != domain:
                    continue
                before = schema_version(domain, node.op_type, entry.version)
                after = schema_version(domain, node.op_type, model_opsets[domain])
                if before != after:
                    raise ConversionError(
                        f"local function {function.domain}::{function.name} uses "
                        f"{domain or 'ai.onnx'}::{node.op_type} at opset {entry.version}, "
                        f"which differs from its definition at the model's opset "
                        f"{model_opsets[domain]}; re-export with matching opsets")
            entry.version = model_opsets[domain]
    try:
        return onnx.inliner.inline_local_functions(aligned)
    except Exception as error:  # the inliner raises plain exceptions from C++
        names = ", ".join(f"{f.domain}::{f.name}" for f in model.functions)
        raise ConversionError(
            f"the model's local functions ({names}) could not be inlined: {error}"
        ) from error


def from_onnx(
    model: onnx.ModelProto | str | os.PathLike | bytes,
    *,
    trainable: bool = False,
    tree_strategy: str = "auto",
    fuse_graph: bool = True,
) -> OnnxGraphModule:
    """Convert an ONNX model into a ``torch.fx.GraphModule``.

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
        The model: a loaded proto, the path of a ``.onnx`` file, or its bytes.
    trainable : bool, default False
        When True, floating-point initializers become ``nn.Parameter`` (so an
        optimizer can fine-tune them); otherwise every constant is a buffer.
    tree_strategy : str, default "auto"
        How tree ensembles run: ``"auto"`` picks per call from depth, tree count,
        batch size and device (see ``docs/trees.md``); ``"gemm"``, ``"traversal"`` or
        ``"perfect"`` force one strategy.
    fuse_graph : bool, default True
        Run the import-time passes of :mod:`bridge.onnx.fusion` on networks (graphs
        outside the ``ai.onnx.ml`` domain): stacked recurrent layers in one fused call,
        dense layers as ``linear``, plain torch calls for common operators. False keeps
        one module per ONNX node (and the ONNX weight layout in the state dict).

    Returns
    -------
    OnnxGraphModule
        A ``torch.fx.GraphModule`` whose ``forward`` takes tensors in graph-input
        order and returns one tensor, or a tuple in graph-output order. String values
        at the edges are int64 indices into ``input_vocabularies`` /
        ``output_vocabularies``.

    Raises
    ------
    InvalidModelError
        The input is not a readable ONNX model.
    UnsupportedOperatorError
        An operator, domain or opset has no converter; the message names the domain,
        operator, opset and the supported versions.
    ConversionError
        The graph is malformed or uses an attribute combination bridge rejects.
    """
    source = repr(str(model)) if isinstance(model, (str, os.PathLike)) else None
    return import_proto(load_model(model), source, trainable=trainable,
                        tree_strategy=tree_strategy, fuse_graph=fuse_graph)


def import_proto(proto: onnx.ModelProto, source: str | None = None, *, trainable: bool = False,
                 tree_strategy: str = "auto", fuse_graph: bool = True) -> OnnxGraphModule:
    """:func:`from_onnx`'s work on a loaded model; ``source`` (e.g. a file's quoted path)
    names the model in error messages, "the ONNX model" when None."""
    from bridge.trees.select import validate_strategy

    validate_strategy(tree_strategy)
    if not isinstance(fuse_graph, bool):
        raise TypeError(f"fuse_graph must be True or False; got {fuse_graph!r}")
    proto = inline_functions(proto)
    options = {"tree_strategy": tree_strategy, "fuse_graph": fuse_graph}
    if source is not None:
        options["source"] = source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fx warns on buffer-name shadowing
        return _GraphBuilder.for_model(proto, trainable, options).build()
