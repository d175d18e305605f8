"""A ``score_samples`` option for ``OneClassSVM`` and ``SGDOneClassSVM``.

Both models' ``score_samples`` is ``decision_function + offset_``. skl2onnx's converters
write (label, decision values); with ``options={'score_samples': True}`` the wrapped
converter adds a third output with the scores, which ``bridge/sklearn/plan.py`` reads for
outlier detectors. Registered only while skl2onnx's converter lacks the option.
"""

from __future__ import annotations

import numpy as np
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common._registration import get_converter
from skl2onnx.common.data_types import Int64TensorType, guess_tensor_type
from sklearn.linear_model import SGDOneClassSVM
from sklearn.svm import OneClassSVM

from bridge.sklearn.converters._graph import add_constant, add_score_samples_option, proto_float_of

SCORED = (OneClassSVM, SGDOneClassSVM)


def _write_scores(scope, container, operator) -> None:
    """``score_samples = decision values + offset_``."""
    offset = add_constant(scope, container, "offset",
                          np.reshape(operator.raw_operator.offset_, (1,)),
                          proto_float_of(operator))
    container.add_node("Add", [operator.outputs[1].full_name, offset],
                       [operator.outputs[2].full_name], name=scope.get_unique_operator_name("Add"))


def _wrap(cls) -> None:
    add_score_samples_option(cls, [("label", lambda _: Int64TensorType()),
                                   ("scores", guess_tensor_type)], _write_scores)


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
