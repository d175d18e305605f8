"""The census's estimators and data: every class of ``sklearn.utils.all_estimators()`` built
with default parameters (meta-estimators around a stated default estimator) and the data
its kind takes (3-class, regression, blobs; text, dicts or labels where it reads those).

Used by ``benchmarks/sklearn_coverage.py`` and ``tests/sklearn/test_all_estimators.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from sklearn.base import is_classifier, is_clusterer, is_outlier_detector, is_regressor
from sklearn.datasets import make_blobs, make_classification, make_regression
from sklearn.utils import all_estimators, get_tags

METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform",
           "score_samples")
FIT_ROWS, NEW_ROWS = 150, 60


@dataclass(frozen=True)
class Data:
    """Rows to fit on and new rows to check; ``kind`` says what a row is."""

    X_fit: object
    y_fit: object
    X_new: object
    kind: str = "numeric"  # numeric, text, dicts, labels, label-sets, images


def _split(X, y) -> Data:
    return Data(X[:FIT_ROWS], None if y is None else y[:FIT_ROWS], X[FIT_ROWS:])


@cache
def data(name: str) -> Data:
    """One of the census datasets (fixed seeds)."""
    total = FIT_ROWS + NEW_ROWS
    if name in ("classes", "binary", "dense-classes"):
        X, y = make_classification(total, 6, n_informative=4, n_redundant=0,
                                   n_classes=2 if name == "binary" else 3, random_state=0)
        return _split(X * (0.15 if name == "dense-classes" else 1.0), y)
    if name in ("regression", "targets", "dense-regression"):
        X, y = make_regression(total, 6, n_targets=2 if name == "targets" else 1, noise=5.0,
                               random_state=0)
        return _split(X * (0.15 if name == "dense-regression" else 1.0), y / 50.0)
    if name == "positive-regression":
        base = data("regression")
        return Data(base.X_fit, np.exp(base.y_fit / 4.0), base.X_new)
    if name == "wide":  # enough features for the random projections' default dimension
        X, y = make_blobs(total, 5000, centers=3, random_state=0)
        return _split(X, y)
    if name == "blobs":
        X, y = make_blobs(total, 6, centers=3, random_state=0)
        return _split(X, y)
    if name == "non-negative":
        X, y = data("blobs").X_fit, data("blobs").y_fit
        low = X.min(axis=0)
        return Data(X - low, y, np.clip(data("blobs").X_new - low, 0, None))
    if name == "unit-interval":
        base = data("blobs")
        low, high = base.X_fit.min(axis=0), base.X_fit.max(axis=0)
        return Data((base.X_fit - low) / (high - low), base.y_fit,
                    np.clip((base.X_new - low) / (high - low), 0, 1))
    if name == "categories":
        rng = np.random.default_rng(0)
        X = rng.integers(0, 4, size=(total, 6)).astype(np.float64)
        return Data(X[:FIT_ROWS], data("classes").y_fit, X[FIT_ROWS:])
    if name == "labels":
        base = data("classes")
        return Data(base.y_fit, None, base.y_fit[:NEW_ROWS], "labels")
    if name == "one-feature":
        base = data("regression")
        return Data(base.X_fit[:, :1], base.y_fit, base.X_new[:, :1])
    if name == "multilabel":
        base = data("classes")
        return Data(base.X_fit, np.column_stack([base.y_fit, base.y_fit == 0]).astype(int),
                    base.X_new)
    if name == "kernel":
        base = data("blobs")
        return Data(base.X_fit @ base.X_fit.T, None, base.X_new @ base.X_fit.T)
    if name == "text":
        rng = np.random.default_rng(0)
        words = np.array("the a cat dog emu runs sleeps eats red blue small big fast slow "
                         "river tree stone cloud".split())
        docs = [" ".join(rng.choice(words, rng.integers(3, 9))) for _ in range(total)]
        return Data(docs[:FIT_ROWS], data("classes").y_fit, docs[FIT_ROWS:], "text")
    if name == "dicts":
        rng = np.random.default_rng(0)
        keys = ["a", "b", "c", "d", "e"]
        rows = [{k: float(rng.normal()) for k in rng.choice(keys, rng.integers(1, 5),
                                                            replace=False)}
                for _ in range(total)]
        return Data(rows[:FIT_ROWS], None, rows[FIT_ROWS:], "dicts")
    if name == "label-sets":
        rng = np.random.default_rng(0)
        sets = [tuple(sorted(set(rng.integers(0, 5, rng.integers(1, 4)).tolist())))
                for _ in range(total)]
        return Data(sets[:FIT_ROWS], None, sets[FIT_ROWS:], "label-sets")
    if name == "images":
        rng = np.random.default_rng(0)
        return Data(rng.random((10, 20, 20)), None, rng.random((4, 20, 20)), "images")
    raise KeyError(name)


def _classifier():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression()


def _regressor():
    from sklearn.linear_model import Ridge

    return Ridge()


def _required_arguments() -> dict[str, Callable[[], dict]]:
    """Class name → the arguments it cannot default (meta-estimators' estimators)."""
    from sklearn.decomposition import PCA
    from sklearn.naive_bayes import GaussianNB
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    def classifiers():
        return [("lr", _classifier()), ("nb", GaussianNB()),
                ("tree", DecisionTreeClassifier(random_state=0))]

    def regressors():
        return [("ridge", _regressor()), ("tree", DecisionTreeRegressor(random_state=0))]

    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(4, 6))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    estimator = {"estimator": _classifier}
    return {
        **{name: (lambda: {"estimator": _classifier()}) for name in (
            "ClassifierChain", "FixedThresholdClassifier", "MultiOutputClassifier",
            "OneVsOneClassifier", "OneVsRestClassifier", "OutputCodeClassifier", "RFE", "RFECV",
            "SelfTrainingClassifier",
            "SelectFromModel", "SequentialFeatureSelector", "TunedThresholdClassifierCV")},
        **{name: (lambda: {"estimator": _regressor()}) for name in (
            "MultiOutputRegressor", "RegressorChain")},
        "FrozenEstimator": lambda: {"estimator": _classifier().fit(data("classes").X_fit,
                                                                   data("classes").y_fit)},
        "GridSearchCV": lambda: {**{k: f() for k, f in estimator.items()},
                                 "param_grid": {"C": [0.1, 1.0]}},
        "RandomizedSearchCV": lambda: {**{k: f() for k, f in estimator.items()},
                                       "param_distributions": {"C": [0.1, 1.0]}, "n_iter": 2,
                                       "random_state": 0},
        "StackingClassifier": lambda: {"estimators": classifiers()},
        "VotingClassifier": lambda: {"estimators": classifiers()},
        "StackingRegressor": lambda: {"estimators": regressors()},
        "VotingRegressor": lambda: {"estimators": regressors()},
        "Pipeline": lambda: {"steps": [("scale", StandardScaler()), ("lr", _classifier())]},
        "ColumnTransformer": lambda: {"transformers": [("scale", StandardScaler(), [0, 1, 2]),
                                                       ("pca", PCA(2), [3, 4, 5])]},
        "FeatureUnion": lambda: {"transformer_list": [("scale", StandardScaler()),
                                                      ("pca", PCA(2))]},
        "SparseCoder": lambda: {"dictionary": atoms},
        # the only mode with inference on new rows
        "LocalOutlierFactor": lambda: {"novelty": True},
    }


