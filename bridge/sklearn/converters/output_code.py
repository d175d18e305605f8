"""skl2onnx converter for ``sklearn.multiclass.OutputCodeClassifier`` (skl2onnx has none).

Each binary estimator gives its decision value (its positive-class probability where it has
no ``decision_function``; a regressor its prediction), as scikit-learn's ``_predict_binary``
does; the label is the class whose code-book row is nearest in euclidean distance (the
first one on a tie). The second output holds ``||c||^2 - 2 y.c`` per code-book row ``c``:
the squared distance less ``||y||^2``, the quantity scikit-learn ranks.
"""

from __future__ import annotations

import numpy as np
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.algebra.onnx_ops import OnnxConcat, OnnxIdentity
from skl2onnx.common.data_types import Int64TensorType, StringTensorType
from sklearn.multiclass import OutputCodeClassifier

from bridge.sklearn.converters._graph import (
    add_class_labels,
    add_constant,
    add_node,
    float_type_of,
    proto_float_of,
)
from bridge.sklearn.converters._responses import (
    constant_column,
    numpy_float_of,
    response_column,
)

ALIAS = "BridgeOutputCodeClassifier"
OPTIONS = {"zipmap": [True, False, "columns"], "nocl": [True, False],
           "output_class_labels": [False, True]}


def output_code_shape_calculator(operator) -> None:
    """Label ``(N,)`` (int64 or string) and code-book scores ``(N, n_classes)``."""
    classes = operator.raw_operator.classes_
    string = np.asarray(classes).dtype.kind in "OUS"
    operator.outputs[0].type = (StringTensorType if string else Int64TensorType)([None])
    operator.outputs[1].type = float_type_of(operator)([None, len(classes)])


def _binary_method(estimator) -> str:
    if hasattr(estimator, "decision_function"):
        return "decision_function"
    return "predict_proba" if hasattr(estimator, "predict_proba") else "predict"


def convert_output_code(scope, operator, container) -> None:
    """Write the estimators' scores, their distances to the code book and the nearest class."""
    model = operator.raw_operator
    version = container.target_opset
    dtype = numpy_float_of(operator)
    proto = proto_float_of(operator)
    owner = type(model).__name__
    columns = [
        # an estimator that saw one class predicts it as its score, as scikit-learn's
        # _ConstantPredictor does
        constant_column(float(estimator.y_[0]), operator.inputs[0], dtype, version)
        if type(estimator).__name__ == "_ConstantPredictor"
        else response_column(estimator, operator.inputs[0], _binary_method(estimator), dtype,
                             version, owner, container)
        for estimator in model.estimators_]
    scores_name = scope.get_unique_variable_name("code_scores")
    joined = columns[0] if len(columns) == 1 else OnnxConcat(*columns, axis=1,
                                                             op_version=version)
    OnnxIdentity(joined, op_version=version, output_names=[scores_name]).add_to(
        scope, container)
    # scikit-learn ranks the rows by ||c||^2 - 2 y.c (its ArgKmin's euclidean surrogate):
    # the same arithmetic breaks exact ties (tree probabilities) the same way
    code_book = np.asarray(model.code_book_, dtype=np.float64)
    products = add_node(scope, container, "MatMul", [
        scores_name, add_constant(scope, container, "code_book_t", -2.0 * code_book.T, proto)],
        "products")
    surrogate = add_node(scope, container, "Add", [
        add_constant(scope, container, "code_norms",
                     (code_book ** 2).sum(axis=1).reshape(1, -1), proto), products], "surrogate")
    container.add_node("Identity", [surrogate], [operator.outputs[1].full_name],
                       name=scope.get_unique_operator_name("Identity"))
    nearest = add_node(scope, container, "ArgMin", [surrogate], "nearest", axis=1, keepdims=0)
    add_class_labels(scope, container, nearest, model.classes_, operator.outputs[0].full_name)


def register() -> bool:
    """Register the converter unless skl2onnx already has one; return whether it did."""
    if OutputCodeClassifier in sklearn_operator_name_map:
        return False
    update_registered_converter(OutputCodeClassifier, ALIAS, output_code_shape_calculator,
                                convert_output_code, options=OPTIONS)
    return True
