"""skl2onnx converter for :class:`bridge.sklearn.text.TermWeighting`: the tensor half of text
and dict vectorizers (binary cap, sublinear tf, idf, l1/l2 row norms) in standard ai.onnx ops.

The host half (analysing, counting, hashing) runs before the graph, in
``bridge/sklearn/text/encoders.py``; this graph reads its dense matrix.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import Int64TensorType

from bridge.sklearn.converters._graph import add_constant, add_node, float_type_of, proto_float_of
from bridge.sklearn.text import TermWeighting

ALIAS = "BridgeTermWeighting"


def term_weighting_shape_calculator(operator) -> None:
    """Output ``(N, n_features)`` in the input's float type (int64 for integer output)."""
    model = operator.raw_operator
    output_type = Int64TensorType if model.integer_output else float_type_of(operator)
    operator.outputs[0].type = output_type([None, model.n_features])


def _row_norms(scope, container, x: str, norm: str, proto: int) -> str:
    """``(N, 1)`` row norms of ``x`` with 0 replaced by 1 (scikit-learn's ``normalize``)."""
    axes = add_constant(scope, container, "axis_1", [1], TensorProto.INT64)
    if norm == "l1":
        magnitudes = add_node(scope, container, "Abs", [x], "magnitudes")
        norms = add_node(scope, container, "ReduceSum", [magnitudes, axes], "l1", keepdims=1)
    else:
        squares = add_node(scope, container, "Mul", [x, x], "squares")
        total = add_node(scope, container, "ReduceSum", [squares, axes], "sum_squares",
                         keepdims=1)
        norms = add_node(scope, container, "Sqrt", [total], "l2")
    zero = add_constant(scope, container, "zero", [0.0], proto)
    one = add_constant(scope, container, "one", [1.0], proto)
    empty = add_node(scope, container, "Equal", [norms, zero], "empty_rows")
    return add_node(scope, container, "Where", [empty, one, norms], "row_norms")


def convert_term_weighting(scope, operator, container) -> None:
    """Min(x, 1) → Where(x > 0, 1 + Log(x), x) → Mul(idf) → Div(row norms), each only when
    the vectorizer asks for it; Identity when it asks for none; a Cast to int64 last for
    integer output."""
    model = operator.raw_operator
    proto = proto_float_of(operator)
    x = operator.inputs[0].full_name
    if model.binary:
        one = add_constant(scope, container, "one", [1.0], proto)
        x = add_node(scope, container, "Min", [x, one], "binary")
    if model.sublinear_tf:
        zero = add_constant(scope, container, "zero", [0.0], proto)
        one = add_constant(scope, container, "one", [1.0], proto)
        positive = add_node(scope, container, "Greater", [x, zero], "positive")
        logged = add_node(scope, container, "Log", [x], "log_tf")
        shifted = add_node(scope, container, "Add", [logged, one], "sublinear")
        x = add_node(scope, container, "Where", [positive, shifted, x], "sublinear_tf")
    if model.idf is not None:
        idf = add_constant(scope, container, "idf", np.asarray(model.idf).reshape(1, -1), proto)
        x = add_node(scope, container, "Mul", [x, idf], "tf_idf")
    if model.norm is not None:
        norms = _row_norms(scope, container, x, model.norm, proto)
        x = add_node(scope, container, "Div", [x, norms], "normalised")
    if model.integer_output:
        container.add_node("Cast", [x], [operator.outputs[0].full_name], to=TensorProto.INT64,
                           name=scope.get_unique_operator_name("Cast"))
        return
    container.add_node("Identity", [x], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("Identity"))


def register() -> bool:
    """Register the converter (TermWeighting is bridge's own class); return True."""
    update_registered_converter(TermWeighting, ALIAS, term_weighting_shape_calculator,
                                convert_term_weighting)
    return True
