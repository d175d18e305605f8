"""Make skl2onnx convert HistGradientBoostingClassifier/Regressor with recent scikit-learn.

skl2onnx 1.20 copies scikit-learn's ``missing_go_to_left`` flags (numpy ``uint8``) next to
Python ``False`` into the ``nodes_missing_value_tracks_true`` ints attribute, which onnx
refuses ("Expected an int, got a boolean"). :func:`register` re-registers skl2onnx's own
converter, through ``skl2onnx.update_registered_converter`` with its own shape calculator,
wrapped so that integer-list attributes reach onnx as plain ints. It probes first and
changes nothing when skl2onnx already converts these models.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

ALIASES = {
    HistGradientBoostingClassifier: "SklearnHistGradientBoostingClassifier",
    HistGradientBoostingRegressor: "SklearnHistGradientBoostingRegressor",
}

_state: dict[str, bool] = {}


def plain_attribute(value: Any) -> Any:
    """Return ``value`` with booleans and numpy integers of an int list made Python ints.

    Other values (floats, strings, tensors of other dtypes, clean int lists) come back
    unchanged, so the wrapper is a no-op on attributes skl2onnx already writes correctly.
    """
    if isinstance(value, np.ndarray) and value.dtype == np.bool_:
        return value.astype(np.int64)
    if isinstance(value, (list, tuple)) and value:
        integral = (bool, int, np.bool_, np.integer)
        if all(isinstance(v, integral) for v in value) and any(
            isinstance(v, (bool, np.bool_, np.integer)) for v in value
        ):
            return [int(v) for v in value]
    return value


def wrap_converter(convert: Callable) -> Callable:
    """Wrap a skl2onnx converter so that the nodes it adds get :func:`plain_attribute` values."""
    if getattr(convert, "_bridge_plain_attributes", False):
        return convert

    @functools.wraps(convert)
    def convert_with_plain_attributes(scope, operator, container):
        original = container.add_node

        def add_node(op_type, inputs, outputs, *args, **attributes):
            cleaned = {name: plain_attribute(v) for name, v in attributes.items()}
            return original(op_type, inputs, outputs, *args, **cleaned)

        container.add_node = add_node
        try:
            return convert(scope, operator, container)
        finally:
            del container.add_node  # the instance attribute shadowed the method

    convert_with_plain_attributes._bridge_plain_attributes = True
    return convert_with_plain_attributes


def skl2onnx_converts_hist_gradient_boosting() -> bool:
    """Whether skl2onnx, as registered now, converts a small HistGradientBoosting model."""
    from skl2onnx import to_onnx

    rng = np.random.RandomState(0)
    X = rng.randn(40, 2).astype(np.float32)
    X[::5, 0] = np.nan  # missing values make scikit-learn emit missing_go_to_left flags
    model = HistGradientBoostingRegressor(max_iter=2, max_leaf_nodes=3, min_samples_leaf=2)
    model.fit(X, X[:, 1])
    try:
        to_onnx(model, X[:1], target_opset={"": 17, "ai.onnx.ml": 3})
    except (ValueError, TypeError, RuntimeError):
        return False
    return True


def register() -> bool:
    """Register the wrapped HistGradientBoosting converters when skl2onnx needs them.

    Idempotent: later calls return the first call's answer without probing again.

    Returns
    -------
    bool
        True when the wrapped converters were registered, False when skl2onnx already
        converts HistGradientBoosting models and was left untouched.
    """
    if "registered" in _state:
        return _state["registered"]
    from skl2onnx import update_registered_converter
    from skl2onnx.common._registration import get_converter, get_shape_calculator

    needed = not skl2onnx_converts_hist_gradient_boosting()
    if needed:
        for model, alias in ALIASES.items():
            registered = get_converter(alias)
            update_registered_converter(
                model, alias, get_shape_calculator(alias), wrap_converter(registered._fct),
                overwrite=True, options=registered.get_allowed_options(),
            )
    _state["registered"] = needed
    return needed
