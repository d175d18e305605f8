"""Serving plans: an imported graph's forward pruned to the outputs one call needs.

An ONNX-ML graph answers every method at once (skl2onnx's classifier graph returns labels,
probabilities and, in bridge, their logarithm), so ``predict_proba`` run through the whole
graph pays for the label arg-max and the log as well. A plan is the graph's generated
code for a subset of its outputs, with every node the subset does not need removed and
each converted operator called through its ``forward`` directly (an ``nn.Module`` call
adds its hook bookkeeping, about a microsecond per node). The plan is a plain function of
the graph module: it reads the module's submodules and constants as they are at call
time, so ``.to()``, ``load_state_dict`` and in-place updates never leave it stale.

Plans serve eager calls only (``ConvertedModel``'s methods use them); tracing, scripting,
exporting and compiling run the full graph. A submodule carrying forward hooks when the
plan is built keeps its ordinary call, so its hooks run; for hooks registered later, call
``module.recompile()`` (a recompiled graph gets new plans) or call the graph module itself.
"""

from __future__ import annotations

import copy
import operator
import weakref
from collections.abc import Callable, Sequence

import torch
from torch import fx, nn
from torch.fx.graph_module import _forward_from_src

from bridge.derived import eager_call  # noqa: F401  (re-exported for the importer)
from bridge.onnx import select

Plan = Callable[..., object]


def has_hooks(module: nn.Module) -> bool:
    """Whether ``module`` has forward hooks or pre-hooks of its own."""
    return bool(module._forward_hooks or module._forward_pre_hooks)


def pruned_graph(module: fx.GraphModule, outputs: Sequence[int]) -> fx.Graph:
    """A copy of ``module``'s graph returning only ``outputs`` (positions in its output
    tuple), as a tuple, with the nodes those outputs do not depend on removed."""
    graph = copy.deepcopy(module.graph)
    graph.set_codegen(fx.graph.CodeGen())  # plans' callers check their inputs themselves
    output = next(node for node in graph.nodes if node.op == "output")
    values = output.args[0]
    values = tuple(values) if isinstance(values, (tuple, list)) else (values,)
    for position in outputs:
        if not 0 <= position < len(values):
            raise IndexError(f"the graph has {len(values)} output(s); no output {position}")
    output.args = (tuple(values[position] for position in outputs),)
    _remove_unused(graph)
    return graph


def _remove_unused(graph: fx.Graph) -> None:
    """Drop nodes nobody reads, last first. Converted operators have no side effects (a
    random operator whose draw nobody reads can go too), so unlike fx's own dead-code
    pass this needs no owning module to ask about purity."""
    for node in reversed(list(graph.nodes)):
        if node.op not in ("placeholder", "output") and not node.users:
            graph.erase_node(node)


def used_outputs(node: fx.Node) -> tuple[int, ...] | None:
    """The positions of ``node``'s output tuple that the graph reads, or None when some
    user takes the tuple whole."""
    used = set()
    for user in node.users:
        if user.op != "call_function" or user.target is not operator.getitem:
            return None
        if not isinstance(user.args[1], int):
            return None
        used.add(user.args[1])
    return tuple(sorted(used))


def direct_calls(graph: fx.Graph, module: fx.GraphModule) -> None:
    """Rewrite each ``call_module`` node into a call of the submodule's ``forward``,
    unless the submodule has forward hooks (those must still run).

    A converted operator with several outputs may name, in ``output_methods``, a method
    that computes only some of them (``{(1,): "forward_scores"}``: the same tuple, with
    None where an output is not computed); the plan calls it when the graph reads
    exactly those outputs. Common operators whose meaning their constants fix (float
    arithmetic, activations, Softmax, shape operators: :func:`bridge.onnx.fusion.torch_call`)
    become the torch call itself: an operator's ``forward`` costs 0.8-1.5 us around a
    ~0.9 us ``relu`` or subtraction of one row.
    """
    from bridge.onnx.fusion import torch_call

    for node in list(graph.nodes):
        if node.op != "call_module":
            continue
        submodule = module.get_submodule(node.target)
        if has_hooks(submodule):
            continue
        direct = torch_call(module, node)
        if direct is not None:
            with graph.inserting_before(node):
                call = graph.call_function(direct[0], direct[1],
                                           direct[2] if len(direct) > 2 else None)
            node.replace_all_uses_with(call)
            graph.erase_node(node)
            continue
        method = getattr(submodule, "output_methods", {}).get(used_outputs(node), "forward")
        with graph.inserting_before(node):
            attribute = graph.get_attr(node.target)
            call = graph.call_method(method, (attribute, *node.args), dict(node.kwargs))
        node.replace_all_uses_with(call)
        graph.erase_node(node)


