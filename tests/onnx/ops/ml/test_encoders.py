"""OneHotEncoder, LabelEncoder, CategoryMapper and ZipMap against onnxruntime, strings included."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import bridge
from bridge.errors import ConversionError, InvalidInputError
from bridge.onnx.ops.ml.encoders import OnnxKeyValueMap
from tests.parity import ML_DOMAIN, assert_parity, run_onnxruntime, single_node_model, to_numpy


def run_bridge_decoded(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run through bridge, encoding string inputs and decoding string outputs by vocabulary."""
    module = bridge.from_onnx(model)
    arguments = []
    for name in module.input_names:
        value = np.asarray(inputs[name])
        if value.dtype.kind in "OUS":
            lookup = {label: i for i, label in enumerate(module.input_vocabularies[name])}
            codes = [lookup.get(v, -1) for v in value.reshape(-1).tolist()]
            arguments.append(torch.tensor(codes, dtype=torch.int64).reshape(value.shape))
        else:
            arguments.append(torch.from_numpy(np.ascontiguousarray(value)))
    with torch.no_grad():
        result = module(*arguments)
    results = list(result) if isinstance(result, tuple) else [result]
    decoded = []
    for name, tensor in zip(module.output_names, results):
        array = to_numpy(tensor)
        vocabulary = module.output_vocabularies.get(name)
        if vocabulary is not None and array.dtype.kind in "iu":
            array = np.asarray(vocabulary, dtype=object)[array]
        decoded.append(array)
    return decoded


def assert_decoded_matches_onnxruntime(model, inputs, *, rtol=1e-5, atol=1e-6) -> list:
    expected = run_onnxruntime(model, inputs)
    actual = run_bridge_decoded(model, inputs)
    assert len(actual) == len(expected)
    for index, (a, e) in enumerate(zip(actual, expected)):
        if np.asarray(e).dtype.kind in "OUS":
            np.testing.assert_array_equal(a.astype(str), np.asarray(e).astype(str))
        else:
            assert_parity(a, e, rtol=rtol, atol=atol, what=f"output {index}")
    return actual


def ml_model(op_type, inputs, attributes, output_type, ml_opset=2, **kwargs):
    return single_node_model(op_type, inputs, ("y",), attributes=attributes, domain=ML_DOMAIN,
                             ml_opset=ml_opset, output_types={"y": output_type}, **kwargs)


WORDS = np.array(["a", "b", "zz", "c", "b", "a"], dtype=object)


@pytest.mark.parametrize("zeros", [1, 0])
def test_one_hot_encoder_int_categories(zeros):
    x = np.array([[3, 1], [1, 3], [2, 7]], dtype=np.int64)
    cats = [1, 2, 3, 7] if zeros == 0 else [1, 3, 5]
    model = ml_model("OneHotEncoder", {"x": x}, {"cats_int64s": cats, "zeros": zeros},
                     TensorProto.FLOAT, ml_opset=1)
    (result,) = assert_decoded_matches_onnxruntime(model, {"x": x})
    assert result.shape == (3, 2, len(cats))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_one_hot_encoder_casts_numbers_to_int64(dtype):
    x = np.array([[1.7, -2.2, 3.0]], dtype=dtype)
    model = ml_model("OneHotEncoder", {"x": x}, {"cats_int64s": [-2, 1, 3]}, TensorProto.FLOAT,
                     ml_opset=1)
    if dtype == np.int32:  # onnxruntime has no int32 kernel; the spec allows it
        result = run_bridge_decoded(model, {"x": x})[0]
        np.testing.assert_array_equal(result[0].argmax(-1), [1, 0, 2])
        return
    assert_decoded_matches_onnxruntime(model, {"x": x})


def test_one_hot_encoder_string_categories_declare_the_input_vocabulary():
    model = ml_model("OneHotEncoder", {"x": WORDS.reshape(2, 3)}, {"cats_strings": ["c", "a", "b"]},
                     TensorProto.FLOAT, ml_opset=1)
    assert_decoded_matches_onnxruntime(model, {"x": WORDS.reshape(2, 3)})
    assert bridge.from_onnx(model).input_vocabularies["x"] == ["c", "a", "b"]


