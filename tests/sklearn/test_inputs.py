"""bridge/sklearn/inputs.py: the serving case is recognised cheaply, and everything else
goes through the full conversion with the same results and the same errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import bridge


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    estimator = LogisticRegression(max_iter=300).fit(X, y)
    return estimator, bridge.from_sklearn(estimator), X


CPU = torch.device("cpu")


def test_plain_arrays_and_tensors_are_served_as_they_are(fitted):
    _, model, X = fitted
    spec = model._input_spec
    served = spec.served(X, CPU)
    assert served is not None and served.data_ptr() == X.__array_interface__["data"][0]
    tensor = torch.from_numpy(X)
    assert spec.served(tensor, CPU) is tensor


@pytest.mark.parametrize("variant", [
    "float64", "fortran", "list", "wrong width", "vector", "empty", "nan", "inf",
    "grad", "int tensor", "dataframe",
])
def test_anything_else_takes_the_full_path_with_the_same_answer_or_error(fitted, variant):
    estimator, model, X = fitted
    spec = model._input_spec
    part = X[:6]
    values = {
        "float64": part.astype(np.float64),
        "fortran": np.asfortranarray(part),
        "list": part.tolist(),
        "wrong width": part[:, :4],
        "vector": part[0],
        "empty": part[:0],
        "nan": np.where(np.eye(6, 5, dtype=bool), np.nan, part).astype(np.float32),
        "inf": np.where(np.eye(6, 5, dtype=bool), np.inf, part).astype(np.float32),
        "grad": torch.from_numpy(part.copy()).requires_grad_(),
        "int tensor": torch.from_numpy(np.rint(part * 3).astype(np.int64)),
        "dataframe": pytest.importorskip("pandas").DataFrame(part),
    }[variant]
    assert spec.served(values, CPU) is None
    if variant in ("wrong width", "vector", "nan", "inf"):
        words = {"wrong width": "5 features", "vector": "Reshape", "nan": "NaN",
                 "inf": "infinity"}[variant]
        with pytest.raises(ValueError, match=words):
            model.predict_proba(values)
        return
    if variant == "empty":
        assert model.predict_proba(values).shape == (0, 3)
        return
    result = model.predict_proba(values)
    if isinstance(result, torch.Tensor):
        assert result.requires_grad == (variant == "grad")
        result = result.detach().numpy()
        values = values.detach().numpy()
    expected = estimator.predict_proba(np.asarray(values, dtype=np.float64))
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)


def test_a_finite_sum_is_the_only_nan_check_on_the_served_path(fitted):
    """Large finite values are not refused: a few are summed as Python floats (no
    overflow), many by numpy in float32, whose overflowing sum sends them to the
    element-wise check, which lets them through."""
    _, model, X = fitted
    spec = model._input_spec
    few = np.full((2, 5), 3e38, np.float32)
    assert spec.served(few, CPU) is not None
    assert spec.served(torch.from_numpy(few), CPU) is not None
    many = np.full((100, 5), 3e38, np.float32)
    assert spec.served(many, CPU) is None  # float32 sum overflows: the full check decides
    assert model.predict(many).shape == (100,)
    for values in (few.copy(), many.copy()):
        values[1, 2] = np.nan
        assert spec.served(values, CPU) is None
        assert spec.served(torch.from_numpy(values), CPU) is None


def test_served_results_match_the_full_path_bit_for_bit(fitted):
    _, model, X = fitted
    fast = model.predict_proba(X)
    slow = model.predict_proba(np.asfortranarray(X))  # the same values, the full path
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(model.predict(X), model.predict(X.tolist()))