#: Class name → the dataset it is fitted on, where its kind's default does not fit it.
DATASETS = {
    "FixedThresholdClassifier": "binary", "TunedThresholdClassifierCV": "binary",
    "MultinomialNB": "non-negative", "ComplementNB": "non-negative",
    "CategoricalNB": "categories", "AdditiveChi2Sampler": "non-negative",
    "SkewedChi2Sampler": "non-negative", "NMF": "non-negative", "MiniBatchNMF": "non-negative",
    "LatentDirichletAllocation": "non-negative", "TfidfTransformer": "non-negative",
    "BernoulliRBM": "unit-interval", "IsotonicRegression": "one-feature",
    "MultiOutputClassifier": "multilabel", "ClassifierChain": "multilabel",
    "MultiOutputRegressor": "targets", "RegressorChain": "targets",
    "MultiTaskElasticNet": "targets", "MultiTaskElasticNetCV": "targets",
    "MultiTaskLasso": "targets", "MultiTaskLassoCV": "targets", "CCA": "targets",
    "PLSCanonical": "targets", "PLSSVD": "targets", "KernelCenterer": "kernel",
    "CountVectorizer": "text", "TfidfVectorizer": "text", "HashingVectorizer": "text",
    "DictVectorizer": "dicts", "FeatureHasher": "dicts", "MultiLabelBinarizer": "label-sets",
    "GammaRegressor": "positive-regression", "PoissonRegressor": "positive-regression",
    "GaussianRandomProjection": "wide", "SparseRandomProjection": "wide",
    "OneHotEncoder": "categories", "OrdinalEncoder": "categories",
    "LabelBinarizer": "labels", "LabelEncoder": "labels", "PatchExtractor": "images",
    # denser rows: every new row has a neighbour within the default radius (1.0)
    "RadiusNeighborsClassifier": "dense-classes", "RadiusNeighborsRegressor":
        "dense-regression", "RadiusNeighborsTransformer": "dense-classes",
}


