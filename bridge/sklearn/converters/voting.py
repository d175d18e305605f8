"""A working ``VotingClassifier`` converter when skl2onnx refuses ``flatten_transform=True``.

skl2onnx 1.20 raises NotImplementedError for the default ``flatten_transform=True`` even
though ``predict`` and ``predict_proba`` do not depend on it (only ``transform`` does).
This converter runs skl2onnx's own one on a shallow copy with ``flatten_transform=False``;
it is registered only when a probe shows skl2onnx still refuses the default.
"""

from __future__ import annotations

import copy

import numpy as np
from skl2onnx import to_onnx, update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.operator_converters.voting_classifier import convert_voting_classifier
from skl2onnx.shape_calculators.voting_classifier import voting_classifier_shape_calculator
from sklearn.ensemble import VotingClassifier
from sklearn.linear_model import LogisticRegression

OPTIONS = {
    "zipmap": [True, False, "columns"],
    "nocl": [True, False],
    "output_class_labels": [False, True],
}


def convert_voting_classifier_flattened(scope, operator, container) -> None:
    """Delegate to skl2onnx's converter on a copy that does not flatten ``transform``."""
    model = operator.raw_operator
    if model.flatten_transform in (False, None):
        convert_voting_classifier(scope, operator, container)
        return
    view = copy.copy(model)
    view.flatten_transform = False
    operator.raw_operator = view
    try:
        convert_voting_classifier(scope, operator, container)
    finally:
        operator.raw_operator = model


def skl2onnx_refuses_flatten_transform() -> bool:
    """Convert a tiny ``flatten_transform=True`` VotingClassifier and report a refusal."""
    features = np.array([[0.0], [1.0], [2.0], [3.0]], dtype=np.float32)
    probe = VotingClassifier([("lr", LogisticRegression())], voting="soft")
    probe.fit(features, np.array([0, 0, 1, 1]))
    try:
        to_onnx(probe, features[:1], options={id(probe): {"zipmap": False}})
    except NotImplementedError:
        return True
    return False


def register() -> bool:
    """Register the delegating converter when skl2onnx refuses the default; return whether."""
    if VotingClassifier not in sklearn_operator_name_map:
        return False
    if not skl2onnx_refuses_flatten_transform():
        return False
    update_registered_converter(
        VotingClassifier, sklearn_operator_name_map[VotingClassifier],
        voting_classifier_shape_calculator, convert_voting_classifier_flattened,
        options=OPTIONS,
    )
    return True
