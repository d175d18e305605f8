"""A ``raw_scores`` option for ``QuadraticDiscriminantAnalysis``: its ``decision_function``;
and binary ``LinearDiscriminantAnalysis`` probabilities as scikit-learn computes them.

Binary LDA: scikit-learn's probability is ``expit(d)`` of the decision value ``d``;
skl2onnx 1.20's linear-classifier graph gives ``expit(2 d)`` (a softmax over ``[-d, d]``).
The LDA converter here writes ``expit(d)`` (raw scores ``[-d, d]``) for two classes and
defers to skl2onnx's otherwise; registered only while a probe shows skl2onnx's wrong.

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
from skl2onnx import to_onnx, update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common._registration import get_converter, get_shape_calculator
from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
from sklearn.discriminant_analysis import (
    LinearDiscriminantAnalysis,
    QuadraticDiscriminantAnalysis,
)

from bridge.sklearn.converters._graph import (
    WithOutputs,
    add_class_labels,
    add_constant,
    add_node,
    proto_float_of,
)

LDA_ALIAS = "BridgeLinearDiscriminantAnalysis"


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
        base_converter(scope, WithOutputs(operator, [operator.outputs[0], unused]), container)
        write_decision_values(scope, container, operator, operator.outputs[1].full_name)

    update_registered_converter(QuadraticDiscriminantAnalysis, alias, get_shape_calculator(alias),
                                converter, options=options)


def _binary_lda(base_converter):
    def converter(scope, operator, container) -> None:
        model = operator.raw_operator
        if len(model.classes_) != 2:
            base_converter(scope, operator, container)
            return
        proto = proto_float_of(operator)
        decision = add_node(scope, container, "Add", [
            add_node(scope, container, "MatMul", [operator.inputs[0].full_name, add_constant(
                scope, container, "lda_coef", np.asarray(model.coef_).T, proto)],
                "lda_product"),
            add_constant(scope, container, "lda_intercept", np.reshape(model.intercept_,
                                                                       (1, 1)), proto)],
            "lda_decision")
        raw = container.get_options(model, dict(raw_scores=False))["raw_scores"]
        if raw:
            low = add_node(scope, container, "Neg", [decision], "lda_negative")
            high = decision
        else:
            high = add_node(scope, container, "Sigmoid", [decision], "lda_probability")
            low = add_node(scope, container, "Sub", [add_constant(
                scope, container, "one", [1.0], proto), high], "lda_complement")
        container.add_node("Concat", [low, high], [operator.outputs[1].full_name], axis=1,
                           name=scope.get_unique_operator_name("Concat"))
        positive = add_node(scope, container, "Greater", [decision, add_constant(
            scope, container, "zero", [0.0], proto)], "lda_positive")
        index = add_node(scope, container, "Reshape", [
            add_node(scope, container, "Cast", [positive], "lda_index_2d",
                     to=TensorProto.INT64),
            add_constant(scope, container, "flat", [-1], TensorProto.INT64)], "lda_index")
        add_class_labels(scope, container, index, model.classes_,
                         operator.outputs[0].full_name)

    return converter


def skl2onnx_mistakes_binary_lda() -> bool:
    """Convert a tiny binary LDA; report whether onnxruntime's probabilities differ."""
    import onnxruntime

    features = np.array([[0.0, 1.0], [1.0, 0.2], [2.0, 1.0], [3.0, 0.5], [0.5, 2.0],
                         [2.5, 0.0]], dtype=np.float32)
    probe = LinearDiscriminantAnalysis().fit(features, [0, 0, 1, 1, 0, 1])
    graph = to_onnx(probe, features[:1], options={id(probe): {"zipmap": False}})
    session = onnxruntime.InferenceSession(graph.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {session.get_inputs()[0].name: features})[1]
    return not np.allclose(probabilities, probe.predict_proba(features), atol=1e-4)


def register() -> list[str]:
    """Add QDA's option where skl2onnx's converter lacks it, and the binary LDA fix while
    skl2onnx needs it; return the classes changed."""
    changed = []
    alias = sklearn_operator_name_map.get(QuadraticDiscriminantAnalysis)
    allowed = {} if alias is None else (
        getattr(get_converter(alias), "get_allowed_options", lambda: None)() or {})
    if alias is not None and "raw_scores" not in allowed:
        _wrap()
        changed.append("QuadraticDiscriminantAnalysis")
    alias = sklearn_operator_name_map.get(LinearDiscriminantAnalysis)
    if alias is not None and alias != LDA_ALIAS and skl2onnx_mistakes_binary_lda():
        base = get_converter(alias)
        options = dict(getattr(base, "get_allowed_options", lambda: None)() or {})
        update_registered_converter(LinearDiscriminantAnalysis, LDA_ALIAS,
                                    calculate_linear_classifier_output_shapes,
                                    _binary_lda(base), options=options)
        changed.append("LinearDiscriminantAnalysis")
    return changed
