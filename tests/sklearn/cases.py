"""The estimator coverage list and small seeded datasets shared by the from_sklearn tests."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from sklearn import (
    cluster,
    compose,
    covariance,
    decomposition,
    dummy,
    ensemble,
    feature_selection,
    gaussian_process,
    impute,
    isotonic,
    kernel_approximation,
    kernel_ridge,
    linear_model,
    manifold,
    mixture,
    model_selection,
    multiclass,
    multioutput,
    naive_bayes,
    neighbors,
    neural_network,
    pipeline,
    preprocessing,
    random_projection,
    semi_supervised,
    svm,
    tree,
)
from sklearn.datasets import make_classification, make_multilabel_classification, make_regression

STRING_CLASSES = np.array(["cat", "dog", "emu"])


@dataclass(frozen=True)
class Dataset:
    """Features, targets (None for unsupervised) and the task name."""

    name: str
    X: np.ndarray
    y: np.ndarray | None


@cache
def dataset(name: str) -> Dataset:
    """Return one of: binary, multiclass, strings, regression, positive, features."""
    if name == "binary":
        X, y = make_classification(120, 5, n_informative=3, n_redundant=0, random_state=0)
    elif name in ("multiclass", "strings", "features"):
        X, y = make_classification(
            120, 6, n_informative=4, n_redundant=0, n_classes=3, random_state=1
        )
        if name == "strings":
            y = STRING_CLASSES[y]
        if name == "features":
            y = None
    elif name == "positive":
        X, y = make_classification(
            120, 6, n_informative=4, n_redundant=0, n_classes=3, random_state=2
        )
        X = np.abs(X)
    elif name == "regression":
        X, y = make_regression(120, 5, noise=5.0, random_state=0)
        y = y / 50.0
    else:
        raise KeyError(name)
    return Dataset(name, X, y)


CLASSIFICATION = ("binary", "multiclass", "strings")
REGRESSION = ("regression",)
FEATURES = ("features",)
SVM_KERNELS = ("linear", "poly", "rbf", "sigmoid")


def _small_trees(cls, **kwargs):
    return lambda: cls(random_state=0, **kwargs)


def _svc(cls, kernel, probability):
    return lambda: cls(kernel=kernel, probability=probability, random_state=0)


def _frozen(factory, data_name):
    """A FrozenEstimator around ``factory()`` fitted on ``data_name`` (its own fit does
    nothing)."""
    from sklearn.frozen import FrozenEstimator

    data = dataset(data_name)
    inner = factory()
    return FrozenEstimator(inner.fit(data.X) if data.y is None else inner.fit(data.X, data.y))


# bridge's converters for multi-output and code-book meta-estimators, target encoding
META_CASES: dict[str, tuple] = {
    "TargetEncoder-multiclass": (lambda: preprocessing.TargetEncoder(random_state=0),
                                 ("categories-multiclass",)),
    "ClassifierChain": (
        lambda: multioutput.ClassifierChain(linear_model.LogisticRegression(), order=[2, 0, 1]),
        ("multilabel",),
    ),
    "ClassifierChain-proba": (
        lambda: multioutput.ClassifierChain(naive_bayes.GaussianNB(), order="random",
                                            chain_method="predict_proba", random_state=0),
        ("multilabel",),
    ),
    "RegressorChain": (lambda: multioutput.RegressorChain(linear_model.Ridge(), order=[1, 2, 0]),
                       ("multi-regression",)),
    "OutputCodeClassifier": (
        lambda: multiclass.OutputCodeClassifier(linear_model.LogisticRegression(),
                                                random_state=0),
        CLASSIFICATION,
    ),
    "OutputCodeClassifier-proba": (
        lambda: multiclass.OutputCodeClassifier(naive_bayes.GaussianNB(), code_size=3,
                                                random_state=0),
        ("multiclass",),
    ),
    "RandomTreesEmbedding": (
        lambda: ensemble.RandomTreesEmbedding(n_estimators=5, max_depth=3, random_state=0),
        FEATURES,
    ),
    "KBinsDiscretizer-sparse-onehot": (
        lambda: preprocessing.KBinsDiscretizer(4, encode="onehot", quantile_method="linear"),
        FEATURES,
    ),
    "SequentialFeatureSelector": (
        lambda: feature_selection.SequentialFeatureSelector(
            linear_model.LogisticRegression(), n_features_to_select=3, cv=2),
        ("multiclass",),
    ),
    "SequentialFeatureSelector-backward": (
        lambda: feature_selection.SequentialFeatureSelector(
            linear_model.Ridge(), n_features_to_select=2, direction="backward", cv=2),
        REGRESSION,
    ),
    "GaussianProcessClassifier": (
        lambda: gaussian_process.GaussianProcessClassifier(random_state=0), ("binary",)
    ),
    "GaussianProcessClassifier-multiclass": (
        lambda: gaussian_process.GaussianProcessClassifier(random_state=0), ("multiclass",)
    ),
    "Isomap": (manifold.Isomap, FEATURES),
    "Isomap-8": (lambda: manifold.Isomap(n_neighbors=8, n_components=3), FEATURES),
    "NMF": (lambda: decomposition.NMF(3, max_iter=500, random_state=0), ("positive",)),
    "MiniBatchNMF": (lambda: decomposition.MiniBatchNMF(3, random_state=0), ("positive",)),
    "LatentDirichletAllocation": (
        lambda: decomposition.LatentDirichletAllocation(3, random_state=0), ("positive",)
    ),
    "QuantileTransformer": (preprocessing.QuantileTransformer, FEATURES),
    "KernelDensity": (neighbors.KernelDensity, FEATURES),
    "KernelDensity-epanechnikov": (
        lambda: neighbors.KernelDensity(kernel="epanechnikov", bandwidth=2.0), FEATURES
    ),
}


def _discriminant(name, **kwargs):
    from sklearn import discriminant_analysis

    return lambda: getattr(discriminant_analysis, name)(**kwargs)


def _manifold(name, **kwargs):
    from sklearn import manifold

    return lambda: getattr(manifold, name)(**kwargs)


def _pls(name, **kwargs):
    from sklearn import cross_decomposition

    return lambda: getattr(cross_decomposition, name)(**kwargs)


# methods and estimators converted through bridge/sklearn/converters/{methods,searches,
# outlier_scores,discriminant,radius_neighbors,linear_transforms}.py
METHOD_CASES: dict[str, tuple] = {
    "LinearDiscriminantAnalysis": (_discriminant("LinearDiscriminantAnalysis"),
                                   CLASSIFICATION),
    "LinearDiscriminantAnalysis-eigen": (
        _discriminant("LinearDiscriminantAnalysis", solver="eigen", shrinkage=0.1),
        ("multiclass",)),
    "QuadraticDiscriminantAnalysis": (_discriminant("QuadraticDiscriminantAnalysis"),
                                      CLASSIFICATION),
    "PLSRegression": (_pls("PLSRegression"), REGRESSION),
    "PLSCanonical": (_pls("PLSCanonical", n_components=1), REGRESSION),
    "CCA": (_pls("CCA", n_components=1), REGRESSION),
    "PLSSVD": (_pls("PLSSVD", n_components=1), REGRESSION),
    "OneClassSVM": (lambda: svm.OneClassSVM(gamma=0.1), FEATURES),
    "SGDOneClassSVM": (lambda: linear_model.SGDOneClassSVM(random_state=0), FEATURES),
    "GridSearchCV": (
        lambda: model_selection.GridSearchCV(linear_model.LogisticRegression(),
                                             {"C": [0.1, 1.0]}, cv=2),
        CLASSIFICATION,
    ),
    "RandomizedSearchCV": (
        lambda: model_selection.RandomizedSearchCV(
            svm.SVC(random_state=0), {"C": [0.5, 1.0, 2.0]}, n_iter=2, cv=2, random_state=0),
        CLASSIFICATION,
    ),
    "OneVsOneClassifier": (lambda: multiclass.OneVsOneClassifier(svm.LinearSVC(random_state=0)),
                           ("binary", "multiclass")),
    "RFECV": (
        lambda: feature_selection.RFECV(linear_model.LogisticRegression(), cv=2),
        ("binary", "multiclass"),
    ),
    "RadiusNeighborsClassifier": (
        lambda: neighbors.RadiusNeighborsClassifier(radius=2.5, outlier_label="most_frequent"),
        CLASSIFICATION,
    ),
    "RadiusNeighborsClassifier-distance": (
        lambda: neighbors.RadiusNeighborsClassifier(radius=2.5, weights="distance"),
        ("multiclass",),
    ),
    "RadiusNeighborsRegressor": (lambda: neighbors.RadiusNeighborsRegressor(radius=2.5),
                                 REGRESSION),
    "RadiusNeighborsTransformer": (lambda: neighbors.RadiusNeighborsTransformer(radius=2.5),
                                   FEATURES),
    "FeatureAgglomeration": (lambda: cluster.FeatureAgglomeration(3), FEATURES),
    "SparsePCA": (lambda: decomposition.SparsePCA(3, random_state=0), FEATURES),
    "MiniBatchSparsePCA": (
        lambda: decomposition.MiniBatchSparsePCA(3, batch_size=20, max_iter=5, random_state=0),
        FEATURES,
    ),
    "GaussianRandomProjection": (
        lambda: random_projection.GaussianRandomProjection(3, random_state=0), FEATURES
    ),
    "KNNImputer": (impute.KNNImputer, ("missing",)),
    "LabelEncoder": (preprocessing.LabelEncoder, ("labels",)),
    "DictionaryLearning": (
        lambda: decomposition.DictionaryLearning(4, max_iter=10, transform_n_nonzero_coefs=2,
                                                 random_state=0),
        FEATURES,
    ),
    "LocallyLinearEmbedding": (
        _manifold("LocallyLinearEmbedding", n_neighbors=8, n_components=3, random_state=0),
        FEATURES,
    ),
    "MiniBatchDictionaryLearning-threshold": (
        lambda: decomposition.MiniBatchDictionaryLearning(
            4, max_iter=3, transform_algorithm="threshold", transform_alpha=0.2,
            split_sign=True, random_state=0),
        FEATURES,
    ),
}

# name → (factory, datasets). Names are pytest ids.
CASES: dict[str, tuple] = {
    "LinearRegression": (linear_model.LinearRegression, REGRESSION),
    "Ridge": (linear_model.Ridge, REGRESSION),
    "RidgeCV": (linear_model.RidgeCV, REGRESSION),
    "Lasso": (lambda: linear_model.Lasso(alpha=0.01), REGRESSION),
    "ElasticNet": (lambda: linear_model.ElasticNet(alpha=0.01), REGRESSION),
    "SGDRegressor": (lambda: linear_model.SGDRegressor(random_state=0), REGRESSION),
    "SGDClassifier": (lambda: linear_model.SGDClassifier(random_state=0), CLASSIFICATION),
    "SGDClassifier-log": (
        lambda: linear_model.SGDClassifier(loss="log_loss", random_state=0), CLASSIFICATION
    ),
    "LogisticRegression": (linear_model.LogisticRegression, CLASSIFICATION),
    "LogisticRegressionCV": (
        lambda: linear_model.LogisticRegressionCV(Cs=3, cv=2), CLASSIFICATION
    ),
    "RidgeClassifier": (linear_model.RidgeClassifier, CLASSIFICATION),
    "RidgeClassifierCV": (linear_model.RidgeClassifierCV, CLASSIFICATION),
    "Perceptron": (lambda: linear_model.Perceptron(random_state=0), CLASSIFICATION),
    "LinearSVC": (lambda: svm.LinearSVC(random_state=0), CLASSIFICATION),
    "LinearSVR": (lambda: svm.LinearSVR(random_state=0), REGRESSION),
    **{
        f"SVC-{kernel}{'-proba' if probability else ''}": (
            _svc(svm.SVC, kernel, probability), CLASSIFICATION
        )
        for kernel in SVM_KERNELS for probability in (False, True)
    },
    **{f"NuSVC-{k}": (_svc(svm.NuSVC, k, False), CLASSIFICATION) for k in SVM_KERNELS[1:]},
    # binary only: see LOOSE_TOLERANCE (multiclass ovr votes amplify the float32 error)
    "NuSVC-linear": (_svc(svm.NuSVC, "linear", False), ("binary",)),
    "NuSVC-rbf-proba": (_svc(svm.NuSVC, "rbf", True), CLASSIFICATION),
    **{f"SVR-{k}": ((lambda k=k: svm.SVR(kernel=k)), REGRESSION) for k in SVM_KERNELS},
    **{f"NuSVR-{k}": ((lambda k=k: svm.NuSVR(kernel=k)), REGRESSION) for k in SVM_KERNELS},
    "MLPClassifier": (
        lambda: neural_network.MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0),
        CLASSIFICATION,
    ),
    "MLPRegressor": (
        lambda: neural_network.MLPRegressor(hidden_layer_sizes=(16,), max_iter=300, random_state=0), REGRESSION
    ),
    "GaussianNB": (naive_bayes.GaussianNB, CLASSIFICATION),
    "BernoulliNB": (naive_bayes.BernoulliNB, CLASSIFICATION),
    "MultinomialNB": (naive_bayes.MultinomialNB, ("positive",)),
    "KNeighborsClassifier": (neighbors.KNeighborsClassifier, CLASSIFICATION),
    "KNeighborsRegressor": (neighbors.KNeighborsRegressor, REGRESSION),
    "NearestCentroid": (neighbors.NearestCentroid, CLASSIFICATION),
    "NearestCentroid-empirical": (lambda: neighbors.NearestCentroid(priors="empirical"),
                                  ("multiclass",)),
    "NearestCentroid-manhattan": (lambda: neighbors.NearestCentroid(metric="manhattan"),
                                  ("multiclass",)),
    "NeighborhoodComponentsAnalysis": (
        lambda: neighbors.NeighborhoodComponentsAnalysis(2, max_iter=20, random_state=0),
        ("multiclass",),
    ),
    "StandardScaler": (preprocessing.StandardScaler, FEATURES),
    "MinMaxScaler": (preprocessing.MinMaxScaler, FEATURES),
    "MaxAbsScaler": (preprocessing.MaxAbsScaler, FEATURES),
    "RobustScaler": (preprocessing.RobustScaler, FEATURES),
    "Normalizer": (preprocessing.Normalizer, FEATURES),
    "Binarizer": (preprocessing.Binarizer, FEATURES),
    "PolynomialFeatures": (preprocessing.PolynomialFeatures, FEATURES),
    **{
        f"SplineTransformer-{mode}": (
            (lambda mode=mode: preprocessing.SplineTransformer(extrapolation=mode)), FEATURES
        )
        for mode in ("constant", "linear", "continue", "periodic")
    },
    "SplineTransformer-quantile": (
        lambda: preprocessing.SplineTransformer(4, degree=2, knots="quantile",
                                                include_bias=False),
        FEATURES,
    ),
    "SimpleImputer": (impute.SimpleImputer, FEATURES),
    "MissingIndicator": (impute.MissingIndicator, ("missing",)),
    "MissingIndicator-all": (
        lambda: impute.MissingIndicator(missing_values=0.0, features="all"), ("categories",)
    ),
    "OrdinalEncoder": (
        lambda: preprocessing.OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
        ("categories",),
    ),
    "OneHotEncoder": (
        lambda: preprocessing.OneHotEncoder(handle_unknown="ignore", sparse_output=False), ("categories",)
    ),
    "KBinsDiscretizer-onehot": (
        lambda: preprocessing.KBinsDiscretizer(4, encode="onehot-dense", quantile_method="linear"),
        FEATURES,
    ),
    "KBinsDiscretizer-ordinal": (
        lambda: preprocessing.KBinsDiscretizer(4, encode="ordinal", quantile_method="linear"),
        FEATURES,
    ),
    "LabelBinarizer": (preprocessing.LabelBinarizer, ("labels",)),
    "PCA": (lambda: decomposition.PCA(3), FEATURES),
    "FactorAnalysis": (lambda: decomposition.FactorAnalysis(3, random_state=0), FEATURES),
    "FastICA": (lambda: decomposition.FastICA(3, tol=0.05, random_state=0), FEATURES),
    "FastICA-unwhitened": (
        lambda: decomposition.FastICA(whiten=False, tol=0.05, random_state=0), FEATURES
    ),
    "SparseRandomProjection": (
        lambda: random_projection.SparseRandomProjection(4, random_state=0), FEATURES
    ),
    "BernoulliRBM": (
        lambda: neural_network.BernoulliRBM(8, n_iter=5, random_state=0), ("unit-interval",)
    ),
    "TruncatedSVD": (lambda: decomposition.TruncatedSVD(3, random_state=0), FEATURES),
    "KernelPCA": (lambda: decomposition.KernelPCA(3, kernel="rbf"), FEATURES),
    **{
        f"Nystroem-{k}": (
            (lambda k=k: kernel_approximation.Nystroem(
                kernel=k, n_components=20 if k in ("rbf", "laplacian", "sigmoid") else 4,
                random_state=0)),
            FEATURES,
        )
        for k in ("rbf", "linear", "poly", "sigmoid", "cosine", "laplacian")
    },
    "RBFSampler": (lambda: kernel_approximation.RBFSampler(n_components=30, random_state=0),
                   FEATURES),
    "SkewedChi2Sampler": (
        lambda: kernel_approximation.SkewedChi2Sampler(n_components=30, random_state=0),
        ("positive",),
    ),
    "AdditiveChi2Sampler": (kernel_approximation.AdditiveChi2Sampler, ("positive",)),
    "PolynomialCountSketch": (
        lambda: kernel_approximation.PolynomialCountSketch(n_components=16, random_state=0),
        FEATURES,
    ),
    "PolynomialCountSketch-degree3": (
        lambda: kernel_approximation.PolynomialCountSketch(degree=3, coef0=0.5, n_components=16,
                                                           random_state=0),
        FEATURES,
    ),
    **{
        f"KernelRidge-{k}": (
            (lambda k=k: kernel_ridge.KernelRidge(alpha=0.5, kernel=k,
                                                  gamma=0.02 if k == "sigmoid" else None)),
            REGRESSION,
        )
        for k in ("linear", "rbf", "poly", "sigmoid", "laplacian")
    },
    "SelectKBest": (lambda: feature_selection.SelectKBest(k=3), ("multiclass",)),
    "VarianceThreshold": (lambda: feature_selection.VarianceThreshold(0.5), FEATURES),
    "Pipeline": (
        lambda: pipeline.make_pipeline(
            preprocessing.StandardScaler(), decomposition.PCA(4), linear_model.LogisticRegression()
        ),
        CLASSIFICATION,
    ),
    "Pipeline-SVC-proba": (
        lambda: pipeline.make_pipeline(
            preprocessing.StandardScaler(), svm.SVC(probability=True, random_state=0)
        ),
        ("multiclass",),
    ),
    "ColumnTransformer": (
        lambda: compose.ColumnTransformer(
            [("scale", preprocessing.StandardScaler(), [0, 1, 2]),
             ("minmax", preprocessing.MinMaxScaler(), [3, 4])],
            remainder="passthrough",
        ),
        FEATURES,
    ),
    "FeatureUnion": (
        lambda: pipeline.FeatureUnion(
            [("scale", preprocessing.StandardScaler()), ("pca", decomposition.PCA(2))]
        ),
        FEATURES,
    ),
    "StackingClassifier": (
        lambda: ensemble.StackingClassifier(
            [("lr", linear_model.LogisticRegression()), ("svc", svm.SVC(random_state=0))],
            cv=2,
        ),
        CLASSIFICATION,
    ),
    "StackingRegressor": (
        lambda: ensemble.StackingRegressor(
            [("ridge", linear_model.Ridge()), ("svr", svm.SVR())], cv=2
        ),
        REGRESSION,
    ),
    "VotingClassifier-soft": (
        lambda: ensemble.VotingClassifier(
            [("lr", linear_model.LogisticRegression()), ("nb", naive_bayes.GaussianNB())],
            voting="soft",
        ),
        CLASSIFICATION,
    ),
    "VotingClassifier-hard": (
        lambda: ensemble.VotingClassifier(
            [("lr", linear_model.LogisticRegression()), ("nb", naive_bayes.GaussianNB()),
             ("tree", tree.DecisionTreeClassifier(max_depth=4, random_state=0))],
        ),
        CLASSIFICATION,
    ),
    "VotingRegressor": (
        lambda: ensemble.VotingRegressor(
            [("ridge", linear_model.Ridge()),
             ("tree", tree.DecisionTreeRegressor(max_depth=4, random_state=0))]
        ),
        REGRESSION,
    ),
    "TransformedTargetRegressor-func": (
        lambda: compose.TransformedTargetRegressor(
            linear_model.Ridge(), func=np.log1p, inverse_func=np.expm1, check_inverse=False
        ),
        ("positive-regression",),
    ),
    "TransformedTargetRegressor-scaler": (
        lambda: compose.TransformedTargetRegressor(
            svm.SVR(), transformer=preprocessing.StandardScaler()
        ),
        REGRESSION,
    ),
    "DummyClassifier-prior": (dummy.DummyClassifier, CLASSIFICATION),
    "DummyClassifier-most_frequent": (
        lambda: dummy.DummyClassifier(strategy="most_frequent"), CLASSIFICATION
    ),
    "DummyRegressor": (dummy.DummyRegressor, REGRESSION),
    "DummyRegressor-median": (lambda: dummy.DummyRegressor(strategy="median"), REGRESSION),
    "FrozenEstimator-LogisticRegression": (
        lambda: _frozen(linear_model.LogisticRegression, "multiclass"), ("multiclass",)
    ),
    "FrozenEstimator-Pipeline": (
        lambda: _frozen(lambda: pipeline.make_pipeline(preprocessing.StandardScaler(),
                                                       svm.SVC(random_state=0)), "binary"),
        ("binary",),
    ),
    "FrozenEstimator-Ridge": (lambda: _frozen(linear_model.Ridge, "regression"), REGRESSION),
    # "multiclass": FrozenEstimator.fit takes y even around a transformer
    "FrozenEstimator-PCA": (
        lambda: _frozen(lambda: decomposition.PCA(3), "multiclass"), ("multiclass",)
    ),
    "SelfTrainingClassifier": (
        lambda: semi_supervised.SelfTrainingClassifier(linear_model.LogisticRegression(),
                                                       max_iter=3),
        ("semi-supervised",),
    ),
    "LabelPropagation": (lambda: semi_supervised.LabelPropagation(gamma=0.5), ("semi-supervised",)),
    "LabelSpreading": (lambda: semi_supervised.LabelSpreading(gamma=0.5), ("semi-supervised",)),
    "AffinityPropagation": (lambda: cluster.AffinityPropagation(random_state=0), FEATURES),
    "RFE": (
        lambda: feature_selection.RFE(linear_model.LogisticRegression(), n_features_to_select=3),
        ("binary",),
    ),
    # decision-threshold classifiers (binary only): labels from the positive class's score
    "FixedThresholdClassifier": (
        lambda: model_selection.FixedThresholdClassifier(linear_model.LogisticRegression(),
                                                         threshold=0.3),
        ("binary",),
    ),
    "FixedThresholdClassifier-svm": (
        lambda: model_selection.FixedThresholdClassifier(svm.LinearSVC(random_state=0),
                                                         threshold=0.4),
        ("binary",),
    ),
    "TunedThresholdClassifierCV": (
        lambda: model_selection.TunedThresholdClassifierCV(linear_model.LogisticRegression(),
                                                           cv=3),
        ("binary",),
    ),
    # clusterers and mixtures: predict gives component ids
    "KMeans": (lambda: cluster.KMeans(n_clusters=3, n_init=2, random_state=0), FEATURES),
    "MiniBatchKMeans": (
        lambda: cluster.MiniBatchKMeans(n_clusters=3, n_init=2, batch_size=64, random_state=0),
        FEATURES,
    ),
    "Birch": (lambda: cluster.Birch(n_clusters=3), FEATURES),
    "BisectingKMeans": (
        lambda: cluster.BisectingKMeans(n_clusters=5, n_init=2, random_state=0), FEATURES
    ),
    "BisectingKMeans-largest": (
        lambda: cluster.BisectingKMeans(n_clusters=4, bisecting_strategy="largest_cluster",
                                        random_state=0),
        FEATURES,
    ),
    "MeanShift": (lambda: cluster.MeanShift(bandwidth=2.5), FEATURES),
    **{f"GaussianMixture-{kind}": (
        (lambda kind=kind: mixture.GaussianMixture(3, covariance_type=kind, random_state=0)),
        FEATURES,
    ) for kind in ("full", "tied", "diag", "spherical")},
    "BayesianGaussianMixture": (
        lambda: mixture.BayesianGaussianMixture(n_components=3, random_state=0), FEATURES
    ),
    # tree estimators (their ONNX ops come from bridge/onnx/ops/ml/tree.py)
    "DecisionTreeClassifier": (_small_trees(tree.DecisionTreeClassifier, max_depth=5),
                               CLASSIFICATION),
    "DecisionTreeRegressor": (_small_trees(tree.DecisionTreeRegressor, max_depth=5), REGRESSION),
    "ExtraTreeClassifier": (_small_trees(tree.ExtraTreeClassifier, max_depth=5), CLASSIFICATION),
    "ExtraTreeRegressor": (_small_trees(tree.ExtraTreeRegressor, max_depth=5), REGRESSION),
    "RandomForestClassifier": (
        _small_trees(ensemble.RandomForestClassifier, n_estimators=8, max_depth=5),
        CLASSIFICATION,
    ),
    "RandomForestRegressor": (
        _small_trees(ensemble.RandomForestRegressor, n_estimators=8, max_depth=5), REGRESSION
    ),
    "ExtraTreesClassifier": (
        _small_trees(ensemble.ExtraTreesClassifier, n_estimators=8, max_depth=5), CLASSIFICATION
    ),
    "ExtraTreesRegressor": (
        _small_trees(ensemble.ExtraTreesRegressor, n_estimators=8, max_depth=5), REGRESSION
    ),
    "GradientBoostingClassifier": (
        _small_trees(ensemble.GradientBoostingClassifier, n_estimators=10, max_depth=3),
        CLASSIFICATION,
    ),
    "GradientBoostingRegressor": (
        _small_trees(ensemble.GradientBoostingRegressor, n_estimators=10, max_depth=3),
        REGRESSION,
    ),
    "HistGradientBoostingClassifier": (
        _small_trees(ensemble.HistGradientBoostingClassifier, max_iter=10), CLASSIFICATION
    ),
    "HistGradientBoostingRegressor": (
        _small_trees(ensemble.HistGradientBoostingRegressor, max_iter=10), REGRESSION
    ),
    "EllipticEnvelope": (lambda: covariance.EllipticEnvelope(random_state=0), FEATURES),
    "IsotonicRegression": (isotonic.IsotonicRegression, ("one-feature",)),
    "IsotonicRegression-clip": (
        lambda: isotonic.IsotonicRegression(out_of_bounds="clip", increasing=False),
        ("one-feature",),
    ),
    "IsolationForest": (
        _small_trees(ensemble.IsolationForest, n_estimators=10), FEATURES
    ),
    **META_CASES,
    **METHOD_CASES,
}


@cache
def extra_dataset(name: str) -> Dataset:
    """Datasets only some estimators use: categories, labels, positive-regression,
    one-feature, missing, unit-interval, semi-supervised."""
    rng = np.random.default_rng(3)
    if name == "categories":
        return Dataset(name, rng.integers(0, 4, size=(120, 3)).astype(np.float64), None)
    if name == "labels":
        return Dataset(name, rng.integers(0, 4, size=120) * 3 + 1, None)
    if name == "semi-supervised":  # multiclass, a third of the labels hidden (-1)
        base = dataset("multiclass")
        return Dataset(name, base.X, np.where(rng.random(len(base.y)) < 0.33, -1, base.y))
    if name == "unit-interval":  # BernoulliRBM's visible units
        return Dataset(name, rng.random((120, 6)), None)
    if name == "missing":  # NaN in columns 0, 2 and 5
        X = dataset("features").X.copy()
        for column in (0, 2, 5):
            X[rng.random(len(X)) < 0.15, column] = np.nan
        return Dataset(name, X, None)
    if name == "one-feature":  # every other row: test rows between the fitted thresholds
        base = dataset("regression")
        return Dataset(name, base.X[:, :1], base.y + 2.0 * base.X[:, 0])
    if name == "categories-multiclass":  # 3 integer-coded features, 3 classes
        X = rng.integers(0, 5, size=(150, 3)).astype(np.float64)
        return Dataset(name, X, (X[:, 0] + rng.integers(0, 2, size=150)).astype(int) % 3)
    if name == "multilabel":
        X, Y = make_multilabel_classification(150, 6, n_classes=3, random_state=0)
        return Dataset(name, X.astype(np.float64), Y)
    if name == "multi-regression":
        X, Y = make_regression(120, 5, n_targets=3, noise=2.0, random_state=0)
        return Dataset(name, X, Y / 50.0)
    if name == "positive-regression":
        base = dataset("regression")
        return Dataset(name, base.X, np.abs(base.y))
    raise KeyError(name)


def get_dataset(name: str) -> Dataset:
    """Return any dataset named in CASES."""
    try:
        return dataset(name)
    except KeyError:
        return extra_dataset(name)


def fitted(case: str, data_name: str):
    """Fit the named case on the named dataset and return (estimator, dataset)."""
    factory, _ = CASES[case]
    data = get_dataset(data_name)
    estimator = factory()
    if case == "LabelBinarizer":
        estimator.fit(data.X)
    elif data.y is None:
        estimator.fit(data.X)
    else:
        estimator.fit(data.X, data.y)
    return estimator, data


def case_params() -> list[tuple[str, str]]:
    """Every (case, dataset) pair, in a stable order."""
    return [(case, name) for case, (_, names) in CASES.items() for name in names]


# Looser float32 agreement, with the reason. Factor multiplies the default tolerances.
LOOSE_TOLERANCE = {
    # libsvm's nu formulation with a linear kernel yields dual coefficients of 1e3-1e5 that
    # cancel; skl2onnx stores them in float32 (even for double graphs), so ~1% error remains.
    "NuSVC-linear": 300.0,
    # scikit-learn's erf-series coefficients (COEFS, up to 3.5e3 in magnitude) cancel to a
    # sum of 1: float32 erf values (6e-8 relative) leave ~1.2e-4 in the probabilities
    "GaussianProcessClassifier": 5.0,
    "GaussianProcessClassifier-multiclass": 5.0,
}
