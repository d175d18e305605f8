"""``transform`` of estimators whose skl2onnx graph answers their other methods only:
StackingClassifier, StackingRegressor, VotingClassifier, VotingRegressor,
LinearDiscriminantAnalysis and the PLS models (PLSRegression, PLSCanonical, CCA).

``TransformView(estimator)`` stands for "the estimator's transform" in a conversion: the
plan (``bridge/sklearn/plan.py``) converts it as a separate graph, and the converter
registered for it here writes what scikit-learn's ``transform`` computes.
"""

from __future__ import annotations

import copy

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common.data_types import Int64TensorType
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import (
    add_constant,
    add_node,
    float_type_of,
    proto_float_of,
)

ALIAS = "BridgeTransformView"
_TRANSFORMS = ("StackingClassifier", "StackingRegressor", "VotingClassifier",
               "VotingRegressor", "LinearDiscriminantAnalysis", "PLSRegression",
               "PLSCanonical", "CCA")


class TransformView(BaseEstimator):
    """A conversion stand-in for ``estimator.transform`` (never fitted or called itself).

    Parameters
    ----------
    estimator : fitted estimator
        One of the estimators :func:`has_transform_view` accepts.
    """

    def __init__(self, estimator=None):
        self.estimator = estimator

    @classmethod
    def over(cls, estimator):
        """The view of ``estimator``'s transform; for a pipeline, the pipeline with its last
        step replaced by the view of that step."""
        if isinstance(estimator, Pipeline):
            view = copy.copy(estimator)
            name, last = estimator.steps[-1]
            view.steps = list(estimator.steps[:-1]) + [(name, cls.over(last))]
            return view
        return cls(estimator)

    def __sklearn_is_fitted__(self) -> bool:
        return True


class SelectedColumns(BaseEstimator):
    """A conversion stand-in for a feature selector's ``transform``: the kept columns (a
    Gather), so that a pipeline view ``[SelectedColumns, estimator_]`` converts with the
    options of ``estimator_`` (skl2onnx's selector converter refuses options there).

    Parameters
    ----------
    selector : fitted feature selector
        Anything with ``get_support()``.
    """

    def __init__(self, selector=None):
        self.selector = selector

    def __sklearn_is_fitted__(self) -> bool:
        return True


def has_transform_view(estimator) -> bool:
    """Whether this module writes ``estimator.transform``."""
    return type(estimator).__name__ in _TRANSFORMS and not (
        type(estimator).__name__ == "LinearDiscriminantAnalysis"
        and estimator.solver not in ("svd", "eigen"))


def _hard_voting(model) -> bool:
    return type(model).__name__ == "VotingClassifier" and model.voting == "hard"


def transform_view_shape(operator) -> None:
    """One output: floats, or int64 class indices for a hard-voting classifier."""
    model = operator.raw_operator.estimator
    if _hard_voting(model):
        operator.outputs[0].type = Int64TensorType([None, None])
    else:
        operator.outputs[0].type = float_type_of(operator)([None, None])


def _outputs_of(scope, container, model, x, classifier: bool, raw_scores: bool = False):
    """Declare ``model`` as a sub-operator on ``x``; return (label, values) output names
    (label None for regressors)."""
    alias = sklearn_operator_name_map.get(type(model))
    if alias is None:
        raise UnsupportedEstimatorError(
            f"{type(model).__name__} inside an ensemble has no ONNX converter; see SUPPORTED.md")
    sub = scope.declare_local_operator(alias, model)
    if container.has_options(model, "raw_scores"):
        container.add_options(id(model), {"raw_scores": raw_scores})
    sub.inputs.append(x)
    label = None
    if classifier:
        label = scope.declare_local_variable("view_label", Int64TensorType())
        sub.outputs.append(label)
    values = scope.declare_local_variable("view_values", x.type.__class__())
    sub.outputs.append(values)
    return (None if label is None else label.full_name), values.full_name


def _column(scope, container, values: str) -> str:
    """``values`` as one column (N, 1)."""
    shape = add_constant(scope, container, "column_shape", [-1, 1], TensorProto.INT64)
    return add_node(scope, container, "Reshape", [values, shape], "view_column")


def _last_column(scope, container, values: str) -> str:
    """The last column of ``values`` (a binary output's positive class)."""
    starts = add_constant(scope, container, "last_start", [-1], TensorProto.INT64)
    ends = add_constant(scope, container, "last_end", [np.iinfo(np.int64).max],
                        TensorProto.INT64)
    axes = add_constant(scope, container, "last_axis", [1], TensorProto.INT64)
    return add_node(scope, container, "Slice", [values, starts, ends, axes], "view_last")


def _as_float(scope, container, name: str, proto: int) -> str:
    return add_node(scope, container, "Cast", [name], "view_float", to=proto)


