"""skl2onnx converter for ``LatentDirichletAllocation.transform`` (skl2onnx has none):
scikit-learn's variational E-step in an ONNX ``Loop``.

Every document starts at ones and is updated as ``_update_doc_distribution`` does, up to
``max_doc_update_iter`` times; a document whose mean absolute change falls below
``mean_change_tol`` stops there (its row is frozen), as scikit-learn stops each document, so
the result does not depend on the batch. The digamma function is scikit-learn's own
(``_online_lda_fast.psi``: shifted above 6 by its recurrence, then its asymptotic series),
written in standard ops; the rows are normalised at the end.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from sklearn.decomposition import LatentDirichletAllocation

from bridge.sklearn.converters._graph import (
    add_constant,
    add_node,
    float_type_of,
    proto_float_of,
)
from bridge.sklearn.converters.nmf import _Body

ALIAS = "BridgeLatentDirichletAllocation"
EULER = 0.577215664901532860606512090082402431
SHIFTS = 6  # psi's recurrence moves x in (1e-6, 6) above 6 in at most six steps


def lda_shape_calculator(operator) -> None:
    """Topic distributions ``(N, n_components)`` in the input's float type."""
    width = operator.raw_operator.components_.shape[0]
    operator.outputs[0].type = float_type_of(operator)([None, width])


def add_psi(body: _Body, x: str) -> str:
    """scikit-learn's digamma of ``x`` (element-wise): ``-EULER - 1/x`` at or below 1e-6,
    else the recurrence up to 6 and the asymptotic series."""
    one = body.constant("one", [1.0])
    six = body.constant("six", [6.0])
    shifted, result = x, body.node("Mul", [x, body.constant("zero", [0.0])], "psi_zero")
    for _ in range(SHIFTS):
        below = body.node("Less", [shifted, six], "below_six")
        result = body.node("Where", [below, body.node("Sub", [result, body.node(
            "Reciprocal", [shifted], "inverse")], "recurred"), result], "psi_partial")
        shifted = body.node("Where", [below, body.node("Add", [shifted, one], "plus_one"),
                                      shifted], "shifted")
    r = body.node("Reciprocal", [shifted], "r")
    result = body.node("Add", [result, body.node("Sub", [
        body.node("Log", [shifted], "log_x"),
        body.node("Mul", [r, body.constant("one_half", [0.5])], "half_r")], "leading")],
        "with_leading")
    r2 = body.node("Mul", [r, r], "r2")
    inner = body.node("Sub", [body.constant("c120", [1.0 / 120.0]), body.node(
        "Mul", [r2, body.constant("c252", [1.0 / 252.0])], "t252")], "inner")
    middle = body.node("Sub", [body.constant("c12", [1.0 / 12.0]), body.node(
        "Mul", [r2, inner], "t120")], "middle")
    series = body.node("Sub", [result, body.node("Mul", [r2, middle], "t12")], "series")
    tiny = body.node("LessOrEqual", [x, body.constant("tiny", [1e-6])], "tiny_x")
    small = body.node("Sub", [body.constant("minus_euler", [-EULER]), body.node(
        "Reciprocal", [x], "inverse_x")], "small")
    return body.node("Where", [tiny, small, series], "psi")


def _expected_log(body: _Body, distribution: str) -> str:
    """``exp(psi(d) - psi(sum d))`` per row, as ``_dirichlet_expectation_1d`` gives it."""
    total = body.node("ReduceSum", [distribution, body.constant(
        "axis", [1], TensorProto.INT64)], "total", keepdims=1)
    return body.node("Exp", [body.node("Sub", [add_psi(body, distribution),
                                               add_psi(body, total)], "expected")], "exp")


