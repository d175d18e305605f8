"""skl2onnx converters for ``NMF`` (coordinate descent or multiplicative updates) and
``MiniBatchNMF`` (multiplicative updates) ``transform`` (skl2onnx has neither):
scikit-learn's own iterations in an ONNX ``Loop``, with its own stopping rule.

``transform`` solves for ``W >= 0`` with ``components_`` fixed, iterating up to ``max_iter``
(NMF) or the transform's ``max_iter`` (MiniBatchNMF). The rules are scikit-learn's, on the
batch the graph is given: NMF stops when the summed projected-gradient violation over the
batch falls to ``tol`` times the first iteration's (W starts at zero); MiniBatchNMF when the
relative Frobenius change of ``W`` falls to ``tol`` (W starts at ``sqrt(mean(X) /
n_components)``, the batch mean); NMF(solver="mu") starts there too and checks every tenth
iteration whether the Frobenius error fell by ``tol`` times the starting error. On the same
batch the graph therefore follows scikit-learn's iterations; rows scored in other batches
converge to the same solution within the solver's tolerance.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from sklearn.decomposition import NMF, MiniBatchNMF

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import (
    add_constant,
    add_node,
    float_type_of,
    proto_float_of,
)

_ALIASES = {NMF: "BridgeNMF", MiniBatchNMF: "BridgeMiniBatchNMF"}


def nmf_shape_calculator(operator) -> None:
    """``W`` of shape ``(N, n_components)`` in the input's float type."""
    width = operator.raw_operator.components_.shape[0]
    operator.outputs[0].type = float_type_of(operator)([None, width])


def _regularization(model, n_features: int) -> tuple[float, float]:
    """scikit-learn's (l1, l2) penalties on W (they depend on the feature count only)."""
    alpha = float(model.alpha_W)
    return n_features * alpha * model.l1_ratio, n_features * alpha * (1.0 - model.l1_ratio)


def _check(model) -> None:
    if isinstance(model, MiniBatchNMF) or model.solver == "mu":
        if model._beta_loss != 2:
            raise UnsupportedEstimatorError(
                f"{type(model).__name__}(beta_loss={model.beta_loss!r}) has no ONNX "
                "conversion; supported: beta_loss='frobenius' (see SUPPORTED.md)")
    if isinstance(model, NMF) and model.shuffle:
        raise UnsupportedEstimatorError(
            "NMF(shuffle=True) has no ONNX conversion: its coordinate order is random on "
            "every call; supported: shuffle=False (see SUPPORTED.md)")


class _Body:
    """A Loop body under construction: nodes, constants and fresh names."""

    def __init__(self, scope, proto: int):
        self.scope, self.proto, self.nodes = scope, proto, []

    def name(self, stem: str) -> str:
        return self.scope.get_unique_variable_name(stem)

    def node(self, op_type: str, inputs, stem: str, **attributes) -> str:
        output = self.name(stem)
        self.nodes.append(helper.make_node(op_type, list(inputs), [output],
                                           name=self.scope.get_unique_operator_name(op_type),
                                           **attributes))
        return output

    def constant(self, stem: str, value, proto: int | None = None) -> str:
        proto = self.proto if proto is None else proto
        dtype = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64,
                 TensorProto.INT64: np.int64}[proto]
        array = np.asarray(value, dtype=dtype)
        output = self.name(stem)
        self.nodes.append(helper.make_node(
            "Constant", [], [output], name=self.scope.get_unique_operator_name("Constant"),
            value=helper.make_tensor(output + "_value", proto, array.shape,
                                     array.ravel().tolist())))
        return output


def _coordinate_descent_body(body: _Body, columns: list[str], x_ht: list[str],
                             hht: np.ndarray) -> tuple[list[str], str]:
    """One pass of scikit-learn's ``_update_cdnmf_fast`` over the components, in order;
    returns the new columns and the summed projected-gradient violation."""
    columns = list(columns)
    violation = body.constant("zero", 0.0)
    zero = body.constant("zero_value", [0.0])
    for t in range(len(columns)):
        joined = body.node("Concat", columns, "w", axis=1) if len(columns) > 1 else columns[0]
        grad = body.node("Sub", [body.node("MatMul", [joined, body.constant(
            "hht_column", hht[:, t:t + 1])], "hw"), x_ht[t]], "grad")
        at_zero = body.node("Equal", [columns[t], zero], "at_zero")
        projected = body.node("Where", [at_zero, body.node("Min", [grad, zero], "negative"),
                                        grad], "projected")
        violation = body.node("Add", [violation, body.node("ReduceSum", [
            body.node("Abs", [projected], "magnitude")], "summed", keepdims=0)], "violation")
        if hht[t, t] != 0:
            columns[t] = body.node("Relu", [body.node("Sub", [columns[t], body.node(
                "Mul", [grad, body.constant("inverse_hessian", [1.0 / hht[t, t]])],
                "step")], "stepped")], "column")
    return columns, violation


