"""The numpy path of tree-ensemble operators: numpy rows in, numpy results out, one C call
and no tensor made (bridge/trees/serving.py ``classify_array``/``regress_array``, reached
through bridge/onnx/plans.py ``array_plan_for`` from a converted model's numpy calls).

Its results must equal the tensor path's bit for bit (the same C walk), dtype and shape
included; every call it does not serve (text labels, the C walk switched off, an operator
with hooks, edited tables) must still answer correctly through the tensor path.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier

import bridge
from bridge.onnx.plans import array_plan_for
from bridge.trees import fused, native, serving
from tests.trees.test_serving import CASES, data, operator_of, probe

built = pytest.mark.skipif(native._walk is None or serving.address is None,
                           reason="the C walk or bridge._buffers is not built here")


def methods(estimator) -> list[str]:
    return [m for m in ("predict", "predict_proba", "decision_function")
            if hasattr(estimator, m)]


def numpy_plan(model, method):
    output = model._method_outputs[method]
    return array_plan_for(model.graph_modules[output.graph], (output.output,))


@built
@pytest.mark.parametrize(("name", "estimator"), CASES, ids=[c[0] for c in CASES])
def test_numpy_calls_equal_the_tensor_paths_bit_for_bit(name, estimator, monkeypatch):
    model = bridge.from_sklearn(estimator)
    x = probe(estimator)
    served = 0
    for method in methods(estimator):
        plan = numpy_plan(model, method)
        for rows in (1, 7, 64):
            part = np.ascontiguousarray(x[:rows])
            got = getattr(model, method)(part)
            with monkeypatch.context() as patch:  # no addresses: the tensor path
                patch.setattr(serving, "address", None)
                expected = getattr(model, method)(part)
            assert got.dtype == expected.dtype and got.shape == expected.shape, (name, method)
            np.testing.assert_array_equal(got, expected)
            if plan is not None and plan(part) is not None:
                served += 1
    if name != "et3-strings":  # (text labels: the vocabulary is applied on the tensor path)
        assert served, f"{name}: no method took the numpy path"


@built
def test_what_the_numpy_path_declines_takes_the_tensor_path(monkeypatch):
    estimator = dict(CASES)["hgb3"]
    model = bridge.from_sklearn(estimator)
    x = np.ascontiguousarray(probe(estimator)[:5])
    expected = estimator.predict_proba(x)
    plan = numpy_plan(model, "predict_proba")
    assert plan is not None and plan(x) is not None
    for declined in (x.astype(np.float64), np.asfortranarray(x), x[::1, :].T.copy().T):
        assert plan(declined) is None or declined.dtype == np.float64
        np.testing.assert_allclose(model.predict_proba(declined), expected, rtol=1e-4,
                                   atol=1e-5)
    with fused.switched_off():  # BRIDGE_TREE_KERNEL=0: the torch walk
        assert plan(x) is None
        np.testing.assert_allclose(model.predict_proba(x), expected, rtol=1e-4, atol=1e-5)
    operator = operator_of(model)
    handle = operator.register_forward_hook(lambda *args: None)
    try:
        model.graph_modules[model._method_outputs["predict_proba"].graph].recompile()
        assert numpy_plan(model, "predict_proba") is None  # hooks keep the module call
        np.testing.assert_allclose(model.predict_proba(x), expected, rtol=1e-4, atol=1e-5)
    finally:
        handle.remove()


@built
def test_edits_of_the_tables_are_seen_by_numpy_calls():
    x, y3 = data()
    model = bridge.from_sklearn(HistGradientBoostingClassifier(max_iter=10,
                                                               random_state=0).fit(x, y3))
    part = np.ascontiguousarray(x[:4])
    before = model.predict_proba(part)
    aggregator = operator_of(model).trees.aggregators["traversal"]
    with torch.no_grad():
        aggregator.values32.mul_(3.0)
    after = model.predict_proba(part)
    assert not np.array_equal(after, before)
    with torch.no_grad():
        np.testing.assert_array_equal(after, model.predict_proba(torch.from_numpy(part)).numpy())


def test_the_numpy_plan_exists_only_for_one_operator_on_the_input():
    from sklearn.linear_model import LogisticRegression

    x, y3 = data()
    linear = bridge.from_sklearn(LogisticRegression(max_iter=300).fit(x, y3))
    assert numpy_plan(linear, "predict_proba") is None
