"""skl2onnx support for ``sklearn.preprocessing.TargetEncoder`` with a multiclass target
(skl2onnx converts only binary and continuous targets).

Each feature's categories are matched with ``Equal`` (``IsNaN`` for a NaN category); the
one-hot match times the ``(n_categories, n_classes)`` encodings gives the feature's
``n_classes`` columns, and a row with no match (an unseen category) gets ``target_mean_``,
as scikit-learn's ``handle_unknown="ignore"`` does. Binary and continuous targets keep
skl2onnx's own converter.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common._registration import get_converter, get_shape_calculator
from sklearn.preprocessing import TargetEncoder

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import add_constant, add_node, float_type_of, proto_float_of

_state: dict[str, object] = {}


def _numeric_categories(model: TargetEncoder) -> list[np.ndarray]:
    categories = []
    for index, values in enumerate(model.categories_):
        try:
            categories.append(np.asarray(values, dtype=np.float64))
        except (TypeError, ValueError) as error:
            raise UnsupportedEstimatorError(
                f"TargetEncoder feature {index} has non-numeric categories "
                f"{list(values)[:3]!r}...; bridge converts numeric categories only "
                "(see SUPPORTED.md)") from error
    return categories


def add_category_match(scope, container, column: str, categories: np.ndarray,
                       proto: int) -> str:
    """``(N, k)`` 1.0 where the ``(N, 1)`` column equals category ``k`` (NaN matches a NaN
    category), else 0.0."""
    finite = np.where(np.isnan(categories), 0.0, categories).reshape(1, -1)
    equal = add_node(scope, container, "Equal", [
        column, add_constant(scope, container, "categories", finite, proto)], "equal")
    if np.isnan(categories).any():
        is_nan = add_node(scope, container, "IsNaN", [column], "is_nan")
        nan_column = add_constant(scope, container, "nan_category",
                                  np.isnan(categories).reshape(1, -1).astype(np.int64),
                                  TensorProto.INT64)
        nan_flag = add_node(scope, container, "Cast", [nan_column], "nan_flag",
                            to=TensorProto.BOOL)
        nan_match = add_node(scope, container, "And", [is_nan, nan_flag], "nan_match")
        # the NaN category's placeholder 0.0 must not match a 0.0 value
        value_match = add_node(scope, container, "And", [
            equal, add_node(scope, container, "Not", [nan_flag], "finite_flag")], "value_match")
        equal = add_node(scope, container, "Or", [value_match, nan_match], "matched")
    return add_node(scope, container, "Cast", [equal], "one_hot", to=proto)


def convert_multiclass_target_encoder(scope, operator, container) -> None:
    """Write ``one_hot(X[:, j]) @ encodings_j + (1 - any match) * target_mean_`` per feature."""
    model = operator.raw_operator
    proto = proto_float_of(operator)
    x = operator.inputs[0].full_name
    n_classes = len(model.classes_)
    mean = np.asarray(model.target_mean_, dtype=np.float64).reshape(1, -1)
    blocks = []
    for feature, categories in enumerate(_numeric_categories(model)):
        column = add_node(scope, container, "Gather", [
            x, add_constant(scope, container, "feature", [feature], TensorProto.INT64)],
            "column", axis=1)
        one_hot = add_category_match(scope, container, column, categories, proto)
        encodings = np.stack([np.asarray(model.encodings_[feature * n_classes + c],
                                         dtype=np.float64) for c in range(n_classes)], axis=1)
        known = add_node(scope, container, "MatMul", [
            one_hot, add_constant(scope, container, "encodings", encodings, proto)], "known")
        unknown = add_node(scope, container, "Sub", [
            add_constant(scope, container, "one", [1.0], proto),
            add_node(scope, container, "ReduceMax", [
                one_hot, add_constant(scope, container, "axis", [1], TensorProto.INT64)],
                "matched_any", keepdims=1)], "unknown")
        fallback = add_node(scope, container, "Mul", [
            unknown, add_constant(scope, container, "target_mean", mean, proto)], "fallback")
        blocks.append(add_node(scope, container, "Add", [known, fallback], "encoded"))
    container.add_node("Concat", blocks, [operator.outputs[0].full_name], axis=1,
                       name=scope.get_unique_operator_name("Concat"))


def _wrapped(original_converter, original_shapes):
    def shapes(operator) -> None:
        model = operator.raw_operator
        if model.target_type_ != "multiclass":
            original_shapes(operator)
            return
        width = len(model.categories_) * len(model.classes_)
        operator.outputs[0].type = float_type_of(operator)([None, width])

    def convert(scope, operator, container) -> None:
        if operator.raw_operator.target_type_ != "multiclass":
            original_converter(scope, operator, container)
            return
        convert_multiclass_target_encoder(scope, operator, container)

    return shapes, convert


def skl2onnx_converts_multiclass(original_converter) -> bool:
    """Whether skl2onnx's own converter takes a multiclass TargetEncoder (it refuses one
    before writing any node when it does not)."""
    from skl2onnx.common._container import ModelComponentContainer
    from skl2onnx.common._topology import Scope

    X = np.array([[0.0], [1.0], [2.0], [0.0], [1.0], [2.0]])
    model = TargetEncoder(cv=2).fit(X, np.array([0, 1, 2, 0, 1, 2]))

    class _Probe:
        raw_operator = model

    try:
        original_converter(Scope("probe"), _Probe(), ModelComponentContainer(21))
    except NotImplementedError:
        return False
    except Exception:  # noqa: BLE001 - any other failure means it got past the refusal
        return True
    return True


def register() -> bool:
    """Extend skl2onnx's TargetEncoder converter to multiclass targets where it refuses
    them; return whether it did."""
    if "registered" in _state:
        return bool(_state["registered"])
    alias = sklearn_operator_name_map.get(TargetEncoder)
    needed = False
    if alias is not None:
        original = get_converter(alias)
        original_converter = getattr(original, "_fct", original)
        needed = not skl2onnx_converts_multiclass(original_converter)
        if needed:
            shapes, convert = _wrapped(original_converter, get_shape_calculator(alias))
            update_registered_converter(TargetEncoder, alias, shapes, convert, overwrite=True,
                                        options=original.get_allowed_options()
                                        if hasattr(original, "get_allowed_options") else None)
    _state["registered"] = needed
    return needed