def test_one_hot_encoder_zeros_0_raises_on_unknown_category():
    x = np.array([1, 9], dtype=np.int64)
    model = ml_model("OneHotEncoder", {"x": x}, {"cats_int64s": [1, 2], "zeros": 0},
                     TensorProto.FLOAT, ml_opset=1)
    with pytest.raises(InvalidInputError, match="zeros=0.*category 9 at index \\(1,\\).*not among"):
        run_bridge_decoded(model, {"x": x})


@pytest.mark.parametrize("keys, values, default, x, output_type", [
    (("keys_strings", ["a", "b", "c", "a"]), ("values_int64s", [4, 5, 6, 7]), ("default_int64", 9),
     WORDS, TensorProto.INT64),
    (("keys_strings", ["a", "c"]), ("values_floats", [0.5, -1.5]), None, WORDS, TensorProto.FLOAT),
    (("keys_strings", ["a", "b"]), ("values_strings", ["x", "y"]), ("default_string", "?"), WORDS,
     TensorProto.STRING),
    (("keys_int64s", [3, 1, 8]), ("values_strings", ["three", "one", "eight"]), None,
     np.array([1, 2, 3, 8, 8], dtype=np.int64), TensorProto.STRING),
    (("keys_int64s", [3, 1, 8, 3]), ("values_int64s", [30, 10, 80, 99]), ("default_int64", -7),
     np.array([[1, 2], [3, 8]], dtype=np.int64), TensorProto.INT64),
    (("keys_floats", [0.5, -2.0, 0.0]), ("values_int64s", [1, 2, 3]), None,
     np.array([0.5, -0.0, 7.0, -2.0], dtype=np.float32), TensorProto.INT64),
    (("keys_floats", [0.5, 1.5]), ("values_floats", [5.0, 15.0]), ("default_float", 0.25),
     np.array([1.5, 0.5, 2.0], dtype=np.float32), TensorProto.FLOAT),
])
def test_label_encoder_v2_maps_keys_to_values(keys, values, default, x, output_type):
    attributes = dict([keys, values] + ([default] if default else []))
    model = ml_model("LabelEncoder", {"x": x}, attributes, output_type, ml_opset=2)
    assert_decoded_matches_onnxruntime(model, {"x": x})


def test_label_encoder_v4_tensor_attributes_and_nan_keys():
    keys = numpy_helper.from_array(np.array([1.0, np.nan, 2.5], dtype=np.float64), "keys")
    values = numpy_helper.from_array(np.array([10, 20, 30], dtype=np.int16), "values")
    default = numpy_helper.from_array(np.array([-3], dtype=np.int16), "default")
    x = np.array([2.5, np.nan, 1.0, 4.0], dtype=np.float64)
    model = ml_model("LabelEncoder", {"x": x},
                     {"keys_tensor": keys, "values_tensor": values, "default_tensor": default},
                     TensorProto.INT16, ml_opset=4)
    (result,) = run_bridge_decoded(model, {"x": x})
    np.testing.assert_array_equal(result, np.array([30, 20, 10, -3], dtype=np.int16))
    assert result.dtype == np.int16


def test_label_encoder_v1_both_directions():
    classes = ["low", "mid", "high"]
    words = np.array(["mid", "other", "high"], dtype=object)
    model = ml_model("LabelEncoder", {"x": words}, {"classes_strings": classes,
                                                    "default_int64": 42}, TensorProto.INT64,
                     ml_opset=1)
    assert_decoded_matches_onnxruntime(model, {"x": words})
    codes = np.array([2, 0, 5], dtype=np.int64)
    model = ml_model("LabelEncoder", {"x": codes}, {"classes_strings": classes,
                                                    "default_string": "none"}, TensorProto.STRING,
                     ml_opset=1)
    assert_decoded_matches_onnxruntime(model, {"x": codes})


def test_chained_label_encoders_map_through_the_intermediate_vocabulary():
    first = helper.make_node("LabelEncoder", ["x"], ["mid"], domain=ML_DOMAIN,
                             keys_strings=["a", "b", "c"], values_strings=["p", "q", "p"])
    second = helper.make_node("LabelEncoder", ["mid"], ["y"], domain=ML_DOMAIN,
                              keys_strings=["q", "p"], values_int64s=[1, 2])
    graph = helper.make_graph(
        [first, second], "chain",
        [helper.make_tensor_value_info("x", TensorProto.STRING, [None])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid(ML_DOMAIN, 2)])
    model.ir_version = 10
    assert_decoded_matches_onnxruntime(model, {"x": WORDS})


