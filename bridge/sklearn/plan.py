"""Which ONNX graphs a fitted estimator needs, and which graph output answers each method.

One graph answers most estimators; a classifier with both probabilities and decision
scores needs two, because skl2onnx's ``raw_scores`` option swaps one output for the other.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common._registration import get_converter
from sklearn.base import is_classifier, is_clusterer, is_outlier_detector, is_regressor
from sklearn.feature_selection import SelectorMixin
from sklearn.multioutput import ClassifierChain
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC, NuSVC
from sklearn.utils import get_tags

from bridge.sklearn.model import METHODS, MethodOutput


@dataclass
class GraphPlan:
    """One graph to build: the estimator (or a conversion view of it) and skl2onnx options.

    ``options`` apply to the final estimator (the last step of nested pipelines);
    ``log_of_output`` appends ``Log`` of that output as an extra graph output.
    """

    estimator: object
    options: dict = field(default_factory=dict)
    log_of_output: int | None = None


@dataclass
class ConversionPlan:
    """Graphs by key, the output behind each converted method, and why others are not."""

    graphs: dict[str, GraphPlan]
    method_outputs: dict[str, MethodOutput]
    unconverted_methods: dict[str, str]


def final_estimator(estimator):
    """Return the last step of (nested) pipelines, or the estimator itself."""
    while isinstance(estimator, Pipeline):
        estimator = estimator.steps[-1][1]
    return estimator


def allowed_options(estimator) -> set[str]:
    """Return the skl2onnx options the estimator's registered converter accepts."""
    alias = sklearn_operator_name_map.get(type(estimator))
    if alias is None:
        return set()
    try:
        options = get_converter(alias).get_allowed_options()
    except (ValueError, AttributeError):  # no converter object with options
        return set()
    if options == "passthrough":  # a search object: skl2onnx passes them to best_estimator_
        best = getattr(estimator, "best_estimator_", None)
        return set() if best is None else allowed_options(final_estimator(best))
    return set(options or ())


def without_probability_calibration(estimator):
    """A conversion view of an SVC/NuSVC (possibly a pipeline's last step) without Platt scaling.

    skl2onnx emits probabilities instead of decision scores when the fitted model has
    Platt coefficients, even with ``raw_scores=True``; a shallow copy without them
    converts to the decision scores. The estimator itself is left untouched.
    """
    if isinstance(estimator, Pipeline):
        view = copy.copy(estimator)
        name, last = estimator.steps[-1]
        view.steps = list(estimator.steps[:-1]) + [(name, without_probability_calibration(last))]
        return view
    if isinstance(estimator, (SVC, NuSVC)) and len(estimator.probA_) > 0:
        view = copy.copy(estimator)
        view._probA = np.empty(0)
        view._probB = np.empty(0)
        return view
    return estimator


def is_mixture(estimator) -> bool:
    """Whether ``estimator`` is a density model that predicts components (GaussianMixture,
    BayesianGaussianMixture, or a pipeline ending in one)."""
    return (get_tags(estimator).estimator_type == "density_estimator"
            and hasattr(estimator, "predict") and hasattr(estimator, "predict_proba"))


def label_values(estimator) -> np.ndarray | None:
    """The values ``predict`` returns, in scikit-learn's dtype: a classifier's classes, a
    clusterer's or mixture's component ids; None for other estimators."""
    final = final_estimator(estimator)
    classes = getattr(final, "classes_", None)
    if isinstance(classes, np.ndarray):
        return classes
    if is_clusterer(estimator) and hasattr(final, "cluster_centers_"):
        labels = getattr(final, "labels_", np.zeros(0, dtype=np.int32))
        return np.arange(len(final.cluster_centers_), dtype=labels.dtype)
    if is_mixture(estimator):
        return np.arange(len(final.weights_), dtype=np.intp)  # predict's argmax
    return None


