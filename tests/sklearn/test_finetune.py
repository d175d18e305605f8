"""``from_sklearn(estimator, trainable=True)``: a net built on it starts from the scikit-learn
solution (same score, same probabilities), trains its weights (the preprocessing only on
request) and exports to ONNX like any net."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from torch import nn

import bridge
from bridge import NeuralNetClassifier, NeuralNetRegressor
from bridge.errors import ConversionError, UnsupportedEstimatorError


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:500].astype(np.float32) / 16, y[:500]


def mlp(cls, **kwargs):
    return lambda: cls(hidden_layer_sizes=(12,), max_iter=60, random_state=0, **kwargs)


CLASSIFIERS = {
    "LogisticRegression": (lambda: LogisticRegression(max_iter=300), 10),
    "LogisticRegression-binary": (lambda: LogisticRegression(max_iter=300), 2),
    "LinearSVC-binary": (lambda: LinearSVC(random_state=0), 2),
    "SGDClassifier": (lambda: SGDClassifier(random_state=0), 10),
    "MLPClassifier": (mlp(MLPClassifier), 10),
    "MLPClassifier-binary": (mlp(MLPClassifier), 2),
    "Pipeline-scaler-pca": (lambda: make_pipeline(StandardScaler(), PCA(12, random_state=0),
                                                  LogisticRegression(max_iter=300)), 10),
}


def fit(factory, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return factory().fit(X, y)


def classifier_net(module, **kwargs):
    return NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.SGD,
                               lr=0.5, batch_size=64, train_split=None, verbose=0, **kwargs)


def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("case", CLASSIFIERS)
def test_a_classifier_net_starts_from_the_estimators_solution_and_trains(case, digits):
    factory, n_classes = CLASSIFIERS[case]
    X, y = digits
    y = y if n_classes == 10 else (y > 4).astype(np.int64)
    estimator = fit(factory, X, y)
    module = bridge.from_sklearn(estimator, trainable=True)
    np.testing.assert_array_equal(module.classes_, estimator.classes_)
    net = classifier_net(module, max_epochs=1).initialize()
    targets = np.searchsorted(module.classes_, y)
    assert net.score(X, targets) == estimator.score(X, y)
    if hasattr(estimator, "predict_proba"):
        np.testing.assert_allclose(net.predict_proba(X), estimator.predict_proba(X),
                                   rtol=1e-4, atol=1e-5)
    else:  # margin models: the logits are the decision scores ([0, s] for binary problems)
        logits = module(torch.from_numpy(X)).detach().numpy()
        scores = estimator.decision_function(X)
        if n_classes == 2:
            assert np.all(logits[:, 0] == 0)
            logits = logits[:, 1]
        np.testing.assert_allclose(logits, scores, rtol=1e-4, atol=1e-4)
    before = weights(module)
    assert before and all(p.requires_grad for p in module.head.parameters())
    shifted = np.roll(X.reshape(-1, 8, 8), 1, axis=2).reshape(len(X), 64)  # new data
    net.fit(shifted, targets)
    changed = [n for n, p in module.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith("head.") for n in changed)
    assert not any(n.startswith("preprocessing.") for n in changed)  # frozen by default


def test_the_preprocessing_trains_on_request(digits):
    X, y = digits
    estimator = fit(CLASSIFIERS["Pipeline-scaler-pca"][0], X, y)
    module = bridge.from_sklearn(estimator, trainable=True, train_preprocessing=True)
    scaler_and_pca = dict(module.preprocessing.named_parameters())
    assert len(scaler_and_pca) >= 3  # the scaler's offsets and scales, PCA's mean and matrix
    before = weights(module.preprocessing)
    classifier_net(module, max_epochs=1).fit(X, y)
    assert any(not torch.equal(p, before[n]) for n, p in scaler_and_pca.items())


@pytest.mark.parametrize("factory", [Ridge, mlp(MLPRegressor)], ids=["Ridge", "MLPRegressor"])
def test_a_regressor_net_starts_from_the_estimators_solution(factory, digits):
    X, _ = digits
    target = (X[:, 20:30].sum(axis=1) + 0.1 * X[:, 5]).astype(np.float32)
    estimator = fit(factory, X, target)
    module = bridge.from_sklearn(estimator, trainable=True)
    net = NeuralNetRegressor(module, criterion=nn.MSELoss, lr=1e-3, max_epochs=1,
                             train_split=None, verbose=0).initialize()
    column = target.reshape(-1, 1)
    assert net.predict(X).shape == (len(X), 1)
    np.testing.assert_allclose(net.predict(X)[:, 0], estimator.predict(X), rtol=1e-4, atol=1e-4)
    assert net.score(X, column) == pytest.approx(estimator.score(X, target), abs=1e-5)
    before = weights(module)
    net.fit(X, column + 1.0)  # a shifted target: training must move the weights
    assert any(not torch.equal(p, before[n]) for n, p in module.named_parameters())


def test_a_fine_tuned_net_exports_and_onnxruntime_agrees(digits, tmp_path):
    X, y = digits
    estimator = fit(CLASSIFIERS["Pipeline-scaler-pca"][0], X, y)
    net = classifier_net(bridge.from_sklearn(estimator, trainable=True), max_epochs=1).fit(X, y)
    path = tmp_path / "finetuned.onnx"
    bridge.to_onnx(net, path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(None, {session.get_inputs()[0].name: X[:50]})
    np.testing.assert_allclose(probabilities, net.predict_proba(X[:50]), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(label, net.predict(X[:50]))


def test_unsupported_estimators_and_arguments_are_named(digits):
    X, y = digits
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit(X, y)
    with pytest.raises(UnsupportedEstimatorError, match="RandomForestClassifier.*LogisticRegression"):
        bridge.from_sklearn(forest, trainable=True)
    with pytest.raises(ConversionError, match="goes with trainable=True"):
        bridge.from_sklearn(forest, train_preprocessing=True)
    module = bridge.from_sklearn(fit(Ridge, X, X[:, 0]), trainable=True)
    with pytest.raises(TypeError, match="takes a torch.Tensor"):
        module(X)


def test_grid_search_clones_start_from_the_estimators_solution(digits):
    from sklearn.model_selection import GridSearchCV

    X, y = digits
    estimator = fit(CLASSIFIERS["LogisticRegression"][0], X, y)
    module = bridge.from_sklearn(estimator, trainable=True)
    before = weights(module)
    search = GridSearchCV(classifier_net(module, max_epochs=1), {"lr": [0.01, 0.1]}, cv=2)
    search.fit(X, y)
    assert all(torch.equal(p, before[n]) for n, p in module.named_parameters())  # clones trained
    assert search.best_estimator_.module_ is not module
    assert search.best_score_ > 0.8