def label_method(estimator, method: str) -> bool:
    """Whether ``method`` gives labels (class, cluster, component or inlier labels)."""
    return method == "predict" and (
        is_classifier(estimator) or is_clusterer(estimator) or is_outlier_detector(estimator)
        or get_tags(estimator).estimator_type == "density_estimator")


@dataclass
class Case:
    """One census estimator: how to build and fit it, and its data."""

    name: str
    factory: Callable[[], object]
    data: Data

    @property
    def X_new(self):
        return self.data.X_new

    @property
    def sample(self):
        """A few rows for ``from_sklearn(X_sample=...)``."""
        return self.data.X_new[:5]

    def fit(self):
        estimator = self.factory()
        X, y = self.data.X_fit, self.data.y_fit
        if self.data.kind in ("labels", "label-sets"):
            return estimator.fit(X)
        return estimator.fit(X) if y is None else estimator.fit(X, y)

    def initial_types(self) -> list:
        """skl2onnx's input declaration for these rows."""
        from skl2onnx.common.data_types import (
            FloatTensorType,
            Int64TensorType,
            StringTensorType,
        )

        if self.data.kind == "text":
            return [("X", StringTensorType([None, 1]))]
        if self.data.kind == "labels":
            return [("X", Int64TensorType([None]))]
        return [("X", FloatTensorType([None, np.shape(self.data.X_new)[1]]))]

    def onnx_feed(self, graph, dtype) -> dict:
        """onnxruntime's feed of the new rows for ``graph`` (one input)."""
        name = graph.graph.input[0].name
        if self.data.kind == "text":
            return {name: np.array(self.data.X_new, dtype=object).reshape(-1, 1)}
        if self.data.kind == "labels":
            return {name: np.asarray(self.data.X_new, dtype=np.int64)}
        if self.data.kind != "numeric":
            raise TypeError(f"onnxruntime takes no {self.data.kind} rows")
        return {name: np.asarray(self.data.X_new, dtype=dtype)}


def _dataset_for(name: str, estimator) -> str:
    if name in DATASETS:
        return DATASETS[name]
    if is_classifier(estimator):
        return "classes"
    if is_regressor(estimator):
        return "regression"
    return "blobs"


# listed by all_estimators() only once their sklearn.experimental enable_* module has been
# imported (by any code in the process): left out, so the census counts one fixed set
EXPERIMENTAL = frozenset({"HalvingGridSearchCV", "HalvingRandomSearchCV", "IterativeImputer"})


def census_cases(names: list[str] | None = None) -> list[Case]:
    """Every all_estimators() class with an inference method (FrozenEstimator: its wrapped
    estimator's), or those named, with its default-parameter factory."""
    required = _required_arguments()
    cases = []
    for name, cls in all_estimators():
        if (names and name not in names) or name in EXPERIMENTAL:
            continue
        if name != "FrozenEstimator" and not any(hasattr(cls, m) for m in METHODS):
            continue  # fit_predict / fit_transform only (DBSCAN, TSNE, ...), or none
        arguments = required.get(name, dict)

        def factory(cls=cls, arguments=arguments):
            estimator = cls(**arguments())
            if "random_state" in estimator.get_params(deep=False):
                estimator.set_params(random_state=0)  # default parameters, seeded
            return estimator

        cases.append(Case(name, factory, data(_dataset_for(name, factory()))))
    return cases
