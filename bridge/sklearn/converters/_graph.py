"""Small helpers shared by the custom skl2onnx converters: typed initializers and batch shapes."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx.common.data_types import (
    DoubleTensorType,
    FloatTensorType,
    guess_proto_type,
    guess_tensor_type,
)


def float_type_of(operator):
    """Return the skl2onnx tensor type class (float or double) matching the operator's input."""
    input_type = operator.inputs[0].type
    return DoubleTensorType if isinstance(input_type, DoubleTensorType) else FloatTensorType


def proto_float_of(operator) -> int:
    """Return the ONNX element type (FLOAT or DOUBLE) the operator computes in."""
    proto = guess_proto_type(operator.inputs[0].type)
    return proto if proto == TensorProto.DOUBLE else TensorProto.FLOAT


def add_constant(scope, container, stem: str, value, proto_type: int) -> str:
    """Add ``value`` as an initializer of element type ``proto_type``; return its name."""
    numpy_type = np.float64 if proto_type == TensorProto.DOUBLE else (
        np.int64 if proto_type == TensorProto.INT64 else np.float32
    )
    array = np.asarray(value, dtype=numpy_type)
    name = scope.get_unique_variable_name(stem)
    container.add_initializer(name, proto_type, list(array.shape), array.ravel().tolist())
    return name


def add_node(scope, container, op_type: str, inputs, stem: str, **attributes) -> str:
    """Add one node with a fresh output name and return that name."""
    output = scope.get_unique_variable_name(stem)
    container.add_node(
        op_type, list(inputs), [output], name=scope.get_unique_operator_name(op_type),
        **attributes,
    )
    return output


def broadcast_rows(scope, container, input_name: str, row, proto_type: int, output: str) -> None:
    """Write into ``output`` the constant ``row`` (shape ``(1, k)``) repeated once per input row.

    Uses Shape → Slice → Concat → Expand, so the result has the input's batch size
    whatever its values (NaN included).
    """
    row = np.asarray(row).reshape(1, -1)
    shape = add_node(scope, container, "Shape", [input_name], "input_shape")
    starts = add_constant(scope, container, "zero", [0], TensorProto.INT64)
    ends = add_constant(scope, container, "one", [1], TensorProto.INT64)
    batch = add_node(scope, container, "Slice", [shape, starts, ends], "batch_size")
    width = add_constant(scope, container, "width", [row.shape[1]], TensorProto.INT64)
    target = add_node(scope, container, "Concat", [batch, width], "target_shape", axis=0)
    constant = add_constant(scope, container, "row", row, proto_type)
    container.add_node(
        "Expand", [constant, target], [output], name=scope.get_unique_operator_name("Expand")
    )


def add_class_labels(scope, container, index: str, classes, output: str) -> None:
    """Write into ``output`` the class ``classes[i]`` of each index ``i`` in ``index`` (int64):
    a Gather from the integer classes, or a LabelEncoder to the string ones."""
    classes = list(classes)
    if all(isinstance(c, (int, np.integer)) for c in classes):
        values = add_constant(scope, container, "class_values", [int(c) for c in classes],
                              TensorProto.INT64)
        container.add_node("Gather", [values, index], [output], axis=0,
                           name=scope.get_unique_operator_name("Gather"))
        return
    container.add_node(
        "LabelEncoder", [index], [output], op_domain="ai.onnx.ml", op_version=2,
        name=scope.get_unique_operator_name("LabelEncoder"),
        keys_int64s=list(range(len(classes))), values_strings=[str(c) for c in classes],
        default_string="",
    )


def add_pairwise(scope, container, x: str, points, proto_type: int, metric: str) -> str:
    """``(N, k)`` distances from each row of ``x`` to each of the constant ``points``:
    squared euclidean (``metric="sqeuclidean"``) or manhattan (``"manhattan"``), as
    differences broadcast over ``(N, k, d)`` (no cancellation, unlike the expanded form)."""
    points = np.asarray(points, dtype=np.float64)
    to_3d = add_constant(scope, container, "shape_n1d", [0, 1, -1], TensorProto.INT64)
    x3 = add_node(scope, container, "Reshape", [x, to_3d], "x_3d")
    constant = add_constant(scope, container, "points", points, proto_type)
    diff = add_node(scope, container, "Sub", [x3, constant], "differences")
    if metric == "sqeuclidean":
        size = add_node(scope, container, "Mul", [diff, diff], "squares")
    elif metric == "manhattan":
        size = add_node(scope, container, "Abs", [diff], "magnitudes")
    else:
        raise ValueError(f"metric={metric!r}; expected 'sqeuclidean' or 'manhattan'")
    ones = add_constant(scope, container, "ones", np.ones((points.shape[1], 1)), proto_type)
    summed = add_node(scope, container, "MatMul", [size, ones], "summed_3d")
    to_2d = add_constant(scope, container, "shape_nk", [0, -1], TensorProto.INT64)
    return add_node(scope, container, "Reshape", [summed, to_2d], "distances")


class WithOutputs:
    """An operator as a wrapped skl2onnx converter or shape calculator expects it: the same
    operator with other outputs (those calculators check the output count, so a converter
    that adds an output hands the base one a view of the outputs it knows)."""

    def __init__(self, operator, outputs: list):
        self._operator = operator
        self.outputs = outputs

    def __getattr__(self, name):
        return getattr(self._operator, name)


def add_score_samples_option(cls, outputs: list, write_scores) -> None:
    """Re-register ``cls``'s skl2onnx converter with an option ``score_samples=True`` that
    adds one ``(N, 1)`` output after the converter's own.

    Parameters
    ----------
    cls : type
        The scikit-learn class; its registered converter and shape calculator are wrapped.
    outputs : list of (str, callable)
        The converter's own outputs: a name and a function of the input's skl2onnx type
        giving the output's type.
    write_scores : callable
        ``write_scores(scope, container, operator)`` writes ``operator.outputs[-1]``.
    """
    from skl2onnx import update_registered_converter
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter, get_shape_calculator

    alias = sklearn_operator_name_map[cls]
    base_converter, base_shape = get_converter(alias), get_shape_calculator(alias)
    options = dict(getattr(base_converter, "get_allowed_options", lambda: None)() or {})
    options["score_samples"] = [False, True]
    count = len(outputs)

    def parser(scope, model, inputs, custom_parsers=None):
        operator = scope.declare_local_operator(alias, model)
        operator.inputs = inputs
        for name, make_type in outputs:
            operator.outputs.append(scope.declare_local_variable(name, make_type(inputs[0].type)))
        if scope.get_options(model, dict(score_samples=False))["score_samples"]:
            operator.outputs.append(scope.declare_local_variable(
                "score_samples", guess_tensor_type(inputs[0].type)))
        return operator.outputs

    def shape_calculator(operator) -> None:
        base_shape(WithOutputs(operator, operator.outputs[:count]))
        if len(operator.outputs) > count:
            operator.outputs[count].type = float_type_of(operator)([None, 1])

    def converter(scope, operator, container) -> None:
        base_converter(scope, WithOutputs(operator, operator.outputs[:count]), container)
        if len(operator.outputs) > count:
            write_scores(scope, container, operator)

    update_registered_converter(cls, alias, shape_calculator, converter, parser=parser,
                                options=options)
