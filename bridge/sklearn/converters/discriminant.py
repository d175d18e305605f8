"""A ``raw_scores`` option for ``QuadraticDiscriminantAnalysis``: its ``decision_function``.

scikit-learn's decision values are the unnormalised log posteriors
``-0.5 (|(x - mean_k) R_k S_k^-1/2|^2 + sum log S_k) + log prior_k`` (binary: the second
minus the first). skl2onnx 1.20 writes labels and probabilities only; with
``options={'raw_scores': True}`` the wrapped converter keeps its labels and writes the
decision values as the second output (a binary problem's as ``[-d, d]``, bridge's layout
for binary scores). Registered only while skl2onnx's converter lacks the option.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common._registration import get_converter, get_shape_calculator
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis

from bridge.sklearn.converters._graph import add_constant, add_node, proto_float_of


class _WithOutputs:
    """The operator with other output variables (skl2onnx's converter writes those)."""

    def __init__(self, operator, outputs):
        self._operator = operator
        self.outputs = outputs

    def __getattr__(self, name):
        return getattr(self._operator, name)


def write_decision_values(scope, container, operator, target: str) -> None:
    """Write QDA's decision values for the operator's input into ``target``."""
    model = operator.raw_operator
    proto = proto_float_of(operator)
    x = operator.inputs[0].full_name
    axis = add_constant(scope, container, "sum_axis", [1], TensorProto.INT64)
    columns = []
    for mean, rotation, scaling in zip(model.means_, model.rotations_, model.scalings_):
        centered = add_node(scope, container, "Sub", [x, add_constant(
            scope, container, "class_mean", np.reshape(mean, (1, -1)), proto)], "qda_centered")
        whitened = add_node(scope, container, "MatMul", [centered, add_constant(
            scope, container, "class_rotation", rotation * scaling ** -0.5, proto)],
            "qda_whitened")
        squares = add_node(scope, container, "Mul", [whitened, whitened], "qda_squares")
        columns.append(add_node(scope, container, "ReduceSum", [squares, axis], "qda_norm2",
                                keepdims=1))
    norm2 = add_node(scope, container, "Concat", columns, "qda_norm2s", axis=1)
    offsets = np.array([-0.5 * np.sum(np.log(s)) for s in model.scalings_])
    offsets = offsets + np.log(model.priors_)
    half = add_constant(scope, container, "minus_half", [-0.5], proto)
    scores = add_node(scope, container, "Add", [
        add_node(scope, container, "Mul", [norm2, half], "qda_half_norm2"),
        add_constant(scope, container, "qda_offsets", offsets.reshape(1, -1), proto)],
        "qda_scores")
    if len(model.classes_) == 2:  # [-d, d] with d = second minus first
        signs = add_constant(scope, container, "qda_signs", [[1.0, -1.0], [-1.0, 1.0]], proto)
        container.add_node("MatMul", [scores, signs], [target],
                           name=scope.get_unique_operator_name("MatMul"))
        return
    container.add_node("Identity", [scores], [target],
                       name=scope.get_unique_operator_name("Identity"))


def _wrap() -> None:
    alias = sklearn_operator_name_map[QuadraticDiscriminantAnalysis]
    base_converter = get_converter(alias)
    options = dict(getattr(base_converter, "get_allowed_options", lambda: None)() or {})
    options["raw_scores"] = [False, True]

    def converter(scope, operator, container) -> None:
        if not container.get_options(operator.raw_operator,
                                     dict(raw_scores=False))["raw_scores"]:
            base_converter(scope, operator, container)
            return
        unused = scope.declare_local_variable("qda_probabilities",
                                              operator.outputs[1].type.__class__())
        base_converter(scope, _WithOutputs(operator, [operator.outputs[0], unused]), container)
        write_decision_values(scope, container, operator, operator.outputs[1].full_name)

    update_registered_converter(QuadraticDiscriminantAnalysis, alias, get_shape_calculator(alias),
                                converter, options=options)


def register() -> bool:
    """Add the option where skl2onnx's converter lacks it; return whether it did."""
    alias = sklearn_operator_name_map.get(QuadraticDiscriminantAnalysis)
    if alias is None:
        return False
    allowed = getattr(get_converter(alias), "get_allowed_options", lambda: None)() or {}
    if "raw_scores" in allowed:
        return False
    _wrap()
    return True
