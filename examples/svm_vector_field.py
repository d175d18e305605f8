"""Differentiate a scikit-learn SVM through its ONNX graph: the gradient of P(class 1) as a vector field.

Fits ``SVC(probability=True)`` on two 2-D blobs, converts it with ``bridge.from_sklearn``
(scikit-learn → skl2onnx → ONNX → torch), asks torch.autograd for the gradient of
``predict_proba[:, 1]`` with respect to the input on a grid, and draws it as a quiver plot
over the probability map. Run ``python examples/svm_vector_field.py [--smoke] [--output PATH]``.
"""

from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

import bridge  # noqa: E402

DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "svm_vector_field.png")


def probability_gradient_field(model, low: float, high: float, steps: int):
    """Return grid coordinates, P(class 1) and its input gradient on a ``steps × steps`` grid."""
    axis = torch.linspace(low, high, steps, dtype=torch.float32)
    grid_x, grid_y = torch.meshgrid(axis, axis, indexing="xy")
    points = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1).requires_grad_(True)
    probability = model.predict_proba(points)[:, 1]
    (gradient,) = torch.autograd.grad(probability.sum(), points)
    shape = (steps, steps)
    return (grid_x.numpy(), grid_y.numpy(), probability.detach().reshape(shape).numpy(),
            gradient[:, 0].reshape(shape).numpy(), gradient[:, 1].reshape(shape).numpy())


def main(argv: list[str] | None = None) -> str:
    """Fit, convert, differentiate and plot; return the path of the written PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small grid, for CI")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="PNG path to write")
    arguments = parser.parse_args(argv)

    X, y = make_blobs(n_samples=200, centers=[(-1.5, -1.0), (1.5, 1.0)], cluster_std=1.0,
                      random_state=0)
    estimator = SVC(kernel="rbf", probability=True, random_state=0).fit(X, y)
    model = bridge.from_sklearn(estimator)

    steps = 12 if arguments.smoke else 40
    low, high = X.min() - 0.5, X.max() + 0.5
    grid_x, grid_y, probability, dx, dy = probability_gradient_field(model, low, high, steps)
    reference = estimator.predict_proba(np.stack([grid_x.ravel(), grid_y.ravel()], 1))[:, 1]
    deviation = np.abs(reference.reshape(probability.shape) - probability).max()
    print(f"max |P(class 1) torch - sklearn| on the grid: {deviation:.2e}")

    figure, axes = plt.subplots(figsize=(7, 6))
    contour = axes.contourf(grid_x, grid_y, probability, levels=20, cmap="coolwarm", alpha=0.8)
    figure.colorbar(contour, ax=axes, label="P(class 1) (SVC through ONNX → torch)")
    axes.quiver(grid_x, grid_y, dx, dy, color="black", alpha=0.7)
    axes.scatter(X[:, 0], X[:, 1], c=y, cmap="coolwarm", edgecolors="white", s=18)
    axes.set_title("∇ₓ P(class 1 | x) of an RBF SVC, by torch.autograd")
    axes.set_xlabel("x₁")
    axes.set_ylabel("x₂")
    figure.tight_layout()
    figure.savefig(arguments.output, dpi=110)
    plt.close(figure)
    print(f"wrote {arguments.output}")
    return arguments.output


if __name__ == "__main__":
    main()
