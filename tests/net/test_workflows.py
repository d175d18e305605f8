"""End-to-end workflows on small offline data: iris and digits MLPs, a CNN, pipelines, grid search, CV."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from bridge import NeuralNetClassifier
from bridge.callbacks import EpochScoring
from bridge.helper import SliceDataset
from tests.net.conftest import IrisMLP


class DigitsMLP(torch.nn.Module):
    def __init__(self, num_units: int = 64, dropout: float = 0.2):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(64, num_units), torch.nn.BatchNorm1d(num_units), torch.nn.ReLU(),
            torch.nn.Dropout(dropout), torch.nn.Linear(num_units, 10))

    def forward(self, X):
        return self.layers(X)


class DigitsCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, kernel_size=3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
        self.head = torch.nn.Linear(8 * 4 * 4, 10)

    def forward(self, X):
        return self.head(self.features(X).flatten(1))


def test_iris_mlp_fit_and_score(iris):
    X, y = iris
    net = NeuralNetClassifier(IrisMLP, max_epochs=20, lr=0.1, batch_size=16, iterator_train__shuffle=True, verbose=0)
    net.fit(X, y)
    assert net.score(X, y) > 0.85
    assert net.history[-1, "valid_loss"] < net.history[0, "valid_loss"]


def test_digits_mlp_with_batchnorm_dropout_and_adamw(digits):
    X, y = digits
    net = NeuralNetClassifier(
        DigitsMLP, criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.AdamW, lr=0.01,
        optimizer__weight_decay=0.05, max_epochs=8, batch_size=64, iterator_train__shuffle=True, verbose=0)
    net.fit(X, y)
    assert net.optimizer_.param_groups[0]["weight_decay"] == 0.05
    assert net.history[-1, "valid_acc"] > 0.85
    assert not net.module_.training  # predict and validation left it in eval mode
    np.testing.assert_array_equal(net.predict(X[:50]), net.predict(X[:50]))  # eval mode: no dropout noise


def test_small_cnn_on_8x8_digits_with_history(digits):
    X, y = digits
    images = X.reshape(-1, 1, 8, 8)
    net = NeuralNetClassifier(DigitsCNN, criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.Adam,
                              lr=0.01, max_epochs=4, batch_size=128, verbose=0)
    net.fit(images, y)
    assert net.n_features_in_ == 1  # the channel axis, as sklearn counts features of nd input
    train_losses = net.history[:, "train_loss"]
    assert len(train_losses) == 4 and train_losses[-1] < train_losses[0]
    batch_losses = net.history[:, "batches", :, "train_loss"]
    assert len(batch_losses) == 4 and len(batch_losses[0]) == int(np.ceil(len(y) * 0.8 / 128))
    assert net.history[-1, "valid_acc"] > 0.8
    assert net.predict_proba(images[:3]).shape == (3, 10)


def test_partial_fit_continues(iris):
    X, y = iris
    net = NeuralNetClassifier(IrisMLP, max_epochs=2, lr=0.1, verbose=0, train_split=None)
    for _ in range(3):
        net.partial_fit(X, y)
    assert len(net.history) == 6 and net.history[-1, "epoch"] == 6


def test_pipeline_with_grid_search(iris_data):
    X, y = iris_data
    pipeline = Pipeline([
        ("scale", StandardScaler()),
        ("net", NeuralNetClassifier(IrisMLP, max_epochs=5, lr=0.1, verbose=0, train_split=None)),
    ])
    grid = GridSearchCV(pipeline, {"net__lr": [0.05, 0.2], "net__max_epochs": [5, 10],
                                   "net__module__num_units": [8, 16]}, cv=3, refit=True)
    grid.fit(X, y)
    assert set(grid.best_params_) == {"net__lr", "net__max_epochs", "net__module__num_units"}
    assert grid.best_score_ > 0.6
    assert grid.best_estimator_.named_steps["net"].module_.dense.out_features == grid.best_params_["net__module__num_units"]


def test_cross_val_score_with_slice_dataset(iris):
    X, y = iris
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    net = NeuralNetClassifier(IrisMLP, max_epochs=10, lr=0.2, verbose=0, train_split=None,
                              iterator_train__shuffle=True)
    X_sl, y_sl = SliceDataset(dataset, idx=0), SliceDataset(dataset, idx=1)
    scores = cross_val_score(net, X_sl, np.asarray(y_sl), cv=3, scoring="accuracy")
    assert scores.shape == (3,) and scores.mean() > 0.5


def test_epoch_scoring_with_custom_scorer(iris):
    X, y = iris

    def worst_class_recall(net, X_valid, y_valid):
        predicted = net.predict(X_valid)
        return min(np.mean(predicted[y_valid == label] == label) for label in np.unique(y_valid))

    net = NeuralNetClassifier(IrisMLP, max_epochs=5, lr=0.1, verbose=0,
                              callbacks=[EpochScoring(worst_class_recall, lower_is_better=False)])
    net.fit(X, y)
    scores = net.history[:, "worst_class_recall"]
    assert len(scores) == 5 and all(0 <= s <= 1 for s in scores)
