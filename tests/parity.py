"""The shared parity helpers: compare bridge against onnxruntime / scikit-learn with stated tolerances."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

import bridge

ML_DOMAIN = "ai.onnx.ml"


def assert_parity(actual, expected, *, rtol: float, atol: float, what: str = "") -> None:
    """Assert two arrays agree (shape, then values within ``rtol``/``atol``; NaNs equal)."""
    actual = to_numpy(actual)
    expected = to_numpy(expected)
    prefix = f"{what}: " if what else ""
    assert actual.shape == expected.shape, f"{prefix}shape {actual.shape} != {expected.shape}"
    if expected.dtype.kind in "fc" or actual.dtype.kind in "fc":
        np.testing.assert_allclose(
            actual.astype(np.float64), expected.astype(np.float64),
            rtol=rtol, atol=atol, equal_nan=True, err_msg=prefix,
        )
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=prefix)


def to_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def single_node_model(
    op_type: str,
    inputs: dict[str, np.ndarray],
    outputs: Sequence[str] = ("y",),
    *,
    attributes: dict | None = None,
    initializers: dict[str, np.ndarray] | None = None,
    opset: int = 18,
    domain: str = "",
    ml_opset: int = 3,
    output_types: dict[str, int] | None = None,
) -> onnx.ModelProto:
    """Build a one-node model. ``inputs`` are graph inputs, ``initializers`` constant inputs.

    The node takes ``inputs`` then ``initializers`` in dict order; output types are left to
    shape inference unless given in ``output_types`` (name → TensorProto element type).
    """
    initializers = initializers or {}
    node = helper.make_node(
        op_type, list(inputs) + list(initializers), list(outputs), domain=domain,
        **(attributes or {}),
    )
    graph_inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype),
                                      list(array.shape))
        for name, array in inputs.items()
    ]
    output_types = output_types or {}
    graph_outputs = [
        helper.make_tensor_value_info(name, output_types.get(name, 0), None) for name in outputs
    ]
    graph = helper.make_graph(
        [node], f"{op_type}_test", graph_inputs, graph_outputs,
        initializer=[numpy_helper.from_array(v, name=k) for k, v in initializers.items()],
    )
    opsets = [helper.make_opsetid("", opset)]
    if domain == ML_DOMAIN:
        opsets.append(helper.make_opsetid(ML_DOMAIN, ml_opset))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = min(model.ir_version, 10)
    # onnxruntime refuses outputs of unknown element type: let shape inference fill them in
    return onnx.shape_inference.infer_shapes(model)


def run_onnxruntime(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return session.run(None, inputs)


def run_bridge(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    module = bridge.from_onnx(model)
    tensors = [torch.from_numpy(np.array(inputs[name], order="C")) for name in module.input_names]
    with torch.no_grad():
        result = module(*tensors)
    results = list(result) if isinstance(result, tuple) else [result]
    return [to_numpy(r) for r in results]


def assert_matches_onnxruntime(
    model: onnx.ModelProto, inputs: dict[str, np.ndarray], *, rtol: float = 1e-5,
    atol: float = 1e-6,
) -> list[np.ndarray]:
    """Run ``model`` in onnxruntime and through ``bridge.from_onnx``; assert they agree."""
    expected = run_onnxruntime(model, inputs)
    actual = run_bridge(model, inputs)
    assert len(actual) == len(expected), f"{len(actual)} outputs != {len(expected)}"
    for index, (a, e) in enumerate(zip(actual, expected)):
        assert_parity(a, e, rtol=rtol, atol=atol, what=f"output {index}")
    return actual
