"""The level walk of :mod:`bridge.trees.traversal` as one C loop, for CPU tensors.

On CPU the torch walk runs about seven operations per level over the whole batch, and at
10k rows their dispatch and memory passes cost more than onnxruntime's whole call on a deep
tree. ``bridge/trees/_walk.c`` walks blocks of 64 rows through every tree, level by level, in
one loop nest that stays in cache, with the GIL released.

It is an optional extension built at install time (``setup.py``): where it did not build, or
with ``BRIDGE_TREE_KERNEL=0`` in the environment, the torch walk runs. It serves the calls
the Triton kernel serves on CUDA (:mod:`bridge.trees.kernel`): eager calls on float32/float64
rows whose tests are one comparison. This module checks every argument before handing data
addresses to C, and the C code checks every index in the tables before walking them.
"""

from __future__ import annotations

import torch

from bridge.derived import EagerMemo
from bridge.trees import fused

try:  # built by setup.py where a C compiler was found
    from bridge.trees import _walk
except ImportError:
    _walk = None

VALUE_DTYPES = (torch.float32, torch.float64)
INDEX_DTYPES = (torch.int32, torch.int64)


def available() -> bool:
    """Whether the C walk can run here (it was built and ``BRIDGE_TREE_KERNEL`` is not 0)."""
    return _walk is not None and fused.enabled()


class CheckedTables(EagerMemo):
    """The tables :func:`walk` last checked for one caller (a :class:`TraversalTrees`).

    The check is a pass over every slot (~85 us for a depth-20 tree's 35k slots, about half
    of a 1-row call). A later call with the very same tensors, unmodified since (by their
    version counters, which every in-place torch op and ``load_state_dict`` bump), and with
    as many input columns of the same dtype skips it, and the argument checks with it.
    Writes that bypass the counters (through ``.data`` or a numpy view) are not seen.
    Copies and pickles start unchecked.
    """

    def unchanged(self, tensors: tuple[torch.Tensor, ...], key: tuple) -> bool:
        """Whether ``tensors`` are the ones last remembered, unmodified, under ``key`` (the
        input's width and dtype, the mode, the number of tables)."""
        state = self._state
        if state is None or state[2] != key:
            return False
        return all(now is then and now._version == version
                   for now, then, version in zip(tensors, state[0], state[1]))

    def remember(self, tensors: tuple[torch.Tensor, ...], key: tuple) -> None:
        """Record ``tensors`` as checked under ``key`` (not when one was made under
        ``torch.inference_mode``: such tensors have no version counter, so every call
        with them is checked)."""
        if any(t.is_inference() for t in tensors):
            self._state = None
            return
        self._state = (tensors, tuple(t._version for t in tensors), key)


def walk(x: torch.Tensor, feature: torch.Tensor, threshold: torch.Tensor,
         first_child: torch.Tensor, roots: torch.Tensor, depths: torch.Tensor,
         mode: int, checked: CheckedTables | None = None) -> torch.Tensor:
    """Terminal slot [trees, N] of each row of ``x`` [N, F] in each tree.

    Same arguments as :func:`bridge.trees.kernel.walk`, on CPU tensors: ``x`` float32 or
    float64, ``threshold`` in ``x``'s dtype, ``feature``, ``first_child`` and ``roots`` in
    one index dtype (int32 or int64), ``depths`` int32. With ``checked``, tables it
    remembers are not checked again (see :class:`CheckedTables`).

    Raises
    ------
    ValueError
        When a tensor is not on the CPU, or has another dtype or shape than stated.
    IndexError
        When the tables lead a walk to a slot or column that does not exist (checked in C
        before walking).
    RuntimeError
        When the extension is not built (see :func:`available`).
    """
    x, tables, check = _prepared(x, (feature, threshold, first_child, roots, depths), mode,
                                 checked)
    feature, threshold, first_child, roots, depths = tables
    n_rows, n_trees = x.shape[0], roots.shape[0]
    out = torch.empty((n_trees, n_rows), dtype=first_child.dtype)
    if n_rows and n_trees:
        _walk.walk(x.data_ptr(), x.stride(0), x.shape[1], n_rows, n_trees,
                   first_child.numel(), feature.data_ptr(), threshold.data_ptr(),
                   first_child.data_ptr(), roots.data_ptr(), depths.data_ptr(),
                   out.data_ptr(), int(mode), x.dtype == torch.float64,
                   first_child.dtype == torch.int64, check)
        if check and checked is not None:
            checked.remember(tables, (x.shape[1], x.dtype, mode, len(tables)))
    return out


