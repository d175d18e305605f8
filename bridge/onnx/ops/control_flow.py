"""Control flow: If, Loop and Scan, whose bodies are subgraphs converted to their own modules.

A body may read values of the enclosing graph; those that are not constants are passed to
the control-flow module at run time (``outer`` below) and on to the body after its own inputs.
Loops run as Python loops over the body module: eager mode and ``torch.jit.trace`` (which
unrolls them for the traced trip count) work; ``torch.export`` of a data-dependent trip
count does not.
"""

from __future__ import annotations

import contextvars

import numpy as np
import torch
from torch import nn

from bridge.derived import Derived, eager_call
from bridge.errors import ConversionError, UnsupportedOperatorError
from bridge.onnx.context import ConversionContext
from bridge.onnx.graph import OnnxNode
from bridge.onnx.registry import Converted, converter


def _as_tuple(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


def _subgraph(node: OnnxNode, context: ConversionContext, attribute: str):
    graph = node.attribute(attribute)
    if graph is None:
        raise ConversionError(f"{node.op_type} node {node.name!r} has no {attribute!r} subgraph")
    return context.convert_subgraph(graph)


class OnnxIf(nn.Module):
    """Runs the then- or else-branch module; each reads its own subset of the outer values."""

    def __init__(self, then_branch: nn.Module, else_branch: nn.Module,
                 then_outer: list[int], else_outer: list[int]):
        super().__init__()
        self.then_branch = then_branch
        self.else_branch = else_branch
        self.then_outer = then_outer
        self.else_outer = else_outer

    def forward(self, condition: torch.Tensor, outer: list[torch.Tensor]):
        if bool(condition.reshape(-1)[0]):
            return self.then_branch(*[outer[i] for i in self.then_outer])
        return self.else_branch(*[outer[i] for i in self.else_outer])


@converter("If", versions=(1, 11, 13, 16, 19, 21, 23, 24, 25))
def convert_if(node: OnnxNode, context: ConversionContext) -> Converted:
    then_module, then_names = _subgraph(node, context, "then_branch")
    else_module, else_names = _subgraph(node, context, "else_branch")
    if len(then_module.output_names) != len(else_module.output_names):
        raise ConversionError(
            f"If node {node.name!r}: then_branch has {len(then_module.output_names)} outputs, "
            f"else_branch {len(else_module.output_names)}; they must match"
        )
    outer = list(dict.fromkeys(then_names + else_names))
    module = OnnxIf(then_module, else_module, [outer.index(n) for n in then_names],
                    [outer.index(n) for n in else_names])
    return Converted(module, inputs=[node.inputs[0], outer])


class OnnxLoop(nn.Module):
    """ONNX Loop: a trip count and/or a condition, loop-carried values, stacked scan outputs."""

    def __init__(self, body: nn.Module, carried_count: int, scan_count: int):
        super().__init__()
        self.body = body
        self.carried_count = carried_count
        self.scan_count = scan_count

    def forward(self, trip_count: torch.Tensor | None, condition: torch.Tensor | None,
                carried: list[torch.Tensor], outer: list[torch.Tensor]):
        limit = int(trip_count.reshape(-1)[0]) if trip_count is not None else None
        keep_going = bool(condition.reshape(-1)[0]) if condition is not None else True
        device = carried[0].device if carried else (outer[0].device if outer else None)
        scans: list[list[torch.Tensor]] = [[] for _ in range(self.scan_count)]
        iteration = 0
        while keep_going and (limit is None or iteration < limit):
            step = torch.tensor(iteration, dtype=torch.int64, device=device)
            flag = torch.tensor(keep_going, device=device)
            outputs = _as_tuple(self.body(step, flag, *carried, *outer))
            keep_going = bool(outputs[0].reshape(-1)[0])
            carried = list(outputs[1:1 + self.carried_count])
            for index in range(self.scan_count):
                scans[index].append(outputs[1 + self.carried_count + index])
            iteration += 1
        if any(not values for values in scans):
            raise ConversionError(
                "Loop ran zero iterations but has scan outputs: their element shape is unknown"
            )
        results = list(carried) + [torch.stack(values) for values in scans]
        return results[0] if len(results) == 1 else tuple(results)


@converter("Loop", versions=(1, 11, 13, 16, 19, 21, 23, 24, 25))
def convert_loop(node: OnnxNode, context: ConversionContext) -> Converted:
    body, outer = _subgraph(node, context, "body")
    carried = node.inputs[2:]
    scan_count = len(body.output_names) - 1 - len(carried)
    if scan_count < 0:
        raise ConversionError(
            f"Loop node {node.name!r}: the body has {len(body.output_names)} outputs, fewer than "
            f"1 condition + {len(carried)} loop-carried values"
        )
    trip = node.inputs[0] if node.inputs and node.inputs[0] else None
    condition = node.inputs[1] if len(node.inputs) > 1 and node.inputs[1] else None
    return Converted(OnnxLoop(body, len(carried), scan_count),
                     inputs=[trip, condition, carried, outer])


class OnnxScan(nn.Module):
    """ONNX Scan (opset 9+): states carried across slices of the scan inputs along an axis.

    When the body passes every state through unchanged and uses only element-wise
    arithmetic and reductions (``mappable``; skl2onnx's pairwise-distance graphs do), the
    scan is a map, and it runs as one batched call with ``torch.vmap`` instead of a Python
    loop over the slices (not while tracing or exporting, which keep the loop).
    """

    def __init__(self, body: nn.Module, state_count: int, scan_count: int,
                 input_axes: list[int], input_reverse: list[bool],
                 output_axes: list[int], output_reverse: list[bool],
                 mappable: bool = False, pairwise_p: float | None = None):
        super().__init__()
        self.body = body
        self.state_count = state_count
        self.scan_count = scan_count
        self.input_axes = input_axes
        self.input_reverse = input_reverse
        self.output_axes = output_axes
        self.output_reverse = output_reverse
        self.mappable = mappable
        self.pairwise_p = pairwise_p

    def _finish(self, states, per_step: list[torch.Tensor]):
        """The final states, then each scan output (steps first, in processing order) put
        in its output direction and moved to its output axis."""
        results = list(states)
        for value, axis, reverse in zip(per_step, self.output_axes, self.output_reverse):
            value = value.flip(0) if reverse else value
            results.append(torch.movedim(value, 0, axis % value.dim()))
        return results[0] if len(results) == 1 else tuple(results)

    def _mapped(self, states, scan_inputs, axes, outer):
        inputs = [x.flip(axis) if reverse else x
                  for x, axis, reverse in zip(scan_inputs, axes, self.input_reverse)]

        def step(*slices):
            return _as_tuple(self.body(*states, *slices, *outer))[self.state_count:]

        return self._finish(states, list(torch.vmap(step, in_dims=tuple(axes), out_dims=0)(*inputs)))

    def _pairwise(self, state: torch.Tensor, rows: torch.Tensor, axis: int):
        """The pairwise-distance body in one call (:meth:`distances_to`): step j gives
        sum_k |state[i, k] - rows[j, k]| ** p for every i (no sqrt)."""
        rows = rows.movedim(axis, 0)
        # computed state-major and handed out transposed: the graph transposes it back
        # (skl2onnx's kNN), which is then a contiguous tensor and costs no copy
        distances = self.distances_to(state, rows).T
        if self.input_reverse[0]:  # steps in processing order
            distances = distances.flip(0)
        return self._finish([state], [distances])

    def distances_to(self, state: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The pairwise-distance body's output for ``state`` against every row of its scan
        input ``rows``, laid out state-major ``[len(state), len(rows)]`` (the transpose of
        what the Scan returns); for serving plans that walk the state in blocks."""
        p = self.pairwise_p
        if p == 2.0 and state.dtype in (torch.float32, torch.float64):
            widened = self._widen(rows) if eager_call() else None
            return squared_distances(state, rows, widened)
        distances = torch.cdist(state.unsqueeze(0), rows.unsqueeze(0), p=p,
                                compute_mode="donot_use_mm_for_euclid_dist")[0]
        return distances.pow(p) if p != 1.0 else distances

    def squared_parts(self, state: torch.Tensor, rows: torch.Tensor) -> tuple:
        """:meth:`distances_to`'s squared distances for ``p = 2`` in two float64 parts,
        ``products [len(state), len(rows)]`` and ``norms [len(state)]``: the distances are
        ``max(products + norms[:, None], 0)`` rounded to ``state``'s dtype, which
        :func:`bridge.onnx.select.select_distances` computes while it selects. Eager calls
        (the training rows' float64 copy is kept)."""
        return squared_parts(state, self._widen(rows))

    def _widen(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`widen` of ``rows``, kept between eager calls while ``rows`` is the same
        tensor, unmodified (a kNN's training rows)."""
        memo = self.__dict__.get("_widened")
        if memo is None:  # (also for a module pickled before this memo existed)
            memo = self.__dict__["_widened"] = Derived()
        return memo.get(rows, widen)

    def forward(self, values: list[torch.Tensor], outer: list[torch.Tensor]):
        states = values[:self.state_count]
        scan_inputs = values[self.state_count:]
        axes = [axis % max(x.dim(), 1) for axis, x in zip(self.input_axes, scan_inputs)]
        length = scan_inputs[0].shape[axes[0]]
        tracing = (torch.jit.is_tracing() or torch.compiler.is_compiling()
                   or torch.compiler.is_exporting())
        pairwise_ok = not tracing or PAIRWISE_WHILE_EXPORTING.get()
        if (self.pairwise_p is not None and pairwise_ok and states[0].dim() == 2
                and scan_inputs[0].dim() == 2 and states[0].is_floating_point()):
            return self._pairwise(states[0], scan_inputs[0], axes[0])
        if self.mappable and length > 0 and not tracing:
            return self._mapped(states, scan_inputs, axes, outer)
        collected: list[list[torch.Tensor]] = [[] for _ in self.output_axes]
        for step in range(length):
            slices = [
                x.select(axis, length - 1 - step if reverse else step)
                for x, axis, reverse in zip(scan_inputs, axes, self.input_reverse)
            ]
            outputs = _as_tuple(self.body(*states, *slices, *outer))
            states = list(outputs[:self.state_count])
            for index, value in enumerate(outputs[self.state_count:]):
                collected[index].append(value)
        return self._finish(states, [torch.stack(values_k) for values_k in collected])


SQUARED_DISTANCE_ROWS = 256  # rows per block: a block's float64 work stays in cache


def widen(state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``state`` in float64 and its rows' squared norms: what :func:`squared_distances`
    reads of it (a kNN's training rows: kept between eager calls, ~50 us per call for
    2,000 rows of 20 features, a third of a one-row query)."""
    wide = state.to(torch.float64)
    return wide, wide.square().sum(dim=1)


def squared_distances(rows: torch.Tensor, state: torch.Tensor,
                      widened: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """``sum_k (rows[j, k] - state[i, k]) ** 2`` for every (j, i), in ``state``'s dtype.

    Computed as ``|r|^2 + |s|^2 - 2 r.s`` with one matrix product in float64, then rounded
    once: faster than the element-wise sum on CPU (66 against 117 ms for 5,000 x 2,000
    rows of 20 features, one thread), and 6x closer to the exact value than a float32 sum
    (scikit-learn's neighbour search also works in float64), so near ties between
    neighbours fall as in scikit-learn. Equal rows of ``state`` give equal distances. Eager
    calls go in blocks of rows written into the result, so the float64 work stays small.
    ``widened`` is :func:`widen` of ``state`` where the caller keeps it.
    """
    wide_state, state_norms = widen(state) if widened is None else widened

    def block(part: torch.Tensor) -> torch.Tensor:
        squared, norms = squared_parts(part, (wide_state, state_norms))
        return squared.add_(norms.unsqueeze(1)).clamp_min_(0.0)

    exporting = (torch.jit.is_tracing() or torch.compiler.is_compiling()
                 or torch.compiler.is_exporting())
    if exporting or rows.shape[0] <= SQUARED_DISTANCE_ROWS:
        return block(rows).to(state.dtype)
    result = torch.empty((rows.shape[0], state.shape[0]), dtype=state.dtype, device=state.device)
    for start in range(0, rows.shape[0], SQUARED_DISTANCE_ROWS):
        stop = start + SQUARED_DISTANCE_ROWS
        result[start:stop].copy_(block(rows[start:stop]))
    return result


def squared_parts(rows: torch.Tensor, widened: tuple[torch.Tensor, torch.Tensor]) -> tuple:
    """``(|s|^2 - 2 r.s, |r|^2)`` in float64 for ``rows`` against the :func:`widen`-ed
    state: the squared distances before they are added, clamped at 0 and rounded."""
    wide_state, state_norms = widened
    wide = rows.to(torch.float64)
    return (torch.addmm(state_norms, wide, wide_state.T, alpha=-2.0),
            wide.square().sum(dim=1))


PAIRWISE_WHILE_EXPORTING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "PAIRWISE_WHILE_EXPORTING", default=False)
"""Set by compiled serving (bridge/sklearn/compiled.py): export the pairwise-distance Scan
as one ``cdist`` instead of a loop unrolled over every training row (a 2,000-row kNN took
minutes to compile that way). Exports meant to be read back as ONNX keep the loop."""


@converter("Scan", versions=(9, 11, 16, 19, 21, 23, 24, 25))
def convert_scan(node: OnnxNode, context: ConversionContext) -> Converted:
    body, outer = _subgraph(node, context, "body")
    scan_count = node.attribute("num_scan_inputs")
    values = node.inputs
    state_count = len(values) - scan_count
    output_count = len(body.output_names) - state_count
    input_axes = node.attribute("scan_input_axes", [0] * scan_count)
    input_directions = node.attribute("scan_input_directions", [0] * scan_count)
    output_axes = node.attribute("scan_output_axes", [0] * output_count)
    output_directions = node.attribute("scan_output_directions", [0] * output_count)
    if scan_count < 1 or state_count < 0 or output_count < 0:
        raise ConversionError(
            f"Scan node {node.name!r}: num_scan_inputs={scan_count} does not fit its "
            f"{len(values)} inputs and the body's {len(body.output_names)} outputs"
        )
    if any(d not in (0, 1) for d in list(input_directions) + list(output_directions)):
        raise UnsupportedOperatorError(node.domain, node.op_type, node.since_version,
                                       reason="scan directions must be 0 or 1")
    body_graph = node.attribute("body")
    mappable = _is_map(body_graph, state_count)
    one_state_one_input = state_count == 1 and scan_count == 1
    module = OnnxScan(body, state_count, scan_count, list(input_axes),
                      [bool(d) for d in input_directions], list(output_axes),
                      [bool(d) for d in output_directions], mappable=mappable,
                      pairwise_p=(_pairwise_distance_power(body_graph)
                                  if mappable and one_state_one_input else None))
    return Converted(module, inputs=[values, outer])


def _reduced_axes(node, initializers) -> list[int] | None:
    axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
    if axes is None and len(node.input) > 1 and node.input[1] in initializers:
        axes = [int(v) for v in initializers[node.input[1]].reshape(-1)]
    return axes


def _pairwise_distance_power(body) -> float | None:
    """p when a one-state, one-input map body is skl2onnx's pairwise-distance step, else None.

    The step reads one row ``r`` of the scan input and returns ``sum_k |s[:, k] - r[k]|**p``
    over the state matrix ``s`` (passed through unchanged): ReduceSumSquare(Sub) for p=2,
    ReduceSum(Abs(Sub)) for p=1, ReduceSum(Pow(Abs(Sub), p)) otherwise. Such a scan runs
    as one ``torch.cdist`` call. Only this exact shape matches; anything else runs as written.
    """
    from onnx import numpy_helper

    if len(body.output) != 2:
        return None
    initializers = {t.name: numpy_helper.to_array(t) for t in body.initializer}
    producer = {n.output[0]: n for n in body.node}
    reduce = producer.get(_through_identities(body.output[1].name, body))
    if reduce is None or _reduced_axes(reduce, initializers) != [1]:
        return None
    if next((a.i for a in reduce.attribute if a.name == "keepdims"), 1) != 0:
        return None
    chain = [reduce]
    while chain[-1].input[0] in producer and producer[chain[-1].input[0]].op_type != "Sub":
        chain.append(producer[chain[-1].input[0]])
    difference = producer.get(chain[-1].input[0])
    state, row = body.input[0].name, body.input[1].name
    if difference is None or set(difference.input) != {state, row}:
        return None
    kinds = [n.op_type for n in chain]
    if kinds == ["ReduceSumSquare"]:
        return 2.0
    if kinds == ["ReduceSum", "Abs"]:
        return 1.0
    if kinds == ["ReduceSum", "Pow", "Abs"]:
        exponent = initializers.get(chain[1].input[1])
        if exponent is not None and np.asarray(exponent).size == 1:
            return float(np.asarray(exponent).reshape(-1)[0])
    return None


# Operators a Scan body may use and still run under torch.vmap (no data-dependent Python).
_MAPPABLE_OPS = frozenset({
    "Identity", "Add", "Sub", "Mul", "Div", "Abs", "Neg", "Pow", "Sqrt", "Exp", "Log",
    "Max", "Min", "ReduceSum", "ReduceSumSquare", "ReduceMax", "ReduceMin", "ReduceMean",
    "ReduceL1", "ReduceL2", "MatMul", "Transpose", "Cast", "Tanh", "Sigmoid",
})


def _is_map(body, state_count: int) -> bool:
    """Whether a Scan body is a map: mappable ops only, every state passed through unchanged."""
    if any(n.op_type not in _MAPPABLE_OPS or n.domain not in ("", "ai.onnx") for n in body.node):
        return False
    return all(_through_identities(body.output[index].name, body) == body.input[index].name
               for index in range(state_count))


def _through_identities(name: str, body) -> str:
    """The value ``name`` is an Identity copy of (itself when it is not one)."""
    identity_of = {n.output[0]: n.input[0] for n in body.node if n.op_type == "Identity"}
    while name in identity_of:
        name = identity_of[name]
    return name
