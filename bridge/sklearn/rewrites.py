"""ONNX → ONNX rewrites applied to skl2onnx graphs before import, each semantics-preserving.

skl2onnx decodes string class labels with ``ArrayFeatureExtractor(classes, argmax)`` over a
string initializer. bridge carries strings only as int64 indices into a vocabulary that an
operator defines, so such lookups become an ``ai.onnx.ml`` ``LabelEncoder`` from the class
index to the class string, which defines that vocabulary.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ML_DOMAIN = "ai.onnx.ml"


def _ml_opset(model: onnx.ModelProto) -> int | None:
    for opset in model.opset_import:
        if opset.domain == ML_DOMAIN:
            return opset.version
    return None


def encode_string_class_lookups(model: onnx.ModelProto) -> int:
    """Replace ``ArrayFeatureExtractor`` over a 1-D string initializer by a LabelEncoder.

    The lookup's indices are class positions (``ArgMax`` results); the LabelEncoder maps
    position ``i`` to ``classes[i]`` and keeps the indices' shape, which the graph then
    reshapes to ``(N,)`` as before (a Reshape right after the lookup moves before the
    encoder, so the string output comes straight from it); without such a Reshape the
    indices become one row first, the ``[1, N]`` a lookup of a vector gives. Returns the number of lookups
    rewritten.
    """
    strings = {
        init.name: [s.decode() if isinstance(s, bytes) else str(s)
                    for s in numpy_helper.to_array(init).ravel()]
        for init in model.graph.initializer
        if init.data_type == TensorProto.STRING and len(init.dims) <= 1
    }
    ml_opset = _ml_opset(model)
    rewritten = 0
    for node in list(model.graph.node):
        if node.op_type != "ArrayFeatureExtractor" or node.input[0] not in strings:
            continue
        classes = strings[node.input[0]]
        if ml_opset is None or ml_opset < 2:
            attributes = {"classes_strings": classes, "default_string": ""}
        else:
            attributes = {"keys_int64s": list(range(len(classes))), "values_strings": classes,
                          "default_string": ""}
        nodes = list(model.graph.node)
        position = nodes.index(node)
        consumers = [n for n in nodes if node.output[0] in n.input]
        reshape = consumers[0] if len(consumers) == 1 and consumers[0].op_type == "Reshape" else None
        replacement = []
        indices, labels = node.input[1], node.output[0]
        if reshape is not None:
            # reshape the indices first, so the string-valued output comes from the encoder
            reshaped = f"{node.output[0]}_reshaped_indices"
            replacement.append(helper.make_node(
                "Reshape", [indices, reshape.input[1]], [reshaped], name=f"{reshape.name}_indices"
            ))
            indices, labels = reshaped, reshape.output[0]
            model.graph.node.remove(reshape)
        else:  # the lookup of a vector gives [1, number of indices], as in onnxruntime
            row = f"{node.output[0]}_row_shape"
            model.graph.initializer.append(numpy_helper.from_array(
                np.array([1, -1], dtype=np.int64), row))
            replacement.append(helper.make_node(
                "Reshape", [indices, row], [f"{node.output[0]}_row_indices"],
                name=f"{node.name}_row"))
            indices = f"{node.output[0]}_row_indices"
        replacement.append(helper.make_node(
            "LabelEncoder", [indices], [labels], name=f"{node.name}_labels",
            domain=ML_DOMAIN, **attributes,
        ))
        model.graph.node.remove(node)
        for offset, new_node in enumerate(replacement):
            model.graph.node.insert(position + offset, new_node)
        rewritten += 1
    if rewritten and ml_opset is None:
        model.opset_import.append(helper.make_opsetid(ML_DOMAIN, 1))
    return rewritten


TREE_ENSEMBLES = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")


def round_tree_inputs_to_float32(model: onnx.ModelProto) -> int:
    """Round the input of every ai.onnx.ml tree ensemble to float32 (``Cast`` to float and
    back to double), as scikit-learn's decision trees cast X to float32 before comparing.

    For double graphs of estimators built on scikit-learn's decision trees (forests,
    gradient boosting, ...), whose thresholds sit between float32 values: compared in
    double, a value just above a threshold that rounds onto it goes the other way
    (``StandardScaler`` then a random forest on digits in float64: 489 of 1,797 rows).
    HistGradientBoosting compares in float64 and must not be rounded. Returns the number
    of ensembles changed.
    """
    rewritten = []
    changed = 0
    for node in model.graph.node:
        if node.domain == ML_DOMAIN and node.op_type in TREE_ENSEMBLES:
            source = node.input[0]
            single = f"{source}_as_float32_{changed}"
            rounded = f"{source}_rounded_{changed}"
            rewritten.append(helper.make_node("Cast", [source], [single], to=TensorProto.FLOAT,
                                              name=f"bridge_tree_round_{changed}"))
            rewritten.append(helper.make_node("Cast", [single], [rounded],
                                              to=TensorProto.DOUBLE,
                                              name=f"bridge_tree_widen_{changed}"))
            node.input[0] = rounded
            changed += 1
        rewritten.append(node)
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(rewritten)
    return changed
