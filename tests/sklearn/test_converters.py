"""bridge's own skl2onnx converters: the module list, idempotent registration, exact graphs."""

from __future__ import annotations

import pkgutil

import numpy as np
import pytest
from skl2onnx import to_onnx

import bridge.sklearn.converters as converters
from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters import CONVERTER_MODULES, register_missing_converters
from tests.parity import assert_parity, run_onnxruntime
from tests.sklearn.cases import fitted


def test_every_converter_module_is_listed():
    modules = {m.name for m in pkgutil.iter_modules(converters.__path__)
               if not m.name.startswith("_")}
    assert modules == set(CONVERTER_MODULES)


def test_registration_is_idempotent():
    assert register_missing_converters() is register_missing_converters()


@pytest.mark.parametrize(
    ("case", "data_name", "method"),
    [
        ("Nystroem-rbf", "features", "transform"),
        ("Nystroem-laplacian", "features", "transform"),
        ("TransformedTargetRegressor-func", "positive-regression", "predict"),
        ("DummyRegressor", "regression", "predict"),
        ("DummyClassifier-prior", "multiclass", "predict_proba"),
        ("VotingClassifier-soft", "multiclass", "predict_proba"),
        ("StackingClassifier", "binary", "predict_proba"),
        ("FixedThresholdClassifier", "binary", "predict"),
        ("FixedThresholdClassifier-svm", "binary", "predict"),
        ("TunedThresholdClassifierCV", "binary", "predict"),
    ],
)
def test_custom_converter_graph_matches_sklearn_in_onnxruntime(case, data_name, method):
    register_missing_converters()
    estimator, data = fitted(case, data_name)
    X = data.X.astype(np.float32)
    graph = to_onnx(estimator, X[:1], options={id(estimator): {"zipmap": False}}
                    if method == "predict_proba" else None)
    outputs = run_onnxruntime(graph, {graph.graph.input[0].name: X})
    actual = outputs[1] if method == "predict_proba" else outputs[0]
    expected = getattr(estimator, method)(data.X)
    if actual.ndim == 2 and expected.ndim == 1:
        actual = actual.ravel()
    assert_parity(actual, expected, rtol=1e-4, atol=1e-4, what=case)


def test_threshold_labels_follow_the_threshold_and_pos_label():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import FixedThresholdClassifier

    import bridge

    data = fitted("LogisticRegression", "binary")[1]
    labels = np.where(data.y == 1, "yes", "no")
    argmax = LogisticRegression().fit(data.X, labels).predict(data.X)
    for threshold, positive in [(0.05, None), (0.95, None), (0.9, "no")]:
        estimator = FixedThresholdClassifier(LogisticRegression(), threshold=threshold,
                                             pos_label=positive).fit(data.X, labels)
        predicted = bridge.from_sklearn(estimator).predict(data.X)
        np.testing.assert_array_equal(predicted, estimator.predict(data.X))
        assert (predicted != argmax).any()  # the threshold moved some labels


def test_a_threshold_on_decision_values_of_a_probabilistic_model_is_refused():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import FixedThresholdClassifier

    import bridge

    data = fitted("LogisticRegression", "binary")[1]
    estimator = FixedThresholdClassifier(LogisticRegression(), threshold=0.0,
                                         response_method="decision_function")
    with pytest.raises(UnsupportedEstimatorError, match="response_method='decision_function'"):
        bridge.from_sklearn(estimator.fit(data.X, data.y))


def test_random_dummy_strategy_is_refused():
    from sklearn.dummy import DummyClassifier

    import bridge

    data = fitted("LogisticRegression", "binary")[1]
    with pytest.raises(UnsupportedEstimatorError, match="uniform"):
        bridge.from_sklearn(DummyClassifier(strategy="uniform").fit(data.X, data.y))


def test_unknown_inverse_function_is_refused():
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.linear_model import Ridge

    import bridge

    data = fitted("Ridge", "regression")[1]
    estimator = TransformedTargetRegressor(Ridge(), func=np.tanh, inverse_func=np.arctanh,
                                           check_inverse=False).fit(data.X, data.y / 100)
    with pytest.raises(UnsupportedEstimatorError, match="arctanh"):
        bridge.from_sklearn(estimator)