def plan_conversion(estimator) -> ConversionPlan:
    """Decide the graphs and method → output mapping for a fitted estimator."""
    available = [m for m in METHODS if hasattr(estimator, m)]
    allowed = allowed_options(final_estimator(estimator))

    def options(**wanted) -> dict:
        return {k: v for k, v in wanted.items() if k in allowed}

    graphs: dict[str, GraphPlan] = {}
    outputs: dict[str, MethodOutput] = {}
    missing: dict[str, str] = {}
    view = selection_then_estimator(estimator)
    if view is not None:  # RFE, RFECV: predictions of estimator_ on the selected features
        predicting = plan_conversion(view)
        graphs.update(predicting.graphs)
        outputs.update({m: o for m, o in predicting.method_outputs.items() if m in available})
        missing.update({m: why for m, why in predicting.unconverted_methods.items()
                        if m in available})
        graphs["transform"] = GraphPlan(estimator)
        outputs["transform"] = MethodOutput("transform", 0, "matrix")
    elif isinstance(final_estimator(estimator), SelectorMixin) and "transform" in available:
        # skl2onnx converts a feature selector (RFE, RFECV, SelectFromModel, ...) as the
        # selection alone, even where the selector also predicts through its estimator
        graphs["transform"] = GraphPlan(estimator)
        outputs["transform"] = MethodOutput("transform", 0, "matrix")
        missing.update({m: "skl2onnx converts a feature selector's transform only"
                        for m in available if m != "transform"})
    elif isinstance(final_estimator(estimator), ClassifierChain):
        # one column per label: (predictions, probabilities, decision values), as matrices
        from bridge.sklearn.converters.chains import binary_links

        binary = binary_links(final_estimator(estimator))
        wants_log = binary and "predict_log_proba" in available and "predict_proba" in available
        graphs["chain"] = GraphPlan(estimator, {}, 1 if wants_log else None)
        for method, position in (("predict", 0), ("predict_proba", 1),
                                 ("decision_function", 2), ("predict_log_proba", 3)):
            if method in available and (method == "predict" or binary) and (
                    method != "predict_log_proba" or wants_log):
                outputs[method] = MethodOutput("chain", position, "matrix")
        if "predict_log_proba" in available and not wants_log:
            missing["predict_log_proba"] = "the chain's estimators have no predict_proba"
        if not binary:
            missing.update({m: "a link of the chain is not binary (scikit-learn's own chain "
                               "fails there too)" for m in available if m != "predict"})
    elif is_classifier(estimator):
        base = options(zipmap=False)
        if "predict_proba" in available:
            wants_log = "predict_log_proba" in available
            graphs["probabilities"] = GraphPlan(estimator, base, 1 if wants_log else None)
            outputs["predict"] = MethodOutput("probabilities", 0, "label")
            outputs["predict_proba"] = MethodOutput("probabilities", 1, "matrix")
            if wants_log:
                outputs["predict_log_proba"] = MethodOutput("probabilities", 2, "matrix")
        if "decision_function" in available:
            if "raw_scores" in allowed:
                view = without_probability_calibration(estimator)
                graphs["decision"] = GraphPlan(view, {**base, "raw_scores": True})
                outputs["decision_function"] = MethodOutput("decision", 1, "decision")
                # decision-based labels match scikit-learn's predict (SVC with probability=True
                # predicts from decision values, not from the calibrated probabilities)
                outputs["predict"] = MethodOutput("decision", 0, "label")
            else:
                missing["decision_function"] = "skl2onnx gives no raw-score output for it"
        if "predict" not in outputs:
            graphs["labels"] = GraphPlan(estimator, base)
            outputs["predict"] = MethodOutput("labels", 0, "label")
    elif is_outlier_detector(estimator):
        wants_scores = "score_samples" in available and "score_samples" in allowed
        graphs["outliers"] = GraphPlan(estimator, options(score_samples=wants_scores))
        outputs["predict"] = MethodOutput("outliers", 0, "values")
        if "decision_function" in available:
            outputs["decision_function"] = MethodOutput("outliers", 1, "values")
        if wants_scores:
            outputs["score_samples"] = MethodOutput("outliers", 2, "values")
    elif is_regressor(estimator):
        graphs["predictions"] = GraphPlan(estimator)
        outputs["predict"] = MethodOutput("predictions", 0, "values")
    elif is_clusterer(estimator) and "predict" in available:  # not FeatureAgglomeration
        # skl2onnx's clusterers (KMeans, MiniBatchKMeans) give (label, distances to centers)
        graphs["clusters"] = GraphPlan(estimator)
        if "predict" in available:
            outputs["predict"] = MethodOutput("clusters", 0, "label")
        if "transform" in available:
            outputs["transform"] = MethodOutput("clusters", 1, "matrix")
    elif is_mixture(estimator):
        # (label, membership probabilities[, per-sample log-likelihood])
        wants_scores = "score_samples" in available and "score_samples" in allowed
        graphs["mixture"] = GraphPlan(estimator, options(score_samples=wants_scores))
        outputs["predict"] = MethodOutput("mixture", 0, "label")
        outputs["predict_proba"] = MethodOutput("mixture", 1, "matrix")
        if wants_scores:
            outputs["score_samples"] = MethodOutput("mixture", 2, "values")
    elif available == ["score_samples"]:  # a density model alone (KernelDensity)
        graphs["scores"] = GraphPlan(estimator)
        outputs["score_samples"] = MethodOutput("scores", 0, "values")
    elif "transform" in available:
        wants_scores = "score_samples" in available and "score_samples" in allowed
        graphs["transform"] = GraphPlan(estimator, options(score_samples=wants_scores))
        outputs["transform"] = MethodOutput("transform", 0, "matrix")
        if wants_scores:
            outputs["score_samples"] = MethodOutput("transform", 1, "values")
    add_secondary_methods(estimator, available, graphs, outputs)
    for method in available:
        if method not in outputs and method not in missing:
            missing[method] = "skl2onnx converts only the estimator's main methods"
    return ConversionPlan(graphs, outputs, missing)