TENSOR_TABLES = ("_modules", "_buffers", "_parameters")


def direct_reads(graph: fx.Graph, module: fx.GraphModule) -> dict[str, str]:
    """Rewrite each ``get_attr`` of a submodule, buffer or parameter into reads of the
    tables ``nn.Module`` keeps them in: ``self._modules["Scaler"]`` instead of
    ``self.Scaler``, whose ``nn.Module.__getattr__`` costs about 0.4 us per read.

    The tables are read at call time, so replaced submodules and tensors are followed.
    Returns the layout relied on (dotted name → table); a name that moves to another
    table later (a buffer re-registered as a parameter) makes the plan raise ``KeyError``,
    and :func:`call_plan` then builds it again.
    """
    anchor = [node for node in graph.nodes if node.op == "placeholder"][-1]
    reads: dict[tuple[str, str], fx.Node] = {}  # (owner path, table or name) -> its read
    layout: dict[str, str] = {}

    def read(source: fx.Node | None, key: tuple[str, str], target, name: str) -> fx.Node:
        nonlocal anchor
        if key not in reads:
            with graph.inserting_after(anchor):
                if source is None:
                    anchor = graph.get_attr(name)
                else:
                    anchor = graph.call_function(target, (source, name))
            reads[key] = anchor
        return reads[key]

    for node in list(graph.nodes):
        if node.op != "get_attr":
            continue
        owner, path, value = module, "", None
        for part in node.target.split("."):
            table = next((t for t in TENSOR_TABLES if part in owner.__dict__.get(t, {})), None)
            if table is None:
                break  # a plain attribute: ``self.x`` is already a dictionary read
            owner_read = reads.get((path, "")) if path else None
            tables = read(owner_read, (path, table), getattr, table)
            path = f"{path}.{part}" if path else part
            value, layout[path] = read(tables, (path, ""), operator.getitem, part), table
            owner = getattr(owner, table)[part]
        else:
            node.replace_all_uses_with(value)
            graph.erase_node(node)
    return layout


def layout_of(module: nn.Module, names) -> dict[str, str]:
    """Which table holds each dotted name now (see :func:`direct_reads`)."""
    layout = {}
    for name in names:
        owner_path, _, part = name.rpartition(".")
        try:
            owner = module.get_submodule(owner_path) if owner_path else module
        except AttributeError:  # the owner itself is gone
            layout[name] = ""
            continue
        layout[name] = next((t for t in TENSOR_TABLES if part in owner.__dict__.get(t, {})), "")
    return layout


