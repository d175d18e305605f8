"""The level walk of :mod:`bridge.trees.traversal` as one Triton kernel, for CUDA.

In eager mode each level of the walk launches about eight small torch operations, and on a
GPU their launch cost, not their work, sets the time: a depth-20 tree took 1.2 ms on an H100
at 10k rows whatever the batch (``benchmarks/results/trees-h100-eager.md``). This kernel walks
every (row, tree) pair from its root to its leaf in one launch: one program per block of
rows and tree, which loads a node's feature, the row's value and the node's threshold per
level, then steps to ``first_child + outcome``.

It runs the walks whose tests are one comparison (:attr:`NodeTests.simple`, NaN already
replaced where tracked) on float32 or float64 inputs, in eager mode, when Triton imports.
Anything else, and ``BRIDGE_TREE_KERNEL=0`` in the environment, keeps the torch walk.
``TRITON_INTERPRET=1`` (set before bridge is imported) runs it on CPU tensors, for tests.
"""

from __future__ import annotations

import torch

from bridge.trees import fused

try:  # an optional dependency: CUDA builds of torch bring it, CPU builds do not
    import triton
    import triton.language as tl
except Exception:  # noqa: BLE001 - absent, or broken (a version torch does not match): the
    triton = None  # torch walk runs, trees stay usable

BLOCK_ROWS = 128  # rows per program: one walk per thread
MAX_TREES = 65535  # the launch grid's second dimension: one program column per tree


def available() -> bool:
    """Whether the kernel can run here (Triton imports and ``BRIDGE_TREE_KERNEL`` is not 0)."""
    return triton is not None and fused.enabled()


if triton is not None:

    @triton.jit
    def _walk(x_ptr, stride, feature_ptr, threshold_ptr, child_ptr, roots_ptr, depth_ptr,
              out_ptr, n_rows, MODE: tl.constexpr, BLOCK: tl.constexpr):
        rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tree = tl.program_id(1)
        inside = rows < n_rows
        start = rows.to(tl.int64) * stride
        slot = tl.zeros([BLOCK], dtype=tl.int64) + tl.load(roots_ptr + tree).to(tl.int64)
        for _ in range(tl.load(depth_ptr + tree)):
            value = tl.load(x_ptr + start + tl.load(feature_ptr + slot), mask=inside, other=0.0)
            threshold = tl.load(threshold_ptr + slot)
            if MODE == 0:
                outcome = value <= threshold
            elif MODE == 1:
                outcome = value < threshold
            elif MODE == 2:
                outcome = value >= threshold
            elif MODE == 3:
                outcome = value > threshold
            elif MODE == 4:
                outcome = value == threshold
            else:
                outcome = value != threshold
            slot = tl.load(child_ptr + slot).to(tl.int64) + outcome.to(tl.int64)
        out = out_ptr + tree.to(tl.int64) * n_rows + rows
        tl.store(out, slot.to(out_ptr.dtype.element_ty), mask=inside)


def walk(x: torch.Tensor, feature: torch.Tensor, threshold: torch.Tensor,
         first_child: torch.Tensor, roots: torch.Tensor, depths: torch.Tensor,
         mode: int) -> torch.Tensor:
    """Terminal slot [trees, N] of each row of ``x`` [N, F] in each tree.

    Parameters
    ----------
    x : Tensor
        The rows, float32 or float64, on the tables' device.
    feature, threshold, first_child : Tensor
        Per slot: the column tested, the threshold (``x``'s dtype), the false child (the true
        child follows it; a terminal slot leads to itself).
    roots, depths : Tensor
        Per tree: its root slot and the levels its walks take.
    mode : int
        The branch mode every test uses (``BRANCH_LEQ`` ... ``BRANCH_NEQ``).
    """
    if x.stride(1) != 1:
        x = x.contiguous()
    n_rows, n_trees = x.shape[0], roots.shape[0]
    out = torch.empty((n_trees, n_rows), dtype=first_child.dtype, device=x.device)
    if n_rows and n_trees:
        grid = (triton.cdiv(n_rows, BLOCK_ROWS), n_trees)
        arguments = (x, x.stride(0), feature, threshold, first_child, roots, depths, out, n_rows)
        if x.is_cuda and x.device.index != torch.cuda.current_device():
            with torch.cuda.device(x.device):  # Triton launches on the current device
                _walk[grid](*arguments, MODE=mode, BLOCK=BLOCK_ROWS)
        else:
            _walk[grid](*arguments, MODE=mode, BLOCK=BLOCK_ROWS)
    return out
