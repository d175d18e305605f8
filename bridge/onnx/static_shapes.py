"""Import-time folding of shape arithmetic whose result does not depend on the batch size.

Exporters (the TorchScript one most of all) compute reshape targets at run time:
``Shape`` → ``Gather`` → ``Unsqueeze`` → ``Concat`` → ``Reshape``. bridge leaves the first
axis of every graph input free, so such a ``Shape`` is no constant; but most of its
entries are. :class:`StaticShapes` infers every value's shape with that axis symbolic,
tracks the known entries of small integer vectors through the shape operators, folds
those that become fully known into constants, and gives a ``Reshape`` whose target has one
unknown entry the constant target with ``-1`` there. The importer then removes the nodes
nobody reads any more.
"""

from __future__ import annotations

import onnx
import torch
from torch import fx

from bridge.onnx.context import ConversionContext
from bridge.onnx.dtypes import onnx_elem_type
from bridge.onnx.graph import ML_DOMAIN, OnnxNode, normalize_domain

FREE_AXIS = "bridge_free_axis"
_INTEGER_CASTS = {onnx.TensorProto.INT64: torch.int64, onnx.TensorProto.INT32: torch.int32}
_LARGEST_VECTOR = 64  # integer constants longer than this are no shapes


class _Partial:
    """An integer scalar or vector with some entries known (ints) and others not: a str
    names a symbolic size of shape inference (equal names, equal sizes), None is unknown."""

    def __init__(self, values: list[int | str | None], scalar: bool = False,
                 dtype: torch.dtype = torch.int64):
        self.values = values
        self.scalar = scalar
        self.dtype = dtype

    @property
    def known(self) -> bool:
        return all(isinstance(v, int) for v in self.values)

    def tensor(self) -> torch.Tensor:
        value = torch.tensor(self.values, dtype=self.dtype)
        return value.reshape([]) if self.scalar else value


def _divide(a: int, b: int) -> int | None:
    if b == 0:
        return None
    quotient = abs(a) // abs(b)  # integer Div truncates toward zero
    return quotient if (a >= 0) == (b >= 0) else -quotient


_ARITHMETIC = {
    "Add": lambda a, b: a + b,
    "Sub": lambda a, b: a - b,
    "Mul": lambda a, b: a * b,
    "Div": _divide,
}