def _continue_flag(body: _Body, violation: str, init: str, tol: float) -> str:
    """Continue? Stop when the first violation is 0 or the ratio falls to ``tol``, as
    scikit-learn does."""
    nonzero = body.node("Not", [body.node("Equal", [init, body.constant("zero", 0.0)],
                                          "init_zero")], "init_nonzero")
    above = body.node("Greater", [body.node("Div", [violation, init], "ratio"),
                                  body.constant("tol", tol)], "above_tol")
    return body.node("And", [nonzero, above], "continue")


def _convert_coordinate_descent(scope, container, model, x: str, proto: int, output: str):
    components = np.asarray(model.components_, dtype=np.float64)
    k, n_features = components.shape
    l1, l2 = _regularization(model, n_features)
    hht = components @ components.T + l2 * np.eye(k)
    x_ht = add_node(scope, container, "MatMul", [
        x, add_constant(scope, container, "components_t", components.T, proto)], "x_ht")
    if l1:
        x_ht = add_node(scope, container, "Sub", [
            x_ht, add_constant(scope, container, "l1", [l1], proto)], "x_ht_l1")
    outer_columns = [add_node(scope, container, "Gather", [x_ht, add_constant(
        scope, container, "index", [t], TensorProto.INT64)], "x_ht_column", axis=1)
        for t in range(k)]
    zeros = add_node(scope, container, "Mul", [outer_columns[0], add_constant(
        scope, container, "zero", [0.0], proto)], "zeros")  # W starts at zero
    body = _Body(scope, proto)
    iteration, condition = body.name("iteration"), body.name("condition")
    carried = [body.name("w_column") for _ in range(k)]
    init_in = body.name("violation_init")
    columns, violation = _coordinate_descent_body(body, carried, outer_columns, hht)
    first = body.node("Equal", [iteration, body.constant("zero_step", 0, TensorProto.INT64)],
                      "first")
    init_out = body.node("Where", [first, violation, init_in], "violation_init_out")
    keep_going = _continue_flag(body, violation, init_out, model.tol)
    _add_loop(scope, container, body, iteration, condition, carried + [init_in],
              [keep_going] + columns + [init_out], [zeros] * k + [
                  add_constant(scope, container, "no_violation", np.float64(0.0), proto)],
              model.max_iter, proto, output, k)


def _convert_multiplicative(scope, container, model, x: str, proto: int, output: str):
    components = np.asarray(model.components_, dtype=np.float64)
    k, n_features = components.shape
    l1, l2 = _regularization(model, n_features)
    x_ht = add_node(scope, container, "MatMul", [
        x, add_constant(scope, container, "components_t", components.T, proto)], "x_ht")
    mean = add_node(scope, container, "ReduceMean", [x], "mean", keepdims=0)
    start = add_node(scope, container, "Sqrt", [add_node(scope, container, "Mul", [
        mean, add_constant(scope, container, "over_k", np.float64(1.0 / k), proto)],
        "mean_over_k")], "average")
    ones = add_node(scope, container, "Add", [add_node(scope, container, "Mul", [
        x_ht, add_constant(scope, container, "zero", [0.0], proto)], "zeros"),
        add_constant(scope, container, "one", [1.0], proto)], "ones")
    w_start = add_node(scope, container, "Mul", [ones, start], "w_start")
    body = _Body(scope, proto)
    iteration, condition, w_in = body.name("iteration"), body.name("condition"), body.name("w")
    denominator = body.node("MatMul", [w_in, body.constant("hht", components @ components.T)],
                            "denominator")
    if l1 > 0:
        denominator = body.node("Add", [denominator, body.constant("l1", [l1])], "with_l1")
    if l2 > 0:
        denominator = body.node("Add", [denominator, body.node("Mul", [
            w_in, body.constant("l2", [l2])], "l2_term")], "with_l2")
    zero = body.constant("zero", [0.0])
    denominator = body.node("Where", [body.node("Equal", [denominator, zero], "is_zero"),
                                      body.constant("epsilon", [np.finfo(np.float32).eps]),
                                      denominator], "safe")
    delta = body.node("Div", [x_ht, denominator], "delta")
    gamma = getattr(model, "_gamma", 1.0)  # 1 for beta_loss='frobenius' (NMF has no _gamma)
    if gamma != 1:
        delta = body.node("Pow", [delta, body.constant("gamma", [gamma])], "delta_gamma")
    w_out = body.node("Mul", [w_in, delta], "w_next")

    def norm(value, stem):
        return body.node("Sqrt", [body.node("ReduceSum", [
            body.node("Mul", [value, value], stem + "_squares")], stem + "_sum", keepdims=0)],
            stem)

    if isinstance(model, NMF):  # solver="mu": the error rule, checked every 10 iterations
        _error_rule_loop(scope, container, model, body, x, w_start, (iteration, condition),
                         w_in, w_out, proto, output)
        return
    change = body.node("Div", [norm(body.node("Sub", [w_out, w_in], "step"), "step_norm"),
                               norm(w_out, "w_norm")], "change")
    if model.tol > 0:
        keep_going = body.node("Greater", [change, body.constant("tol", model.tol)], "continue")
    else:
        keep_going = body.node("Identity", [condition], "continue")
    _add_loop(scope, container, body, iteration, condition, [w_in], [keep_going, w_out],
              [w_start], model._transform_max_iter, proto, output, None)


