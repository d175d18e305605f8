"""bridge/sklearn/inputs.py: the serving case is recognised cheaply, and everything else
goes through the full conversion with the same results and the same errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import bridge
from bridge.sklearn import inputs


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    estimator = LogisticRegression(max_iter=300).fit(X, y)
    return estimator, bridge.from_sklearn(estimator), X


CPU = torch.device("cpu")


def test_plain_arrays_and_tensors_are_served_as_they_are(fitted, checks):
    _, model, X = fitted
    spec = model._input_spec
    served = spec.served(X, CPU)
    assert served is not None and served.data_ptr() == X.__array_interface__["data"][0]
    tensor = torch.from_numpy(X)
    assert spec.served(tensor, CPU) is tensor


@pytest.fixture(params=["C checks", "Python checks"])
def checks(request, monkeypatch):
    """Both ways of recognising the serving case: the C extension's and Python's."""
    if request.param == "C checks" and inputs._buffers is None:
        pytest.skip("bridge._buffers was not built (no C compiler at install)")
    if request.param == "Python checks":
        monkeypatch.setattr(inputs, "_buffers", None)
    return request.param


@pytest.mark.parametrize("variant", [
    "float64", "fortran", "strided", "big-endian", "int array", "list", "wrong width",
    "vector", "empty", "nan", "inf", "grad", "int tensor", "dataframe",
])
def test_anything_else_takes_the_full_path_with_the_same_answer_or_error(fitted, variant,
                                                                         checks):
    estimator, model, X = fitted
    spec = model._input_spec
    part = X[:6]
    values = {
        "float64": part.astype(np.float64),
        "fortran": np.asfortranarray(part),
        "strided": X[:12:2],
        "big-endian": part.astype(">f4"),
        "int array": np.rint(part * 3).astype(np.int64),
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


@pytest.mark.parametrize("c_check", [True, False], ids=["C loop", "sum"])
def test_large_finite_values_pass_the_served_nan_check(fitted, monkeypatch, c_check):
    """Large finite values are not refused. The C loop reads every value; without it a few
    are summed as Python floats (no overflow) and many by numpy in float32, whose
    overflowing sum sends them to the element-wise check, which lets them through."""
    if c_check and inputs._buffers is None:
        pytest.skip("bridge._buffers was not built (no C compiler at install)")
    if not c_check:
        monkeypatch.setattr(inputs, "_buffers", None)
    _, model, X = fitted
    spec = model._input_spec
    few = np.full((2, 5), 3e38, np.float32)
    assert spec.served(few, CPU) is not None
    assert spec.served(torch.from_numpy(few), CPU) is not None
    many = np.full((100, 5), 3e38, np.float32)
    if c_check:
        assert spec.served(many, CPU) is not None
    else:
        assert spec.served(many, CPU) is None  # float32 sum overflows: the full check decides
    assert model.predict(many).shape == (100,)
    for values in (few.copy(), many.copy()):
        for bad in (np.nan, np.inf, -np.inf):
            values[1, 2] = bad
            assert spec.served(values, CPU) is None
            assert spec.served(torch.from_numpy(values), CPU) is None
            assert spec.served(torch.from_numpy(values)[:, :5:1].t().contiguous().t(),
                               CPU) is None  # not contiguous: the sum decides
            with pytest.raises(ValueError, match="NaN" if bad != bad else "infinity"):
                model.predict(values)


def test_the_c_check_reads_offset_views_and_both_float_types():
    if inputs._buffers is None:
        pytest.skip("bridge._buffers was not built (no C compiler at install)")
    for dtype in (torch.float32, torch.float64):
        block = torch.zeros(50, dtype=dtype)
        block[3] = float("nan")
        assert not inputs._all_finite(block)
        assert inputs._all_finite(block[4:])  # data_ptr includes the offset
        assert not inputs._all_finite(block[:4].numpy())
        assert inputs._all_finite(block[4:].numpy())
        block[49] = float("-inf")
        assert not inputs._all_finite(block[4:])
    with pytest.raises(TypeError, match="float32"):
        inputs._buffers.finite_array(np.zeros(3, np.int64))


def test_served_results_match_the_full_path_bit_for_bit(fitted):
    _, model, X = fitted
    fast = model.predict_proba(X)
    slow = model.predict_proba(np.asfortranarray(X))  # the same values, the full path
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(model.predict(X), model.predict(X.tolist()))
