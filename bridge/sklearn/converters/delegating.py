"""skl2onnx support for wrappers whose inference is their fitted estimator's:
``sklearn.frozen.FrozenEstimator`` and ``SelfTrainingClassifier``.

The registered parser hands the wrapped estimator to skl2onnx's own parser, passing on the
conversion options given for the wrapper (zipmap, raw_scores, score_samples, ...) that the
wrapped estimator's converter accepts.
"""

from __future__ import annotations

from skl2onnx import update_registered_converter
from skl2onnx._parse import _parse_sklearn
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common._registration import get_converter
from sklearn.frozen import FrozenEstimator
from sklearn.semi_supervised import SelfTrainingClassifier

from bridge.errors import ConversionError

# wrapper class -> (alias, the attribute holding the estimator that predicts)
DELEGATES = {
    FrozenEstimator: ("BridgeFrozenEstimator", "estimator"),
    SelfTrainingClassifier: ("BridgeSelfTrainingClassifier", "estimator_"),
}
# every option bridge's conversion plan may set on a final estimator
OPTIONS = {
    "zipmap": [True, False, "columns"],
    "nocl": [True, False],
    "output_class_labels": [False, True],
    "raw_scores": [False, True],
    "score_samples": [False, True],
}


def _accepted_options(estimator) -> set[str]:
    alias = sklearn_operator_name_map.get(type(estimator))
    if alias is None:
        return set()
    try:
        return set(get_converter(alias).get_allowed_options() or ())
    except (ValueError, AttributeError):
        return set()


def delegating_parser(scope, model, inputs, custom_parsers=None):
    """Parse ``model.estimator`` in place of the wrapper, with the wrapper's options."""
    inner = getattr(model, DELEGATES[type(model)][1])
    given = (scope.options or {}).get(id(model)) or {}
    accepted = _accepted_options(inner)
    forwarded = {k: v for k, v in given.items() if k in accepted}
    if forwarded:
        if scope.options is None:
            scope.options = {}
        scope.options[id(inner)] = {**forwarded, **scope.options.get(id(inner), {})}
    return _parse_sklearn(scope, inner, inputs, custom_parsers=custom_parsers)


def _not_reached() -> ConversionError:
    return ConversionError(
        "a delegating wrapper converts through the estimator it wraps; skl2onnx asked for the "
        "wrapper's own graph, which does not exist"
    )


def delegating_shape_calculator(operator) -> None:
    """Never called: the parser declares the wrapped estimator's operator instead."""
    raise _not_reached()


def convert_delegating(scope, operator, container) -> None:
    """Never called: the parser declares the wrapped estimator's operator instead."""
    raise _not_reached()


def register() -> list[str]:
    """Register the parser where skl2onnx lacks the class; return the names registered."""
    registered = []
    for cls, (alias, _) in DELEGATES.items():
        if cls in sklearn_operator_name_map:
            continue
        update_registered_converter(cls, alias, delegating_shape_calculator, convert_delegating,
                                    parser=delegating_parser, options=OPTIONS)
        registered.append(cls.__name__)
    return registered