def _assert_both_engines(estimator, X, method, rtol=1e-4):
    """bridge and onnxruntime (on bridge's own graph) agree with scikit-learn on ``X``."""
    import bridge

    model = bridge.from_sklearn(estimator)
    expected = getattr(estimator, method)(X)
    assert_parity(getattr(model, method)(X), expected, rtol=rtol, atol=rtol, what=method)
    graph = model.onnx_model
    (reference, *_) = run_onnxruntime(graph, {graph.graph.input[0].name: X.astype(np.float32)})
    assert_parity(reference.reshape(expected.shape), expected, rtol=rtol, atol=rtol,
                  what=f"{method} in onnxruntime")


@pytest.mark.parametrize("mode", ["constant", "linear", "continue", "periodic", "error"])
@pytest.mark.parametrize("degree", [1, 3])
def test_spline_extrapolation_beyond_the_fitted_range_and_missing_values(mode, degree):
    from sklearn.preprocessing import SplineTransformer

    X = fitted("StandardScaler", "features")[1].X
    estimator = SplineTransformer(degree=degree, extrapolation=mode,
                                  handle_missing="zeros").fit(X)
    wide = np.vstack([X * 1.7, X[:5] - 9.0])
    if mode == "error":  # scikit-learn raises beyond the knots; the graph gives NaN there
        wide = X.copy()
    wide[3, 2] = np.nan
    _assert_both_engines(estimator, wide, "transform")


@pytest.mark.parametrize("bounds", ["nan", "clip"])
def test_isotonic_regression_between_beyond_and_on_thresholds(bounds):
    from sklearn.isotonic import IsotonicRegression

    data = fitted("Ridge", "regression")[1]
    x = data.X[:, :1]
    estimator = IsotonicRegression(out_of_bounds=bounds).fit(x, data.y + x[:, 0])
    probe = np.vstack([x, x.min() - 1.0, x.max() + 1.0,
                       estimator.X_thresholds_[:, None],
                       np.linspace(x.min() - 1, x.max() + 1, 200)[:, None]])
    _assert_both_engines(estimator, probe, "predict")


def test_isotonic_regression_refuses_raising_bounds():
    from sklearn.isotonic import IsotonicRegression

    import bridge

    estimator = IsotonicRegression(out_of_bounds="raise").fit([[0.0], [1.0], [2.0]], [0, 2, 1])
    with pytest.raises(UnsupportedEstimatorError, match="out_of_bounds='raise'"):
        bridge.from_sklearn(estimator)


def test_additive_chi2_sampler_gives_zeros_for_zero_entries():
    from sklearn.kernel_approximation import AdditiveChi2Sampler

    X = np.abs(fitted("StandardScaler", "features")[1].X)
    X[::3, 1] = 0.0
    estimator = AdditiveChi2Sampler(sample_steps=3).fit(X)
    _assert_both_engines(estimator, X, "transform")


def test_missing_indicator_on_a_sentinel_value():
    from sklearn.impute import MissingIndicator

    import bridge

    X = np.array([[1.0, -1.0, 3.0], [-1.0, 2.0, 5.0], [4.0, 2.0, -1.0]])
    estimator = MissingIndicator(missing_values=-1.0, error_on_new=False).fit(X[:2])
    model = bridge.from_sklearn(estimator)
    np.testing.assert_array_equal(model.transform(X), estimator.transform(X))


@pytest.mark.parametrize("case", ["Birch", "BisectingKMeans", "BisectingKMeans-largest",
                                  "MeanShift", "AffinityPropagation",
                                  "NearestCentroid-manhattan", "LabelSpreading"])
def test_clusters_and_centroids_of_new_points(case):
    import bridge

    data_name = {"NearestCentroid-manhattan": "multiclass",
                 "LabelSpreading": "semi-supervised"}.get(case, "features")
    estimator, data = fitted(case, data_name)
    X = np.random.default_rng(0).normal(scale=2.0, size=(2000, data.X.shape[1]))
    model = bridge.from_sklearn(estimator)
    np.testing.assert_array_equal(model.predict(X), estimator.predict(X))
    if hasattr(estimator, "predict_proba"):  # far from every training point too
        assert_parity(model.predict_proba(X * 3), estimator.predict_proba(X * 3), rtol=0,
                      atol=1e-4, what="predict_proba")


