"""Bit-vector strategy: a row's failed tests on one feature are a prefix of its sorted thresholds.

Each tree's leaves are the bits of one int32 word (int64 above 32 leaves, at most 64). A test that
holds rules out the leaves under its false branch, one that fails rules out those under its
true branch; with every test of a tree applied, exactly one leaf bit survives, the leaf the
row reaches (any other leaf is ruled out at its lowest common ancestor with that one).

Sorting one feature's tests of one comparison mode by threshold turns "which of them hold"
into one number, the value's rank among the thresholds. So the combined mask of a feature
group's tests is a table computed once per rank and tree, ``masks[group, rank, tree]``, and a
row costs one binary search per group plus, per group, one trees-wide row fetch and AND,
whatever the trees' depth. This is the QuickScorer idea (Lucchese et al., SIGIR 2015)
vectorised across rows instead of walked per row.

Needs at most 64 leaves per tree and ordering tests (``<=``, ``<``, ``>=``, ``>``): see
:func:`bitvector_unsupported`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bridge.trees.ensemble import (
    BRANCH_GT,
    BRANCH_GTE,
    BRANCH_LEQ,
    BRANCH_LT,
    TreeEnsemble,
    leaf_paths,
)

MAX_LEAVES = 64
# entries ([rows, trees] words) per mask-AND pass: measured best at ~1M on a 2-core VM
# (HistGradientBoosting 100 trees, 10k rows: 2**14 43 ms, 2**16 31, 2**18 28, 2**20 24.5);
# fewer, larger passes beat cache locality because each pass is ~2 ops per feature group
AND_ENTRIES = 2**20
ORDERING_MODES = (BRANCH_LEQ, BRANCH_LT, BRANCH_GTE, BRANCH_GT)
# modes whose rank counts thresholds <= x; the others count thresholds < x
_RIGHT = (BRANCH_LT, BRANCH_GTE)
# modes whose tests hold on the low-rank side (threshold below the value)
_PREFIX_HOLDS = (BRANCH_GTE, BRANCH_GT)


def bitvector_unsupported(ensemble: TreeEnsemble) -> str | None:
    """Why the bit-vector strategy cannot run this forest, or None when it can."""
    if ensemble.n_nodes == 0:
        return "the forest has no tests"
    most = int(ensemble.leaves_per_tree().max())
    if most > MAX_LEAVES:
        return f"a tree has {most} leaves (at most {MAX_LEAVES})"
    other = sorted(set(ensemble.modes_used) - set(ORDERING_MODES))
    if other:
        return "it uses equality or set-membership tests (only <=, <, >=, > are ordered)"
    groups = bitvector_groups(ensemble)
    widest = int(max(np.unique(np.stack([ensemble.feature, ensemble.mode]), axis=1,
                               return_counts=True)[1]))
    if groups * 2 ** widest.bit_length() >= 2**24:  # search offsets must be exact in float32
        return f"its {groups} feature groups hold too many thresholds ({widest} in one)"
    return None


def bitvector_groups(ensemble: TreeEnsemble) -> int:
    """Number of (feature, comparison mode) groups: searches and mask fetches per row."""
    return len({(int(f), int(m)) for f, m in zip(ensemble.feature, ensemble.mode)})


def bitvector_size(ensemble: TreeEnsemble) -> int:
    """Entries of the mask table: (tests + 2 per feature group) x trees."""
    return (ensemble.n_nodes + 2 * bitvector_groups(ensemble)) * ensemble.n_trees


class BitvectorTrees(nn.Module):
    """Leaf reached by each row in each tree, by ANDing precomputed per-rank leaf masks."""

    def __init__(self, ensemble: TreeEnsemble):
        super().__init__()
        n_trees = ensemble.n_trees
        leaf_bit = np.zeros(ensemble.n_leaves, dtype=np.int64)
        for tree in range(n_trees):
            leaves = np.flatnonzero(ensemble.leaf_tree == tree)
            leaf_bit[leaves] = np.arange(len(leaves))
        under_true = np.zeros(ensemble.n_nodes, dtype=np.uint64)
        under_false = np.zeros(ensemble.n_nodes, dtype=np.uint64)
        true_path, false_path = leaf_paths(ensemble)
        for leaf in range(ensemble.n_leaves):
            bit = np.uint64(1) << np.uint64(leaf_bit[leaf])
            under_true[true_path[leaf]] |= bit
            under_false[false_path[leaf]] |= bit
        holds = (~under_false).view(np.int64)  # leaves still possible when the test holds
        fails = (~under_true).view(np.int64)
        # bits that are leaves of each tree: every table row keeps only those
        counts_per_tree = ensemble.leaves_per_tree().astype(np.uint64)
        valid = np.where(counts_per_tree >= 64, np.uint64(2**64 - 1),
                         (np.uint64(1) << np.minimum(counts_per_tree, 63)) - np.uint64(1))
        valid = valid.view(np.int64)

        keys = sorted({(int(m), int(f)) for f, m in zip(ensemble.feature, ensemble.mode)},
                      key=lambda key: (key[0] in _RIGHT, key))  # left-side groups first
        tables, sorted_thresholds, counts = [], [], []
        for mode, feature in keys:
            nodes = np.flatnonzero((ensemble.mode == mode) & (ensemble.feature == feature))
            nodes = nodes[np.argsort(ensemble.threshold[nodes], kind="stable")]
            tree = ensemble.node_tree[nodes]
            low, high = (holds, fails) if mode in _PREFIX_HOLDS else (fails, holds)
            tables.append(valid & _rank_masks(
                nodes, tree, low, high, n_trees,
                np.where(ensemble.missing_true[nodes], holds[nodes], fails[nodes])))
            sorted_thresholds.append(ensemble.threshold[nodes])
            counts.append(len(nodes))
        # thresholds padded with +inf to 2**levels - 1 per group, for a branch-free search
        levels = max(counts).bit_length()
        padded = np.full((len(keys), 2**levels - 1), np.inf)
        for i, values in enumerate(sorted_thresholds):
            padded[i, : len(values)] = values
        offsets = np.concatenate([[0], np.cumsum([len(t) for t in tables])[:-1]])
        terminal_leaf = np.zeros(n_trees * MAX_LEAVES, dtype=np.int64)
        terminal_leaf[ensemble.leaf_tree * MAX_LEAVES + leaf_bit] = np.arange(ensemble.n_leaves)

        self.n_trees: int = n_trees
        self.and_rows: int = max(1, AND_ENTRIES // n_trees)
        self.n_groups: int = len(keys)
        self.n_left: int = sum(1 for mode, _ in keys if mode not in _RIGHT)
        self.terminal_leaf: np.ndarray = terminal_leaf  # forward returns tree * 64 + bit
        masks = torch.from_numpy(np.concatenate(tables))
        # 32-bit words when every tree has at most 32 leaves: half the memory traffic
        word = torch.int32 if int(counts_per_tree.max()) <= 32 else torch.int64
        self.register_buffer("masks", masks.to(word) if word == torch.int32 else masks)
        self.register_buffer("group_feature", torch.tensor([f for _, f in keys]))
        self.levels: int = levels
        self.register_buffer("thresholds64", torch.from_numpy(padded.reshape(-1)))
        self.register_buffer("thresholds32", self.thresholds64.float())
        self.register_buffer("search_base", torch.arange(len(keys)).mul(2**levels - 1)
                             .unsqueeze(1))
        self.register_buffer("count", torch.tensor(counts).unsqueeze(1))
        self.register_buffer("offset", torch.from_numpy(offsets).unsqueeze(1))
        bias = 127 if word == torch.int32 else 1023  # the exponent field's bias
        self.register_buffer("tree_base", (torch.arange(n_trees) * MAX_LEAVES - bias)
                             .to(torch.float32 if word == torch.int32 else torch.float64)
                             .unsqueeze(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the terminal id [N, n_trees] of ``x`` [N, F] (see :attr:`terminal_leaf`).

        Rows first (unlike the other strategies): the masks are fetched a row at a time.
        """
        values = x.t().index_select(0, self.group_feature)  # [groups, N]
        position = self.rank(values) + self.offset
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return self.leaves(position)  # one pass: a traced batch must stay symbolic
        parts = [self.leaves(position[:, start:start + self.and_rows])
                 for start in range(0, max(values.shape[1], 1), self.and_rows)]  # 0 rows: one
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def rank(self, values: torch.Tensor) -> torch.Tensor:
        """Per group and row: how many of the group's sorted tests fail (or hold) (int64).

        A branch-free binary search over the padded thresholds, all groups and rows at once
        (``torch.searchsorted`` searches one value at a time, ~5x slower here). Groups of
        ``<``/``>=`` tests count thresholds ``<= x``, the others ``< x``; NaN maps to the
        group's NaN row.
        """
        table = self.thresholds64 if values.dtype == torch.float64 else (
            self.thresholds32.to(values.dtype))
        left, base = self.n_left, self.search_base
        if left == self.n_groups:
            found = _search(table, base, values, self.levels, strict=True)
        elif left == 0:
            found = _search(table, base, values, self.levels, strict=False)
        else:
            found = torch.cat([
                _search(table, base[:left], values[:left], self.levels, strict=True),
                _search(table, base[left:], values[left:], self.levels, strict=False)])
        rank = torch.minimum(found.to(torch.int64), self.count)  # +inf padding, x = +inf
        return torch.where(torch.isnan(values), self.count + 1, rank)

    def leaves(self, position: torch.Tensor) -> torch.Tensor:
        """Terminal ids [rows, trees] from the table positions [groups, rows]."""
        reached = self.masks.index_select(0, position[0])  # [rows, trees]
        fetched = torch.empty_like(reached)
        for group in range(1, self.n_groups):
            torch.index_select(self.masks, 0, position[group], out=fetched)
            reached.bitwise_and_(fetched)
        # one bit survives per (row, tree): its index is the exponent of the word as a float
        # (a power of two converts exactly; abs() clears the top bit's sign)
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            # exporters have no bit reinterpretation: log2 of a power of two, rounded
            bias = 127.0 if reached.dtype == torch.int32 else 1023.0
            field = torch.round(torch.log2(reached.to(torch.float64).abs())) + bias
            return (field + self.tree_base.to(torch.float64)).to(torch.int32)
        # the exponent field read arithmetically: bits / 2**mantissa_bits is exact here and
        # much faster on CPU than an integer shift
        if reached.dtype == torch.int32:
            bits = reached.to(torch.float32).abs_().view(torch.int32).to(torch.float32)
            exponent = torch.add(self.tree_base, bits, alpha=2.0**-23)
        else:
            bits = reached.to(torch.float64).abs_().view(torch.int64).to(torch.float64)
            exponent = torch.add(self.tree_base, bits, alpha=2.0**-52)
        return exponent.to(torch.int32)


