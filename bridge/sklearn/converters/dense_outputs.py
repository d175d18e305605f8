"""Dense outputs for the estimators whose sparse output skl2onnx refuses:
``RandomTreesEmbedding(sparse_output=True)`` and ``KBinsDiscretizer(encode="onehot")``.

Both give the values of ``transform(X).toarray()``, only where skl2onnx refuses the
sparse estimator (a future skl2onnx that converts it keeps its own graph). KBinsDiscretizer:
skl2onnx's converter runs on a view asking for ``encode="onehot-dense"``.
RandomTreesEmbedding: bridge's parser and graph, each tree's leaf (skl2onnx's
``decision_leaf``) matched against the leaves the one-hot encoder saw with ``Equal``
(skl2onnx's own parser, even with ``sparse_output=False``, makes its result an extra graph
output inside a pipeline).
"""

from __future__ import annotations

import copy

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
from skl2onnx.algebra.onnx_ops import OnnxIdentity, OnnxReshape
from skl2onnx.common._registration import get_converter, get_shape_calculator
from skl2onnx.common.data_types import guess_tensor_type
from sklearn.ensemble import RandomTreesEmbedding
from sklearn.preprocessing import KBinsDiscretizer

from bridge.sklearn.converters._graph import (
    add_constant,
    add_node,
    float_type_of,
    proto_float_of,
)

ALIAS = "BridgeRandomTreesEmbedding"

_state: dict[str, object] = {}


def _dense_view(model):
    """The fitted estimator asking for its dense output, or None where it already does."""
    if isinstance(model, KBinsDiscretizer) and model.encode == "onehot":
        view = copy.copy(model)
        view.encode = "onehot-dense"
        return view
    return None


def _call_on_dense_view(function, operator, arguments: tuple):
    """Run skl2onnx's ``function`` as is, or on the dense view where it refuses the sparse
    estimator."""
    view = _dense_view(operator.raw_operator)
    if view is None:
        return function(*arguments)
    try:
        return function(*arguments)
    except RuntimeError as error:
        if "sparse" not in str(error):
            raise
    original = operator.raw_operator
    operator.raw_operator = view
    try:
        return function(*arguments)
    finally:
        operator.raw_operator = original


def _converter_on_dense_view(converter):
    def convert(scope, operator, container):
        return _call_on_dense_view(converter, operator, (scope, operator, container))

    return convert


def _shapes_on_dense_view(calculator):
    def shapes(operator):
        return _call_on_dense_view(calculator, operator, (operator,))

    return shapes


def trees_embedding_parser(scope, model, inputs, custom_parsers=None):
    """Declare one operator with one output (skl2onnx's own parser for the class declares
    its result a graph output, even inside a pipeline)."""
    operator = scope.declare_local_operator(ALIAS, model)
    operator.inputs = inputs
    operator.outputs.append(scope.declare_local_variable(
        "embedding", guess_tensor_type(inputs[0].type)))
    return operator.outputs


def trees_embedding_shape_calculator(operator) -> None:
    """One column per leaf of every tree, in the input's float type."""
    width = sum(len(c) for c in operator.raw_operator.one_hot_encoder_.categories_)
    operator.outputs[0].type = float_type_of(operator)([None, width])


def convert_random_trees_embedding(scope, operator, container) -> None:
    """Each tree's leaf index, one-hot over the leaves the encoder saw, trees side by side."""
    model = operator.raw_operator
    version = container.target_opset
    proto = proto_float_of(operator)
    blocks = []
    for tree, leaves in zip(model.estimators_, model.one_hot_encoder_.categories_):
        options = {"decision_leaf": True}
        container.add_options(id(tree), options)
        # each sub-estimator reads its own Identity (skl2onnx finds a sub-operator by its
        # input name); the algebra result goes to an intermediate name, not a graph output
        reached = OnnxSubEstimator(tree, OnnxIdentity(operator.inputs[0], op_version=version),
                                   op_version=version, options=options)
        leaf = scope.get_unique_variable_name("leaf")
        OnnxIdentity(OnnxReshape(reached[1], np.array([-1, 1], dtype=np.int64),
                                 op_version=version),
                     op_version=version, output_names=[leaf]).add_to(scope, container)
        matched = add_node(scope, container, "Equal", [leaf, add_constant(
            scope, container, "leaves", np.asarray(leaves).reshape(1, -1), TensorProto.INT64)],
            "matched")
        blocks.append(add_node(scope, container, "Cast", [matched], "one_hot", to=proto))
    container.add_node("Concat", blocks, [operator.outputs[0].full_name], axis=1,
                       name=scope.get_unique_operator_name("Concat"))


def register() -> list[str]:
    """Wrap skl2onnx's KBinsDiscretizer converter and replace its RandomTreesEmbedding one
    where they refuse sparse output; return the names changed."""
    if "registered" in _state:
        return list(_state["registered"])
    registered = []
    alias = sklearn_operator_name_map.get(KBinsDiscretizer)
    if alias is not None:
        converter = get_converter(alias)
        update_registered_converter(
            KBinsDiscretizer, alias, _shapes_on_dense_view(get_shape_calculator(alias)),
            _converter_on_dense_view(getattr(converter, "_fct", converter)), overwrite=True,
            options=converter.get_allowed_options()
            if hasattr(converter, "get_allowed_options") else None)
        registered.append("KBinsDiscretizer")
    if RandomTreesEmbedding not in sklearn_operator_name_map or skl2onnx_refuses_sparse_trees():
        update_registered_converter(RandomTreesEmbedding, ALIAS,
                                    trees_embedding_shape_calculator,
                                    convert_random_trees_embedding, overwrite=True,
                                    parser=trees_embedding_parser)
        registered.append("RandomTreesEmbedding")
    _state["registered"] = registered
    return registered


def skl2onnx_refuses_sparse_trees() -> bool:
    """Whether skl2onnx's own converter refuses a RandomTreesEmbedding with sparse output
    (it does so before writing any node)."""
    from skl2onnx.common._container import ModelComponentContainer
    from skl2onnx.common._topology import Scope

    converter = get_converter(sklearn_operator_name_map[RandomTreesEmbedding])
    model = RandomTreesEmbedding(n_estimators=1, max_depth=1, random_state=0).fit(
        np.arange(4.0).reshape(-1, 1))

    class _Probe:
        raw_operator = model
        inputs = outputs = (None,)

    try:
        getattr(converter, "_fct", converter)(Scope("probe"), _Probe(), ModelComponentContainer(21))
    except RuntimeError as error:
        return "sparse" in str(error)
    except Exception:  # noqa: BLE001 - it got past the refusal: it converts sparse output
        return False
    return False
