"""skl2onnx support for ``sklearn.frozen.FrozenEstimator``: it converts as the estimator it wraps.

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

from bridge.errors import ConversionError

ALIAS = "BridgeFrozenEstimator"
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


def frozen_parser(scope, model, inputs, custom_parsers=None):
    """Parse ``model.estimator`` in place of the wrapper, with the wrapper's options."""
    inner = model.estimator
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
        "FrozenEstimator converts through the estimator it wraps; skl2onnx asked for the "
        "wrapper's own graph, which does not exist"
    )


def frozen_shape_calculator(operator) -> None:
    """Never called: the parser declares the wrapped estimator's operator instead."""
    raise _not_reached()


def convert_frozen(scope, operator, container) -> None:
    """Never called: the parser declares the wrapped estimator's operator instead."""
    raise _not_reached()


def register() -> bool:
    """Register the parser unless skl2onnx already handles the class; return whether it did."""
    if FrozenEstimator in sklearn_operator_name_map:
        return False
    update_registered_converter(FrozenEstimator, ALIAS, frozen_shape_calculator, convert_frozen,
                                parser=frozen_parser, options=OPTIONS)
    return True