def _search(table: torch.Tensor, base: torch.Tensor, values: torch.Tensor, levels: int,
            strict: bool) -> torch.Tensor:
    """Count, per entry of ``values`` [groups, N], the thresholds of its group below it
    (``<``, or ``<=`` when not ``strict``): ``levels`` halving steps, each one gather and one
    comparison for every entry. Group ``g``'s sorted thresholds start at ``base[g]`` in
    ``table`` and are padded with +inf to ``2**levels - 1``."""
    dtype = torch.float64 if values.dtype == torch.float64 else torch.float32
    found = torch.zeros(values.shape, dtype=dtype, device=values.device)
    below = torch.empty_like(found)
    offset = base.to(dtype)  # exact: offsets stay below 2**24 (see bitvector_unsupported)
    for level in range(levels - 1, -1, -1):
        step = 1 << level
        probe = torch.add(found, offset).add_(step - 1).to(torch.int32)
        probed = table.index_select(0, probe.view(-1)).view(found.shape)
        if strict:
            torch.lt(probed, values, out=below)
        else:
            torch.le(probed, values, out=below)
        found.add_(below, alpha=step)
    return found


def _rank_masks(nodes: np.ndarray, tree: np.ndarray, low: np.ndarray, high: np.ndarray,
                n_trees: int, nan_masks: np.ndarray) -> np.ndarray:
    """Per rank ``k`` (0..K) and tree: AND of ``low`` masks of ranks < k and ``high`` of >= k.

    A last row holds the NaN case (``nan_masks`` per test). Trees without tests in the group
    keep every leaf (all bits set).
    """
    count = len(nodes)
    rows = np.arange(count)
    low_table = np.full((count, n_trees), -1, dtype=np.int64)
    low_table[rows, tree] = low[nodes]
    high_table = np.full((count, n_trees), -1, dtype=np.int64)
    high_table[rows, tree] = high[nodes]
    nan_table = np.full((count, n_trees), -1, dtype=np.int64)
    nan_table[rows, tree] = nan_masks
    below = np.full((count + 1, n_trees), -1, dtype=np.int64)
    below[1:] = np.bitwise_and.accumulate(low_table, axis=0)
    above = np.full((count + 1, n_trees), -1, dtype=np.int64)
    above[:count] = np.bitwise_and.accumulate(high_table[::-1], axis=0)[::-1]
    nan_row = np.bitwise_and.reduce(nan_table, axis=0)
    return np.concatenate([below & above, nan_row[None]])
