"""``from_sklearn``: a fitted scikit-learn estimator → skl2onnx ONNX graph(s) → torch modules.

ONNX is the only crossing: estimator attributes decide conversion options, class labels
for decoding and the expected input width, never the results themselves.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import onnx
import torch
from numpy.typing import ArrayLike, DTypeLike
from onnx import helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import (
    DoubleTensorType,
    FloatTensorType,
    Int64TensorType,
    StringTensorType,
)
from skl2onnx.common.exceptions import MissingConverter, MissingShapeCalculator
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils import get_tags
from sklearn.utils.validation import check_is_fitted

from bridge.errors import ConversionError, NotFittedError, UnsupportedEstimatorError
from bridge.onnx.importer import from_onnx
from bridge.sklearn.converters import radius_neighbors, register_missing_converters
from bridge.sklearn.inputs import InputSpec, parts, text_columns
from bridge.sklearn.model import ConvertedModel
from bridge.sklearn.plan import GraphPlan, final_estimator, label_values, plan_conversion
from bridge.sklearn.rewrites import encode_string_class_lookups, round_tree_inputs_to_float32
from bridge.sklearn.text import host_encoding

if TYPE_CHECKING:
    from bridge.sklearn.finetune import TrainableModel

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# skl2onnx's default ai.onnx.ml opset for IsolationForest is refused by onnxruntime.
ISOLATION_FOREST_OPSET = {"": 17, "ai.onnx.ml": 3}
_SKL2ONNX_TYPE = re.compile(r"type '<class '(?:[\w.]*\.)?(\w+)'>'")
_COLUMN_NAME_ERROR = "Unable to find column name"


@overload
def from_sklearn(
    estimator: BaseEstimator, X_sample: ArrayLike | None = None, *, dtype: DTypeLike = ...,
    options: dict[Any, Any] | None = None, target_opset: int | dict[str, int] | None = None,
    tree_strategy: str = "auto", trainable: Literal[False] = False,
    train_preprocessing: Literal[False] = False,
) -> ConvertedModel: ...


@overload
def from_sklearn(
    estimator: BaseEstimator, X_sample: ArrayLike | None = None, *, dtype: DTypeLike = ...,
    options: dict[Any, Any] | None = None, target_opset: int | dict[str, int] | None = None,
    tree_strategy: str = "auto", trainable: Literal[True], train_preprocessing: bool = False,
) -> TrainableModel: ...


def from_sklearn(
    estimator: BaseEstimator,
    X_sample: ArrayLike | None = None,
    *,
    dtype: DTypeLike = np.float32,
    options: dict[Any, Any] | None = None,
    target_opset: int | dict[str, int] | None = None,
    tree_strategy: str = "auto",
    trainable: bool = False,
    train_preprocessing: bool = False,
) -> ConvertedModel | TrainableModel:
    """Convert a fitted scikit-learn estimator into a torch module through ONNX.

    Parameters
    ----------
    estimator : fitted scikit-learn estimator
        Any estimator, pipeline or meta-estimator skl2onnx (plus bridge's own
        converters) can convert; SUPPORTED.md lists the tested ones.
    X_sample : array-like or DataFrame, optional
        A few input rows; fixes the input width when the estimator has no
        ``n_features_in_``. Only its shape is used.
    dtype : numpy float dtype, default numpy.float32
        The graph's float type: ``numpy.float32`` or ``numpy.float64`` (where skl2onnx
        supports double for the estimator; SUPPORTED.md says where).
    options : dict, optional
        Extra skl2onnx conversion options (keyed as skl2onnx accepts: ``id(model)``,
        class or name). bridge sets the options its methods need itself.
    target_opset : int or dict, optional
        skl2onnx's target opset; default skl2onnx's own, except IsolationForest, which
        defaults to ``{'': 17, 'ai.onnx.ml': 3}`` (onnxruntime refuses skl2onnx's
        default ai.onnx.ml opset for it).
    tree_strategy : str, default "auto"
        Passed to :func:`bridge.from_onnx` for tree ensembles.
    trainable : bool, default False
        Return a :class:`bridge.sklearn.finetune.TrainableModel` instead: floating weights
        as parameters, ``forward`` giving logits (classifiers) or predictions (regressors),
        for ``NeuralNetClassifier(module=...)`` / ``NeuralNetRegressor(module=...)``.
        Linear models and MLPs, alone or last in a pipeline.
    train_preprocessing : bool, default False
        With ``trainable``: also train a pipeline's steps before the last (frozen otherwise).

    Returns
    -------
    ConvertedModel
        An ``nn.Module`` with the estimator's inference methods (a ``TrainableModel``
        with ``trainable=True``).

    Raises
    ------
    NotFittedError
        The estimator is not fitted (subclass of scikit-learn's NotFittedError).
    UnsupportedEstimatorError
        No conversion path exists for the estimator (or a part of it), or not in
        the requested ``dtype``.
    ConversionError
        ``dtype`` is not float32/float64, or the graph could not be imported.
    """
    if not isinstance(estimator, BaseEstimator):
        raise UnsupportedEstimatorError(
            f"from_sklearn takes a fitted scikit-learn estimator; got {type(estimator).__name__} "
            "(see SUPPORTED.md for the supported estimators)"
        )
    name = type(estimator).__name__
    try:
        check_is_fitted(estimator)
    except SklearnNotFittedError as error:
        raise NotFittedError(
            f"This {name} instance is not fitted yet. Call 'fit' with appropriate arguments "
            "before converting it with bridge.from_sklearn."
        ) from error
    numpy_dtype = np.dtype(dtype)
    if numpy_dtype not in SUPPORTED_DTYPES:
        raise ConversionError(
            f"dtype={numpy_dtype} is not supported; supported: float32, float64"
        )
    if trainable or train_preprocessing:
        if not trainable:
            raise ConversionError("train_preprocessing=True goes with trainable=True")
        if host_encoding(estimator, numpy_dtype) is not None:
            raise UnsupportedEstimatorError(
                f"from_sklearn(..., trainable=True) takes tensors, and {name} reads raw text, "
                "dicts or label sets; convert the steps after the vectorizer "
                "(pipeline[1:]) and train on vectorizer.transform(X).toarray()"
            )
        from bridge.sklearn.finetune import trainable_module

        return trainable_module(estimator, train_preprocessing=train_preprocessing,
                                dtype=numpy_dtype)
    register_missing_converters()
    _warn_about_lenient_parts(estimator)
    host = host_encoding(estimator, numpy_dtype, X_sample)  # text, dicts, label sets
    if host is not None:
        estimator = host.numeric_view  # the vectorizer's counting runs on the host
    plan = plan_conversion(estimator)
    if not plan.graphs:
        raise UnsupportedEstimatorError(_no_method_message(estimator, name))
    if target_opset is None and type(final_estimator(estimator)).__name__ == "IsolationForest":
        target_opset = dict(ISOLATION_FOREST_OPSET)
    if host is not None:
        input_spec, initial_types = host.input_spec, host.initial_types
    else:
        input_spec, initial_types = _input_spec(estimator, X_sample, numpy_dtype)
    text = text_columns(estimator, X_sample)
    graphs: dict[str, onnx.ModelProto] = {}
    modules: dict[str, torch.nn.Module] = {}
    for key, graph_plan in plan.graphs.items():
        graph, initial_types = _convert_graph(
            estimator, graph_plan, initial_types, options, target_opset, numpy_dtype, text
        )
        graphs[key] = graph
        modules[key] = from_onnx(graph, tree_strategy=tree_strategy)
    _check_outputs(name, plan, graphs)
    if host is not None:  # the artifact: documents in where skl2onnx converts the analyzer
        graphs = host.artifacts(graphs, options, target_opset)
    if len(initial_types) > 1 and host is None:  # one input per named column
        strings = tuple(n for n, t in initial_types if isinstance(t, StringTensorType))
        input_spec = dataclasses.replace(input_spec, per_column=True, text_columns=strings)
    model = ConvertedModel(
        estimator_name=name,
        graphs=graphs,
        modules=modules,
        method_outputs=plan.method_outputs,
        unconverted_methods=plan.unconverted_methods,
        input_spec=input_spec,
        classes=label_values(estimator),
    )
    model.row_error = radius_neighbors.row_error(estimator)
    return model


_INFERENCE_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function",
                      "transform", "score_samples")


def _no_method_message(estimator: Any, name: str) -> str:
    """Say which inference methods ``estimator`` has, and why none of them converts."""
    present = [m for m in _INFERENCE_METHODS if hasattr(estimator, m)]
    if not present:
        return (f"{name} has none of the inference methods bridge converts "
                f"({', '.join(_INFERENCE_METHODS)})")
    return (f"{name} has {', '.join(present)}, but it does not convert: bridge converts "
            "score_samples only for outlier detectors, mixtures, density models and the "
            "transformers that give it, and the other methods only for the estimators in "
            "SUPPORTED.md (see SUPPORTED.md for the supported estimators)")


def _warn_about_lenient_parts(estimator) -> None:
    """Warn where the converted graph accepts what scikit-learn refuses."""
    for part in parts(estimator):
        if type(part).__name__ == "OrdinalEncoder" and part.handle_unknown == "error":
            warnings.warn(
                "OrdinalEncoder(handle_unknown='error') converts to a lookup that gives -1 for "
                "an unknown category where scikit-learn raises (skl2onnx's graph cannot fail); "
                "use handle_unknown='use_encoded_value', unknown_value=-1 to make both agree",
                UserWarning, stacklevel=3)


def accepts_nan(estimator) -> bool:
    """Whether ``estimator`` takes NaN: its ``allow_nan`` tag; for a Pipeline (scikit-learn
    1.9 does not pass the steps' tags up to it), whether every step takes NaN up to the
    first imputer, which leaves none."""
    if not isinstance(estimator, Pipeline):
        return bool(get_tags(estimator).input_tags.allow_nan)
    for _, step in estimator.steps:
        if step is None or step == "passthrough":
            continue
        if not accepts_nan(step):
            return False
        if (type(step).__module__.startswith("sklearn.impute")
                and type(step).__name__ != "MissingIndicator"):
            return True  # an imputer taking NaN leaves none
    return True


def _input_spec(estimator, X_sample, dtype: np.dtype) -> tuple[InputSpec, list]:
    name = type(estimator).__name__
    tensor_type = DoubleTensorType if dtype == np.float64 else FloatTensorType
    feature_names = getattr(estimator, "feature_names_in_", None)
    feature_names = None if feature_names is None else tuple(str(c) for c in feature_names)
    allow_nan = accepts_nan(estimator)
    if name in ("LabelBinarizer", "LabelEncoder"):  # input: the labels y (1-D)
        classes = np.asarray(estimator.classes_)
        if classes.dtype.kind not in "iub":
            raise UnsupportedEstimatorError(
                f"{name} with {classes.dtype} classes has no conversion bridge can "
                "run; supported: integer class labels (see SUPPORTED.md)"
            )
        spec = InputSpec(np.dtype(np.int64), 1, None, False, None, False, name)
        return spec, [("y", Int64TensorType([None]))]
    n_features = getattr(estimator, "n_features_in_", None)
    input_tags = get_tags(estimator).input_tags
    if n_features is None and input_tags.one_d_array and not input_tags.two_d_array:
        n_features = 1  # a 1-D estimator (IsotonicRegression): one (N, 1) column
    if n_features is None and X_sample is not None:
        if np.ndim(X_sample) != 2:
            raise ConversionError(
                f"cannot tell how many features {name} takes: it has no n_features_in_, and "
                f"X_sample has shape {np.shape(X_sample)}; pass X_sample as a 2-D "
                "(n_samples, n_features) array"
            )
        n_features = np.shape(X_sample)[1]
    if n_features is None:
        raise ConversionError(
            f"cannot tell how many features {name} takes: it has no n_features_in_; "
            "pass X_sample (a few input rows) to from_sklearn"
        )
    spec = InputSpec(dtype, 2, int(n_features), allow_nan, feature_names, False, name)
    return spec, [("X", tensor_type([None, int(n_features)]))]


def _convert_graph(estimator, plan: GraphPlan, initial_types, user_options, target_opset,
                   dtype, text: set[str]) -> tuple[onnx.ModelProto, list]:
    name = type(estimator).__name__
    final = final_estimator(plan.estimator)
    options = dict(user_options or {})
    if plan.options:
        options[id(final)] = {**options.get(id(final), {}), **plan.options}
    try:
        try:
            graph = to_onnx(plan.estimator, initial_types=initial_types, options=options or None,
                            target_opset=target_opset)
        except RuntimeError as error:
            columns = getattr(estimator, "feature_names_in_", None)
            if _COLUMN_NAME_ERROR not in str(error) or columns is None or len(initial_types) > 1:
                raise
            # ColumnTransformer selecting columns by name: one (N, 1) input per column,
            # text columns as strings
            column_type = initial_types[0][1].__class__
            initial_types = [(str(c), (StringTensorType if str(c) in text else column_type)(
                [None, 1])) for c in columns]
            graph = to_onnx(plan.estimator, initial_types=initial_types,
                            options=options or None, target_opset=target_opset)
    except (MissingShapeCalculator, MissingConverter) as error:
        match = _SKL2ONNX_TYPE.search(str(error))
        part = match.group(1) if match else name
        where = "" if part == name else f" (its part {part} has no ONNX converter)"
        raise UnsupportedEstimatorError(
            f"{name} cannot be converted{where}; see SUPPORTED.md for the supported estimators"
        ) from error
    except UnsupportedEstimatorError:
        raise
    except NotImplementedError as error:
        raise UnsupportedEstimatorError(
            f"{name} cannot be converted: skl2onnx says {error} (see SUPPORTED.md)"
        ) from error
    except (RuntimeError, TypeError) as error:
        if dtype == np.float64:
            raise UnsupportedEstimatorError(
                f"{name} cannot be converted with dtype=float64 ({error}); use dtype=float32 "
                "(SUPPORTED.md lists the dtypes per estimator)"
            ) from error
        raise ConversionError(f"skl2onnx could not convert {name}: {error}") from error
    encode_string_class_lookups(graph)
    if dtype == np.float64 and rounds_to_float32_before_trees(estimator):
        round_tree_inputs_to_float32(graph)
    if plan.log_of_output is not None:
        _append_log_output(graph, plan.log_of_output)
    return graph, initial_types


def rounds_to_float32_before_trees(estimator) -> bool:
    """Whether the estimator's trees compare float32 values (scikit-learn's decision trees
    cast X to float32) and none compares float64 (HistGradientBoosting), so a double graph
    rounds the trees' inputs to float32 (bridge/sklearn/rewrites.py)."""
    names = {type(estimator).__name__} | {
        type(value).__name__ for value in estimator.get_params(deep=True).values()}
    for part in parts(estimator):
        names.add(type(part).__name__)
        names.update(type(e).__name__ for e in getattr(part, "estimators_", [])
                     if hasattr(e, "get_params"))
    return not any(name.startswith("HistGradientBoosting") for name in names)


def _check_outputs(name: str, plan, graphs: dict[str, onnx.ModelProto]) -> None:
    """Raise UnsupportedEstimatorError where a graph lacks the output a method reads, or a
    label output holds no labels: skl2onnx laid the graph out unlike the estimator's kind
    (RFE, a classifier in scikit-learn, converts as its feature selection alone)."""
    label_types = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.STRING}
    for method, output in plan.method_outputs.items():
        declared = graphs[output.graph].graph.output
        fits = output.output < len(declared) and (
            output.kind != "label"
            or declared[output.output].type.tensor_type.elem_type in label_types)
        if not fits:
            raise UnsupportedEstimatorError(
                f"{name}.{method} cannot be converted: skl2onnx's graph has the outputs "
                f"{[o.name for o in declared]}, not the layout bridge reads {method} from "
                "(see SUPPORTED.md for the supported estimators)"
            )


def _append_log_output(model: onnx.ModelProto, position: int) -> None:
    """Add ``Log`` of graph output ``position`` as a new last output (predict_log_proba)."""
    if position >= len(model.graph.output):
        return  # no probabilities there: _check_outputs names the problem
    source = model.graph.output[position]
    log_name = f"{source.name}_log"
    model.graph.node.append(helper.make_node("Log", [source.name], [log_name], name="bridge_log"))
    log_output = onnx.ValueInfoProto()
    log_output.CopyFrom(source)
    log_output.name = log_name
    model.graph.output.append(log_output)