def matmul_add(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight + bias`` as one ``addmm`` where it applies (a 2-D ``x`` of the
    weight's dtype), else as the two operations."""
    if x.dim() == 2 and x.dtype == weight.dtype == bias.dtype:
        return torch.addmm(bias, x, weight)
    return torch.matmul(x, weight) + bias


def fuse_matmul_add(graph: fx.Graph, module: fx.GraphModule) -> None:
    """Rewrite ``Add(MatMul(x, W), b)`` with constant ``W [K, M]`` and ``b [M]`` (or
    ``[1, M]``) into :func:`matmul_add`: a dense layer as one call instead of two.
    Only plain floating-point MatMul and Add qualify (not the pre-opset-7 broadcast form)."""
    from bridge.onnx.ops.elementwise import OnnxAdd
    from bridge.onnx.ops.linalg import OnnxMatMul

    def constant(node):
        if not isinstance(node, fx.Node) or node.op != "get_attr":
            return None
        value = getattr(module, node.target, None)
        return value if isinstance(value, torch.Tensor) else None

    for add in list(graph.nodes):
        if add.op != "call_module" or type(module.get_submodule(add.target)) is not OnnxAdd:
            continue
        if module.get_submodule(add.target).axis is not None or len(add.args) != 2:
            continue
        product, bias_node = add.args
        if isinstance(bias_node, fx.Node) and bias_node.op == "call_module":
            bias_node, product = product, bias_node
        if not (isinstance(product, fx.Node) and product.op == "call_module"
                and type(module.get_submodule(product.target)) is OnnxMatMul
                and len(product.users) == 1 and len(product.args) == 2):
            continue
        weight, bias = constant(product.args[1]), constant(bias_node)
        if weight is None or bias is None or not weight.is_floating_point():
            continue
        columns = weight.shape[-1] if weight.dim() == 2 else None
        if columns is None or bias.dtype != weight.dtype or bias.shape not in (
                (columns,), (1, columns)):
            continue
        with graph.inserting_before(add):
            fused = graph.call_function(matmul_add, (product.args[0], product.args[1], bias_node))
        add.replace_all_uses_with(fused)
        graph.erase_node(add)
        graph.erase_node(product)


def drop_identities(graph: fx.Graph, module: fx.GraphModule) -> None:
    """Remove ``Identity`` operators (skl2onnx puts one after an MLP's last layer): each
    costs a call and returns its input."""
    from bridge.onnx.ops.constants import OnnxIdentity

    for node in list(graph.nodes):
        if node.op == "call_module" and len(node.args) == 1 and not node.kwargs:
            identity = module.get_submodule(node.target)
            if type(identity) is OnnxIdentity and not has_hooks(identity):
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)


def drop_softmax_renormalisation(graph: fx.Graph, module: fx.GraphModule) -> None:
    """Remove an L1 ``Normalizer`` applied to a ``LinearClassifier``'s SOFTMAX scores
    (skl2onnx's multinomial LogisticRegression): softmax rows already sum to one, so the
    division changes each probability by a few ulps at most (scikit-learn does not
    renormalise either) and costs four operator calls of a one-row call's ten."""
    from bridge.onnx.ops.ml.linear import OnnxLinearClassifier
    from bridge.onnx.ops.ml.preprocessing import OnnxNormalizer

    for node in list(graph.nodes):
        if node.op != "call_module":
            continue
        normalizer = module.get_submodule(node.target)
        if type(normalizer) is not OnnxNormalizer or normalizer.norm != "L1" or has_hooks(
                normalizer):
            continue
        item = node.args[0]
        if not (isinstance(item, fx.Node) and item.target is operator.getitem
                and item.args[1] == 1 and item.args[0].op == "call_module"):
            continue
        classifier = module.get_submodule(item.args[0].target)
        if (type(classifier) is OnnxLinearClassifier and classifier.post_transform == "SOFTMAX"
                and not classifier.single_row):
            node.replace_all_uses_with(item)
            graph.erase_node(node)


NEIGHBOUR_BLOCK = 256  # query rows per block of :func:`blocked_nearest`


def blocked_nearest(queries: torch.Tensor, train: torch.Tensor, scan: nn.Module,
                    transform: nn.Module | None, exponent: torch.Tensor | None,
                    top_k: nn.Module) -> tuple:
    """skl2onnx's neighbour search (distance Scan, Transpose, then Sqrt or Pow, TopK) one
    block of query rows at a time: each block's distances stay small and in cache instead of
    a ``[queries, training rows]`` matrix in memory. Every block runs the same operators as
    the graph, so values, indices and ties are the graph's."""
    fused = _fused_search(queries, train, scan, transform, exponent, top_k)

    def search(part: torch.Tensor) -> tuple:
        if fused:  # distances made, rooted and selected in one C pass
            products, norms = scan.squared_parts(part, train)
            return select.select_distances(products, norms, top_k.k, transform is not None,
                                           part.dtype)
        distances = scan.distances_to(part, train)
        if transform is not None:
            distances = (transform.forward(distances) if exponent is None
                         else transform.forward(distances, exponent))
        return top_k.forward(distances)

    if queries.shape[0] <= NEIGHBOUR_BLOCK:
        return search(queries)
    found = [search(part) for part in torch.split(queries, NEIGHBOUR_BLOCK)]
    return torch.cat([f[0] for f in found]), torch.cat([f[1] for f in found])


def _fused_search(queries: torch.Tensor, train: torch.Tensor, scan: nn.Module,
                  transform: nn.Module | None, exponent: torch.Tensor | None,
                  top_k: nn.Module) -> bool:
    """Whether :func:`blocked_nearest` may make, root and select the distances in one C
    pass (:func:`bridge.onnx.select.select_distances`): Euclidean distances (squared, or
    their Sqrt) of float32/float64 rows on the CPU without autograd, TopK along them."""
    dtype = queries.dtype
    return (select.built() and scan.pairwise_p == 2.0 and exponent is None
            and dtype in (torch.float32, torch.float64) and train.dtype == dtype
            and queries.is_cpu and train.is_cpu and queries.dim() == 2 and train.dim() == 2
            and top_k.axis in (1, -1) and not top_k.largest
            and 0 < top_k.k <= min(train.shape[0], select.MAX_K)
            and not ((queries.requires_grad or train.requires_grad)
                     and torch.is_grad_enabled()))


def fuse_nearest_neighbours(graph: fx.Graph, module: fx.GraphModule) -> None:
    """Rewrite ``TopK([Sqrt|Pow](Transpose(Scan(x, train)[1])))`` (skl2onnx's kNN, when
    the Scan is its pairwise-distance body over a constant training matrix) into
    :func:`blocked_nearest`."""
    from bridge.onnx.ops.control_flow import OnnxScan
    from bridge.onnx.ops.elementwise import OnnxPow, OnnxUnaryMath
    from bridge.onnx.ops.indexing import OnnxTopK
    from bridge.onnx.ops.shape import OnnxTranspose

    def module_of(node, kind):
        if isinstance(node, fx.Node) and node.op == "call_module":
            candidate = module.get_submodule(node.target)
            if type(candidate) is kind and not has_hooks(candidate):
                return candidate
        return None

    for top in list(graph.nodes):
        top_k = module_of(top, OnnxTopK)
        if top_k is None or top_k.largest or top_k.k is None or top.args[1:] not in ((), (None,)):
            continue
        source, transform, exponent = top.args[0], None, None
        root = module_of(source, OnnxUnaryMath)
        power = module_of(source, OnnxPow)
        if root is not None and root.op_type == "Sqrt" and len(source.users) == 1:
            transform, source = source, source.args[0]
        elif (power is not None and len(source.users) == 1 and isinstance(source.args[1], fx.Node)
              and source.args[1].op == "get_attr"):
            transform, exponent, source = source, source.args[1], source.args[0]
        transpose = module_of(source, OnnxTranspose)
        if transpose is None or transpose.perm not in ([1, 0], None) or len(source.users) != 1:
            continue
        item = source.args[0]
        if not (isinstance(item, fx.Node) and item.target is operator.getitem
                and item.args[1] == 1 and len(item.users) == 1):
            continue
        scan_node = item.args[0]
        scan = module_of(scan_node, OnnxScan)
        if (scan is None or scan.pairwise_p is None or scan.input_axes != [0]
                or scan.output_axes != [0] or any(scan.input_reverse)
                or any(scan.output_reverse) or len(scan_node.users) != 1):
            continue
        values, outer = scan_node.args
        if outer or len(values) != 2 or not (isinstance(values[1], fx.Node)
                                             and values[1].op == "get_attr"):
            continue
        with graph.inserting_before(top):
            scan_attr = graph.get_attr(scan_node.target)
            transform_attr = graph.get_attr(transform.target) if transform is not None else None
            top_attr = graph.get_attr(top.target)
            fused = graph.call_function(blocked_nearest, (values[0], values[1], scan_attr,
                                                          transform_attr, exponent, top_attr))
        top.replace_all_uses_with(fused)
        for node in (top, transform, source, item, scan_node):
            if node is not None:
                graph.erase_node(node)


def build_plan(module: fx.GraphModule, outputs: Sequence[int]) -> Plan:
    """A function ``plan(module, *inputs) -> tuple`` computing ``outputs`` of ``module``.

    Parameters
    ----------
    module : torch.fx.GraphModule
        The imported graph (its submodules and constants are read at call time).
    outputs : sequence of int
        Positions in the graph's output tuple (0 for a single-output graph).

    Returns
    -------
    callable
        Takes the module and the graph's inputs; returns a tuple with one tensor per
        requested output.
    """
    graph = pruned_graph(module, outputs)
    fuse_matmul_add(graph, module)
    drop_identities(graph, module)
    drop_softmax_renormalisation(graph, module)
    fuse_nearest_neighbours(graph, module)
    direct_calls(graph, module)
    layout = direct_reads(graph, module)
    code = graph.python_code(root_module="self")
    plan = _forward_from_src(code.src, code.globals)
    plan.layout = layout
    return plan


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def plan_for(module: fx.GraphModule, outputs: tuple[int, ...]) -> Plan:
    """``module``'s plan for ``outputs``, built on first use and kept beside the module
    (not in it: copies and pickles of the module carry no generated functions).

    A recompiled graph (new generated code) gets new plans; the plans themselves read
    the module live, so moving or editing its tensors needs none.
    """
    kept = _kept_plans(module)
    plan = kept.get(outputs)
    if plan is None:
        plan = kept[outputs] = build_plan(module, outputs)
    return plan


def _kept_plans(module: fx.GraphModule) -> dict:
    """The plans kept for ``module``'s current generated code (emptied when it changes)."""
    code = module.__dict__.get("_code")
    entry = _PLANS.get(module)
    if entry is None or entry[0] is not code:
        entry = (code, {})
        _PLANS[module] = entry
    return entry[1]


def array_plan_for(module: fx.GraphModule, outputs: tuple[int, ...]) -> Plan | None:
    """A numpy plan for ``outputs`` of ``module``, or None where the graph has none.

    When ``outputs`` all come from one operator applied to the graph's one input, and that
    operator computes numpy rows itself (``forward_array``: the tree ensembles, in one C
    call), the plan is ``run(X) -> tuple | None``: the outputs as numpy arrays, or None
    for a call the operator does not serve (the tensor plan then answers it). A one-row
    call then makes no tensor at all: wrapping the input, allocating the results and
    viewing them as numpy cost ~1.8 us of a forest's ~9 us. Kept like :func:`plan_for`.
    """
    kept, key = _kept_plans(module), ("array", outputs)
    if key not in kept:
        kept[key] = _array_plan(module, outputs)
    return kept[key]


def _array_plan(module: fx.GraphModule, outputs: tuple[int, ...]) -> Plan | None:
    graph = pruned_graph(module, outputs)
    inputs = [node for node in graph.nodes if node.op == "placeholder"]
    calls = [node for node in graph.nodes if node.op == "call_module"]
    if len(inputs) != 1 or len(calls) != 1:
        return None
    call = calls[0]
    submodule = module.get_submodule(call.target)
    if ("." in call.target or call.args != (inputs[0],) or call.kwargs
            or not hasattr(submodule, "forward_array") or has_hooks(submodule)):
        return None
    picks: list[int | None] = []  # per output: a position in the call's tuple, or all of it
    for value in next(node for node in graph.nodes if node.op == "output").args[0]:
        if value is call:
            picks.append(None)
        elif (value.op == "call_function" and value.target is operator.getitem
              and value.args[0] is call and isinstance(value.args[1], int)):
            picks.append(value.args[1])
        else:
            return None
    if len(graph.nodes) != 2 + len(set(picks) - {None}) + 1:  # input, call, items, output
        return None
    name, used = call.target, tuple(sorted({p for p in picks if p is not None}))

    def run(X):
        result = module._modules[name].forward_array(X, used)
        if result is None:
            return None
        return tuple(result if p is None else result[p] for p in picks)

    return run


def call_plan(module: fx.GraphModule, outputs: tuple[int, ...], inputs) -> tuple:
    """Run ``module``'s plan for ``outputs`` on ``inputs``; rebuild it once when a name it
    reads has moved between a module's tables since it was built."""
    plan = plan_for(module, outputs)
    try:
        return plan(module, *inputs)
    except (KeyError, AttributeError):
        if layout_of(module, plan.layout) == plan.layout:
            raise
    _PLANS[module][1].pop(outputs, None)
    return plan_for(module, outputs)(module, *inputs)

