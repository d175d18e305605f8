"""Level-by-level traversal: every (row, tree) pair walks one level per step, by gathers.

Each interior node's false and true children sit in adjacent slots (false first); a leaf is
a terminal slot whose test never holds and whose first child is itself, so ``depth`` steps
of ``slot = first_child[slot] + test`` end every walk at its leaf whatever its own depth.
Index tables are int32 and the state is tree-major, so trees shallower than a level drop out.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
from torch import nn

from bridge.derived import Derived, eager_call
from bridge.trees import kernel, native
from bridge.trees.ensemble import (
    BRANCH_GT,
    BRANCH_GTE,
    BRANCH_LEQ,
    BRANCH_LT,
    BRANCH_NEQ,
    TreeEnsemble,
)
from bridge.trees.predicates import COMPARISONS, NodeTests

# A terminal slot's test compares feature 0 with a NaN threshold: every ordering and
# equality test of a NaN is false, only "!=" is true, so its first child is the slot itself
# (one before it under "!="), and a walk at a leaf stays there whatever the row holds.
TERMINAL_THRESHOLD = float("nan")


class TraversalTrees(nn.Module):
    """Leaf reached by each row in each tree, found by one gather step per level.

    Works tree-major: the walk state is ``[trees, rows]`` with trees sorted deepest first, so
    level ``d`` advances only the contiguous prefix of trees deeper than ``d``.
    """

    def __init__(self, ensemble: TreeEnsemble):
        super().__init__()
        terminal_mode = ensemble.filler_mode
        n_slots = ensemble.n_nodes + ensemble.n_leaves
        stay = 1 if terminal_mode == BRANCH_NEQ else 0  # the terminal test's outcome
        first_child = np.zeros(n_slots, dtype=np.int64)
        feature = np.zeros(n_slots, dtype=np.int64)
        threshold = np.full(n_slots, TERMINAL_THRESHOLD)
        mode = np.full(n_slots, terminal_mode, dtype=np.int64)
        missing = np.zeros(n_slots, dtype=bool)
        members: dict[int, np.ndarray] = {}
        slot_leaf = np.zeros(n_slots, dtype=np.int64)
        # the slot of each interior node and of each leaf (for strategies that start walks
        # below the root: see lookup.py)
        self.node_slot: np.ndarray = np.zeros(ensemble.n_nodes, dtype=np.int64)
        self.leaf_slot: np.ndarray = np.zeros(ensemble.n_leaves, dtype=np.int64)
        order = np.argsort(-ensemble.tree_depth, kind="stable")  # deepest trees first
        roots = np.zeros(ensemble.n_trees, dtype=np.int64)
        next_slot = 0
        for rank, tree in enumerate(order.tolist()):
            roots[rank] = next_slot
            queue = deque([(int(ensemble.tree_root[tree]), next_slot)])
            next_slot += 1
            while queue:
                reference, slot = queue.popleft()
                if reference < 0:
                    first_child[slot] = slot - stay
                    slot_leaf[slot] = -1 - reference
                    self.leaf_slot[-1 - reference] = slot
                    continue
                self.node_slot[reference] = slot
                feature[slot] = ensemble.feature[reference]
                threshold[slot] = ensemble.threshold[reference]
                mode[slot] = ensemble.mode[reference]
                missing[slot] = ensemble.missing_true[reference]
                if reference in ensemble.members:
                    members[slot] = ensemble.members[reference]
                first_child[slot] = next_slot  # false child first: next = first + test
                queue.append((int(ensemble.false_child[reference]), next_slot))
                queue.append((int(ensemble.true_child[reference]), next_slot + 1))
                next_slot += 2
        depths = ensemble.tree_depth[order]
        self.tree_order: np.ndarray = order  # the tree of each row of forward's result
        self.n_features: int = ensemble.n_features
        self.missing_fill: float | None = _missing_fill(mode, threshold, missing)
        if self.missing_fill is not None:
            # tests whose NaN goes to the true branch read a copy of x with NaN replaced by a
            # value that passes every such test: one comparison then decides every test
            feature = filled_column(feature, missing, ensemble.n_features)
            missing = np.zeros_like(missing)
        # trees still walking at each level (a prefix of the depth-sorted trees)
        self.active: list[int] = [int((depths > level).sum())
                                  for level in range(ensemble.max_depth)]
        index = index_dtype(n_slots)
        self.register_buffer("feature", torch.from_numpy(feature).to(index))
        self.register_buffer("first_child", torch.from_numpy(first_child).to(index))
        self.register_buffer("roots", torch.from_numpy(roots).to(index))
        self.register_buffer("depths", torch.from_numpy(depths.astype(np.int32)))
        self.terminal_leaf: np.ndarray = slot_leaf  # forward returns slots; see LeafAggregator
        # the roots' tables as columns [trees, 1], for the first level's shortcut
        self.register_buffer("root_feature", self.feature[self.roots].unsqueeze(1))
        self.register_buffer("root_child", self.first_child[self.roots].unsqueeze(1))
        self.tests = NodeTests(threshold, mode, missing, members)
        self.simple_tests: bool = self.tests.simple  # (a plain attribute: read every call)
        self.register_buffer("root_threshold64", self.tests.threshold64[self.roots].unsqueeze(1))
        self.register_buffer("root_threshold32", self.root_threshold64.float())
        self.checked_tables = native.CheckedTables()  # what the C walk has checked
        # walk_and_sum walks the trees in the forest's order (as onnxruntime adds them up):
        # the roots and depths in that order, kept between calls, and their own check record
        self.forest_rank = torch.from_numpy(np.argsort(order))
        self.forest_roots, self.forest_depths = Derived(), Derived()
        self.checked_sum_tables = native.CheckedTables()

    def step(self, values: torch.Tensor, slot: torch.Tensor,
             row_start: torch.Tensor) -> torch.Tensor:
        """One level for the walks at ``slot`` (any shape; ``row_start`` broadcasts to it).

        Three contiguous table gathers per level (feature, threshold, first child): on CPU
        strided views of packed tables cost more than the gather they save.
        """
        flat = slot.reshape(-1)
        position = self.feature.index_select(0, flat).view(slot.shape) + row_start
        value = values.index_select(0, position.view(-1)).view(slot.shape)
        if self.tests.simple:
            threshold = self.tests.thresholds(values.dtype).index_select(0, flat)
            outcome = self.tests.compare_into(value, threshold.view(slot.shape), value)
        else:
            outcome = self.tests.outcome(value, slot)
        test = outcome.to(self.first_child.dtype)
        return self.first_child.index_select(0, flat).view(slot.shape) + test

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the terminal slot [n_trees, N] of ``x`` [N, F] (see :attr:`terminal_leaf`)."""
        n_rows = x.shape[0]
        if self.kernel_runs(x):
            filled = filled_rows(x, self.n_features, self.missing_fill)
            tables = (self.feature, self.tests.thresholds(filled.dtype), self.first_child,
                      self.roots, self.depths, self.tests.single_mode)
            if filled.is_cuda:
                return kernel.walk(filled, *tables)
            return native.walk(filled, *tables, checked=self.checked_tables)
        values, row_start = flat_rows(filled_rows(x, self.n_features, self.missing_fill),
                                      self.feature.dtype)
        if self._buffered(row_start):
            return self._walk_in_buffers(values, None, row_start, self.active[1:])
        if self.tests.simple:  # every walk is at its root: no per-walk table lookups
            position = (self.root_feature + row_start).view(-1)
            value = values.index_select(0, position).view(-1, n_rows)
            outcome = self.tests.compare_into(value, self.root_threshold(value.dtype), value)
            slot = self.root_child + outcome.to(self.root_child.dtype)
        else:
            slot = self.step(values, self.roots.unsqueeze(1).expand(-1, n_rows), row_start)
        return self.walk(values, slot, row_start, self.active[1:])

    def walk_and_sum(self, x: torch.Tensor, values: torch.Tensor,
                     tree_outputs: torch.Tensor | None = None, n_outputs: int = 0
                     ) -> torch.Tensor:
        """Per row of ``x`` [N, F], the sum over the trees of ``values`` [slots, outputs] at
        the slot reached, trees taken in the forest's order, in ``x``'s dtype: the C walk
        with the leaf sums in its loop (:func:`bridge.trees.native.walk_sum`, which also
        says what ``tree_outputs`` and ``n_outputs`` do). Only for CPU calls where
        :meth:`kernel_runs`."""
        filled = filled_rows(x, self.n_features, self.missing_fill)
        buffers = self._buffers  # (nn.Module's attribute lookup costs ~0.3 us a name)
        roots = self.forest_roots.get(buffers["roots"], lambda r: r[self.forest_rank])
        depths = self.forest_depths.get(buffers["depths"], lambda d: d[self.forest_rank])
        tests = self._modules["tests"]
        return native.walk_sum(filled, buffers["feature"], tests.thresholds(filled.dtype),
                               buffers["first_child"], roots, depths, tests.single_mode,
                               values, self.checked_sum_tables, tree_outputs, n_outputs)

    def kernel_runs(self, x: torch.Tensor) -> bool:
        """Whether this call walks in one fused loop: eager calls with float32/float64 rows
        and one comparison for every test, on CUDA as a Triton kernel
        (:mod:`bridge.trees.kernel`), on CPU in C (:mod:`bridge.trees.native`)."""
        if not (self.simple_tests and (x.dtype == torch.float32 or x.dtype == torch.float64)
                and eager_call()):
            return False
        if x.is_cpu:
            return native.available()
        return (x.device.type == "cuda" and self.roots.shape[0] <= kernel.MAX_TREES
                and kernel.available())

    def root_threshold(self, dtype: torch.dtype) -> torch.Tensor:
        """The roots' thresholds [trees, 1] in ``dtype``."""
        if dtype == torch.float64:
            return self.root_threshold64
        return self.root_threshold32.to(dtype)

    def walk(self, values: torch.Tensor, slot: torch.Tensor, row_start: torch.Tensor,
             widths: list[int]) -> torch.Tensor:
        """Advance ``slot`` [trees, N] one level per entry of ``widths`` (the number of
        depth-sorted trees still walking at that level); may reuse ``slot``'s memory."""
        if widths and self._buffered(row_start):
            return self._walk_in_buffers(values, slot.contiguous(), row_start, widths)
        full = slot.shape[0]
        for width in widths:
            following = self.step(values, slot[:width], row_start)
            slot = following if width == full else torch.cat([following, slot[width:]])
        return slot

    def _buffered(self, row_start: torch.Tensor) -> bool:
        """Whether :meth:`_walk_in_buffers` can run this call (eager mode, one comparison,
        positions in the tables' index dtype)."""
        return self.tests.simple and row_start.dtype == self.feature.dtype and eager_call()

    def _walk_in_buffers(self, values: torch.Tensor, slot: torch.Tensor | None,
                         row_start: torch.Tensor, widths: list[int]) -> torch.Tensor:
        """:meth:`walk` for :attr:`NodeTests.simple` tests in eager mode, from ``slot`` or,
        when it is None, from the roots: every op of every level writes into flat buffers
        allocated once per call, through views made only when the width changes.

        Fresh outputs for every op cost page faults (measured a third of the time: depth-20
        tree, 100k rows, 14.4 vs 9.5 ms), and at 10k rows the Python work of a general step
        (reshapes, views, dispatch on the test kind) cost as much as the ops themselves
        (depth-20 tree: 2.4 ms per call against 1.3 ms in this loop). Traced
        and exported graphs take :meth:`step` (a buffer sized from a traced shape would fix
        the batch).
        """
        compare = COMPARISONS[self.tests.single_mode]
        feature, first_child = self.feature, self.first_child
        threshold = self.tests.thresholds(values.dtype)
        full, n_rows = (self.roots.shape[0] if slot is None else slot.shape[0]), row_start.shape[1]
        current = (torch.empty(full * n_rows, dtype=feature.dtype, device=values.device)
                   if slot is None else slot.view(-1))
        spare, at, outcome = (torch.empty_like(current) for _ in range(3))
        value = torch.empty(current.shape, dtype=values.dtype, device=values.device)
        bound = torch.empty_like(value)
        at_rows, walking = at.view(full, n_rows), full  # trees past walking are at leaves
        if slot is None:  # the roots' tables are columns [trees, 1]: no per-walk lookups
            torch.add(self.root_feature, row_start, out=at_rows)
            torch.index_select(values, 0, at, out=value)
            compare(value.view(full, n_rows), self.root_threshold(values.dtype),
                    out=outcome.view(full, n_rows))
            torch.add(self.root_child, outcome.view(full, n_rows), out=current.view(full, n_rows))
        for width in widths:
            size = width * n_rows
            if width < walking:  # keep the finished walks in both buffers; narrower views
                spare[size:walking * n_rows].copy_(current[size:walking * n_rows])
                at, value, bound, outcome = (at[:size], value[:size], bound[:size],
                                             outcome[:size])
                at_rows, walking = at.view(width, n_rows), width
            now, following = ((current, spare) if width == full
                              else (current[:size], spare[:size]))
            torch.index_select(feature, 0, now, out=at)
            at_rows.add_(row_start)
            torch.index_select(values, 0, at, out=value)
            torch.index_select(threshold, 0, now, out=bound)
            compare(value, bound, out=outcome)
            torch.index_select(first_child, 0, now, out=following).add_(outcome)
            current, spare = spare, current
        return current.view(full, n_rows)