@pytest.mark.parametrize("direction", ["to_int", "to_string"])
def test_category_mapper(direction):
    attributes = {"cats_strings": ["x", "y", "z"], "cats_int64s": [7, 8, 9],
                  "default_int64": -5, "default_string": "?"}
    if direction == "to_int":
        x = np.array(["z", "w", "x"], dtype=object)
        model = ml_model("CategoryMapper", {"x": x}, attributes, TensorProto.INT64, ml_opset=1)
    else:
        x = np.array([[8, 1], [9, 7]], dtype=np.int64)
        model = ml_model("CategoryMapper", {"x": x}, attributes, TensorProto.STRING, ml_opset=1)
    assert_decoded_matches_onnxruntime(model, {"x": x})


@pytest.mark.parametrize("labels", [{"classlabels_int64s": [4, 2, 9]},
                                    {"classlabels_strings": ["cat", "dog", "eel"]}])
def test_zip_map_returns_the_probabilities_and_records_the_labels(labels):
    node = helper.make_node("ZipMap", ["p"], ["z"], domain=ML_DOMAIN, **labels)
    key_type = TensorProto.INT64 if "classlabels_int64s" in labels else TensorProto.STRING
    output = helper.make_value_info(
        "z", helper.make_sequence_type_proto(helper.make_map_type_proto(
            key_type, helper.make_tensor_type_proto(TensorProto.FLOAT, None))))
    graph = helper.make_graph([node], "zipmap",
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 3])],
                              [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid(ML_DOMAIN, 1)])
    model.ir_version = 10
    probabilities = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], dtype=np.float32)
    (maps,) = run_onnxruntime(model, {"p": probabilities})
    module = bridge.from_onnx(model)
    result = module(torch.from_numpy(probabilities))
    class_labels = next(iter(labels.values()))
    assert module.output_vocabularies["z"] == class_labels
    for row, mapping in zip(to_numpy(result), maps):
        assert list(mapping) == sorted(class_labels)
        np.testing.assert_allclose([mapping[label] for label in class_labels], row)


def test_label_encoder_needs_paired_keys_and_values():
    x = np.array([1, 2], dtype=np.int64)
    model = ml_model("LabelEncoder", {"x": x}, {"keys_int64s": [1, 2], "values_int64s": [5]},
                     TensorProto.INT64)
    with pytest.raises(ConversionError, match="pair up"):
        bridge.from_onnx(model)


def test_label_encoder_is_scriptable_and_traceable():
    x = np.array([3, 1, 5], dtype=np.int64)
    model = ml_model("LabelEncoder", {"x": x}, {"keys_int64s": [1, 3], "values_floats": [0.5, 1.5]},
                     TensorProto.FLOAT)
    module = bridge.from_onnx(model)
    tensor = torch.from_numpy(x)
    expected = module(tensor)
    (op_module,) = [m for m in module.modules() if isinstance(m, OnnxKeyValueMap)]
    torch.testing.assert_close(torch.jit.script(op_module)(tensor), expected)
    torch.testing.assert_close(torch.jit.trace(module, (tensor,))(tensor), expected)
    np.testing.assert_array_equal(to_numpy(expected), np.array([1.5, 0.5, -0.0], np.float32))


def test_two_encoders_on_one_string_input_share_an_extended_vocabulary():
    nodes = [
        helper.make_node("LabelEncoder", ["x"], ["codes"], domain=ML_DOMAIN,
                         keys_strings=["a", "b"], values_int64s=[1, 2]),
        helper.make_node("Identity", ["x"], ["x_copy"]),
        helper.make_node("OneHotEncoder", ["x_copy"], ["one_hot"], domain=ML_DOMAIN,
                         cats_strings=["zz", "a"]),
    ]
    graph = helper.make_graph(
        nodes, "shared", [helper.make_tensor_value_info("x", TensorProto.STRING, [None])],
        [helper.make_tensor_value_info("codes", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("one_hot", TensorProto.FLOAT, [None, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid(ML_DOMAIN, 2)])
    model.ir_version = 10
    assert_decoded_matches_onnxruntime(model, {"x": WORDS})
    assert bridge.from_onnx(model).input_vocabularies["x"] == ["a", "b", "zz"]
