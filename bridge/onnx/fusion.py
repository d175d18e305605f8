"""Import-time fx passes that bring an imported network's eager call close to its original
torch module's: stacked recurrent layers in one fused call, dense layers as ``linear`` on
weights laid out as ``nn.Linear`` keeps them, and plain torch calls for shape operators.

Each pass rewrites nodes whose meaning it can prove from constants alone; the rest of the
graph keeps its converted modules. ``from_onnx`` runs the passes on top-level graphs outside
the ``ai.onnx.ml`` domain (scikit-learn graphs have their own serving plans,
:mod:`bridge.onnx.plans`); the conversion option ``fuse_graph=False`` turns them off.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from bridge.onnx.ops.activations import (
    OnnxGelu,
    OnnxRelu,
    OnnxSigmoid,
    OnnxSoftmaxFamily,
    OnnxTanh,
)
from bridge.onnx.ops.cast import OnnxCast
from bridge.onnx.ops.conv import OnnxConv
from bridge.onnx.ops.elementwise import OnnxAdd, OnnxDiv, OnnxMul, OnnxSub, OnnxUnaryMath
from bridge.onnx.ops.linalg import OnnxGemm, OnnxMatMul
from bridge.onnx.ops.normalization import _FirstOfLayerNormalization
from bridge.onnx.ops.rnn_fused import OnnxFusedRecurrent, OnnxRecurrentStack, _FusedRecurrentY
from bridge.onnx.ops.shape import OnnxReshape, OnnxSqueeze, OnnxTranspose, OnnxUnsqueeze
from bridge.onnx.plans import matmul_add

_FLOATS = {1, 10, 11, 16}  # ONNX float, float16, double, bfloat16
_SINGLE_OR_DOUBLE = {1, 11}  # the module computes half-precision softmax its own way
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_UNARY = {OnnxRelu: torch.relu, OnnxSigmoid: torch.sigmoid, OnnxTanh: torch.tanh}
_MATH = {"Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt, "Erf": torch.erf}
# binary operators whose module computes exactly ``a <op> b`` once an operand is a
# floating-point constant (ONNX then makes both operands that type)
_BINARY = {OnnxAdd: operator.add, OnnxSub: operator.sub, OnnxMul: operator.mul,
           OnnxDiv: operator.truediv}


def fuse_graph(module: fx.GraphModule, trainable: bool) -> bool:
    """Run every pass on ``module`` in place; return whether the graph changed.

    Parameters
    ----------
    module : torch.fx.GraphModule
        An imported graph (:func:`bridge.from_onnx`'s result, before it is returned).
    trainable : bool
        Whether constants are parameters: dense layers then keep their ONNX weights (a
        transposed copy would not be the parameter an optimizer updates).

    Returns
    -------
    bool
        True when some node was rewritten (the module is then recompiled).
    """
    read_before = _attributes_read(module)
    changed = stack_recurrent_layers(module)
    if not trainable:
        changed = dense_layers(module) or changed
    changed = direct_calls(module) or changed
    changed = erf_gelu(module) or changed
    if changed:
        module.graph.eliminate_dead_code()
        module.delete_all_unused_submodules()
        for name in read_before - _attributes_read(module):  # read by replaced nodes only
            if "." not in name and name in module._buffers:
                delattr(module, name)
        module.recompile()
    return changed


def _attributes_read(module: fx.GraphModule) -> set[str]:
    return {node.target for node in module.graph.nodes if node.op == "get_attr"}


def _submodule(module: fx.GraphModule, node, kind: type) -> nn.Module | None:
    """``node``'s module when ``node`` calls a module of exactly type ``kind``."""
    if isinstance(node, fx.Node) and node.op == "call_module":
        candidate = module.get_submodule(node.target)
        if type(candidate) is kind:
            return candidate
    return None


def _constant(module: fx.GraphModule, node) -> torch.Tensor | None:
    if isinstance(node, fx.Node) and node.op == "get_attr":
        value = getattr(module, node.target, None)
        return value if isinstance(value, torch.Tensor) else None
    return None


def _replace(graph: fx.Graph, node: fx.Node, kind: str, target, args: tuple,
             kwargs: dict | None = None) -> fx.Node:
    """Insert a ``kind`` node (call_function or call_module) before ``node``, make every
    reader of ``node`` read it instead and remove ``node``."""
    with graph.inserting_before(node):
        new = graph.create_node(kind, target, args, kwargs)
    new.meta.update(node.meta)  # the recorded type, which later rewrites may read
    node.replace_all_uses_with(new)
    graph.erase_node(node)  # else it would count among its inputs' readers
    return new


def _free_name(module: fx.GraphModule, base: str) -> str:
    """``base``, or ``base_2``, ``base_3``... : the first name ``module`` does not use."""
    name, counter = base, 1
    while hasattr(module, name):
        counter += 1
        name = f"{base}_{counter}"
    return name


def _add_module(module: fx.GraphModule, base: str, submodule: nn.Module) -> str:
    name = _free_name(module, base)
    module.add_submodule(name, submodule)
    return name


# ---------------------------------------------------------------------------- recurrent


def _only_y(module: fx.GraphModule, node: fx.Node) -> tuple[OnnxFusedRecurrent, fx.Node] | None:
    """(the fused module, the node holding its ``Y``) when ``node`` is a fused recurrent
    node of constant torch-order weights and zero initial states whose ``Y`` alone is read."""
    wrapper = _submodule(module, node, _FusedRecurrentY)
    inner = wrapper.inner if wrapper is not None else _submodule(module, node, OnnxFusedRecurrent)
    if inner is None or not inner.torch_order or inner.reverse:
        return None
    x, weights, *states = node.args
    if any(state is not None for state in states) or not all(
            isinstance(w, fx.Node) and w.op == "get_attr" for w in weights):
        return None
    if wrapper is not None:
        return inner, node
    readers = [user for user in node.users if user.users]
    if len(readers) != 1 or readers[0].target is not operator.getitem or readers[0].args[1] != 0:
        return None
    return inner, readers[0]


def _torch_layout(module: fx.GraphModule, y: fx.Node, inner: OnnxFusedRecurrent) -> fx.Node | None:
    """The node after which ONNX's ``Y`` holds torch's layout (``[steps, batch, directions *
    hidden]``, batch first for ``layout=1``), or None: a ``Squeeze`` of the directions axis
    of one direction, or (after ``Transpose(0, 2, 1, 3)`` in layout 0) a ``Reshape`` to
    ``[0, 0, -1]``."""
    if len(y.users) != 1:
        return None
    user = next(iter(y.users))
    axis = 2 if inner.batch_first else 1
    squeeze = _submodule(module, user, OnnxSqueeze)
    if squeeze is not None and inner.num_directions == 1 and user.args[1:] in ((), (None,)):
        return user if squeeze.axes in ([axis], [axis - 4]) else None
    if not inner.batch_first:
        transpose = _submodule(module, user, OnnxTranspose)
        if transpose is None or transpose.perm != [0, 2, 1, 3] or len(user.users) != 1:
            return None
        user = next(iter(user.users))
    reshape = _submodule(module, user, OnnxReshape)
    if reshape is None or user.args[1:] not in ((), (None,)) or reshape.allowzero:
        return None
    target, width = reshape.shape, inner.num_directions * inner.hidden_size
    if target is None or len(target) != 3 or target[2] not in (-1, width):
        return None
    # the first two axes kept: a 0 there, or the size shape inference gives the input
    dims = _shape(user.args[0])
    for axis in (0, 1):
        if target[axis] != 0 and (dims is None or dims[axis] != target[axis]):
            return None
    return user


def _shape(node) -> tuple | None:
    """The shape the importer recorded for ``node``'s value (``onnx_type`` in its meta)."""
    value_type = node.meta.get("onnx_type") if isinstance(node, fx.Node) else None
    return None if value_type is None else value_type.shape


def stack_recurrent_layers(module: fx.GraphModule) -> bool:
    """Rewrite fused RNN/GRU/LSTM nodes read only through their torch layout into
    :class:`OnnxRecurrentStack`, join consecutive ones into one multi-layer call, and run
    a stack batch first when a ``Transpose(1, 0, 2)`` surrounds it on both sides (how
    exporters write ``batch_first=True``)."""
    graph, changed = module.graph, False
    for node in list(graph.nodes):
        found = _only_y(module, node)
        if found is None:
            continue
        inner, y = found
        native = _torch_layout(module, y, inner)
        if native is None:
            continue
        stack = OnnxRecurrentStack(inner.cell, inner.hidden_size, 1, inner.bidirectional,
                                   inner.batch_first, inner.nonlinearity)
        name = _add_module(module, f"{node.target}_stack", stack)
        _replace(graph, native, "call_module", name, (node.args[0], list(node.args[1])))
        changed = True
    if not changed:
        return False
    graph.eliminate_dead_code()
    for node in list(graph.nodes):
        stack = _submodule(module, node, OnnxRecurrentStack)
        if stack is None:
            continue
        below = node.args[0]
        lower = _submodule(module, below, OnnxRecurrentStack)
        if lower is not None and len(below.users) == 1 and (
                lower.cell, lower.hidden_size, lower.bidirectional, lower.batch_first,
                lower.nonlinearity) == (stack.cell, stack.hidden_size, stack.bidirectional,
                                        stack.batch_first, stack.nonlinearity):
            stack.num_layers += lower.num_layers
            node.args = (below.args[0], list(below.args[1]) + list(node.args[1]))
            graph.erase_node(below)
        source, readers = node.args[0], list(node.users)
        if (not stack.batch_first and _is_swap(module, source) and len(readers) == 1
                and _is_swap(module, readers[0])):
            stack.batch_first = True
            node.args = (source.args[0], node.args[1])
            node.meta.update(readers[0].meta)  # its value now has the reader's shape
            readers[0].replace_all_uses_with(node)
    return True


def _is_swap(module: fx.GraphModule, node) -> bool:
    """Whether ``node`` is a ``Transpose(1, 0, 2)``: time and batch axes swapped."""
    transpose = _submodule(module, node, OnnxTranspose)
    return transpose is not None and transpose.perm == [1, 0, 2]


# ---------------------------------------------------------------------------- dense layers


def dense_layers(module: fx.GraphModule) -> bool:
    """Rewrite ``MatMul(x, W)`` with a constant floating-point ``W [K, M]``, and the
    ``Add`` of a constant bias ``[M]`` (or ``[1, M]`` when ``x`` has two axes or more) that
    may follow it, into one call: ``F.linear(x, Wt, b)`` with ``Wt = W.T`` stored
    contiguous (``nn.Linear``'s layout, for which the CPU GEMM is faster than for ``W``
    itself, and one ``addmm`` instead of a product and an add), or
    :func:`~bridge.onnx.plans.matmul_add` (``torch.addmm(b, x, W)``) when shape inference
    says ``x`` is a matrix: a call less than ``linear``, which matters for the one-row
    calls of scikit-learn's MLPs and decompositions."""
    graph, changed = module.graph, False
    transposed: dict[str, str] = {}  # W's attribute -> Wt's
    for node in list(graph.nodes):
        gemm = _submodule(module, node, OnnxGemm)
        if gemm is not None:
            changed = _gemm_as_linear(module, node, gemm, transposed) or changed
            continue
        if _submodule(module, node, OnnxMatMul) is None or len(node.args) != 2:
            continue
        weight = _constant(module, node.args[1])
        if weight is None or weight.dim() != 2 or not weight.is_floating_point():
            continue
        dims = _shape(node.args[0])
        matrix = dims is not None and len(dims) == 2
        bias_node, bias, end = None, None, node
        if len(node.users) == 1:
            user = next(iter(node.users))
            add = _submodule(module, user, OnnxAdd)
            if add is not None and add.axis is None and len(user.args) == 2:
                other = user.args[1] if user.args[0] is node else user.args[0]
                bias, columns = _constant(module, other), weight.shape[1]
                # a [1, M] bias adds as a [M] one to a product of two axes or more
                flat = (bias is not None and tuple(bias.shape) == (1, columns)
                        and dims is not None and len(dims) >= 2)
                if (bias is not None and bias.dtype == weight.dtype
                        and (tuple(bias.shape) == (columns,) or flat)):
                    bias_node, end = other, user
                    if flat and not matrix:
                        name = _add_buffer(module, f"{other.target}_linear", bias.reshape(-1))
                        with graph.inserting_before(end):
                            bias_node = graph.get_attr(name)
        if matrix:  # matmul_add checks the rank: a graph may take one row without its axis
            call = ((matmul_add, (node.args[0], node.args[1], bias_node)) if bias_node is not None
                    else (torch.matmul, (node.args[0], node.args[1])))
        else:
            layout = _transposed(module, node.args[1], end, transposed)
            call = (F.linear, (node.args[0], layout, bias_node))
        _replace(graph, end, "call_function", *call)
        changed = True
    return changed


def _transposed(module: fx.GraphModule, weight: fx.Node, before: fx.Node,
                made: dict[str, str]) -> fx.Node:
    """A read, inserted before ``before``, of the constant ``weight`` transposed and stored
    contiguous (one buffer per weight, ``made`` maps the weight's attribute to it)."""
    if weight.target not in made:
        value = getattr(module, weight.target)
        made[weight.target] = _add_buffer(module, f"{weight.target}_linear",
                                          value.t().contiguous())
    with module.graph.inserting_before(before):
        return module.graph.get_attr(made[weight.target])


def _gemm_as_linear(module: fx.GraphModule, node: fx.Node, gemm: OnnxGemm,
                    made: dict[str, str]) -> bool:
    """``Gemm(A, B, C)`` with a constant floating-point ``B`` and a constant bias ``C [N]``
    (or none), unscaled and ``A`` not transposed, as ``F.linear``."""
    args = node.args
    weight = _constant(module, args[1]) if len(args) in (2, 3) else None
    if (weight is None or weight.dim() != 2 or not weight.is_floating_point()
            or gemm.transpose_a or gemm.alpha != 1.0):
        return False
    bias_node = args[2] if len(args) == 3 else None
    if bias_node is not None:
        bias = _constant(module, bias_node)
        rows = weight.shape[0] if gemm.transpose_b else weight.shape[1]
        if (bias is None or gemm.beta != 1.0 or bias.dtype != weight.dtype
                or tuple(bias.shape) != (rows,)):
            return False
    layout = args[1] if gemm.transpose_b else _transposed(module, args[1], node, made)
    _replace(module.graph, node, "call_function", F.linear, (args[0], layout, bias_node))
    return True


def _add_buffer(module: fx.GraphModule, base: str, value: torch.Tensor) -> str:
    name = _free_name(module, base)
    module.register_buffer(name, value)
    return name


# ---------------------------------------------------------------------------- direct calls


def torch_call(module: fx.GraphModule, node: fx.Node) -> tuple | None:
    """The torch call computing what ``node``'s converted module computes, when the
    module's constants (and the type shape inference recorded in ``node.meta``) leave one
    choice (the rules of :func:`direct_calls`).

    Parameters
    ----------
    module : torch.fx.GraphModule
        The imported graph module owning ``node``'s submodule and constants.
    node : torch.fx.Node
        A node of ``module``'s graph (or of a copy of it).

    Returns
    -------
    tuple or None
        ``(function, args)`` or ``(function, args, kwargs)`` for a ``call_function``
        node, or None where the module must stay.
    """
    if node.op != "call_module":
        return None
    sub = module.get_submodule(node.target)
    kind, args = type(sub), node.args
    runtime = args[1:] not in ((), (None,))  # a second input given at run time
    if kind is OnnxTranspose and sub.perm is not None:
        return torch.permute, (args[0], list(sub.perm))
    if kind is OnnxReshape and not runtime and sub.shape is not None and (
            sub.allowzero or 0 not in sub.shape):
        return torch.reshape, (args[0], list(sub.shape))
    if kind is OnnxUnsqueeze and not runtime and len(sub.axes) == 1:
        return torch.unsqueeze, (args[0], sub.axes[0])
    if kind is _FirstOfLayerNormalization and len(args) in (2, 3) and sub.inner.axis == -1:
        scale = _constant(module, args[1])
        bias = _constant(module, args[2]) if len(args) == 3 and args[2] is not None else None
        # a scale of one entry may broadcast over the axis, which F.layer_norm refuses
        if (scale is not None and scale.dim() == 1 and scale.shape[0] > 1
                and scale.dtype in (torch.float32, torch.float64)
                and (len(args) == 2 or args[2] is None
                     or (bias is not None and bias.shape == scale.shape
                         and bias.dtype == scale.dtype))):
            bias_arg = args[2] if len(args) == 3 else None
            return F.layer_norm, (args[0], [scale.shape[0]], args[1], bias_arg, sub.inner.epsilon)
    if kind in _BINARY and sub.axis is None and len(args) == 2:
        if _elem_type(node) in _FLOATS or any(
                value is not None and value.is_floating_point()
                for value in (_constant(module, a) for a in args)):
            return _BINARY[kind], tuple(args)
    if kind in _UNARY:
        return _UNARY[kind], (args[0],)
    if kind is OnnxUnaryMath and sub.op_type in _MATH:
        return _MATH[sub.op_type], (args[0],)
    if kind is OnnxGelu:
        return F.gelu, (args[0],), {"approximate": sub.approximate}
    if (kind is OnnxSoftmaxFamily and sub.op_type in ("Softmax", "LogSoftmax")
            and not sub.coerce_2d and _elem_type(node) in _SINGLE_OR_DOUBLE):
        function = torch.softmax if sub.op_type == "Softmax" else torch.log_softmax
        return function, (args[0], sub.axis)
    if kind is OnnxMatMul and len(args) == 2:
        # the module folds a [..., K] by [K, M] product into one mm; other ranks are matmul's
        ranks = [None if _shape(a) is None else len(_shape(a)) for a in args]
        if (ranks[1] is not None and ranks[1] != 2) or (ranks[0] is not None and ranks[0] <= 2):
            return torch.matmul, tuple(args)
    if (kind is OnnxConv and sub.auto_pad in ("NOTSET", "VALID") and not sub.explicit_pads
            and sub.rank in (1, 2, 3) and len(args) in (2, 3)):
        function = (F.conv1d, F.conv2d, F.conv3d)[sub.rank - 1]
        bias = args[2] if len(args) == 3 else None
        return function, (args[0], args[1], bias, list(sub.strides), list(sub.native_padding),
                          list(sub.dilations), sub.group)
    return None


def _elem_type(node: fx.Node) -> int | None:
    """The ONNX element type the importer recorded for ``node``'s value."""
    value_type = node.meta.get("onnx_type")
    return None if value_type is None else value_type.elem_type


def direct_calls(module: fx.GraphModule) -> bool:
    """Replace the modules of common operators by the torch call each makes where the
    node's constants (and the types shape inference recorded) leave one choice: shape
    operators (Transpose, Reshape to a constant target, Unsqueeze of one axis),
    LayerNormalization over the last axis, float arithmetic,
    activations, Softmax, MatMul of other ranks than [..., K] @ [K, M] and Conv with
    symmetric pads. An ``nn.Module`` call and its Python ``forward`` cost 1-3 us a node,
    as much as many of these operations."""
    graph, changed = module.graph, False
    for node in list(graph.nodes):
        cast = _submodule(module, node, OnnxCast)
        if cast is not None and cast.dtype in _FLOAT_DTYPES and len(node.args) == 1:
            # ONNX Cast to a float type is Tensor.to (cast_tensor's other cases are float8
            # and integer targets)
            _replace(graph, node, "call_method", "to", (node.args[0], cast.dtype))
            changed = True
            continue
        direct = torch_call(module, node)
        if direct is not None:
            kwargs = direct[2] if len(direct) > 2 else None
            _replace(graph, node, "call_function", direct[0], direct[1], kwargs)
            changed = True
    return changed


# ---------------------------------------------------------------------------- formulas


def _scalar(module: fx.GraphModule, node) -> float | None:
    """The value of a floating-point constant of one element, else None."""
    value = _constant(module, node)
    if value is None or value.numel() != 1 or not value.is_floating_point():
        return None
    return float(value.reshape(()))


def _other(node: fx.Node, operand) -> object:
    """The operand of a two-operand ``node`` that is not ``operand``."""
    return node.args[1] if node.args[0] is operand else node.args[0]


def _only_user(node: fx.Node, target) -> fx.Node | None:
    """``node``'s single reader when it calls ``target``."""
    if len(node.users) != 1:
        return None
    user = next(iter(node.users))
    if user.op != "call_function" or user.target is not target or len(user.args) != 2:
        return None
    return user


def erf_gelu(module: fx.GraphModule) -> bool:
    """Rewrite ``x * (erf(x / sqrt(2)) + 1) * 0.5`` (the TorchScript exporter writes exact
    GELU as Div, Erf, Add, Mul, Mul) into one ``F.gelu(x)``: one kernel instead of five.
    Runs after :func:`direct_calls`, which leaves the formula as plain torch calls."""
    graph, changed = module.graph, False
    for erf in list(graph.nodes):
        if erf.op != "call_function" or erf.target is not torch.erf or len(erf.users) != 1:
            continue
        divide = erf.args[0]
        if not (isinstance(divide, fx.Node) and divide.op == "call_function"
                and divide.target is operator.truediv and len(divide.users) == 1):
            continue
        x, root = divide.args
        scale = _scalar(module, root)
        if scale is None or abs(scale - 2 ** 0.5) > 1e-6:
            continue
        add = _only_user(erf, operator.add)
        if add is None or _scalar(module, _other(add, erf)) != 1.0:
            continue
        product = _only_user(add, operator.mul)
        if product is None or _other(product, add) is not x:
            continue
        half = _only_user(product, operator.mul)
        if half is None or _scalar(module, _other(half, product)) != 0.5:
            continue
        _replace(graph, half, "call_function", F.gelu, (x,))
        changed = True
    return changed