class StaticShapes:
    """Known entries of shape vectors, for one top-level graph; see the module docstring.

    Shapes are inferred node by node as the importer walks the graph (ONNX's own shape
    inference for each node, fed the constants folded so far), so a size computed from
    folded shape arithmetic (a ``Pad`` whose pads were folded) is known downstream.

    Parameters
    ----------
    input_types : dict
        Graph input name → its ``onnx.TypeProto`` with the first axis made symbolic.
    opsets : list
        The model's ``OperatorSetIdProto`` entries.
    """

    def __init__(self, input_types: dict[str, onnx.TypeProto], opsets: list):
        self.types = dict(input_types)
        self.opsets = {normalize_domain(o.domain): o.version for o in opsets}
        self.opset_protos = list(opsets)
        self.partials: dict[str, _Partial] = {}
        self.folded = 0

    @classmethod
    def for_model(cls, model: onnx.ModelProto) -> StaticShapes | None:
        """Set up the pass for ``model``, with the first axis of each input free.

        Returns None when there is nothing to fold (no ``Shape``/``Size`` node) and for
        ``ai.onnx.ml`` graphs (bridge lets their inputs drop the leading axis, which a
        folded rank would contradict).
        """
        graph = model.graph
        domains = {normalize_domain(o.domain) for o in model.opset_import}
        if ML_DOMAIN in domains or not any(n.op_type in ("Shape", "Size") for n in graph.node):
            return None
        initializers = {t.name for t in graph.initializer}
        input_types = {}
        for position, value in enumerate(graph.input):
            if value.name in initializers or not value.type.HasField("tensor_type"):
                continue
            free = onnx.TypeProto()
            free.CopyFrom(value.type)
            dims = free.tensor_type.shape.dim
            if len(dims) > 0:  # one symbol per input: their batch sizes may differ
                dims[0].Clear()
                dims[0].dim_param = f"{FREE_AXIS}_{position}"
            input_types[value.name] = free
        return cls(input_types, list(model.opset_import))

    def dims(self, name: str) -> tuple[int | str | None, ...] | None:
        """The dims of value ``name``: ints are fixed whatever the free axes' sizes, a str
        is a symbolic size (shape inference's ``dim_param``), None an unknown one."""
        value = self.types.get(name)
        if value is None or not value.HasField("tensor_type") \
                or not value.tensor_type.HasField("shape"):
            return None
        return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                     for d in value.tensor_type.shape.dim)

    def rewrite(self, node: OnnxNode, context: ConversionContext) -> OnnxNode | None:
        """Fold ``node`` when its outputs are known: store them as constants in ``context``
        and return None; otherwise return the node to convert (a ``Reshape`` may come back
        with a constant target)."""
        if node.domain != "":
            return node
        result = self._evaluate(node, context)
        if result is not None:
            self.partials[node.outputs[0]] = result
            if result.known:
                context.constants[node.outputs[0]] = result.tensor()
                self.folded += 1
                return None
        if node.op_type == "Reshape" and len(node.inputs) > 1:
            node = self._reshape_with_constant_target(node, context)
        if node.op_type == "Expand" and len(node.inputs) > 1:
            self._note_known_entries(node.inputs[1], context)
        self._infer(node, context)
        return node

    def _infer(self, node: OnnxNode, context: ConversionContext) -> None:
        """Record the output types ONNX infers for ``node`` from what is known so far."""
        input_types, input_data = {}, {}
        for name in node.inputs:
            if not name:
                continue
            constant = context.constant(name)
            if name in self.types:
                input_types[name] = self.types[name]
            elif constant is not None:
                input_types[name] = onnx.helper.make_tensor_type_proto(
                    onnx_elem_type(constant.dtype), list(constant.shape))
            else:
                return  # an input of unknown type: the outputs stay unknown
            if constant is not None and constant.dtype in (torch.int64, torch.int32) \
                    and constant.numel() <= _LARGEST_VECTOR:
                input_data[name] = onnx.numpy_helper.from_array(constant.numpy(), name)
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for a in node.proto.attribute):
            return
        try:
            schema = onnx.defs.get_schema(node.op_type, self.opsets.get("", 1), "")
            self.types.update(onnx.shape_inference.infer_node_outputs(
                schema, node.proto, input_types, input_data, opset_imports=self.opset_protos))
        except Exception:  # noqa: BLE001  (no schema or inference failed: outputs stay unknown)
            return
        self._dims_from_partial_target(node)

    def _dims_from_partial_target(self, node: OnnxNode) -> None:
        """Give ``Expand``/``ConstantOfShape``/``Reshape`` outputs the sizes their partly
        known target holds (ONNX's inference only reads fully constant targets)."""
        position = {"Expand": 1, "ConstantOfShape": 0, "Reshape": 1}.get(node.op_type)
        output = self.types.get(node.outputs[0])
        if position is None or len(node.inputs) <= position or output is None \
                or not output.HasField("tensor_type"):
            return
        target = self.partials.get(node.inputs[position])
        if target is None or target.scalar:
            return
        data = self.dims(node.inputs[0]) if node.op_type != "ConstantOfShape" else ()
        if data is None:
            return
        dims: list = list(target.values)
        if node.op_type == "Expand":
            rank = max(len(data), len(dims))
            data = (1,) * (rank - len(data)) + tuple(data)
            dims = [1] * (rank - len(dims)) + dims
            dims = [d if t == 1 else t if d == 1 or d == t else None for d, t in zip(data, dims)]
        elif node.op_type == "Reshape":
            dims = [None if v == -1 else data[i] if v == 0 and i < len(data) else v
                    for i, v in enumerate(dims)]
        shape = output.tensor_type.shape
        shape.Clear()
        for value in dims:
            dim = shape.dim.add()
            if isinstance(value, int):
                dim.dim_value = value
            elif isinstance(value, str):
                dim.dim_param = value

    def _partial(self, name: str, context: ConversionContext) -> _Partial | None:
        if name in self.partials:
            return self.partials[name]
        value = context.constant(name)
        if value is None or value.dtype not in (torch.int64, torch.int32, torch.bool) \
                or value.dim() > 1 \
                or value.numel() > _LARGEST_VECTOR:
            return None
        return _Partial([int(v) for v in value.reshape(-1).tolist()], value.dim() == 0,
                        value.dtype)

    def _ints(self, node: OnnxNode, context: ConversionContext, position: int,
              attribute: str) -> list[int] | None:
        """An int-list operand given as a constant input (newer opsets) or an attribute."""
        if len(node.inputs) > position and node.inputs[position]:
            partial = self._partial(node.inputs[position], context)
            return partial.values if partial is not None and partial.known else None
        value = node.attribute(attribute)
        return None if value is None else [int(v) for v in value]

    def _evaluate(self, node: OnnxNode, context: ConversionContext) -> _Partial | None:
        op = node.op_type
        if len(node.outputs) != 1 or not node.inputs or not node.inputs[0]:
            return None
        if op in ("Shape", "Size"):
            dims = self.dims(node.inputs[0])
            if dims is None:
                return None
            if op == "Size":
                known = all(isinstance(d, int) for d in dims)
                return _Partial([_product(dims) if known else None], scalar=True)
            rank = len(dims)
            start, end = node.attribute("start", 0), node.attribute("end", rank)
            start, end = (max(0, min(rank, v + rank if v < 0 else v)) for v in (start, end))
            return _Partial(list(dims[start:end]))
        first = self._partial(node.inputs[0], context)
        if first is None:
            return None
        if op == "Identity":
            return first
        if op == "Cast":
            dtype = _INTEGER_CASTS.get(node.attribute("to"))
            return None if dtype is None else _Partial(first.values, first.scalar, dtype)
        if op == "Gather":
            return self._gather(node, context, first)
        if op == "Unsqueeze" and first.scalar:
            axes = self._ints(node, context, 1, "axes")
            return _Partial(first.values, False, first.dtype) if axes in ([0], [-1]) else None
        if op == "Squeeze" and not first.scalar and len(first.values) == 1:
            axes = self._ints(node, context, 1, "axes")
            return _Partial(first.values, True, first.dtype) if axes in (None, [0], [-1]) else None
        if op == "Concat" and not first.scalar:
            parts = [self._partial(name, context) for name in node.inputs]
            if any(p is None or p.scalar or p.dtype != first.dtype for p in parts):
                return None
            return _Partial([v for p in parts for v in p.values], False, first.dtype)
        if op == "Reshape" and len(node.inputs) > 1 and not first.scalar \
                and len(first.values) <= _LARGEST_VECTOR:  # a shape vector kept 1-D
            target = self._ints(node, context, 1, "shape")
            if target in ([-1], [len(first.values)]):
                return _Partial(first.values, False, first.dtype)
            return None
        if op == "Slice" and not first.scalar:
            return self._slice(node, context, first)
        if op in _ARITHMETIC and len(node.inputs) == 2:
            second = self._partial(node.inputs[1], context)
            return None if second is None else _elementwise(_ARITHMETIC[op], first, second)
        if op == "Equal" and len(node.inputs) == 2:
            second = self._partial(node.inputs[1], context)
            if second is None:
                return None
            result = _elementwise(_equal, first, second, symbols=True)
            return None if result is None else _Partial(result.values, result.scalar, torch.bool)
        if op == "Where" and len(node.inputs) == 3 and first.dtype == torch.bool:
            return _where(first, self._partial(node.inputs[1], context),
                          self._partial(node.inputs[2], context))
        return None

    def _gather(self, node: OnnxNode, context: ConversionContext,
                data: _Partial) -> _Partial | None:
        indices = self._partial(node.inputs[1], context)
        if data.scalar or indices is None or not indices.known or node.attribute("axis", 0):
            return None
        length = len(data.values)
        if any(not -length <= i < length for i in indices.values):
            return None  # out of range: leave the error to Gather at run time
        return _Partial([data.values[i] for i in indices.values], indices.scalar, data.dtype)

    def _slice(self, node: OnnxNode, context: ConversionContext,
               data: _Partial) -> _Partial | None:
        starts = self._ints(node, context, 1, "starts")
        ends = self._ints(node, context, 2, "ends")
        axes = self._ints(node, context, 3, "axes")
        steps = self._ints(node, context, 4, "steps") or [1]
        if starts is None or ends is None or len(starts) != 1 or axes not in (None, [0], [-1]):
            return None
        if (len(node.inputs) > 3 and node.inputs[3] and axes is None) or \
                (len(node.inputs) > 4 and node.inputs[4] and len(steps) != 1) or steps[0] == 0:
            return None
        # ONNX clamps like Python slicing, with huge ends standing for "to the end"
        return _Partial(data.values[slice(starts[0], ends[0], steps[0])], False, data.dtype)

    def _reshape_with_constant_target(self, node: OnnxNode,
                                      context: ConversionContext) -> OnnxNode:
        target = self.partials.get(node.inputs[1])
        if target is None or target.scalar or target.known or node.attribute("allowzero", 0):
            return node
        values = _resolve_minus_one(list(target.values), self.dims(node.inputs[0]))
        if values is None or sum(not isinstance(v, int) for v in values) != 1 \
                or any(isinstance(v, int) and v <= 0 for v in values):
            return node  # -1 can stand for one unknown entry only; 0 copies an input size
        name = f"{node.inputs[1]}::static"
        context.constants[name] = torch.tensor(
            [v if isinstance(v, int) else -1 for v in values], dtype=torch.int64)
        self.partials[name] = _Partial(values)  # so the output keeps the symbolic size
        proto = onnx.NodeProto()
        proto.CopyFrom(node.proto)
        proto.input[1] = name
        self.folded += 1
        return OnnxNode(proto, node.index)


    def _note_known_entries(self, name: str, context: ConversionContext) -> None:
        """Tell the converter which entries of a run-time shape vector are known: under
        ``torch.export`` they then stay numbers, where entries read from the tensor become
        sizes torch knows nothing of (an ``Expand`` to ``[batch, 1, 32, 32]`` had its 1
        assumed to be the 2 it is broadcast against later)."""
        target = self.partials.get(name)
        if target is not None and not target.scalar and not target.known:
            context.known_entries[name] = [v if isinstance(v, int) else None
                                           for v in target.values]