def walk_sum(x: torch.Tensor, feature: torch.Tensor, threshold: torch.Tensor,
             first_child: torch.Tensor, roots: torch.Tensor, depths: torch.Tensor,
             mode: int, values: torch.Tensor, checked: CheckedTables | None = None,
             tree_outputs: torch.Tensor | None = None, n_outputs: int = 0) -> torch.Tensor:
    """Per row of ``x`` [N, F], the sum over trees of ``values`` [slots, outputs] at the
    terminal slot the row reaches in each tree: [N, outputs] in ``x``'s dtype.

    The walk of :func:`walk` with the leaf values added up in the same C loop, tree by tree
    in the order of ``roots`` (onnxruntime's order when ``roots`` is the forest's), in
    ``x``'s dtype; ``values`` must have that dtype. No [trees, N] tensor of slots is made.
    When each tree scores one output (gradient boosting's multiclass trees),
    ``tree_outputs`` (int64, one entry per root) names it and ``values`` [slots] holds the
    one value of each slot: the result has ``n_outputs`` columns.

    Raises
    ------
    ValueError, IndexError, RuntimeError
        As :func:`walk`; ValueError also when ``values`` is not a CPU tensor of ``x``'s dtype
        with one row per slot, or ``tree_outputs`` not an int64 vector with one entry per
        root; IndexError when a tree's output is outside ``0..n_outputs - 1``.
    """
    tables = (feature, threshold, first_child, roots, depths, values)
    if tree_outputs is not None:
        tables += (tree_outputs,)
    x, tables, check = _prepared(x, tables, mode, checked)
    feature, threshold, first_child, roots, depths, values = tables[:6]
    single = tables[6] if tree_outputs is not None else None
    if single is None:
        n_outputs = values.shape[1]
    n_rows = x.shape[0]
    if not (n_rows and n_outputs):
        return torch.zeros((n_rows, n_outputs), dtype=x.dtype)
    sums = torch.empty((n_rows, n_outputs), dtype=x.dtype)
    _walk.walk_sum(x.data_ptr(), x.stride(0), x.shape[1], n_rows, roots.shape[0],
                   first_child.numel(), feature.data_ptr(), threshold.data_ptr(),
                   first_child.data_ptr(), roots.data_ptr(), depths.data_ptr(),
                   values.data_ptr(), n_outputs, 0 if single is None else single.data_ptr(),
                   sums.data_ptr(), int(mode), x.dtype == torch.float64,
                   first_child.dtype == torch.int64, check)
    if check and checked is not None:
        checked.remember(tables, (x.shape[1], x.dtype, mode, len(tables)))
    return sums


def _prepared(x: torch.Tensor, tables: tuple[torch.Tensor, ...], mode: int,
              checked: CheckedTables | None
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], bool]:
    """``x`` and ``tables`` (feature, threshold, first_child, roots, depths[, values[,
    tree_outputs]]) ready for C (features adjacent, tables contiguous), and whether C must
    check the tables' indices (not when ``checked`` remembers these very tables); raises as
    :func:`walk` and :func:`walk_sum`. Remembered tables skip the Python checks too."""
    if _walk is None:
        raise RuntimeError("bridge.trees._walk is not built (no C compiler at install time)")
    _check_rows(x)
    if x.stride(1) != 1:  # rows may be strided (a column slice), features must be adjacent
        x = x.contiguous()
    key = (x.shape[1], x.dtype, mode, len(tables))  # what the tables were checked against
    if checked is not None and checked.unchanged(tables, key):  # (remembered contiguous)
        return x, tables, False
    tables = tuple(t.contiguous() for t in tables)
    _check_tables(x.dtype, *tables[:5], mode)
    if len(tables) > 5:
        _check_values(x.dtype, tables[2].numel(), tables[3].numel(), *tables[5:])
    return x, tables, True