def _error_rule_loop(scope, container, model, body: _Body, x: str, w_start: str, counters,
                     w_in: str, w_out: str, proto: int, output: str) -> None:
    """NMF(solver="mu")'s rule: every 10th iteration, stop when the Frobenius error fell by
    less than ``tol`` times the starting error since the last check."""
    iteration, condition = counters
    components = np.asarray(model.components_, dtype=np.float64)

    def error_of(graph_node, w, h, stem):
        residual = graph_node("Sub", [x, graph_node("MatMul", [w, h], stem + "_wh")],
                              stem + "_residual")
        return graph_node("Sqrt", [graph_node("ReduceSum", [graph_node(
            "Mul", [residual, residual], stem + "_squares")], stem + "_sum", keepdims=0)],
            stem)

    def outer_node(op_type, inputs, stem, **attributes):
        return add_node(scope, container, op_type, inputs, stem, **attributes)

    at_start = error_of(outer_node, w_start, add_constant(
        scope, container, "components", components, proto), "error_at_init")
    previous_in = body.name("previous_error")
    error = error_of(body.node, w_out, body.constant("components", components), "error")
    checked = body.node("Equal", [body.node("Mod", [
        body.node("Add", [iteration, body.constant("one_step", 1, TensorProto.INT64)],
                  "n_iter"), body.constant("every", 10, TensorProto.INT64)], "phase"),
        body.constant("zero_phase", 0, TensorProto.INT64)], "checked")
    if model.tol > 0:
        small_gain = body.node("Less", [body.node("Div", [body.node(
            "Sub", [previous_in, error], "gain"), at_start], "relative_gain"),
            body.constant("tol", model.tol)], "small_gain")
        keep_going = body.node("Not", [body.node("And", [checked, small_gain], "stop")],
                               "continue")
    else:
        keep_going = body.node("Identity", [condition], "continue")
    previous_out = body.node("Where", [checked, error, previous_in], "previous_out")
    _add_loop(scope, container, body, iteration, condition, [w_in, previous_in],
              [keep_going, w_out, previous_out], [w_start, at_start], model.max_iter, proto,
              output, None)


def _add_loop(scope, container, body: _Body, iteration: str, condition: str, carried_in,
              body_outputs, initial, trips: int, proto: int, output: str,
              columns: int | None) -> None:
    """Wrap ``body`` in a Loop over ``trips`` iterations; write W (joined from ``columns``
    carried columns, else the first carried value) into ``output``."""
    inputs = [helper.make_tensor_value_info(iteration, TensorProto.INT64, []),
              helper.make_tensor_value_info(condition, TensorProto.BOOL, [])]
    inputs += [helper.make_tensor_value_info(name, proto, None) for name in carried_in]
    outputs = [helper.make_tensor_value_info(body_outputs[0], TensorProto.BOOL, [])]
    outputs += [helper.make_tensor_value_info(name, proto, None) for name in body_outputs[1:]]
    graph = helper.make_graph(body.nodes, scope.get_unique_variable_name("nmf_body"), inputs,
                              outputs)
    final = [scope.get_unique_variable_name("carried_out") for _ in carried_in]
    container.add_node(
        "Loop", [add_constant(scope, container, "max_iter", np.int64(trips), TensorProto.INT64),
                 add_constant(scope, container, "true", np.array(True), TensorProto.BOOL)]
        + list(initial), final, name=scope.get_unique_operator_name("Loop"), body=graph)
    if columns is None:
        container.add_node("Identity", [final[0]], [output],
                           name=scope.get_unique_operator_name("Identity"))
    else:
        container.add_node("Concat", final[:columns], [output], axis=1,
                           name=scope.get_unique_operator_name("Concat"))


def convert_nmf(scope, operator, container) -> None:
    """Write scikit-learn's transform iterations (see the module docstring)."""
    model = operator.raw_operator
    _check(model)
    proto = proto_float_of(operator)
    x = operator.inputs[0].full_name
    output = operator.outputs[0].full_name
    if isinstance(model, MiniBatchNMF) or model.solver == "mu":
        _convert_multiplicative(scope, container, model, x, proto, output)
    else:
        _convert_coordinate_descent(scope, container, model, x, proto, output)


def register() -> list[str]:
    """Register the converters skl2onnx lacks; return the names of those registered."""
    registered = []
    for cls, alias in _ALIASES.items():
        if cls in sklearn_operator_name_map:
            continue
        update_registered_converter(cls, alias, nmf_shape_calculator, convert_nmf)
        registered.append(cls.__name__)
    return registered