def selection_then_estimator(estimator) -> Pipeline | None:
    """For a feature selector that predicts through its fitted ``estimator_`` (RFE, RFECV),
    alone or last in a pipeline: a pipeline view ``[..., selector, estimator_]`` whose
    graph gives those predictions; None for any other estimator."""
    final = final_estimator(estimator)
    inner = getattr(final, "estimator_", None)
    if not isinstance(final, SelectorMixin) or inner is None or not hasattr(final, "predict"):
        return None
    from bridge.sklearn.converters.methods import SelectedColumns

    select = ("select", SelectedColumns(final))
    if isinstance(estimator, Pipeline):
        if estimator.steps[-1][1] is not final:
            return None  # nested pipelines: the selection alone
        return Pipeline(list(estimator.steps[:-1]) + [select, ("predict", inner)])
    return Pipeline([select, ("predict", inner)])


def add_secondary_methods(estimator, available: list[str], graphs: dict[str, GraphPlan],
                          outputs: dict[str, MethodOutput]) -> None:
    """Methods a graph already planned answers too, and ``transform`` of the estimators
    whose main graph lacks it (bridge's transform view, converters/methods.py)."""
    from bridge.sklearn.converters.methods import TransformView, has_transform_view

    final = final_estimator(estimator)
    name = type(final).__name__
    if name == "MultiOutputClassifier" and "predict" in outputs:  # one label column each
        outputs["predict"] = MethodOutput(outputs["predict"].graph, outputs["predict"].output,
                                          "matrix")
    if (name == "OneVsOneClassifier" and "decision_function" in available
            and "decision_function" not in outputs and "labels" in graphs):
        # skl2onnx's graph gives (label, the vote-plus-confidence scores of decision_function)
        outputs["decision_function"] = MethodOutput("labels", 1, "decision")
    if name == "IsotonicRegression" and "transform" in available and "predict" in outputs:
        outputs["transform"] = outputs["predict"]  # the same values for one feature
    if ("transform" in available and "transform" not in outputs
            and has_transform_view(final)):
        graphs["transform"] = GraphPlan(TransformView.over(estimator))
        outputs["transform"] = MethodOutput("transform", 0, "matrix")