def _missing_fill(mode: np.ndarray, threshold: np.ndarray,
                  missing: np.ndarray) -> float | None:
    """A value that passes every test tracking NaN to its true branch, or None.

    Exists for forests of one ``<=``/``<`` mode (-inf passes) or ``>=``/``>`` mode (+inf
    passes), unless a strict test sits at an infinite threshold that the value would fail.
    """
    if not missing.any():
        return None
    modes = np.unique(mode[missing])
    if len(modes) != 1 or len(np.unique(mode)) != 1:
        return None
    code, tracked = int(modes[0]), threshold[missing]
    if code == BRANCH_LEQ or (code == BRANCH_LT and not np.isneginf(tracked).any()):
        return float("-inf")
    if code == BRANCH_GTE or (code == BRANCH_GT and not np.isposinf(tracked).any()):
        return float("inf")
    return None


def index_dtype(n_entries: int) -> torch.dtype:
    """int32 for index tables that fit it (half the memory traffic of int64), else int64."""
    return torch.int32 if n_entries < 2**31 - 1 else torch.int64


def filled_rows(x: torch.Tensor, n_features: int, missing_fill: float | None) -> torch.Tensor:
    """``x`` itself, or with ``missing_fill`` its first ``n_features`` columns followed by a
    copy of them in which NaN is replaced by ``missing_fill`` ([N, 2 * n_features])."""
    if missing_fill is None:
        return x
    features = x[:, :n_features]
    filled = torch.nan_to_num(features, nan=missing_fill, posinf=float("inf"),
                              neginf=float("-inf"))
    return torch.cat([features, filled], 1)


def filled_column(feature: np.ndarray, missing_true: np.ndarray, n_features: int) -> np.ndarray:
    """The column of :func:`filled_rows`' layout each test reads: its feature, or for tests
    tracking NaN to the true branch, that feature in the NaN-filled copy."""
    return np.where(missing_true, feature + n_features, feature)


def flat_rows(x: torch.Tensor, index: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` [N, F] flattened row-major, and each row's start [1, N].

    Feature ``f`` of row ``n`` is then ``values[row_start[n] + f]``: one add and one flat
    ``index_select``, about twice as fast on CPU as ``gather`` along a dimension. A
    contiguous ``x`` is read in place (a copy costs page faults: 0.1 ms for 10k rows of 20
    features).
    """
    n_rows, stride = x.shape
    if n_rows * stride >= 2**31:  # flat positions would overflow int32
        index = torch.int64
    row_start = torch.arange(0, n_rows * stride, stride, dtype=index, device=x.device)
    return x.reshape(-1), row_start.unsqueeze(0)
