"""A ``score_samples`` option for ``OneClassSVM`` and ``SGDOneClassSVM``.

Both models' ``score_samples`` is ``decision_function + offset_``. skl2onnx's converters
write (label, decision values); with ``options={'score_samples': True}`` the wrapped
converter adds a third output with the scores, which ``bridge/sklearn/plan.py`` reads for
outlier detectors. Registered only while skl2onnx's converter lacks the option.
"""

from __future__ import annotations

import numpy as np
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common._registration import get_converter, get_shape_calculator
from skl2onnx.common.data_types import Int64TensorType, guess_tensor_type
from sklearn.linear_model import SGDOneClassSVM
from sklearn.svm import OneClassSVM

from bridge.sklearn.converters._graph import WithOutputs, add_constant, proto_float_of

SCORED = (OneClassSVM, SGDOneClassSVM)


def _wrap(cls) -> None:
    alias = sklearn_operator_name_map[cls]
    base_converter = get_converter(alias)
    base_shape = get_shape_calculator(alias)
    options = dict(getattr(base_converter, "get_allowed_options", lambda: None)() or {})
    options["score_samples"] = [False, True]

    def parser(scope, model, inputs, custom_parsers=None):
        operator = scope.declare_local_operator(alias, model)
        operator.inputs = inputs
        float_type = guess_tensor_type(inputs[0].type)
        operator.outputs.append(scope.declare_local_variable("label", Int64TensorType()))
        operator.outputs.append(scope.declare_local_variable("scores", float_type))
        if scope.get_options(model, dict(score_samples=False))["score_samples"]:
            operator.outputs.append(scope.declare_local_variable("score_samples", float_type))
        return operator.outputs

    def shape_calculator(operator) -> None:
        base_shape(WithOutputs(operator, operator.outputs[:2]))
        if len(operator.outputs) > 2:
            operator.outputs[2].type = guess_tensor_type(operator.inputs[0].type)
            operator.outputs[2].type.shape = [None, 1]

    def converter(scope, operator, container) -> None:
        base_converter(scope, WithOutputs(operator, operator.outputs[:2]), container)
        if len(operator.outputs) > 2:
            offset = add_constant(scope, container, "offset",
                                  np.reshape(operator.raw_operator.offset_, (1,)),
                                  proto_float_of(operator))
            container.add_node("Add", [operator.outputs[1].full_name, offset],
                               [operator.outputs[2].full_name],
                               name=scope.get_unique_operator_name("Add"))

    update_registered_converter(cls, alias, shape_calculator, converter, parser=parser,
                                options=options)


def register() -> list[str]:
    """Add the option where skl2onnx's converter lacks it; return the classes changed."""
    registered = []
    for cls in SCORED:
        alias = sklearn_operator_name_map.get(cls)
        if alias is None:
            continue
        allowed = getattr(get_converter(alias), "get_allowed_options", lambda: None)() or {}
        if "score_samples" in allowed:
            continue
        _wrap(cls)
        registered.append(cls.__name__)
    return registered
