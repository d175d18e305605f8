"""Lowered exports (standard ai.onnx operators only): which estimators they are verified for,
and helpers to check a lowered graph and decode its string-label outputs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
from numpy.typing import ArrayLike

from bridge.errors import ConversionError

ML_DOMAIN = "ai.onnx.ml"
VOCABULARIES_KEY = "bridge.output_vocabularies"

_VERIFIED = (
    "verified: the lowered graph has no ai.onnx.ml node and onnxruntime (CPU) on it agrees "
    "with scikit-learn and with the ONNX-ML graph"
)
_LINEAR = f"{_VERIFIED}; LinearClassifier/LinearRegressor become MatMul + Add"
_SVM = f"{_VERIFIED}; the kernel becomes MatMul/Exp/Pow/Tanh"
_SVM_PROBABILITY = (
    f"{_VERIFIED}; with probability=True libsvm's pairwise coupling becomes an ONNX Loop "
    "(at most 100 sweeps, stopping when every row has converged, as onnxruntime does)"
)
_NEIGHBORS = (
    f"{_VERIFIED}; the Scan over training rows stays an ONNX Scan, TopK an ONNX TopK "
    "(ties keep the lower training index first, as in the ONNX-ML graph)"
)
_ENCODER = (
    f"{_VERIFIED}; category lookup becomes a comparison with every category. An unknown "
    "category gives an all-zero row: the lowered graph cannot raise where onnxruntime's "
    "OneHotEncoder(zeros=0) would"
)
_DUMMY = f"{_VERIFIED}; the constant rows are broadcast with Expand over the batch size"
_TREE = (
    f"{_VERIFIED}; the forest is exported with the strategy 'auto' picks for 10,000 rows on "
    "CPU (bridge.export.LOWERED_TREE_BATCH), whatever the export sample's size "
    "(tests/export/test_lowered.py keeps forests of each strategy in its checks)"
)
_ISOLATION_FOREST = (
    f"{_TREE}; its export is slow (about a minute for 10 trees on 2 CPU cores)"
)
_NAMED_COLUMNS = (
    "by column position only: columns by name give one graph input per column, and lowering "
    "takes graphs with a single input"
)
_LABELS_INPUT = f"{_VERIFIED}; its input is y (1-D integer labels)"

# estimator class name → (lowering works, note), for every name in SUPPORTED_ESTIMATORS.
# Measured over every case of tests/sklearn/cases.py (all kernels, binary and string-label
# data, every method's graph): 142 graphs, one dataset each; tests/export/test_lowered.py
# keeps one estimator per family under test.
_NOT_YET_LOWERED = (
    "converted since session 7 (mostly bridge's own converters, standard ai.onnx operators); "
    "the lowered export is not yet run through the lowering tests")

_TEXT = ("text and dict inputs: the artifact either takes documents through skl2onnx's "
         "StringNormalizer/Tokenizer head, which bridge's importer does not read, or the host "
         "encoding (docs/text.md); neither is run through the lowering tests yet")

LOWERING_SUPPORT: dict[str, tuple[bool, str]] = {
    **{name: (True, _LINEAR) for name in (
        "LinearRegression", "Ridge", "RidgeCV", "Lasso", "ElasticNet", "SGDRegressor",
        "SGDClassifier", "LogisticRegression", "LogisticRegressionCV", "RidgeClassifier",
        "RidgeClassifierCV", "Perceptron", "LinearSVC", "LinearSVR",
    )},
    "SVC": (True, _SVM_PROBABILITY),
    "NuSVC": (True, f"{_SVM_PROBABILITY}. kernel='linear': decision values differ from "
              "scikit-learn by up to ~1% (float32 dual coefficients of 1e3-1e5 that cancel), "
              "as in the imported module and the ONNX-ML graph; labels agree"),
    "SVR": (True, _SVM),
    "NuSVR": (True, _SVM),
    "MLPClassifier": (True, _VERIFIED),
    "MLPRegressor": (True, _VERIFIED),
    "GaussianNB": (True, _VERIFIED),
    "BernoulliNB": (True, _VERIFIED),
    "MultinomialNB": (True, _VERIFIED),
    "KNeighborsClassifier": (True, _NEIGHBORS),
    "KNeighborsRegressor": (True, _NEIGHBORS),
    **{name: (True, _VERIFIED) for name in (
        "StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler", "Normalizer",
        "Binarizer", "PolynomialFeatures", "SimpleImputer", "PCA", "TruncatedSVD",
        "KernelPCA", "Nystroem", "SelectKBest", "VarianceThreshold", "FeatureUnion",
        "Pipeline", "StackingClassifier", "StackingRegressor", "VotingClassifier",
        "VotingRegressor", "TransformedTargetRegressor", "KMeans", "MiniBatchKMeans",
        "GaussianMixture", "BayesianGaussianMixture", "FixedThresholdClassifier",
        "TunedThresholdClassifierCV", "RFE",
    )},
    "OneHotEncoder": (True, _ENCODER),
    "OrdinalEncoder": (True, _ENCODER),
    "KBinsDiscretizer": (True, _ENCODER),
    "LabelBinarizer": (True, _LABELS_INPUT),
    "ColumnTransformer": (True, f"{_VERIFIED}; {_NAMED_COLUMNS}"),
    "DummyClassifier": (True, _DUMMY),
    "DummyRegressor": (True, _DUMMY),
    **{name: (True, _TREE) for name in (
        "DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier",
        "ExtraTreeRegressor", "RandomForestClassifier", "RandomForestRegressor",
        "ExtraTreesClassifier", "ExtraTreesRegressor", "GradientBoostingClassifier",
        "GradientBoostingRegressor", "HistGradientBoostingClassifier",
        "HistGradientBoostingRegressor",
    )},
    "IsolationForest": (True, _ISOLATION_FOREST),
    **{name: (True, f"{_VERIFIED}; bridge's converter writes standard ops already") for name in (
        "TargetEncoder", "RegressorChain", "OutputCodeClassifier", "KernelDensity",
        "SequentialFeatureSelector", "Isomap", "QuantileTransformer",
    )},
    **{name: (False, _NOT_YET_LOWERED) for name in (
        "AdditiveChi2Sampler", "AffinityPropagation", "BernoulliRBM", "Birch",
        "BisectingKMeans", "EllipticEnvelope", "FactorAnalysis", "FastICA", "FrozenEstimator",
        "IsotonicRegression", "KernelRidge", "LabelPropagation", "LabelSpreading", "MeanShift",
        "MissingIndicator", "NearestCentroid", "NeighborhoodComponentsAnalysis",
        "PolynomialCountSketch", "RBFSampler", "SelfTrainingClassifier", "SkewedChi2Sampler",
        "SparseRandomProjection", "SplineTransformer",
        "ClassifierChain", "RandomTreesEmbedding", "GaussianProcessClassifier", "NMF",
        "MiniBatchNMF", "LatentDirichletAllocation",
        "LinearDiscriminantAnalysis", "QuadraticDiscriminantAnalysis", "PLSRegression",
        "PLSCanonical", "CCA", "PLSSVD", "OneClassSVM", "SGDOneClassSVM", "GridSearchCV",
        "RandomizedSearchCV", "OneVsOneClassifier", "MultiOutputClassifier", "KNNImputer",
        "RadiusNeighborsClassifier", "RadiusNeighborsRegressor", "RadiusNeighborsTransformer",
        "FeatureAgglomeration", "SparsePCA", "MiniBatchSparsePCA", "GaussianRandomProjection",
        "LabelEncoder", "RFECV", "DictionaryLearning", "MiniBatchDictionaryLearning",
        "SparseCoder", "LocallyLinearEmbedding",
    )},
    **{name: (False, _TEXT) for name in (
        "CountVectorizer", "TfidfVectorizer", "HashingVectorizer", "DictVectorizer",
        "FeatureHasher", "MultiLabelBinarizer",
    )},
}


def lowering_support(estimator: object) -> tuple[bool, str]:
    """Whether ``to_onnx(..., lowered=True)`` is verified for an estimator, and why (not).

    Parameters
    ----------
    estimator : str, type or estimator instance
        The estimator, its class, or its class name.

    Returns
    -------
    tuple of (bool, str)
        ``(True, note)`` when verified, else ``(False, reason)``; an estimator the table
        does not name gives ``(False, "not measured ...")``.
    """
    if isinstance(estimator, str):
        name = estimator
    elif isinstance(estimator, type):
        name = estimator.__name__
    else:
        name = type(estimator).__name__
    return LOWERING_SUPPORT.get(
        name, (False, f"{name} is not measured for lowering; see bridge.export.lowering")
    )


def lowering_table() -> list[tuple[str, str, str]]:
    """Rows ``(estimator, "yes" | "no", note)`` sorted by name, for SUPPORTED.md."""
    return [(name, "yes" if supported else "no", note)
            for name, (supported, note) in sorted(LOWERING_SUPPORT.items())]


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from _graphs(subgraph)


def ml_operators(model: onnx.ModelProto) -> list[str]:
    """The ai.onnx.ml operator types in ``model``: main graph, subgraphs and local functions.

    Parameters
    ----------
    model : onnx.ModelProto

    Returns
    -------
    list of str
        One entry per ai.onnx.ml node (empty for a lowered graph).
    """
    found = [node.op_type for graph in _graphs(model.graph) for node in graph.node
             if node.domain == ML_DOMAIN]
    found += [node.op_type for function in model.functions for node in function.node
              if node.domain == ML_DOMAIN]
    return found


def output_vocabularies(model: onnx.ModelProto) -> dict[str, list[Any]]:
    """The labels of the string outputs of a lowered graph, keyed by output name.

    Lowered graphs return string class labels as int64 indices into these lists.

    Parameters
    ----------
    model : onnx.ModelProto
        A graph exported by ``bridge.to_onnx(..., lowered=True)``.

    Returns
    -------
    dict
        Output name → list of labels; empty when no output carries strings.
    """
    for prop in model.metadata_props:
        if prop.key == VOCABULARIES_KEY:
            vocabularies: dict[str, list[Any]] = json.loads(prop.value)
            return vocabularies
    return {}


def decode_output(model: onnx.ModelProto, output_name: str, values: ArrayLike) -> np.ndarray:
    """Turn a lowered graph's int64 label indices back into the original (string) labels.

    Parameters
    ----------
    model : onnx.ModelProto
        The lowered graph that produced ``values``.
    output_name : str
        Which output ``values`` came from.
    values : array-like of int
        The indices the runtime returned.

    Returns
    -------
    numpy.ndarray
        The labels (dtype object), same shape as ``values``; ``values`` unchanged when the
        output has no vocabulary (numeric labels).

    Raises
    ------
    ConversionError
        An index is outside the output's vocabulary.
    """
    indices = np.asarray(values)
    vocabulary = output_vocabularies(model).get(output_name)
    if vocabulary is None:
        return indices
    outside = (indices < 0) | (indices >= len(vocabulary))
    if outside.any():
        raise ConversionError(
            f"output {output_name!r} holds indices {np.unique(indices[outside])[:5].tolist()} "
            f"outside its vocabulary of {len(vocabulary)} labels (valid: 0..{len(vocabulary) - 1})"
        )
    labels: np.ndarray = np.asarray(vocabulary, dtype=object)[indices]
    return labels
