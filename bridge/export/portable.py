"""ONNX → ONNX rewrites that make lowered graphs compute the same on every runtime: each keeps
the graph's meaning and removes a form some runtime gets wrong or computes less exactly.

* ``Reduce*(keepdims=0)`` becomes ``Reduce*(keepdims=1)`` + ``Squeeze``. OpenVINO 2026.4's CPU
  plugin fuses an element-wise operation with a per-column constant into a reduction that
  drops its axis and then reads the constant from the wrong place (GaussianNB's
  ``class_log_prior - 0.5 * sum(...)`` came out as garbage, in f32 and bf16 alike).
* ``Log(Exp(x))`` becomes ``x``: ``predict_log_proba`` after ``predict_proba`` gave ``-inf``
  wherever ``exp`` underflowed (below about ``-87`` in float32, or ``-103`` with subnormals,
  which some runtimes flush to zero), where scikit-learn gives the finite ``x``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

REDUCTIONS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
              "ReduceLogSumExp", "ReduceLogSum", "ReduceL1", "ReduceL2", "ReduceSumSquare")


def make_portable(model: onnx.ModelProto) -> dict[str, int]:
    """Apply the rewrites to ``model`` in place; return how many of each were made."""
    return {"reductions_keeping_dims": _keep_reduced_dims(model),
            "log_of_exp": _drop_log_of_exp(model)}


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _attribute(node: onnx.NodeProto, name: str) -> Any:
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def _constant_axes(model: onnx.ModelProto, node: onnx.NodeProto) -> list[int] | None:
    """The node's axes when known at export (attribute or initializer); [] for all axes;
    None when they are computed at run time."""
    if len(node.input) > 1 and node.input[1]:
        initializer = next((t for t in model.graph.initializer if t.name == node.input[1]), None)
        if initializer is None:
            return None
        return [int(a) for a in numpy_helper.to_array(initializer).ravel()]
    return list(_attribute(node, "axes") or [])


def _keep_reduced_dims(model: onnx.ModelProto) -> int:
    opset = _opset(model)
    rewritten = 0
    for node in list(model.graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type not in REDUCTIONS:
            continue
        if _attribute(node, "keepdims") != 0:
            continue
        axes = _constant_axes(model, node)
        if axes is None or (not axes and _attribute(node, "noop_with_empty_axes")):
            continue
        kept = f"{node.output[0]}_kept_dims"
        squeeze_inputs = [kept]
        if axes and opset >= 13:
            axes_name = f"{node.output[0]}_squeezed_axes"
            model.graph.initializer.append(
                numpy_helper.from_array(np.array(axes, dtype=np.int64), axes_name))
            squeeze_inputs.append(axes_name)
        squeeze = helper.make_node("Squeeze", squeeze_inputs, [node.output[0]],
                                   name=f"{node.name}_squeeze")
        if axes and opset < 13:
            squeeze.attribute.append(helper.make_attribute("axes", axes))
        for attribute in node.attribute:
            if attribute.name == "keepdims":
                attribute.i = 1
        node.output[0] = kept
        position = list(model.graph.node).index(node)
        model.graph.node.insert(position + 1, squeeze)
        rewritten += 1
    return rewritten


def _drop_log_of_exp(model: onnx.ModelProto) -> int:
    producers = {out: node for node in model.graph.node for out in node.output}
    rewritten = 0
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type != "Log":
            continue
        source = producers.get(node.input[0])
        if source is None or source.op_type != "Exp" or source.domain not in ("", "ai.onnx"):
            continue
        node.op_type = "Identity"
        node.input[0] = source.input[0]
        del node.attribute[:]
        rewritten += 1
    if rewritten:  # an Exp whose only reader was the Log is dead now
        used = {name for n in model.graph.node for name in n.input} | {
            o.name for o in model.graph.output}
        dead = [n for n in model.graph.node if n.op_type == "Exp" and n.output[0] not in used]
        for node in dead:
            model.graph.node.remove(node)
    return rewritten