def _check_values(dtype: torch.dtype, slots: int, trees: int, values: torch.Tensor,
                  tree_outputs: torch.Tensor | None = None) -> None:
    """Raise ValueError unless ``values`` (and ``tree_outputs``) fit :func:`walk_sum`."""
    dim = 2 if tree_outputs is None else 1
    if (values.device.type != "cpu" or values.dtype != dtype or values.dim() != dim
            or values.shape[0] != slots):
        shape = "matrix with one row" if dim == 2 else "vector with one entry"
        raise ValueError(f"walk_sum: values must be a CPU {dtype} {shape} per slot ({slots}); "
                         f"got {values.dtype} of shape {tuple(values.shape)} on "
                         f"{values.device}")
    if tree_outputs is not None and (
            tree_outputs.device.type != "cpu" or tree_outputs.dtype != torch.int64
            or tree_outputs.shape != (trees,)):
        raise ValueError(f"walk_sum: tree_outputs must be a CPU int64 vector with one entry "
                         f"per tree ({trees}); got {tree_outputs.dtype} of shape "
                         f"{tuple(tree_outputs.shape)} on {tree_outputs.device}")


def _check_rows(x: torch.Tensor) -> None:
    """Raise ValueError unless ``x`` is a CPU float32/float64 matrix."""
    if not x.is_cpu:
        raise ValueError(f"walk: x is on {x.device}; the C walk runs on CPU")
    if x.dim() != 2 or x.dtype not in VALUE_DTYPES:
        raise ValueError(f"walk: x must be a 2-D float32/float64 tensor; got {x.dtype} "
                         f"of shape {tuple(x.shape)}")


def _check_tables(dtype: torch.dtype, feature: torch.Tensor, threshold: torch.Tensor,
                  first_child: torch.Tensor, roots: torch.Tensor, depths: torch.Tensor,
                  mode: int) -> None:
    """Raise ValueError unless the tables are what :func:`walk` may hand to C for rows of
    ``dtype`` (their indices are checked in C)."""
    named = {"feature": feature, "threshold": threshold, "first_child": first_child,
             "roots": roots, "depths": depths}
    for name, tensor in named.items():
        if tensor.device.type != "cpu":
            raise ValueError(f"walk: {name} is on {tensor.device}; the C walk runs on CPU")
    if threshold.dtype != dtype:
        raise ValueError(f"walk: threshold is {threshold.dtype}; expected x's {dtype}")
    index = first_child.dtype
    if index not in INDEX_DTYPES or feature.dtype != index or roots.dtype != index:
        raise ValueError(f"walk: feature, first_child and roots must share int32 or int64; "
                         f"got {feature.dtype}, {index}, {roots.dtype}")
    if depths.dtype != torch.int32 or depths.shape != roots.shape:
        raise ValueError(f"walk: depths must be int32 with one entry per root; got "
                         f"{depths.dtype} of shape {tuple(depths.shape)}")
    slots = first_child.numel()
    if feature.numel() != slots or threshold.numel() != slots:
        raise ValueError(f"walk: feature, threshold and first_child must have one entry per "
                         f"slot; got {feature.numel()}, {threshold.numel()}, {slots}")
    if not 0 <= int(mode) < 6:
        raise ValueError(f"walk: mode {mode!r} is not a branch mode (0..5)")
