"""The benchmark cases: which estimators, on what synthetic data, timed through which method."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator


@dataclass(frozen=True)
class BenchCase:
    """One model to time.

    Parameters
    ----------
    name : str
        Short identifier used on the command line (``--models``).
    task : str
        ``"classification"``, ``"regression"`` or ``"transform"``: decides the data.
    build : callable
        ``build()`` returns an unfitted estimator.
    method : str
        The inference method timed (``predict_proba``, ``predict`` or ``transform``).
    """

    name: str
    task: str
    build: Callable[[], BaseEstimator]
    method: str
    description: str = ""


def make_data(task: str, n_rows: int, n_features: int, seed: int = 0):
    """Return synthetic ``(X, y)`` for a task: float32 features, a learnable target."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    weights = rng.normal(size=n_features)
    signal = X @ weights + 0.5 * np.sin(X[:, 0] * 2)
    if task == "classification":
        y = np.digitize(signal, np.quantile(signal, [1 / 3, 2 / 3]))  # three classes
    else:
        y = signal + rng.normal(scale=0.1, size=n_rows)
    return X, y


def _cases() -> dict[str, BenchCase]:
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, SVR

    cases = [
        BenchCase("logreg", "classification", lambda: LogisticRegression(max_iter=500),
                  "predict_proba", "LogisticRegression, 3 classes"),
        BenchCase("ridge", "regression", lambda: Ridge(), "predict", "Ridge regression"),
        BenchCase("scaler_logreg", "classification",
                  lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
                  "predict_proba", "Pipeline(StandardScaler, LogisticRegression)"),
        BenchCase("mlp", "classification",
                  lambda: MLPClassifier((64, 64), max_iter=50, random_state=0),
                  "predict_proba", "MLPClassifier (64, 64)"),
        BenchCase("svc", "classification", lambda: SVC(probability=True, random_state=0),
                  "predict_proba", "SVC rbf, probability=True"),
        BenchCase("svr", "regression", lambda: SVR(), "predict", "SVR rbf"),
        BenchCase("knn", "classification", lambda: KNeighborsClassifier(5),
                  "predict_proba", "KNeighborsClassifier k=5"),
        BenchCase("pca", "transform", lambda: PCA(8, random_state=0), "transform", "PCA, 8 components"),
        BenchCase("random_forest", "classification",
                  lambda: RandomForestClassifier(100, max_depth=8, random_state=0, n_jobs=1),
                  "predict_proba", "RandomForest 100 trees, depth 8"),
        BenchCase("gradient_boosting", "classification",
                  lambda: GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0),
                  "predict_proba", "GradientBoosting 100 x 3 classes, depth 3"),
        BenchCase("hist_gradient_boosting", "classification",
                  lambda: HistGradientBoostingClassifier(max_iter=100, random_state=0),
                  "predict_proba", "HistGradientBoosting 100 iterations"),
    ]
    return {case.name: case for case in cases}


CASES: dict[str, BenchCase] = _cases()

SUITES: dict[str, dict] = {
    "quick": {
        "models": ["logreg", "scaler_logreg", "mlp", "random_forest"],
        "batch_sizes": [1, 1000, 10000],
        "train_rows": 2000,
        "repeats": 5,
    },
    "full": {
        "models": list(CASES),
        "batch_sizes": [1, 100, 10000, 100000],
        "train_rows": 5000,
        "repeats": 7,
    },
}
