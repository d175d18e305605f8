"""compile_for_serving (bridge/sklearn/compiled.py): AOTInductor-compiled methods.

Each compiled method must answer as the converted model does (tolerance: rtol 1e-5 /
atol 1e-6 against the eager model: inductor may fuse float32 operations differently;
labels exactly), at any batch size including the chunked and the empty one, and refuse
what the model refuses with the same errors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import bridge
from bridge.errors import ConversionError
from bridge.sklearn.compiled import CompiledMethod, compile_for_serving
from tests.parity import assert_parity

TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    return X, y


@pytest.fixture(scope="module")
def pipeline(data):
    X, y = data
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(frame, y)
    model = bridge.from_sklearn(estimator)
    return estimator, model, compile_for_serving(model, ["predict", "predict_proba"])


def test_compiled_pipeline_answers_like_the_model(pipeline, data):
    estimator, model, compiled = pipeline
    assert compiled.methods == ("predict", "predict_proba")
    assert all(seconds > 0 for seconds in compiled.compile_seconds.values())
    X = data[0]
    for rows in (1, 7, 300):
        batch = X[:rows]
        assert_parity(compiled.predict_proba(batch), model.predict_proba(batch), **TOLERANCE)
        np.testing.assert_array_equal(compiled.predict(batch), estimator.predict(batch))
    frame = pd.DataFrame(X[:4], columns=[f"f{i}" for i in range(5)])
    assert_parity(compiled.predict_proba(frame), estimator.predict_proba(frame), **TOLERANCE)
    tensor = compiled.predict_proba(torch.from_numpy(X[:3]))
    assert isinstance(tensor, torch.Tensor) and not tensor.requires_grad


def test_compiled_model_refuses_what_the_model_refuses(pipeline, data):
    _, model, compiled = pipeline
    X = data[0]
    for bad in (X[:, :4], X[0], np.full((2, 5), np.nan, np.float32)):
        with pytest.raises(ValueError) as expected:
            model.predict_proba(bad)
        with pytest.raises(ValueError) as got:
            compiled.predict_proba(bad)
        assert str(got.value) == str(expected.value)
    with pytest.raises(ValueError, match="requires grad"):
        compiled.predict_proba(torch.from_numpy(X[:2]).requires_grad_(True))
    assert compiled.predict_proba(X[:0]).shape == (0, 3)  # the empty batch runs eagerly
    with pytest.raises(AttributeError):
        compiled.decision_function  # noqa: B018  (not compiled)


def test_compile_arguments_are_checked(pipeline):
    _, model, _ = pipeline
    with pytest.raises(ValueError, match="no converted method 'transform'"):
        compile_for_serving(model, ["transform"])
    with pytest.raises(ValueError, match="batch_hint must be a positive int"):
        compile_for_serving(model, batch_hint=0)
    with pytest.raises(ValueError, match="trees must be 'eager' or 'compile'"):
        compile_for_serving(model, trees="never")
    with pytest.raises(TypeError, match="converted model"):
        compile_for_serving(LogisticRegression())
    graph = model.graph_modules[model._method_outputs["predict"].graph]  # an imported graph
    with pytest.raises(TypeError, match=r"use bridge\.onnx\.compile_for_serving\(module, "):
        compile_for_serving(graph)


def test_forest_compiles_with_a_fixed_strategy_and_splits_large_batches(data):
    X, y = data
    forest = RandomForestClassifier(10, max_depth=4, random_state=0).fit(X, y)
    model = bridge.from_sklearn(forest)
    kept = compile_for_serving(model)  # by default tree methods stay eager, and say why
    assert kept.compile_seconds == {} and set(kept.eager_methods) == set(model._method_outputs)
    assert "C walk" in kept.eager_methods["predict_proba"]
    assert_parity(kept.predict_proba(X[:5]), forest.predict_proba(X[:5]), **TOLERANCE)
    compiled = compile_for_serving(model, ["predict_proba"], batch_hint=100, trees="compile")
    method = compiled._runners["predict_proba"]
    assert method.max_rows is not None  # tree chunks bound one run
    assert_parity(compiled.predict_proba(X), forest.predict_proba(X), **TOLERANCE)
    small = CompiledMethod(method.runner, max_rows=7)  # the caller splits into runs of 7
    inputs = [torch.from_numpy(X[:30])]
    torch.testing.assert_close(small(inputs), method(inputs))
    trees = [m for m in model.modules() if type(m).__name__ == "TreeEnsembleModule"]
    assert all(tree.strategy == "auto" for tree in trees)  # restored after export


def test_a_method_that_cannot_export_names_itself(data, monkeypatch):
    X, y = data
    model = bridge.from_sklearn(LogisticRegression(max_iter=200).fit(X, y))

    def refuse(*args, **kwargs):
        raise RuntimeError("unsupported here")

    monkeypatch.setattr(torch.export, "export", refuse)
    with pytest.raises(ConversionError, match=r"LogisticRegression\.predict could not be "
                                              r"compiled .*unsupported here"):
        compile_for_serving(model, ["predict"])


def test_compiled_results_have_the_models_shapes_and_dtypes(data):
    """The exported function returns each method's result shaped (a binary decision's
    positive column, a single target flat); numpy and tensor calls, text and integer
    labels, and a non-contiguous tensor all answer as the converted model does."""
    from sklearn.linear_model import Ridge

    X, y = data
    words = np.array(["no", "yes"])[(y > 0).astype(int)]
    binary = bridge.from_sklearn(LogisticRegression(max_iter=300).fit(X, words))
    ridge = bridge.from_sklearn(Ridge().fit(X, y.astype(np.float64)))
    cases = [(binary, compile_for_serving(binary, ["predict", "decision_function"])),
             (ridge, compile_for_serving(ridge, ["predict"]))]
    view = torch.from_numpy(np.ascontiguousarray(X[:6].T)).t()  # values of X[:6], strided
    assert not view.is_contiguous()
    for model, compiled in cases:
        for method in compiled.methods:
            for batch in (X[:1], X[:6], torch.from_numpy(X[:6]), view):
                expected = getattr(model, method)(batch)
                got = getattr(compiled, method)(batch)
                assert type(got) is type(expected)
                assert got.shape == expected.shape and got.dtype == expected.dtype
                if isinstance(got, np.ndarray) and got.dtype.kind in "OU":  # text labels
                    np.testing.assert_array_equal(got, expected)
                else:
                    assert_parity(got, expected, **TOLERANCE)
