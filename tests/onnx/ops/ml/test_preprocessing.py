"""Scaler, Normalizer, Binarizer, Imputer, ArrayFeatureExtractor, FeatureVectorizer vs onnxruntime.

Tolerance: rtol 1e-5, atol 1e-6 (one or two float32 operations per element).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto

import bridge
from bridge.errors import ConversionError
from bridge.onnx.ops.ml.preprocessing import OnnxImputer, OnnxNormalizer, OnnxScaler
from tests.onnx.ops.ml.test_encoders import assert_decoded_matches_onnxruntime
from tests.parity import ML_DOMAIN, assert_matches_onnxruntime, single_node_model

TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def ml_model(op_type, inputs, attributes, output_type=TensorProto.FLOAT, **kwargs):
    return single_node_model(op_type, inputs, ("y",), attributes=attributes, domain=ML_DOMAIN,
                             ml_opset=1, output_types={"y": output_type}, **kwargs)


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)


@pytest.mark.parametrize("offset, scale", [([1.0, 2.0, -3.0, 0.5], [0.5, 2.0, 1.0, 3.0]),
                                           ([1.0], [0.25])])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32])
def test_scaler(x, offset, scale, dtype):
    data = (x * 10).astype(dtype)
    model = ml_model("Scaler", {"x": data}, {"offset": offset, "scale": scale})
    assert_matches_onnxruntime(model, {"x": data}, **TOLERANCE)


def test_scaler_needs_matching_offset_and_scale(x):
    with pytest.raises(ConversionError, match="equal length"):
        bridge.from_onnx(ml_model("Scaler", {"x": x}, {"offset": [1.0, 2.0], "scale": [1.0]}))


@pytest.mark.parametrize("norm", ["MAX", "L1", "L2"])
@pytest.mark.parametrize("case", ["matrix", "vector", "int64", "float64", "zero_rows"])
def test_normalizer(x, norm, case):
    data = {"matrix": x, "vector": x[0], "int64": np.round(x * 3).astype(np.int64),
            "float64": x.astype(np.float64),
            "zero_rows": np.vstack([x[:2], np.zeros((2, 4), np.float32)])}[case]
    model = ml_model("Normalizer", {"x": data}, {"norm": norm})
    assert_matches_onnxruntime(model, {"x": data}, **TOLERANCE)


@pytest.mark.parametrize("threshold", [None, 0.3])
def test_binarizer(x, threshold):
    attributes = {} if threshold is None else {"threshold": threshold}
    model = ml_model("Binarizer", {"x": x}, attributes)
    assert_matches_onnxruntime(model, {"x": x}, **TOLERANCE)


@pytest.mark.parametrize("imputed", [[1.0, 2.0, 3.0, 4.0], [7.5]])
def test_imputer_replaces_nan(x, imputed):
    data = np.where(x < -0.5, np.nan, x).astype(np.float32)
    model = ml_model("Imputer", {"x": data}, {"imputed_value_floats": imputed,
                                              "replaced_value_float": float("nan")})
    (result,) = assert_matches_onnxruntime(model, {"x": data}, **TOLERANCE)
    assert not np.isnan(result).any()


def test_imputer_replaces_a_float_value_and_int64_values():
    rng = np.random.default_rng(1)
    floats = rng.integers(0, 3, size=(5, 4)).astype(np.float32)
    model = ml_model("Imputer", {"x": floats}, {"imputed_value_floats": [10.0, 20.0, 30.0, 40.0],
                                                "replaced_value_float": 2.0})
    assert_matches_onnxruntime(model, {"x": floats}, **TOLERANCE)
    ints = rng.integers(0, 3, size=(5, 4))
    model = ml_model("Imputer", {"x": ints}, {"imputed_value_int64s": [10, 20, 30, 40],
                                              "replaced_value_int64": 1}, TensorProto.INT64)
    assert_matches_onnxruntime(model, {"x": ints}, rtol=0, atol=0)


def test_imputer_rank_3_uses_flat_index_modulo_axis_1():
    data = np.random.default_rng(2).integers(0, 3, size=(2, 3, 4)).astype(np.float32)
    model = ml_model("Imputer", {"x": data}, {"imputed_value_floats": [10.0, 20.0, 30.0],
                                              "replaced_value_float": 2.0})
    assert_matches_onnxruntime(model, {"x": data}, **TOLERANCE)


@pytest.mark.parametrize("shape, indices", [((6, 4), [3, 0, 3]), ((4,), [1, 2]),
                                            ((2, 3, 4), [[1], [2]])])
def test_array_feature_extractor(shape, indices):
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    model = ml_model("ArrayFeatureExtractor", {"x": data}, {},
                     initializers={"i": np.array(indices, dtype=np.int64)})
    assert_matches_onnxruntime(model, {"x": data}, **TOLERANCE)


def test_array_feature_extractor_with_run_time_indices_and_strings():
    data = np.arange(12, dtype=np.int64).reshape(3, 4)
    indices = np.array([2, 0], dtype=np.int64)
    model = ml_model("ArrayFeatureExtractor", {"x": data, "i": indices}, {}, TensorProto.INT64)
    assert_matches_onnxruntime(model, {"x": data, "i": indices}, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [-1, 4])
def test_array_feature_extractor_index_out_of_range_is_a_clear_error(bad):
    data = np.arange(12, dtype=np.int64).reshape(3, 4)
    indices = np.array([2, bad], dtype=np.int64)
    module = bridge.from_onnx(ml_model("ArrayFeatureExtractor", {"x": data, "i": indices}, {},
                                       TensorProto.INT64))
    with pytest.raises(IndexError, match=rf"ArrayFeatureExtractor: index {bad} .* 0\.\.3"):
        module(torch.from_numpy(data), torch.from_numpy(indices))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_feature_vectorizer_cuts_and_pads(x, dtype):
    inputs = {"a": x[:, :2].astype(dtype), "b": x[:, :3].astype(dtype), "c": x.astype(dtype)}
    model = ml_model("FeatureVectorizer", inputs, {"inputdimensions": [2, 5, 2]})
    (result,) = assert_matches_onnxruntime(model, inputs, **TOLERANCE)
    assert result.shape == (6, 9)


def test_feature_vectorizer_vectors_are_one_row(x):
    inputs = {"a": x[0], "b": x[1]}
    model = ml_model("FeatureVectorizer", inputs, {"inputdimensions": [3, 5]})
    assert_matches_onnxruntime(model, inputs, **TOLERANCE)


def test_feature_vectorizer_needs_one_width_per_input(x):
    model = ml_model("FeatureVectorizer", {"a": x, "b": x}, {"inputdimensions": [4]})
    with pytest.raises(ConversionError, match="one width per input"):
        bridge.from_onnx(model)


def test_string_array_feature_extractor_keeps_the_vocabulary():
    words = np.array([["a", "b", "c"], ["c", "a", "b"]], dtype=object)
    from onnx import helper

    nodes = [
        helper.make_node("LabelEncoder", ["x"], ["codes"], domain=ML_DOMAIN,
                         keys_strings=["a", "b", "c"], values_strings=["A", "B", "C"]),
        helper.make_node("ArrayFeatureExtractor", ["codes", "i"], ["y"], domain=ML_DOMAIN),
    ]
    graph = helper.make_graph(
        nodes, "strings", [helper.make_tensor_value_info("x", TensorProto.STRING, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, None)],
        initializer=[helper.make_tensor("i", TensorProto.INT64, [2], [2, 0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid(ML_DOMAIN, 2)])
    model.ir_version = 10
    assert_decoded_matches_onnxruntime(model, {"x": words})


def test_float_ops_are_differentiable_and_scriptable(x):
    tensor = torch.from_numpy(x).requires_grad_(True)
    modules = [OnnxScaler(torch.zeros(4), torch.full((4,), 2.0)), OnnxNormalizer("L2"),
               OnnxNormalizer("L1"), OnnxNormalizer("MAX"),
               OnnxImputer(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor(float("nan")))]
    for module in modules:
        scripted = torch.jit.script(module)
        np.testing.assert_allclose(scripted(tensor).detach().numpy(),
                                   module(tensor).detach().numpy(), rtol=1e-6)
        tensor.grad = None
        module(tensor).sum().backward()
        assert torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0
    # Scaler's gradient is its scale; L2 rows of norm 0 stay finite
    tensor.grad = None
    modules[0](tensor).sum().backward()
    np.testing.assert_allclose(tensor.grad.numpy(), np.full((6, 4), 2.0))
    zeros = torch.zeros(2, 4, requires_grad=True)
    OnnxNormalizer("L2")(zeros).sum().backward()
    assert torch.isfinite(zeros.grad).all()


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_normalizer_fast_path_equals_the_guarded_one(norm):
    """Without autograd the L1/L2 norms divide in one step; with it, the guarded form runs
    (finite gradients at zero rows). Both give the same values, zero and tiny rows included."""
    rows = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    rows[1] = 0.0
    rows[2] = [1e-44, 0.0, -1e-45, 0.0]  # subnormal entries: a norm far below 1e-38
    data = torch.from_numpy(rows)
    module = OnnxNormalizer(norm)
    fast = module(data)
    guarded = module(data.clone().requires_grad_(True)).detach()
    torch.testing.assert_close(fast, guarded, rtol=0, atol=0)
    assert torch.equal(fast[1], torch.zeros(4))