def convert_lda(scope, operator, container) -> None:
    """Write the E-step loop and the row normalisation (see the module docstring)."""
    model = operator.raw_operator
    proto = proto_float_of(operator)
    x = operator.inputs[0].full_name
    topic_word = np.asarray(model.exp_dirichlet_component_, dtype=np.float64)
    k = topic_word.shape[0]
    prior = float(model.doc_topic_prior_)
    # start: ones, and exp(E[log theta]) of ones: exp(psi(1) - psi(k)), both per row
    from scipy.special import psi

    ones = add_node(scope, container, "Add", [add_node(scope, container, "MatMul", [
        x, add_constant(scope, container, "zeros", np.zeros((topic_word.shape[1], k)), proto)],
        "zeros"), add_constant(scope, container, "one", [1.0], proto)], "ones")
    start_exp = add_node(scope, container, "Mul", [ones, add_constant(
        scope, container, "start_exp", [np.exp(psi(1.0) - psi(float(k)))], proto)], "start")
    not_done = add_node(scope, container, "Less", [
        add_node(scope, container, "ReduceSum", [ones, add_constant(
            scope, container, "axis", [1], TensorProto.INT64)], "row", keepdims=1),
        add_constant(scope, container, "zero", [0.0], proto)], "not_done")  # all False
    body = _Body(scope, proto)
    iteration, condition = body.name("iteration"), body.name("condition")
    topics_in, exp_in, done_in = body.name("doc_topic"), body.name("exp_doc_topic"), \
        body.name("done")
    eps = body.constant("eps", [np.finfo(float).eps])
    norm_phi = body.node("Add", [body.node("MatMul", [exp_in, body.constant(
        "topic_word", topic_word)], "phi"), eps], "norm_phi")
    ratio = body.node("Div", [x, norm_phi], "ratio")
    updated = body.node("Add", [body.node("Mul", [exp_in, body.node("MatMul", [
        ratio, body.constant("topic_word_t", topic_word.T)], "back")], "unscaled"),
        body.constant("prior", [prior])], "updated")
    updated_exp = _expected_log(body, updated)
    change = body.node("ReduceMean", [body.node("Abs", [body.node(
        "Sub", [topics_in, updated], "difference")], "magnitude"), body.constant(
        "axis", [1], TensorProto.INT64)], "mean_change", keepdims=1)
    topics_out = body.node("Where", [done_in, topics_in, updated], "doc_topic_out")
    exp_out = body.node("Where", [done_in, exp_in, updated_exp], "exp_out")
    done_out = body.node("Or", [done_in, body.node("Less", [
        change, body.constant("tol", [model.mean_change_tol])], "converged")], "done_out")
    keep_going = body.node("Equal", [body.node("ReduceMin", [body.node(
        "Cast", [done_out], "done_int", to=TensorProto.INT64)], "all_done", keepdims=0),
        body.constant("none_left", 0, TensorProto.INT64)], "continue")
    inputs = [helper.make_tensor_value_info(iteration, TensorProto.INT64, []),
              helper.make_tensor_value_info(condition, TensorProto.BOOL, []),
              helper.make_tensor_value_info(topics_in, proto, None),
              helper.make_tensor_value_info(exp_in, proto, None),
              helper.make_tensor_value_info(done_in, TensorProto.BOOL, None)]
    outputs = [helper.make_tensor_value_info(keep_going, TensorProto.BOOL, []),
               helper.make_tensor_value_info(topics_out, proto, None),
               helper.make_tensor_value_info(exp_out, proto, None),
               helper.make_tensor_value_info(done_out, TensorProto.BOOL, None)]
    graph = helper.make_graph(body.nodes, scope.get_unique_variable_name("lda_body"), inputs,
                              outputs)
    final = [scope.get_unique_variable_name(stem) for stem in ("topics", "exp", "done")]
    container.add_node(
        "Loop", [add_constant(scope, container, "max_iter",
                              np.int64(model.max_doc_update_iter), TensorProto.INT64),
                 add_constant(scope, container, "true", np.array(True), TensorProto.BOOL),
                 ones, start_exp, not_done], final,
        name=scope.get_unique_operator_name("Loop"), body=graph)
    total = add_node(scope, container, "ReduceSum", [final[0], add_constant(
        scope, container, "axis", [1], TensorProto.INT64)], "total", keepdims=1)
    container.add_node("Div", [final[0], total], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("Div"))


def register() -> bool:
    """Register the converter unless skl2onnx already has one; return whether it did."""
    if LatentDirichletAllocation in sklearn_operator_name_map:
        return False
    update_registered_converter(LatentDirichletAllocation, ALIAS, lda_shape_calculator,
                                convert_lda)
    return True
