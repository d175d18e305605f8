"""from_sklearn parity over the whole coverage list: vs scikit-learn and vs onnxruntime.

Tolerances are stated in tests/sklearn/checks.py; looser ones, with reasons, in
``cases.LOOSE_TOLERANCE``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bridge
from bridge.onnx.plans import plan_for
from tests.parity import assert_parity, run_onnxruntime
from tests.sklearn.cases import LOOSE_TOLERANCE, case_params, fitted
from tests.sklearn.checks import assert_method_matches, predicts_labels

PARAMS = case_params()


@pytest.mark.parametrize(("case", "data_name"), PARAMS, ids=[f"{c}-{d}" for c, d in PARAMS])
def test_matches_sklearn_and_onnxruntime(case, data_name):
    estimator, data = fitted(case, data_name)
    model = bridge.from_sklearn(estimator)
    X = data.X
    loose = LOOSE_TOLERANCE.get(case, 1.0)
    expected_methods = [
        m for m in ("predict", "predict_proba", "predict_log_proba", "decision_function",
                    "transform", "score_samples") if hasattr(estimator, m)
    ]
    assert list(model.methods) == expected_methods
    converted = [m for m in expected_methods if m in model._method_outputs]
    assert converted, f"{case}: no method converted"
    for method in converted:
        assert_method_matches(estimator, model, method, X, predicts_labels(estimator), loose)
    # the same graphs in onnxruntime give the same raw outputs
    graphs = model.onnx_model if isinstance(model.onnx_model, dict) else {
        converted[0]: model.onnx_model
    }
    for method, graph in graphs.items():
        feeds = {graph.graph.input[0].name: X.astype(model._input_spec.dtype)}
        if case in ("LabelBinarizer", "LabelEncoder"):
            feeds = {graph.graph.input[0].name: X.astype(np.int64)}
        reference = run_onnxruntime(graph, feeds)
        actual = model.raw_outputs(method, X)
        for index, (a, r) in enumerate(zip(actual, reference)):
            if r.dtype.kind in "OUS":
                continue  # string labels: compared decoded, against sklearn, above
            if graph.graph.output[index].name.endswith("_log"):  # log(0) = -inf in either
                a, r = np.exp(a.numpy()), np.exp(r)
            assert_parity(a, r, rtol=1e-4 * loose, atol=1e-4 * loose,
                          what=f"{case}.{method} output {index} vs onnxruntime")
    assert_plans_match_full_graphs(model, X, case)


def assert_plans_match_full_graphs(model, X, case: str) -> None:
    """The serving plans the methods run (bridge/onnx/plans.py) give what the full graph
    gives: exactly, but for fused dense layers (addmm rounds once where MatMul + Add round
    twice; after cancellation that is ULPs of the terms, not of the result: atol 1e-5)."""
    for method, output in model._method_outputs.items():
        graph = model.graph_modules[output.graph]
        inputs, _ = model._input_spec.prepare(X, model._device(), graph.input_vocabularies)
        with torch.no_grad():
            full = graph(*inputs)
            full = full[output.output] if isinstance(full, tuple) else full
            (planned,) = plan_for(graph, (output.output,))(graph, *inputs)
        assert_parity(planned, full, rtol=1e-6, atol=1e-5,
                      what=f"{case}.{method}: plan vs full graph")


@pytest.mark.parametrize("case", ["LogisticRegression", "SVC-rbf-proba", "RandomForestClassifier"])
def test_tensor_in_tensor_out(case):
    estimator, data = fitted(case, "multiclass")
    model = bridge.from_sklearn(estimator)
    X = torch.from_numpy(data.X.astype(np.float32))
    labels = model.predict(X)
    assert isinstance(labels, torch.Tensor) and labels.dtype == torch.int64
    np.testing.assert_array_equal(labels.numpy(), estimator.predict(data.X))
    proba = model.predict_proba(X)
    assert isinstance(proba, torch.Tensor) and proba.dtype == torch.float32
    assert torch.equal(model(X), labels)


def test_string_labels_from_tensor_come_back_as_numpy_objects():
    estimator, data = fitted("LogisticRegression", "strings")
    model = bridge.from_sklearn(estimator)
    labels = model.predict(torch.from_numpy(data.X.astype(np.float32)))
    assert isinstance(labels, np.ndarray) and labels.dtype == object
    np.testing.assert_array_equal(labels.astype(str), estimator.predict(data.X))


def test_dataframe_input_by_column_order():
    pandas = pytest.importorskip("pandas")
    estimator, data = fitted("StandardScaler", "features")
    frame = pandas.DataFrame(data.X, columns=[f"f{i}" for i in range(data.X.shape[1])])
    estimator.fit(frame)
    model = bridge.from_sklearn(estimator)
    assert_parity(model.transform(frame), estimator.transform(frame), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="feature names"):
        model.transform(frame[frame.columns[::-1]])


def test_column_transformer_selecting_columns_by_name():
    pandas = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    data = fitted("StandardScaler", "features")[1]
    frame = pandas.DataFrame(data.X, columns=list("abcdef"))
    estimator = ColumnTransformer(
        [("s", StandardScaler(), ["a", "c"]), ("m", MinMaxScaler(), ["f"])]
    ).fit(frame)
    model = bridge.from_sklearn(estimator)
    assert_parity(model.transform(frame), estimator.transform(frame), rtol=1e-5, atol=1e-5)


def _text_frame(pandas, rows=160):
    rng = np.random.default_rng(5)
    frame = pandas.DataFrame({
        "city": rng.choice(["paris", "rome", "oslo"], rows), "x": rng.normal(size=rows),
        "kind": rng.choice(["u", "v"], rows), "y": rng.normal(size=rows),
    })
    return frame, ((frame.x + (frame.city == "rome")) > 0.3).astype(int)


@pytest.mark.parametrize("final", ["LogisticRegression", "RandomForestClassifier"])
def test_text_columns_of_a_dataframe_go_in_as_strings(final):
    pandas = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    frame, target = _text_frame(pandas)
    columns = ColumnTransformer([("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                                 ("kind", OrdinalEncoder(handle_unknown="use_encoded_value",
                                                         unknown_value=-1), ["kind"]),
                                 ("numbers", StandardScaler(), ["x", "y"])])
    classifier = {"LogisticRegression": LogisticRegression(),
                  "RandomForestClassifier": RandomForestClassifier(8, max_depth=4,
                                                                   random_state=0)}[final]
    estimator = make_pipeline(columns, classifier).fit(frame, target)
    model = bridge.from_sklearn(estimator)
    assert model._input_spec.text_columns == ("city", "kind")
    unseen = frame.copy()
    unseen.loc[:4, "city"] = "tokyo"  # one-hot of an unknown city: all zeros, as in sklearn
    for rows in (frame, unseen):
        np.testing.assert_array_equal(model.predict(rows), estimator.predict(rows))
        assert_parity(model.predict_proba(rows), estimator.predict_proba(rows), rtol=0,
                      atol=1e-4)
    with pytest.raises(ValueError, match="reads text columns"):
        model.predict(torch.zeros(3, 4))
    broken = frame.head(3).astype({"x": object})
    broken.loc[1, "x"] = "n/a"
    with pytest.raises(ValueError, match="column 'x' .* holds numbers"):
        model.predict(broken)


def test_an_ordinal_encoder_that_would_raise_on_unknowns_warns():
    from sklearn.preprocessing import OrdinalEncoder

    encoder = OrdinalEncoder().fit(np.array([[1.0], [2.0]]))
    with pytest.warns(UserWarning, match="gives -1 for an unknown category"):
        model = bridge.from_sklearn(encoder)
    np.testing.assert_array_equal(model.transform(np.array([[7.0]])), [[-1.0]])


def test_text_columns_are_read_from_a_dataframe_sample():
    pandas = pytest.importorskip("pandas")
    from bridge.sklearn.inputs import text_columns

    frame, _ = _text_frame(pandas, rows=4)
    frame["level"] = pandas.Categorical(["a", "b", "a", "b"])
    frame["count"] = pandas.array([1, 2, None, 4], dtype="Int64")
    assert text_columns(None, frame) == {"city", "kind", "level"}


@pytest.mark.parametrize("case", ["LogisticRegression", "StandardScaler", "SVR-rbf",
                                  "DummyClassifier-prior", "Nystroem-rbf"])
def test_float64_graphs(case):
    data_name = {"LogisticRegression": "multiclass", "SVR-rbf": "regression",
                 "DummyClassifier-prior": "multiclass"}.get(case, "features")
    estimator, data = fitted(case, data_name)
    model = bridge.from_sklearn(estimator, dtype=np.float64)
    method = "predict_proba" if hasattr(estimator, "predict_proba") else (
        "transform" if hasattr(estimator, "transform") else "predict")
    result = getattr(model, method)(data.X)
    assert result.dtype == np.float64
    assert_parity(result, getattr(estimator, method)(data.X), rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", ["SVC-rbf-proba", "RandomForestClassifier", "MLPClassifier"])
def test_runs_on_cuda(case):
    estimator, data = fitted(case, "multiclass")
    model = bridge.from_sklearn(estimator).to("cuda")
    X = torch.from_numpy(data.X.astype(np.float32)).cuda()
    proba = model.predict_proba(X)
    assert proba.device.type == "cuda"
    assert_parity(proba, estimator.predict_proba(data.X), rtol=0, atol=1e-4)
    labels = model.predict(data.X)  # numpy in → runs on the module's device → numpy out
    np.testing.assert_array_equal(labels, estimator.predict(data.X))
