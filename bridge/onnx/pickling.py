"""Pickling for imported graph modules without ``torch.fx`` tracing.

``fx.GraphModule`` pickles its generated code and, on load, symbolically traces that code
to get its graph back. Tracing patches ``nn.Module.__call__`` for the whole process, so a
model called in another thread meanwhile fails (``NameError: module is not installed as a
submodule``): Dask workers, for one, unpickle in one thread and compute in another. Here a
module pickles its graph as a plain list of nodes plus its own attributes (submodules,
buffers, the edge attributes), and loading rebuilds the graph node by node, which touches
no process-wide state.
"""

from __future__ import annotations

from typing import Any

from torch import fx, nn

#: ``__dict__`` entries that the GraphModule constructor regenerates from the graph.
_REGENERATED = frozenset({"_graph", "_code", "_lineno_map", "_prologue_start"})

#: Module tables restored as they were (the constructor would copy only what nodes name).
_TABLES = ("_modules", "_parameters", "_buffers")


class _NodeName:
    """Stands for a graph node inside a pickled node's arguments."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __reduce__(self) -> tuple:
        return (_NodeName, (self.name,))


def _graph_class(module: fx.GraphModule) -> type:
    """The class the module was built as: GraphModule makes a private subclass per
    instance (``GraphModule.__new__``), which cannot be pickled by reference."""
    for cls in type(module).__mro__:
        if "<locals>" not in cls.__qualname__:
            return cls
    raise TypeError(f"no importable class in {type(module).__mro__}")  # pragma: no cover


def _freeze(argument: Any) -> Any:
    return fx.node.map_arg(argument, lambda node: _NodeName(node.name))


def _thaw(argument: Any, nodes: dict[str, fx.Node]) -> Any:
    def replace(value: Any) -> Any:
        return nodes[value.name] if isinstance(value, _NodeName) else value

    return fx.node.map_aggregate(argument, replace)


def graph_module_state(module: fx.GraphModule) -> dict[str, Any]:
    """What :func:`rebuild_graph_module` needs: the class, the nodes and the attributes.

    Parameters
    ----------
    module : torch.fx.GraphModule
        The module to pickle (an :class:`~bridge.onnx.importer.OnnxGraphModule`).

    Returns
    -------
    dict
        ``cls``, ``class_name``, ``nodes`` (one ``(op, name, target, args, kwargs, type)``
        tuple per node, graph nodes in arguments replaced by their names) and
        ``attributes`` (the module's ``__dict__`` less what the graph regenerates).
    """
    nodes = [(node.op, node.name, node.target, _freeze(node.args), _freeze(node.kwargs),
              node.type) for node in module.graph.nodes]
    attributes = {key: value for key, value in module.__dict__.items()
                  if key not in _REGENERATED}
    return {"cls": _graph_class(module), "class_name": type(module).__name__,
            "nodes": nodes, "attributes": attributes}


def rebuild_graph_module(state: dict[str, Any]) -> fx.GraphModule:
    """Rebuild a module from :func:`graph_module_state`'s output, without tracing.

    Parameters
    ----------
    state : dict
        As returned by :func:`graph_module_state`.

    Returns
    -------
    torch.fx.GraphModule
        A module of the same class with the same graph (node names and targets
        included), submodules, buffers, parameters and attributes.

    Raises
    ------
    ValueError
        A node name came back different (the graph would not be the one pickled).
    """
    graph = fx.Graph()
    made: dict[str, fx.Node] = {}
    for op, name, target, args, kwargs, type_expr in state["nodes"]:
        node = graph.create_node(op, target, _thaw(args, made), _thaw(kwargs, made),
                                 name=name, type_expr=type_expr)
        if node.name != name:
            raise ValueError(f"pickled graph node {name!r} came back as {node.name!r}")
        made[name] = node
    attributes = state["attributes"]
    holder = nn.Module()
    for table in _TABLES:
        holder.__dict__[table] = attributes[table]
    module = state["cls"](holder, graph, class_name=state["class_name"])
    module.__dict__.update(attributes)
    return module


def reduce_graph_module(module: fx.GraphModule) -> tuple:
    """``__reduce__`` for graph modules: rebuilt by :func:`rebuild_graph_module` on load."""
    return (rebuild_graph_module, (graph_module_state(module),))
