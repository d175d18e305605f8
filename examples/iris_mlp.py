"""Iris with a plain MLP (the first seed): fit a NeuralNetClassifier, score on a held-out split.

Run: ``python examples/iris_mlp.py`` (``--smoke`` for a fast run).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from torch import nn

from bridge import NeuralNetClassifier


class IrisMLP(nn.Module):
    """Four features in, three class scores out."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 3),
        )

    def forward(self, X):
        return self.layers(X)


def main(smoke: bool = False) -> float:
    torch.manual_seed(0)
    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0,
                                                        stratify=y)
    net = NeuralNetClassifier(
        IrisMLP,
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=0.01,
        max_epochs=10 if smoke else 100,
        batch_size=16,
        verbose=0 if smoke else 1,
    )
    net.fit(X_train, y_train)
    accuracy = net.score(X_test, y_test)
    print(f"held-out accuracy: {accuracy:.3f} after {len(net.history)} epochs "
          f"(last valid_acc {net.history[-1, 'valid_acc']:.3f})")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few epochs only (for CI)")
    main(parser.parse_args().smoke)
