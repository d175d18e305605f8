"""An MNIST-style workflow (the skorch talk and the CNN article) on scikit-learn's 8×8 digits, offline.

An MLP and a small CNN, history inspection, partial_fit, EpochScoring, Pipeline +
GridSearchCV, cross_val_score through SliceDataset, and a confusion-matrix plot.
Run: ``python examples/mnist_style.py [--smoke] [--plot confusion.png]``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler
from torch import nn
from torch.utils.data import TensorDataset

from bridge import NeuralNetClassifier
from bridge.callbacks import EpochScoring
from bridge.helper import SliceDataset


class ClassifierModule(nn.Module):
    """The talk's MLP: one hidden layer with dropout, softmax output."""

    def __init__(self, hidden_dim: int = 98, dropout: float = 0.5):
        super().__init__()
        self.hidden = nn.Linear(64, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_dim, 10)

    def forward(self, X):
        X = self.dropout(torch.relu(self.hidden(X)))
        return torch.softmax(self.output(X), dim=-1)


class Cnn(nn.Module):
    """The article's two-convolution CNN, scaled to 8×8 images."""

    def __init__(self, dropout: float = 0.3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(32 * 2 * 2, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, X):
        X = torch.max_pool2d(torch.relu(self.conv1(X)), 2)          # 8×8 → 4×4
        X = torch.max_pool2d(torch.relu(self.conv2(X)), 2)          # 4×4 → 2×2
        X = self.dropout(X.flatten(1))
        X = torch.relu(self.fc1(X))
        return torch.softmax(self.fc2(X), dim=-1)


def main(smoke: bool = False, plot: str | None = None) -> dict:
    torch.manual_seed(0)
    epochs = 2 if smoke else 20
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    results = {}

    # 1. The MLP with an extra scoring callback; inspect the history.
    mlp = NeuralNetClassifier(
        ClassifierModule, max_epochs=epochs, lr=0.1, verbose=0,
        callbacks=[EpochScoring("f1_macro", name="valid_f1", lower_is_better=False)],
    )
    mlp.fit(X_train, y_train)
    print("MLP epochs:", mlp.history[:, "epoch"])
    print("train loss per epoch:", np.round(mlp.history[:, "train_loss"], 3))
    print("valid f1 of the last epoch:", round(mlp.history[-1, "valid_f1"], 3))
    print("batch losses of epoch 1:", len(mlp.history[0, "batches", :, "train_loss"]), "batches")
    results["mlp_accuracy"] = mlp.score(X_test, y_test)

    # 2. partial_fit continues where fit stopped.
    before = len(mlp.history)
    mlp.partial_fit(X_train, y_train)
    print(f"partial_fit: {before} → {len(mlp.history)} epochs")

    # 3. The CNN on images of shape (1, 8, 8).
    images_train, images_test = X_train.reshape(-1, 1, 8, 8), X_test.reshape(-1, 1, 8, 8)
    cnn = NeuralNetClassifier(Cnn, max_epochs=epochs, lr=0.002,
                              optimizer=torch.optim.Adam, verbose=0)
    cnn.fit(images_train, y_train)
    predictions = cnn.predict(images_test)
    results["cnn_accuracy"] = float(np.mean(predictions == y_test))
    print(f"MLP accuracy {results['mlp_accuracy']:.3f}, CNN accuracy {results['cnn_accuracy']:.3f}")

    # 4. Pipeline + GridSearchCV over the net's routed parameters.
    pipeline = Pipeline([
        ("scale", MinMaxScaler()),
        ("net", NeuralNetClassifier(ClassifierModule, max_epochs=epochs, lr=0.1,
                                    train_split=None, verbose=0)),
    ])
    grid = {"net__lr": [0.05, 0.1], "net__module__hidden_dim": [32, 98]}
    search = GridSearchCV(pipeline, grid, cv=2 if smoke else 3, scoring="accuracy", refit=False)
    search.fit(X_train, y_train)
    print("grid search best:", search.best_params_, round(search.best_score_, 3))
    results["grid_best"] = search.best_params_

    # 5. cross_val_score on a torch Dataset through SliceDataset.
    dataset = TensorDataset(torch.from_numpy(X_train), torch.from_numpy(y_train))
    net = NeuralNetClassifier(ClassifierModule, max_epochs=epochs, lr=0.1, train_split=None,
                              verbose=0)
    scores = cross_val_score(net, SliceDataset(dataset, idx=0), y_train, cv=2 if smoke else 3,
                             scoring="accuracy")
    print("cross_val_score:", np.round(scores, 3))
    results["cv_scores"] = scores

    # 6. Confusion matrix of the CNN.
    matrix = confusion_matrix(y_test, predictions)
    results["confusion"] = matrix
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(4.5, 4))
        axis.imshow(matrix, cmap="Blues")
        axis.set_xlabel("predicted digit")
        axis.set_ylabel("true digit")
        axis.set_title("CNN on 8×8 digits")
        for (i, j), count in np.ndenumerate(matrix):
            axis.text(j, i, count, ha="center", va="center", fontsize=7)
        figure.tight_layout()
        figure.savefig(plot, dpi=110)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 epochs, small CV (for CI)")
    parser.add_argument("--plot", help="write the confusion matrix (PNG) here")
    arguments = parser.parse_args()
    main(arguments.smoke, arguments.plot)
