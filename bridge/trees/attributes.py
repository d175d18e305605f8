"""Read the attributes of the ai.onnx.ml tree ensemble operators into a :class:`TreeSpec`.

Handles the legacy ``TreeEnsembleClassifier`` / ``TreeEnsembleRegressor`` tables (opsets 1
and 3, with the ``*_as_tensor`` attributes of opset 3) and the opset-5 ``TreeEnsemble``.
Attribute combinations the specification forbids raise :class:`ConversionError` naming the
attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from bridge.errors import ConversionError
from bridge.trees.ensemble import (
    AGGREGATES,
    BRANCH_MEMBER,
    MODE_NAMES,
    POST_TRANSFORMS,
    RawForest,
    TreeEnsemble,
    expand,
)


class AttributeSource(Protocol):
    """What the parser needs from a node view (``bridge.onnx.graph.OnnxNode`` has it)."""

    name: str
    op_type: str

    def attribute(self, name: str, default: Any = None) -> Any: ...

    def has_attribute(self, name: str) -> bool: ...


@dataclass
class TreeSpec:
    """Everything a tree ensemble computes, independent of the ONNX encoding."""

    ensemble: TreeEnsemble
    kind: str  # "classifier", "regressor" or "tree_ensemble"
    aggregate: str = "SUM"
    post_transform: str = "NONE"
    base_values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    class_labels: list = field(default_factory=list)
    labels_are_strings: bool = False
    binary_case: bool = False  # two classes, weights for one class id only
    weights_all_positive: bool = True


def _describe(node: AttributeSource) -> str:
    return f"{node.op_type} node {node.name!r}"


def _numeric(node: AttributeSource, name: str, required: bool = False) -> np.ndarray | None:
    """Read ``name`` or ``name_as_tensor`` (never both) as a float64 array."""
    plain, tensor = node.has_attribute(name), node.has_attribute(name + "_as_tensor")
    if plain and tensor:
        raise ConversionError(
            f"{_describe(node)}: attributes {name!r} and {name + '_as_tensor'!r} are both set; "
            "the specification allows only one of them"
        )
    if tensor:
        return np.asarray(node.attribute(name + "_as_tensor"), dtype=np.float64).reshape(-1)
    if plain:
        return np.asarray(node.attribute(name), dtype=np.float64).reshape(-1)
    if required:
        raise ConversionError(f"{_describe(node)}: attribute {name!r} is required")
    return None


def _ints(node: AttributeSource, name: str, required: bool = True) -> np.ndarray | None:
    if not node.has_attribute(name):
        if required:
            raise ConversionError(f"{_describe(node)}: attribute {name!r} is required")
        return None
    return np.asarray(node.attribute(name), dtype=np.int64).reshape(-1)


def _same_length(node: AttributeSource, reference: str, arrays: dict[str, np.ndarray]) -> None:
    expected = len(arrays[reference])
    for name, array in arrays.items():
        if array is not None and len(array) != expected:
            raise ConversionError(
                f"{_describe(node)}: attribute {name!r} has {len(array)} entries but "
                f"{reference!r} has {expected}; all of them must have the same length"
            )


def _choice(node: AttributeSource, name: str, value, allowed: tuple[str, ...]) -> str:
    if isinstance(value, int):
        if not 0 <= value < len(allowed):
            raise ConversionError(
                f"{_describe(node)}: attribute {name}={value} is unknown; expected 0.."
                f"{len(allowed) - 1} ({', '.join(allowed)})"
            )
        return allowed[value]
    if value not in allowed:
        raise ConversionError(
            f"{_describe(node)}: attribute {name}={value!r} is unknown; expected one of {allowed}"
        )
    return value


def parse_legacy(node: AttributeSource, kind: str) -> TreeSpec:
    """Parse ``TreeEnsembleClassifier`` (kind "classifier") or ``TreeEnsembleRegressor``."""
    prefix = "class" if kind == "classifier" else "target"
    tree_ids = _ints(node, "nodes_treeids")
    arrays = {
        "nodes_treeids": tree_ids,
        "nodes_nodeids": _ints(node, "nodes_nodeids"),
        "nodes_featureids": _ints(node, "nodes_featureids"),
        "nodes_truenodeids": _ints(node, "nodes_truenodeids"),
        "nodes_falsenodeids": _ints(node, "nodes_falsenodeids"),
        "nodes_values": _numeric(node, "nodes_values", required=True),
        "nodes_missing_value_tracks_true": _ints(node, "nodes_missing_value_tracks_true", False),
        "nodes_hitrates": _numeric(node, "nodes_hitrates"),
    }
    modes = node.attribute("nodes_modes")
    if modes is None:
        raise ConversionError(f"{_describe(node)}: attribute 'nodes_modes' is required")
    arrays["nodes_modes"] = np.asarray(modes, dtype=object)
    if len(arrays["nodes_missing_value_tracks_true"] if arrays[
            "nodes_missing_value_tracks_true"] is not None else []) == 0:
        arrays["nodes_missing_value_tracks_true"] = np.zeros(len(tree_ids), dtype=np.int64)
    if arrays["nodes_hitrates"] is not None and len(arrays["nodes_hitrates"]) == 0:
        arrays["nodes_hitrates"] = None
    _same_length(node, "nodes_treeids", arrays)
    target = {
        f"{prefix}_ids": _ints(node, f"{prefix}_ids"),
        f"{prefix}_nodeids": _ints(node, f"{prefix}_nodeids"),
        f"{prefix}_treeids": _ints(node, f"{prefix}_treeids"),
        f"{prefix}_weights": _numeric(node, f"{prefix}_weights", required=True),
    }
    _same_length(node, f"{prefix}_ids", target)

    spec_kwargs: dict = {}
    if kind == "classifier":
        strings = node.attribute("classlabels_strings")
        ints = node.attribute("classlabels_int64s")
        if (strings is None) == (ints is None) or (strings is not None and ints is not None):
            raise ConversionError(
                f"{_describe(node)}: exactly one of 'classlabels_strings' and "
                "'classlabels_int64s' must be set"
            )
        labels = list(strings) if strings is not None else [int(v) for v in ints]
        n_outputs = len(labels)
        if n_outputs < 2:
            raise ConversionError(
                f"{_describe(node)}: classlabels has {n_outputs} label(s); bridge converts "
                "classifiers with at least two classes"
            )
        class_ids = target["class_ids"]
        spec_kwargs.update(
            class_labels=labels,
            labels_are_strings=strings is not None,
            binary_case=n_outputs == 2 and len(set(class_ids.tolist())) == 1,
            weights_all_positive=bool((target["class_weights"] >= 0).all()),
        )
        aggregate = "SUM"
    else:
        n_outputs = int(node.attribute("n_targets", 0))
        if n_outputs <= 0:
            raise ConversionError(
                f"{_describe(node)}: attribute 'n_targets' must be a positive integer, "
                f"got {node.attribute('n_targets')!r}"
            )
        aggregate = _choice(node, "aggregate_function",
                            node.attribute("aggregate_function", "SUM"), AGGREGATES)
    post_transform = _choice(node, "post_transform", node.attribute("post_transform", "NONE"),
                             POST_TRANSFORMS)
    target_ids = target[f"{prefix}_ids"]
    if len(target_ids) and (target_ids.min() < 0 or target_ids.max() >= n_outputs):
        raise ConversionError(
            f"{_describe(node)}: attribute '{prefix}_ids' holds {int(target_ids.max())}, "
            f"outside [0, {n_outputs})"
        )

    # legacy nodes: (tree id, node id) -> position; LEAF rows become leaves
    keys = list(zip(tree_ids.tolist(), arrays["nodes_nodeids"].tolist()))
    position = {}
    for index, key in enumerate(keys):
        if key in position:
            raise ConversionError(
                f"{_describe(node)}: node {key[1]} of tree {key[0]} appears twice in "
                "'nodes_nodeids'"
            )
        position[key] = index
    mode_names = [m.decode() if isinstance(m, bytes) else str(m) for m in arrays["nodes_modes"]]
    is_leaf = np.zeros(len(keys), dtype=bool)
    mode_codes = np.zeros(len(keys), dtype=np.int64)
    for index, name in enumerate(mode_names):
        if name == "LEAF":
            is_leaf[index] = True
        elif name in MODE_NAMES[:BRANCH_MEMBER]:
            mode_codes[index] = MODE_NAMES.index(name)
        else:
            raise ConversionError(
                f"{_describe(node)}: attribute 'nodes_modes' holds {name!r} at position "
                f"{index}; expected one of {list(MODE_NAMES[:BRANCH_MEMBER]) + ['LEAF']}"
            )
    internal_rank = np.cumsum(~is_leaf) - 1
    leaf_rank = np.cumsum(is_leaf) - 1

    def reference(tree: int, node_id: int, role: str) -> int:
        found = position.get((tree, node_id))
        if found is None:
            raise ConversionError(
                f"{_describe(node)}: attribute {role!r} refers to node {node_id} of tree "
                f"{tree}, which 'nodes_nodeids' does not define"
            )
        return int(internal_rank[found]) if not is_leaf[found] else -1 - int(leaf_rank[found])

    internal = np.flatnonzero(~is_leaf)
    true_child = np.array([reference(tree_ids[i], arrays["nodes_truenodeids"][i],
                                     "nodes_truenodeids") for i in internal], dtype=np.int64)
    false_child = np.array([reference(tree_ids[i], arrays["nodes_falsenodeids"][i],
                                      "nodes_falsenodeids") for i in internal], dtype=np.int64)
    roots, seen = [], set()
    for index, tree in enumerate(tree_ids.tolist()):
        if tree not in seen:
            seen.add(tree)
            roots.append(reference(tree, int(arrays["nodes_nodeids"][index]), "nodes_treeids"))

    n_leaves = int(is_leaf.sum())
    leaf_values = np.zeros((n_leaves, n_outputs), dtype=np.float64)
    leaf_has = np.zeros((n_leaves, n_outputs), dtype=bool)
    for tree, node_id, output, weight in zip(
        target[f"{prefix}_treeids"].tolist(), target[f"{prefix}_nodeids"].tolist(),
        target_ids.tolist(), target[f"{prefix}_weights"].tolist(),
    ):
        found = reference(tree, node_id, f"{prefix}_nodeids")
        if found >= 0:
            continue  # weights on an interior node are ignored, as onnxruntime does
        leaf_values[-1 - found, output] += weight
        leaf_has[-1 - found, output] = True

    raw = RawForest(
        feature=arrays["nodes_featureids"][internal],
        threshold=arrays["nodes_values"][internal],
        mode=mode_codes[internal],
        missing_true=arrays["nodes_missing_value_tracks_true"][internal] == 1,
        true_child=true_child,
        false_child=false_child,
        members={},
        roots=np.asarray(roots, dtype=np.int64),
        leaf_values=leaf_values,
        leaf_has=leaf_has,
    )
    base_values = _numeric(node, "base_values")
    base_values = np.zeros(0) if base_values is None else base_values
    allowed = {0, n_outputs} | ({1} if n_outputs <= 2 else set())
    if len(base_values) not in allowed:
        raise ConversionError(
            f"{_describe(node)}: attribute 'base_values' has {len(base_values)} entries; "
            f"expected 0 or {n_outputs} (one per {'class' if kind == 'classifier' else 'target'})"
        )
    return TreeSpec(
        ensemble=expand(raw, _describe(node)), kind=kind, aggregate=aggregate,
        post_transform=post_transform, base_values=base_values, **spec_kwargs,
    )


def parse_tree_ensemble(node: AttributeSource) -> TreeSpec:
    """Parse an opset-5 ``TreeEnsemble`` node."""
    roots = _ints(node, "tree_roots")
    arrays = {
        "nodes_featureids": _ints(node, "nodes_featureids"),
        "nodes_splits": _tensor(node, "nodes_splits", np.float64),
        "nodes_modes": _tensor(node, "nodes_modes", np.int64),
        "nodes_truenodeids": _ints(node, "nodes_truenodeids"),
        "nodes_trueleafs": _ints(node, "nodes_trueleafs"),
        "nodes_falsenodeids": _ints(node, "nodes_falsenodeids"),
        "nodes_falseleafs": _ints(node, "nodes_falseleafs"),
        "nodes_missing_value_tracks_true": _ints(node, "nodes_missing_value_tracks_true", False),
    }
    if arrays["nodes_missing_value_tracks_true"] is None or not len(
            arrays["nodes_missing_value_tracks_true"]):
        arrays["nodes_missing_value_tracks_true"] = np.zeros(
            len(arrays["nodes_featureids"]), dtype=np.int64)
    hitrates = node.attribute("nodes_hitrates")
    if hitrates is not None:
        arrays["nodes_hitrates"] = np.asarray(hitrates).reshape(-1)
    _same_length(node, "nodes_featureids", arrays)
    leaves = {
        "leaf_targetids": _ints(node, "leaf_targetids"),
        "leaf_weights": _tensor(node, "leaf_weights", np.float64),
    }
    _same_length(node, "leaf_targetids", leaves)
    n_targets = int(node.attribute("n_targets", 1))
    targets = leaves["leaf_targetids"]
    if n_targets <= 0 or (len(targets) and (targets.min() < 0 or targets.max() >= n_targets)):
        raise ConversionError(
            f"{_describe(node)}: attribute 'leaf_targetids' must lie in [0, n_targets="
            f"{n_targets})"
        )
    modes = arrays["nodes_modes"]
    if len(modes) and (modes.min() < 0 or modes.max() > BRANCH_MEMBER):
        raise ConversionError(
            f"{_describe(node)}: attribute 'nodes_modes' holds {int(modes.max())}; expected "
            f"0..6 ({', '.join(MODE_NAMES)})"
        )
    members = _member_sets(node, np.flatnonzero(modes == BRANCH_MEMBER))
    n_leaves = len(targets)
    leaf_values = np.zeros((n_leaves, n_targets), dtype=np.float64)
    leaf_values[np.arange(n_leaves), targets] = leaves["leaf_weights"]
    leaf_has = np.zeros((n_leaves, n_targets), dtype=bool)
    leaf_has[np.arange(n_leaves), targets] = True

    def encode(ids: np.ndarray, is_leaf: np.ndarray) -> np.ndarray:
        return np.where(is_leaf != 0, -1 - ids, ids)

    raw = RawForest(
        feature=arrays["nodes_featureids"],
        threshold=arrays["nodes_splits"],
        mode=modes,
        missing_true=arrays["nodes_missing_value_tracks_true"] == 1,
        true_child=encode(arrays["nodes_truenodeids"], arrays["nodes_trueleafs"]),
        false_child=encode(arrays["nodes_falsenodeids"], arrays["nodes_falseleafs"]),
        members=members,
        roots=roots,
        leaf_values=leaf_values,
        leaf_has=leaf_has,
    )
    aggregate = _choice(node, "aggregate_function", int(node.attribute("aggregate_function", 1)),
                        AGGREGATES)
    post_transform = _choice(node, "post_transform", int(node.attribute("post_transform", 0)),
                             POST_TRANSFORMS)
    return TreeSpec(ensemble=expand(raw, _describe(node)), kind="tree_ensemble",
                    aggregate=aggregate, post_transform=post_transform)


def _tensor(node: AttributeSource, name: str, dtype) -> np.ndarray:
    value = node.attribute(name)
    if value is None:
        raise ConversionError(f"{_describe(node)}: attribute {name!r} is required")
    return np.asarray(value).astype(dtype).reshape(-1)


def _member_sets(node: AttributeSource, member_nodes: np.ndarray) -> dict[int, np.ndarray]:
    if not len(member_nodes):
        return {}
    values = node.attribute("membership_values")
    if values is None:
        raise ConversionError(
            f"{_describe(node)}: {len(member_nodes)} node(s) use BRANCH_MEMBER but attribute "
            "'membership_values' is not set"
        )
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    groups, current = [], []
    for value in values.tolist():
        if np.isnan(value):
            groups.append(current)
            current = []
        else:
            current.append(value)
    if current or not len(values) or not np.isnan(values[-1]):
        groups.append(current)
    if len(groups) < len(member_nodes):
        raise ConversionError(
            f"{_describe(node)}: attribute 'membership_values' holds {len(groups)} NaN-delimited "
            f"set(s) but {len(member_nodes)} node(s) use BRANCH_MEMBER"
        )
    return {int(n): np.asarray(groups[i], dtype=np.float64) for i, n in enumerate(member_nodes)}
