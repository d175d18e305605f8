"""Digits with a BatchNorm/Dropout MLP (the second seed), timed against scikit-learn as the data grows.

The net trains with AdamW and weight decay, on CUDA when available; the training set is tiled
1×, 10× and 100×, and a scikit-learn LogisticRegression is timed on the same data. A plot of
training time against rows is written to ``--plot``.
Run: ``python examples/digits_scaling.py [--smoke] [--plot digits_scaling.png]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from torch import nn

from bridge import NeuralNetClassifier


class DigitsMLP(nn.Module):
    """64 pixels → 10 class probabilities, with BatchNorm and Dropout (as in the seed)."""

    def __init__(self, num_units: int = 256, nonlin: nn.Module | None = None):
        super().__init__()
        self.dense0 = nn.Linear(64, num_units)
        self.bn0 = nn.BatchNorm1d(num_units)
        self.nonlin = nonlin or nn.ReLU()
        self.dropout = nn.Dropout(0.3)
        self.dense1 = nn.Linear(num_units, num_units // 2)
        self.dense2 = nn.Linear(num_units // 2, num_units // 4)
        self.output = nn.Linear(num_units // 4, 10)

    def forward(self, X):
        X = self.dropout(self.nonlin(self.bn0(self.dense0(X))))
        X = self.nonlin(self.dense1(X))
        X = self.nonlin(self.dense2(X))
        return torch.softmax(self.output(X), dim=-1)  # probabilities: NLLLoss on their log


def timed(model, X_train, y_train, X_test, y_test) -> tuple[float, float]:
    started = time.perf_counter()
    model.fit(X_train, y_train)
    seconds = time.perf_counter() - started
    return seconds, model.score(X_test, y_test)


def main(smoke: bool = False, plot: str | None = None) -> list[dict]:
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=42)
    X_train, X_test = (X_train / 16.0).astype(np.float32), (X_test / 16.0).astype(np.float32)
    rows = []
    for multiplier in ([1, 2] if smoke else [1, 10, 100]):
        X_big, y_big = np.tile(X_train, (multiplier, 1)), np.tile(y_train, multiplier)
        net = NeuralNetClassifier(
            DigitsMLP, max_epochs=2 if smoke else 20, lr=5e-4, optimizer=torch.optim.AdamW,
            optimizer__weight_decay=1e-3, iterator_train__shuffle=True, device=device, verbose=0,
        )
        for model in (net, LogisticRegression(max_iter=200 if smoke else 1000)):
            seconds, accuracy = timed(model, X_big, y_big, X_test, y_test)
            rows.append({"rows": len(X_big), "model": type(model).__name__,
                         "seconds": seconds, "accuracy": accuracy})
            print(f"{len(X_big):>7} rows  {type(model).__name__:<20} fit {seconds:6.2f} s  "
                  f"accuracy {accuracy:.3f}  ({device if model is net else 'cpu'})")
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(5, 3.5))
        for name in dict.fromkeys(r["model"] for r in rows):
            points = [(r["rows"], r["seconds"]) for r in rows if r["model"] == name]
            axis.plot(*zip(*points), marker="o", label=name)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("training rows")
        axis.set_ylabel("fit time (s)")
        axis.legend()
        figure.tight_layout()
        figure.savefig(plot, dpi=110)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small data, 2 epochs (for CI)")
    parser.add_argument("--plot", help="write the timing plot (PNG) here")
    arguments = parser.parse_args()
    main(arguments.smoke, arguments.plot)
