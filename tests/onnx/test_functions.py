"""Model-local functions (``ModelProto.functions``): inlined by the importer, checked against
onnxruntime; skl2onnx's KNNImputer graph (``local_domain`` functions) end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

import bridge
from bridge.errors import ConversionError
from bridge.onnx.importer import inline_functions
from tests.parity import assert_parity, run_onnxruntime

FLOAT = TensorProto.FLOAT


def _scaled_softplus(function_opset: int = 18):
    """``y = log(1 + exp(x)) * 2``, through two nested local functions."""
    softplus = helper.make_function(
        "local", "softplus", ["x"], ["y"],
        [helper.make_node("Exp", ["x"], ["e"]),
         helper.make_node("Constant", [], ["one"], value_float=1.0),
         helper.make_node("Add", ["e", "one"], ["s"]),
         helper.make_node("Log", ["s"], ["y"])],
        [helper.make_opsetid("", function_opset)])
    doubled = helper.make_function(
        "local", "double_softplus", ["x"], ["y"],
        [helper.make_node("softplus", ["x"], ["p"], domain="local"),
         helper.make_node("Add", ["p", "p"], ["y"])],
        [helper.make_opsetid("", function_opset), helper.make_opsetid("local", 1)])
    graph = helper.make_graph(
        [helper.make_node("double_softplus", ["x"], ["h"], domain="local"),
         helper.make_node("Relu", ["h"], ["y"])],
        "functions", [helper.make_tensor_value_info("x", FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", FLOAT, ["N", 3])])
    return helper.make_model(graph, functions=[softplus, doubled], ir_version=9,
                             opset_imports=[helper.make_opsetid("", 18),
                                            helper.make_opsetid("local", 1)])


@pytest.mark.parametrize("function_opset", [18, 17])
def test_nested_local_functions_run_as_in_onnxruntime(function_opset):
    model = _scaled_softplus(function_opset)
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    (reference,) = run_onnxruntime(model, {"x": x})
    module = bridge.from_onnx(model)
    assert_parity(module(torch.from_numpy(x)), reference, rtol=1e-6, atol=1e-6)
    inlined = inline_functions(model)
    assert not inlined.functions or all(n.domain != "local" for n in inlined.graph.node)


def test_a_model_without_functions_is_left_as_it_is():
    model = _scaled_softplus()
    del model.functions[:]
    assert inline_functions(model) is model


def test_an_operator_whose_definition_changed_between_opsets_is_refused():
    # ReduceSum moved its axes from an attribute to an input at opset 13
    body = helper.make_function(
        "local", "total", ["x"], ["y"], [helper.make_node("ReduceSum", ["x"], ["y"])],
        [helper.make_opsetid("", 11)])
    graph = helper.make_graph(
        [helper.make_node("total", ["x"], ["y"], domain="local")], "changed",
        [helper.make_tensor_value_info("x", FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", FLOAT, [1, 1])])
    model = helper.make_model(graph, functions=[body], ir_version=9,
                              opset_imports=[helper.make_opsetid("", 18),
                                             helper.make_opsetid("local", 1)])
    with pytest.raises(ConversionError, match="ReduceSum at opset 11, which differs"):
        bridge.from_onnx(model)


def test_knn_imputer_converts_through_its_local_functions():
    from sklearn.impute import KNNImputer

    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 5))
    X[rng.random(X.shape) < 0.15] = np.nan
    imputer = KNNImputer(n_neighbors=4).fit(X[:120])
    model = bridge.from_sklearn(imputer)
    new = X[120:]
    assert_parity(model.transform(new), imputer.transform(new), rtol=1e-4, atol=1e-4)
    graph = model.onnx_model
    assert graph.functions, "skl2onnx's graph keeps its local functions (the artifact)"
    (reference,) = run_onnxruntime(graph, {graph.graph.input[0].name: new.astype(np.float32)})
    assert_parity(reference, imputer.transform(new), rtol=1e-4, atol=1e-4)
