"""A normalized, format-independent description of a tree ensemble, shared by every strategy.

Both ONNX encodings (the legacy ``TreeEnsembleClassifier``/``Regressor`` node tables and the
opset-5 ``TreeEnsemble`` split/leaf tables) are read into :class:`RawForest` and expanded here
into :class:`TreeEnsemble`: every tree a proper tree (no shared subtrees), every tree with at
least one internal node, leaves numbered globally, one row of output weights per leaf.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bridge.errors import ConversionError

# Node comparison codes, as in ai.onnx.ml TreeEnsemble (opset 5) ``nodes_modes``.
# (the fused walks, kernel.py and _walk.c, take codes 0-5 as their comparison mode)
BRANCH_LEQ, BRANCH_LT, BRANCH_GTE, BRANCH_GT, BRANCH_EQ, BRANCH_NEQ, BRANCH_MEMBER = range(7)
MODE_NAMES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ",
              "BRANCH_MEMBER")
AGGREGATES = ("AVERAGE", "SUM", "MIN", "MAX")
POST_TRANSFORMS = ("NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT")


@dataclass
class RawForest:
    """Trees as an ONNX node reads: internal nodes and leaves referencing each other.

    A child reference ``r >= 0`` is internal node ``r``; ``r < 0`` is leaf ``-1 - r``.
    ``roots`` uses the same encoding (a tree may be a lone leaf).
    """

    feature: np.ndarray  # int64 [n_internal]
    threshold: np.ndarray  # float64 [n_internal]
    mode: np.ndarray  # int64 [n_internal], codes above
    missing_true: np.ndarray  # bool [n_internal]
    true_child: np.ndarray  # int64 [n_internal]
    false_child: np.ndarray  # int64 [n_internal]
    members: dict[int, np.ndarray]  # internal node -> set values (BRANCH_MEMBER only)
    roots: np.ndarray  # int64 [n_trees]
    leaf_values: np.ndarray  # float64 [n_leaves, n_outputs]
    leaf_has: np.ndarray  # bool [n_leaves, n_outputs]


@dataclass
class TreeEnsemble:
    """An expanded forest: arrays over internal nodes, leaves and trees.

    Internal nodes of tree ``t`` are contiguous and start with its root; children use the
    :class:`RawForest` encoding (``>= 0`` internal node, ``< 0`` leaf ``-1 - r``).
    """

    node_tree: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    mode: np.ndarray
    missing_true: np.ndarray
    true_child: np.ndarray
    false_child: np.ndarray
    members: dict[int, np.ndarray]
    node_depth: np.ndarray  # depth of each internal node (root: 0)
    tree_root: np.ndarray
    tree_depth: np.ndarray  # internal levels on the longest root-to-leaf path (>= 1)
    leaf_tree: np.ndarray
    leaf_values: np.ndarray  # float64 [n_leaves, n_outputs]
    leaf_has: np.ndarray  # bool [n_leaves, n_outputs]
    n_features: int  # 1 + the largest feature index used
    extra: dict = field(default_factory=dict)

    @property
    def n_trees(self) -> int:
        return int(self.tree_root.shape[0])

    @property
    def n_nodes(self) -> int:
        return int(self.feature.shape[0])

    @property
    def n_leaves(self) -> int:
        return int(self.leaf_values.shape[0])

    @property
    def n_outputs(self) -> int:
        return int(self.leaf_values.shape[1])

    @property
    def max_depth(self) -> int:
        return int(self.tree_depth.max())

    @property
    def modes_used(self) -> list[int]:
        return sorted(int(m) for m in np.unique(self.mode))

    @property
    def filler_mode(self) -> int:
        """The mode of entries that are not real tests (leaves, padding): the forest's only
        mode when it has one (so its tests stay one comparison), else ``<=``."""
        modes = self.modes_used
        return modes[0] if len(modes) == 1 and modes[0] != BRANCH_MEMBER else BRANCH_LEQ

    @property
    def has_missing_tracks(self) -> bool:
        return bool(self.missing_true.any())

    def nodes_per_tree(self) -> np.ndarray:
        return np.bincount(self.node_tree, minlength=self.n_trees)

    def leaves_per_tree(self) -> np.ndarray:
        return np.bincount(self.leaf_tree, minlength=self.n_trees)


def expand(raw: RawForest, what: str) -> TreeEnsemble:
    """Expand ``raw`` into a :class:`TreeEnsemble` (trees copied out of any shared subgraph).

    Raises
    ------
    ConversionError
        When a reference points outside the tables or a tree contains a cycle; ``what``
        names the node in the message.
    """
    n_internal = raw.feature.shape[0]
    n_raw_leaves = raw.leaf_values.shape[0]
    if n_internal:
        limit = max(n_internal, 1) * 4 + n_raw_leaves
    else:
        limit = n_raw_leaves
    columns: dict[str, list] = {k: [] for k in (
        "tree", "raw", "true", "false", "depth")}
    leaf_rows: list[int] = []
    leaf_tree: list[int] = []
    tree_root: list[int] = []
    tree_depth: list[int] = []

    def check(reference: int, role: str) -> None:
        if reference >= n_internal or -1 - reference >= n_raw_leaves:
            raise ConversionError(
                f"{what}: {role} refers to {'node' if reference >= 0 else 'leaf'} "
                f"{reference if reference >= 0 else -1 - reference}, which does not exist "
                f"({n_internal} interior nodes, {n_raw_leaves} leaves)"
            )

    for tree, root in enumerate(raw.roots.tolist()):
        check(root, f"the root of tree {tree}")
        if root < 0:  # a lone leaf: give it a dummy split whose branches both reach it
            columns["tree"].append(tree)
            columns["raw"].append(-1)
            columns["depth"].append(0)
            leaf_rows.append(-1 - root)
            leaf_tree.append(tree)
            columns["true"].append(-len(leaf_rows))
            leaf_rows.append(-1 - root)
            leaf_tree.append(tree)
            columns["false"].append(-len(leaf_rows))
            tree_root.append(len(columns["tree"]) - 1)
            tree_depth.append(1)
            continue
        tree_root.append(len(columns["tree"]))
        deepest = 0
        # (raw reference, parent position, side, depth); preorder, true branch first
        stack = [(root, -1, "", 0)]
        while stack:
            reference, parent, side, depth = stack.pop()
            if reference >= 0:
                if depth > limit:
                    raise ConversionError(
                        f"{what}: tree {tree} has a cycle (node {reference} is its own "
                        "descendant); trees must be acyclic"
                    )
                position = len(columns["tree"])
                columns["tree"].append(tree)
                columns["raw"].append(reference)
                columns["depth"].append(depth)
                columns["true"].append(0)
                columns["false"].append(0)
                deepest = max(deepest, depth + 1)
                for child, child_side in ((raw.false_child[reference], "false"),
                                          (raw.true_child[reference], "true")):
                    child = int(child)
                    check(child, f"node {reference}'s {child_side} branch")
                    stack.append((child, position, child_side, depth + 1))
                encoded = position
            else:
                leaf_rows.append(-1 - reference)
                leaf_tree.append(tree)
                encoded = -len(leaf_rows)
            if parent >= 0:
                columns[side][parent] = encoded
        tree_depth.append(deepest)

    raw_index = np.asarray(columns["raw"], dtype=np.int64)
    dummy = raw_index < 0
    safe = np.where(dummy, 0, raw_index)

    def pick(array: np.ndarray, fill) -> np.ndarray:
        if n_internal == 0:
            return np.full(raw_index.shape, fill, dtype=np.asarray(fill).dtype)
        return np.where(dummy, fill, array[safe])

    members = {
        position: raw.members[int(index)]
        for position, index in enumerate(raw_index.tolist())
        if index >= 0 and int(index) in raw.members
    }
    leaf_index = np.asarray(leaf_rows, dtype=np.int64)
    feature = pick(raw.feature, np.int64(0)).astype(np.int64)
    return TreeEnsemble(
        node_tree=np.asarray(columns["tree"], dtype=np.int64),
        feature=feature,
        threshold=pick(raw.threshold, np.float64(0.0)).astype(np.float64),
        mode=pick(raw.mode, np.int64(BRANCH_LEQ)).astype(np.int64),
        missing_true=pick(raw.missing_true, np.bool_(False)).astype(bool),
        true_child=np.asarray(columns["true"], dtype=np.int64),
        false_child=np.asarray(columns["false"], dtype=np.int64),
        members=members,
        node_depth=np.asarray(columns["depth"], dtype=np.int64),
        tree_root=np.asarray(tree_root, dtype=np.int64),
        tree_depth=np.asarray(tree_depth, dtype=np.int64),
        leaf_tree=np.asarray(leaf_tree, dtype=np.int64),
        leaf_values=raw.leaf_values[leaf_index].astype(np.float64).reshape(
            len(leaf_rows), raw.leaf_values.shape[1]),
        leaf_has=raw.leaf_has[leaf_index].astype(bool).reshape(
            len(leaf_rows), raw.leaf_has.shape[1]),
        n_features=int(feature.max()) + 1 if feature.size else 1,
    )


def leaf_paths(ensemble: TreeEnsemble) -> tuple[list[list[int]], list[list[int]]]:
    """Return, per leaf, its interior ancestors reached by a true branch and by a false one."""
    true_path: list[list[int]] = [[] for _ in range(ensemble.n_leaves)]
    false_path: list[list[int]] = [[] for _ in range(ensemble.n_leaves)]
    node_true: list[list[int]] = [[] for _ in range(ensemble.n_nodes)]
    node_false: list[list[int]] = [[] for _ in range(ensemble.n_nodes)]
    # preorder: a parent is always visited before its children
    for node in range(ensemble.n_nodes):
        for child, side in ((int(ensemble.true_child[node]), True),
                            (int(ensemble.false_child[node]), False)):
            trues = node_true[node] + ([node] if side else [])
            falses = node_false[node] + ([] if side else [node])
            if child >= 0:
                node_true[child], node_false[child] = trues, falses
            else:
                true_path[-1 - child], false_path[-1 - child] = trues, falses
    return true_path, false_path