def _stacking(scope, operator, container, model, proto) -> list[str]:
    """scikit-learn's ``_concatenate_predictions``: one column per binary or 1-D output."""
    x = operator.inputs[0]
    classifier = type(model).__name__ == "StackingClassifier"
    methods = model.stack_method_ if classifier else ["predict"] * len(model.estimators_)
    binary = classifier and len(model.classes_) == 2
    columns = []
    for estimator, method in zip(model.estimators_, methods):
        if estimator == "drop":
            continue
        if not classifier:
            _, values = _outputs_of(scope, container, estimator, x, False)
            columns.append(_column(scope, container, _as_float(scope, container, values, proto)))
            continue
        label, values = _outputs_of(scope, container, estimator, x, True,
                                    raw_scores=method == "decision_function")
        if method == "predict":
            columns.append(_column(scope, container, _as_float(scope, container, label, proto)))
        elif binary:
            columns.append(_last_column(scope, container,
                                        _as_float(scope, container, values, proto)))
        else:
            columns.append(_as_float(scope, container, values, proto))
    if model.passthrough:
        columns.append(_as_float(scope, container, x.full_name, proto))
    return columns


def _voting(scope, operator, container, model, proto) -> list[str]:
    x = operator.inputs[0]
    if type(model).__name__ == "VotingRegressor":
        return [_column(scope, container, _as_float(scope, container,
                                                    _outputs_of(scope, container, e, x,
                                                                False)[1], proto))
                for e in model.estimators_]
    outputs = [_outputs_of(scope, container, e, x, True) for e in model.estimators_]
    if model.voting == "hard":  # each estimator's class index (fitted on encoded labels)
        return [_column(scope, container, label) for label, _ in outputs]
    probabilities = [_as_float(scope, container, values, proto) for _, values in outputs]
    if model.flatten_transform in (False, None):
        axis = add_constant(scope, container, "stack_axis", [0], TensorProto.INT64)
        return [add_node(scope, container, "Unsqueeze", [p, axis], "view_stacked")
                for p in probabilities]
    return probabilities


def _affine(scope, container, x: str, shift, scale, matrix, proto) -> str:
    """``((x - shift) / scale) @ matrix`` (a missing shift or scale is skipped)."""
    if shift is not None:
        x = add_node(scope, container, "Sub", [x, add_constant(
            scope, container, "shift", np.reshape(shift, (1, -1)), proto)], "view_centered")
    if scale is not None:
        x = add_node(scope, container, "Div", [x, add_constant(
            scope, container, "scale", np.reshape(scale, (1, -1)), proto)], "view_scaled")
    return add_node(scope, container, "MatMul", [x, add_constant(
        scope, container, "matrix", np.asarray(matrix, dtype=np.float64), proto)],
        "view_projected")


def convert_transform_view(scope, operator, container) -> None:
    """Write the wrapped estimator's ``transform`` into the view's one output."""
    model = operator.raw_operator.estimator
    name = type(model).__name__
    proto = proto_float_of(operator)
    x = operator.inputs[0].full_name
    target = operator.outputs[0].full_name
    if name.startswith("Stacking") or name.startswith("Voting"):
        columns = (_stacking if name.startswith("Stacking") else _voting)(
            scope, operator, container, model, proto)
        axis = 0 if name == "VotingClassifier" and model.voting == "soft" and (
            model.flatten_transform in (False, None)) else 1
        container.add_node("Concat", columns, [target], axis=axis,
                           name=scope.get_unique_operator_name("Concat"))
        return
    if name == "LinearDiscriminantAnalysis":
        if model.solver not in ("svd", "eigen"):
            raise UnsupportedEstimatorError(
                f"LinearDiscriminantAnalysis(solver={model.solver!r}) has no transform; "
                "scikit-learn's transform needs solver 'svd' or 'eigen'")
        scalings = np.asarray(model.scalings_)[:, :model._max_components]
        shift = model.xbar_ if model.solver == "svd" else None
        result = _affine(scope, container, x, shift, None, scalings, proto)
    else:  # PLSRegression, PLSCanonical, CCA
        result = _affine(scope, container, x, model._x_mean, model._x_std,
                         model.x_rotations_, proto)
    container.add_node("Identity", [result], [target],
                       name=scope.get_unique_operator_name("Identity"))


def transform_view_parser(scope, model, inputs, custom_parsers=None):
    """One operator, one output."""
    operator = scope.declare_local_operator(ALIAS, model)
    operator.inputs = inputs
    operator.outputs.append(scope.declare_local_variable("transformed",
                                                         inputs[0].type.__class__()))
    return operator.outputs


def selected_columns_shape(operator) -> None:
    kept = int(np.count_nonzero(operator.raw_operator.selector.get_support()))
    operator.outputs[0].type = operator.inputs[0].type.__class__([None, kept])


def convert_selected_columns(scope, operator, container) -> None:
    """Gather the selector's kept columns."""
    kept = np.flatnonzero(operator.raw_operator.selector.get_support())
    columns = add_constant(scope, container, "kept_columns", kept, TensorProto.INT64)
    container.add_node("Gather", [operator.inputs[0].full_name, columns],
                       [operator.outputs[0].full_name], axis=1,
                       name=scope.get_unique_operator_name("Gather"))


def register() -> bool:
    """Register the views' converters (always: they are bridge's own classes)."""
    update_registered_converter(TransformView, ALIAS, transform_view_shape,
                                convert_transform_view, parser=transform_view_parser)
    update_registered_converter(SelectedColumns, "BridgeSelectedColumns",
                                selected_columns_shape, convert_selected_columns)
    return True
