"""Fine-tuning: a scikit-learn pipeline fitted on digits keeps training by backprop on new,
shifted digits, inside the scikit-learn API, then leaves as an ONNX file.

scikit-learn fits StandardScaler + LogisticRegression on one half of the 8×8 digits. The
other half arrives later, drawn one pixel to the right (a scanner moved): the fitted model
loses accuracy there. ``bridge.from_sklearn(pipeline, trainable=True)`` turns the pipeline
into a torch module that starts from scikit-learn's solution (same score before training),
``NeuralNetClassifier`` fine-tunes it on a few hundred shifted digits, and ``bridge.to_onnx``
writes the result, which onnxruntime then serves.
Run: ``python examples/finetune_sklearn.py [--smoke] [--output DIR]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

import bridge


def shifted(X: np.ndarray, pixels: int = 1) -> np.ndarray:
    """The 8×8 images moved ``pixels`` to the right (the left columns left blank)."""
    images = X.reshape(-1, 8, 8)
    moved = np.zeros_like(images)
    moved[:, :, pixels:] = images[:, :, :-pixels]
    return moved.reshape(len(X), 64)


def data():
    """Old digits to fit on; new (shifted) digits to fine-tune on and to test on."""
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    X_old, X_new, y_old, y_new = train_test_split(X, y, test_size=0.5, random_state=0,
                                                  stratify=y)
    X_tune, X_test, y_tune, y_test = train_test_split(shifted(X_new), y_new, train_size=300,
                                                      random_state=0, stratify=y_new)
    return (X_old, y_old), (X_tune, y_tune), (X_test, y_test)


def tuner(pipeline, train_scaler: bool, epochs: int) -> bridge.NeuralNetClassifier:
    """A net on the pipeline's trainable module, initialized: scikit-learn's solution."""
    torch.manual_seed(0)
    module = bridge.from_sklearn(pipeline, trainable=True, train_preprocessing=train_scaler)
    return bridge.NeuralNetClassifier(
        module, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.SGD, lr=0.02,
        max_epochs=epochs, batch_size=32, train_split=None, verbose=0).initialize()


def main(smoke: bool = False, output: str | None = None) -> dict:
    torch.manual_seed(0)
    (X_old, y_old), (X_tune, y_tune), (X_test, y_test) = data()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X_old, y_old)

    scores = {"sklearn_on_shifted": pipeline.score(X_test, y_test)}
    folder = Path(output or tempfile.mkdtemp())
    for label, train_scaler in (("frozen_scaler", False), ("trained_scaler", True)):
        net = tuner(pipeline, train_scaler, epochs=5 if smoke else 40)
        classes = net.module_.classes_  # the logits follow the estimator's classes_
        scores[f"{label}_before"] = net.score(X_test, np.searchsorted(classes, y_test))
        net.fit(X_tune, np.searchsorted(classes, y_tune))
        scores[f"{label}_after"] = net.score(X_test, np.searchsorted(classes, y_test))
        scores[f"{label}_on_old_digits"] = net.score(X_old, np.searchsorted(classes, y_old))
    path = folder / "finetuned_digits.onnx"
    bridge.to_onnx(net, path)  # the last one: scaler and classifier, one graph
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    served, _ = session.run(None, {session.get_inputs()[0].name: X_test})
    scores["onnxruntime_agrees"] = float(np.mean(served == net.predict(X_test)))
    for name, value in scores.items():
        print(f"{name:>28}: {value:.3f}")
    print(f"written: {path}")
    return scores


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a short training run (for CI)")
    parser.add_argument("--output", help="folder for the .onnx file (default: a temp folder)")
    arguments = parser.parse_args()
    main(arguments.smoke, arguments.output)
