"""Classifier, binary classifier and regressor: targets, labels, probabilities and input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bridge import NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor
from tests.net.conftest import IrisMLP, LogitMLP


def test_string_labels_are_encoded_and_decoded(iris):
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    net = NeuralNetClassifier(IrisMLP, max_epochs=20, lr=0.2, verbose=0).fit(X, names)
    assert net.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    assert set(net.predict(X)) <= set(net.classes_)
    assert net.score(X, names) > 0.8
    assert 0.0 <= net.history[-1, "valid_acc"] <= 1.0  # valid_acc compares decoded labels


def test_default_callbacks_differ_between_classifier_and_regressor():
    classifier_names = [n for n, _ in NeuralNetClassifier(IrisMLP).get_default_callbacks()]
    regressor_names = [n for n, _ in NeuralNetRegressor(LogitMLP).get_default_callbacks()]
    assert classifier_names == ["epoch_timer", "train_loss", "valid_loss", "valid_acc", "print_log"]
    assert regressor_names == ["epoch_timer", "train_loss", "valid_loss", "print_log"]


def test_classifier_target_errors(iris):
    X, y = iris
    net = NeuralNetClassifier(IrisMLP, max_epochs=1, verbose=0, train_split=None)
    with pytest.raises(ValueError, match="Unknown label type"):
        net.fit(X, X[:, 0])
    with pytest.raises(ValueError, match="module outputs 3 columns but there are 4 classes"):
        net.fit(np.vstack([X, X[:10]]), np.concatenate([y, np.full(10, 3)]))
    with pytest.raises(ValueError, match="requires y"):
        net.fit(X, None)
    with pytest.raises(ValueError, match="NaN"):
        net.fit(np.where(X > 2, np.nan, X), y)
    with pytest.raises(ValueError, match="0 sample"):
        net.fit(X[:0], y[:0])


def test_classes_parameter_and_partial_fit_with_unseen_labels(iris):
    X, y = iris
    net = NeuralNetClassifier(IrisMLP, max_epochs=2, verbose=0, train_split=None, classes=[0, 1, 2])
    net.partial_fit(X[y < 2], y[y < 2])
    assert net.classes_.tolist() == [0, 1, 2]
    net.partial_fit(X, y)
    assert len(net.history) == 4
    with pytest.raises(ValueError, match="not in classes_"):
        net.partial_fit(X[:5], np.full(5, 7))


def test_cross_entropy_uses_softmax_in_predict_proba(iris):
    X, y = iris
    net = NeuralNetClassifier(LogitMLP, criterion=torch.nn.CrossEntropyLoss, max_epochs=5, lr=0.1, verbose=0).fit(X, y)
    proba = net.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(net.predict(X), proba.argmax(1))


def test_binary_classifier(iris):
    X, y = iris
    yb = (y == 0).astype(np.int64)
    net = NeuralNetBinaryClassifier(LogitMLP, module__n_out=1, max_epochs=10, lr=0.2, verbose=0)
    net.fit(X, yb)
    proba = net.predict_proba(X)
    assert proba.shape == (150, 2)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-6)
    np.testing.assert_array_equal(net.predict(X), (proba[:, 1] > 0.5).astype(int))
    assert net.set_params(threshold=0.99).predict(X).sum() <= (proba[:, 1] > 0.5).sum()
    assert net.set_params(threshold=0.5).score(X, yb) > 0.9 and "valid_acc" in net.history[-1]
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        net.fit(X, y)
    with pytest.raises(ValueError, match=r"shape \(n,\) or \(n, 1\)"):
        NeuralNetBinaryClassifier(LogitMLP, module__n_out=2, max_epochs=1, verbose=0).fit(X, yb)
    labels = np.where(yb == 1, "yes", "no")
    fitted = NeuralNetBinaryClassifier(LogitMLP, module__n_out=1, max_epochs=3, verbose=0).fit(X, labels)
    assert set(fitted.predict(X)) <= {"no", "yes"}


def test_regressor_accepts_1d_and_2d_targets(iris):
    X, _ = iris
    target = X[:, :1] * 2 + 1
    net = NeuralNetRegressor(LogitMLP, module__n_in=3, module__n_out=1, max_epochs=20, lr=0.05,
                             optimizer=torch.optim.Adam, verbose=0, train_split=None)
    net.fit(X[:, 1:], target.ravel())
    assert net.predict(X[:, 1:]).shape == (150,)
    net.fit(X[:, 1:], target)
    assert net.predict(X[:, 1:]).shape == (150, 1)
    assert net.score(X[:, 1:], target) > 0.3
    two = NeuralNetRegressor(LogitMLP, module__n_in=3, module__n_out=2, max_epochs=2, verbose=0)
    assert two.fit(X[:, 1:], X[:, :2].astype(np.float64)).predict(X[:, 1:]).shape == (150, 2)
    with pytest.raises(ValueError, match="infinity"):
        net.fit(X[:, 1:], np.full(150, np.inf))
