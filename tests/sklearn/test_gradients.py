"""Autograd through converted continuous models gives the true input gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bridge
from tests.sklearn.cases import fitted


def _central_differences(function, x: torch.Tensor, step: float = 1e-4) -> torch.Tensor:
    gradient = torch.zeros_like(x)
    for row in range(x.shape[0]):
        for column in range(x.shape[1]):
            shift = torch.zeros_like(x)
            shift[row, column] = step
            gradient[row, column] = (
                function(x + shift)[row] - function(x - shift)[row]
            ) / (2 * step)
    return gradient


@pytest.mark.parametrize(
    ("case", "data_name", "method", "column"),
    [
        ("MLPRegressor", "regression", "predict", None),
        ("MLPClassifier", "multiclass", "predict_proba", 2),
        ("LogisticRegression", "multiclass", "predict_proba", 0),
        ("Ridge", "regression", "predict", None),
        ("StandardScaler", "features", "transform", 1),
    ],
)
def test_input_gradient_matches_finite_differences(case, data_name, method, column):
    estimator, data = fitted(case, data_name)
    model = bridge.from_sklearn(estimator, dtype=np.float64)
    x = torch.tensor(data.X[:4], dtype=torch.float64, requires_grad=True)

    def output(inputs):
        values = getattr(model, method)(inputs)
        return values if column is None else values[:, column]

    output(x).sum().backward()
    expected = _central_differences(lambda v: output(v).detach(), x.detach())
    torch.testing.assert_close(x.grad, expected, rtol=1e-4, atol=1e-6)


def test_linear_regression_gradient_is_its_coefficients():
    estimator, data = fitted("LinearRegression", "regression")
    model = bridge.from_sklearn(estimator)
    x = torch.tensor(data.X[:3], dtype=torch.float32, requires_grad=True)
    model.predict(x).sum().backward()
    expected = np.tile(estimator.coef_, (3, 1))  # analytic gradient, used only to check
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_svc_decision_function_gradient_is_the_rbf_kernel_derivative():
    estimator, data = fitted("SVC-rbf", "binary")
    model = bridge.from_sklearn(estimator)
    x = torch.tensor(data.X[:5], dtype=torch.float32, requires_grad=True)
    model.decision_function(x).sum().backward()
    # reference only: d/dx sum_i a_i exp(-g |x - s_i|^2) = sum_i a_i K_i (-2 g) (x - s_i)
    support, alpha, gamma = estimator.support_vectors_, estimator.dual_coef_[0], estimator._gamma
    differences = data.X[:5, None, :] - support[None]
    kernel = np.exp(-gamma * (differences**2).sum(-1))
    expected = ((alpha * kernel)[..., None] * (-2 * gamma) * differences).sum(1)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-3, atol=1e-4)


def test_svc_probability_gradient_matches_finite_differences():
    estimator, data = fitted("SVC-rbf-proba", "binary")
    model = bridge.from_sklearn(estimator)
    x = torch.tensor(data.X[:3], dtype=torch.float32, requires_grad=True)
    model.predict_proba(x)[:, 1].sum().backward()
    # float32 graph (skl2onnx stores SVM coefficients in float32): coarse step, 2% tolerance
    expected = _central_differences(
        lambda v: torch.from_numpy(estimator.predict_proba(v.double().numpy())[:, 1]),
        x.detach().double(), step=1e-3,
    )
    torch.testing.assert_close(x.grad.double(), expected, rtol=2e-2, atol=2e-3)