def _resolve_minus_one(target: list, dims: tuple | None) -> list | None:
    """Replace a ``-1`` of a Reshape target by its size where the one other unknown entry
    is a symbol the input's dims hold once (the symbols cancel): ``[b, 32, -1, 64]`` on an
    input ``(b, 32, 128)`` gives ``[b, 32, 2, 64]``. Returns the target, changed or not,
    or None when it holds a 0 (a copied input size, not worth resolving)."""
    if 0 in target:
        return None
    if -1 not in target or dims is None:
        return target
    symbols = [v for v in target if not isinstance(v, int)]
    if len(symbols) != 1 or symbols[0] is None or list(dims).count(symbols[0]) != 1:
        return target
    others = [d for d in dims if d != symbols[0]]
    if not all(isinstance(d, int) for d in others):
        return target
    known = _product(v for v in target if isinstance(v, int) and v != -1)
    if known <= 0 or _product(others) % known:
        return target
    return [_product(others) // known if v == -1 else v for v in target]


def _product(dims) -> int:
    result = 1
    for d in dims:
        result *= d
    return result


def _equal(x, y) -> int | None:
    """1/0 where known: two ints compare; a symbolic size is never negative."""
    if isinstance(x, int) and isinstance(y, int):
        return int(x == y)
    if (isinstance(x, str) and isinstance(y, int) and y < 0) or \
            (isinstance(y, str) and isinstance(x, int) and x < 0):
        return 0
    return None


def _where(condition: _Partial, a: _Partial | None, b: _Partial | None) -> _Partial | None:
    if a is None or b is None or a.dtype != b.dtype:
        return None
    length = max(len(condition.values), len(a.values), len(b.values))
    if any(len(p.values) not in (1, length) for p in (condition, a, b)):
        return None
    picked = []
    for i in range(length):
        chosen = condition.values[i if len(condition.values) > 1 else 0]
        if not isinstance(chosen, int):
            picked.append(None)
            continue
        source = a if chosen else b
        picked.append(source.values[i if len(source.values) > 1 else 0])
    return _Partial(picked, condition.scalar and a.scalar and b.scalar, a.dtype)


def _elementwise(function, a: _Partial, b: _Partial, symbols: bool = False) -> _Partial | None:
    if (len(a.values) != len(b.values) and 1 not in (len(a.values), len(b.values))) \
            or a.dtype != b.dtype:
        return None
    length = max(len(a.values), len(b.values))
    left = a.values * length if len(a.values) == 1 else a.values
    right = b.values * length if len(b.values) == 1 else b.values
    values = [function(x, y) if symbols or (isinstance(x, int) and isinstance(y, int)) else None
              for x, y in zip(left, right)]
    return _Partial(values, a.scalar and b.scalar, a.dtype)


def remove_dead_nodes(module: fx.GraphModule) -> int:
    """Drop the nodes whose results nobody reads and the submodules only they called;
    return how many nodes went."""
    before = len(module.graph.nodes)
    module.graph.eliminate_dead_code()
    removed = before - len(module.graph.nodes)
    if removed:
        module.delete_all_unused_submodules()
        module.recompile()
    return removed
