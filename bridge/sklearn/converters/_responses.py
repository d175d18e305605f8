"""One estimator's response column inside another converter's graph, as scikit-learn's
``_get_response_values`` and ``_predict_binary`` give it (skl2onnx's algebra API)."""

from __future__ import annotations

import copy

import numpy as np
from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
from skl2onnx.algebra.onnx_ops import OnnxCast, OnnxConcat, OnnxGather, OnnxIdentity, OnnxReshape
from sklearn.base import is_classifier, is_regressor

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.plan import allowed_options


def _column(values, index: int, version: int):
    """``values[:, index]`` as an ``(N, 1)`` column."""
    return OnnxGather(values, np.array([index], dtype=np.int64), axis=1, op_version=version)


def _options(estimator, **wanted) -> dict:
    allowed = allowed_options(estimator)
    return {k: v for k, v in wanted.items() if k in allowed}


def response_column(estimator, inputs, method: str, proto_numpy, version: int, owner: str,
                    container, shared: dict | None = None):
    """An ``(N, 1)`` column of ``estimator``'s ``method`` on ``inputs`` (a binary classifier's
    positive-class probability or decision value, any classifier's label as a float, a
    regressor's value).

    Parameters
    ----------
    estimator : fitted scikit-learn estimator
        A binary classifier or a single-target regressor.
    inputs : skl2onnx variable or algebra operator
        The ``(N, d)`` features the estimator reads.
    method : str
        ``"predict"``, ``"predict_proba"`` or ``"decision_function"``.
    proto_numpy : numpy dtype
        The graph's float type (labels are cast to it).
    version : int
        The target opset.
    owner : str
        The meta-estimator's name, for error messages.
    container : skl2onnx ModelComponentContainer
        The graph being written; the sub-estimators' options are registered on it (the
        converters read options from the container, which the scope does not share when
        the conversion was given none).
    shared : dict, optional
        Sub-estimators already written, reused by a later call for the same estimator on
        the same features (a label and a probability come from one sub-graph).
    """
    features = inputs

    def sub_estimator(model, **wanted):
        key = (id(estimator), id(features), tuple(sorted(wanted)))
        if shared is not None and key in shared:
            return shared[key]
        options = _options(model, **wanted)
        if options:
            container.add_options(id(model), options)
        sub = OnnxSubEstimator(model, inputs, op_version=version, options=options)
        if shared is not None:
            shared[key] = sub
        return sub

    if not hasattr(estimator, method):
        raise UnsupportedEstimatorError(
            f"{owner}: its estimator {type(estimator).__name__} has no {method}, which "
            f"{owner} needs (see SUPPORTED.md)")
    # skl2onnx's GraphState finds a sub-estimator's operator by its input name, so each
    # sub-estimator reads its own Identity of the features
    inputs = OnnxIdentity(inputs, op_version=version)
    if is_regressor(estimator):
        predictions = sub_estimator(estimator)
        column = OnnxReshape(predictions, np.array([-1, 1], dtype=np.int64), op_version=version)
        return OnnxCast(column, to=_proto_of(proto_numpy), op_version=version)
    if not is_classifier(estimator):
        raise UnsupportedEstimatorError(
            f"{owner}: its estimator {type(estimator).__name__} is neither a classifier nor a "
            "regressor; bridge converts those two kinds (see SUPPORTED.md)")
    classes = getattr(estimator, "classes_", None)
    if classes is None or (len(classes) != 2 and method != "predict"):
        raise UnsupportedEstimatorError(
            f"{owner}: its estimator {type(estimator).__name__} has classes {classes!r}; "
            f"bridge converts {method} of binary estimators here (see SUPPORTED.md)")
    if method == "predict":
        if np.asarray(classes).dtype.kind not in "iufb":
            raise UnsupportedEstimatorError(
                f"{owner}: class labels {list(classes)!r} are not numbers; bridge converts "
                "numeric labels here (see SUPPORTED.md)")
        sub = sub_estimator(estimator, zipmap=False)
        label = OnnxReshape(sub[0], np.array([-1, 1], dtype=np.int64), op_version=version)
        return OnnxCast(label, to=_proto_of(proto_numpy), op_version=version)
    if method == "decision_function":
        # skl2onnx keys options by id(estimator): a copy keeps raw_scores off the other
        # conversions of the same estimator
        sub = sub_estimator(copy.copy(estimator), zipmap=False, raw_scores=True)
        column = _column(sub[1], 1, version)  # skl2onnx gives (-score, score) for two classes
    else:
        column = _column(sub_estimator(estimator, zipmap=False)[1], 1, version)
    # tree ensembles give float32 scores even in a double graph
    return OnnxCast(column, to=_proto_of(proto_numpy), op_version=version)


def constant_column(value: float, inputs, numpy_dtype, version: int):
    """An ``(N, 1)`` column of ``value``, N the rows of ``inputs`` (whatever their values)."""
    from skl2onnx.algebra.onnx_ops import OnnxExpand, OnnxShape, OnnxSlice

    rows = OnnxSlice(OnnxShape(inputs, op_version=version), np.array([0], dtype=np.int64),
                     np.array([1], dtype=np.int64), op_version=version)
    shape = OnnxConcat(rows, np.array([1], dtype=np.int64), axis=0, op_version=version)
    return OnnxExpand(np.array([[value]], dtype=numpy_dtype), shape, op_version=version)


def _proto_of(numpy_dtype) -> int:
    from onnx import TensorProto

    return TensorProto.DOUBLE if np.dtype(numpy_dtype) == np.float64 else TensorProto.FLOAT


def numpy_float_of(operator):
    """The numpy float type of the operator's input (float32 or float64)."""
    from bridge.sklearn.converters._graph import float_type_of

    return np.float64 if float_type_of(operator).__name__.startswith("Double") else np.float32