# every case whose graph comes from one of bridge's own converters added for issue 19
BRIDGE_CONVERTED_CASES = [
    "RBFSampler", "SkewedChi2Sampler", "AdditiveChi2Sampler", "PolynomialCountSketch",
    "PolynomialCountSketch-degree3", *[f"KernelRidge-{k}" for k in
                                       ("linear", "rbf", "poly", "sigmoid", "laplacian")],
    "NearestCentroid", "NearestCentroid-empirical", "NearestCentroid-manhattan",
    "EllipticEnvelope", "IsotonicRegression", "IsotonicRegression-clip", "MissingIndicator",
    *[f"SplineTransformer-{m}" for m in ("constant", "linear", "continue", "periodic",
                                          "quantile")],
    "FactorAnalysis", "FastICA", "FastICA-unwhitened", "SparseRandomProjection",
    "BernoulliRBM", "Birch", "BisectingKMeans", "MeanShift",
    "FrozenEstimator-LogisticRegression", "SelfTrainingClassifier", "LabelPropagation",
    "LabelSpreading", "AffinityPropagation",
]


@pytest.mark.parametrize("case", BRIDGE_CONVERTED_CASES)
def test_float64_graphs_of_bridge_converters_match_sklearn_closely(case):
    import bridge
    from tests.sklearn.cases import CASES

    estimator, data = fitted(case, CASES[case][1][0])
    model = bridge.from_sklearn(estimator, dtype=np.float64)
    assert model.methods and model._method_outputs
    for method in model._method_outputs:
        actual, expected = getattr(model, method)(data.X), getattr(estimator, method)(data.X)
        if method == "predict_log_proba":
            actual, expected = np.exp(actual), np.exp(expected)
        if np.asarray(expected).dtype.kind in "fc":
            assert np.asarray(actual).dtype == np.float64, method
        # atol 1e-7: scikit-learn's euclidean_distances expands |x - c|^2 and cancels
        # (a row on its own center gives ~4e-8, the graph's differences 0)
        assert_parity(actual, expected, rtol=1e-9, atol=1e-7, what=f"{case}.{method}")


@pytest.mark.parametrize("case", ["PCA", "FactorAnalysis"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_score_samples_option_in_onnxruntime(case, dtype):
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    register_missing_converters()
    estimator, data = fitted(case, "features")
    tensor_type = DoubleTensorType if dtype == np.float64 else FloatTensorType
    graph = to_onnx(estimator, initial_types=[("X", tensor_type([None, data.X.shape[1]]))],
                    options={id(estimator): {"score_samples": True}})
    transformed, scores = run_onnxruntime(graph, {"X": data.X.astype(dtype)})
    tolerance = 1e-9 if dtype == np.float64 else 1e-4
    assert_parity(scores.ravel(), estimator.score_samples(data.X), rtol=tolerance,
                  atol=tolerance * 10, what="score_samples")
    assert_parity(transformed, estimator.transform(data.X), rtol=tolerance, atol=tolerance,
                  what="transform")
    plain = to_onnx(estimator, data.X[:1].astype(dtype))
    assert len(plain.graph.output) == 1  # without the option: transform alone, as before


def test_variants_without_a_graph_are_refused_by_name():
    from sklearn.impute import MissingIndicator
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.preprocessing import SplineTransformer

    import bridge

    X = np.abs(fitted("StandardScaler", "features")[1].X)
    X[0, 0] = 0.5
    refused = [
        (KernelRidge(kernel="chi2", gamma=1.0).fit(X, X[:, 0]),
         "KernelRidge\\(kernel='chi2'\\) has no ONNX conversion; supported kernels: linear"),
        (SplineTransformer(sparse_output=True).fit(X), "sparse_output=True"),
        (MissingIndicator(missing_values=0.5, sparse=True).fit(X), "sparse=True"),
    ]
    for estimator, match in refused:
        with pytest.raises(UnsupportedEstimatorError, match=match):
            bridge.from_sklearn(estimator)
