"""Data-parallel training for ``NeuralNet*(..., distributed=True)`` with torch.distributed.

Under a launcher that sets the torch.distributed environment (``torchrun``), ``fit`` joins the
process group (gloo on CPU, NCCL on CUDA; initialised here unless the caller did), trains
through a ``DistributedDataParallel`` wrapper, gives each rank its shard of every epoch,
averages the epoch's losses across ranks and copies rank 0's history row to every rank, and
lets only rank 0 run the callbacks that write (checkpoints, logs). ``module_`` stays the plain
module, so pickling and ``save_params`` see no ``module.`` prefix. Without a launcher (or with
a world size of 1) nothing here runs and the net trains as one process.

Sharding follows ``torch.utils.data.DistributedSampler``: one order per epoch, the same on
every rank (shuffled from a seed rank 0 shares), rank ``r`` taking rows ``r, r+K, r+2K, ...``;
when ``K`` does not divide the rows, the first rows of the order are repeated to pad every
rank to ``ceil(n / K)`` rows (none are dropped).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import weakref
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from bridge.errors import DistributedError

__all__ = ["is_distributed_run", "distributed_fit", "training_module", "sharded_iterator",
           "before_epoch_end", "after_epoch_end", "writes_files", "rank_and_world",
           "TIMEOUT_ENV"]

#: Environment variable: seconds a rank waits for the others (default 300).
TIMEOUT_ENV = "BRIDGE_DDP_TIMEOUT"

_runs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # net -> _Run during a fit


def _timeout() -> float:
    value = os.environ.get(TIMEOUT_ENV, "300")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise DistributedError(f"{TIMEOUT_ENV}={value!r} is not valid; expected a positive "
                               "number of seconds")
    return seconds


def is_distributed_run() -> bool:
    """Whether this process is one of several started by a torch.distributed launcher (or
    already in a process group of more than one rank)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process; ``(0, 1)`` outside a distributed run."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _join_process_group(net: Any) -> None:
    """Initialise the default process group unless the caller has (gloo on CPU, NCCL on CUDA)."""
    if not dist.is_available():
        raise DistributedError("distributed=True needs torch.distributed, which this torch "
                               "build lacks")
    on_cuda = net.device is not None and torch.device(net.device).type == "cuda"
    if on_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if dist.is_initialized():
        return
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise DistributedError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} is set but {missing} "
                               "are not; start the script with torchrun (or set them all)")
    dist.init_process_group("nccl" if on_cuda else "gloo",
                            timeout=datetime.timedelta(seconds=_timeout()))
    atexit.register(_destroy)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class _Run:
    """One distributed fit: the DDP wrapper, the shared shuffle seed and the epoch counter."""

    def __init__(self, net: Any):
        from torch.nn.parallel import DistributedDataParallel

        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        device = next((p.device for p in net.module_.parameters()), torch.device("cpu"))
        ids = [device.index] if device.type == "cuda" else None
        self.module = DistributedDataParallel(net.module_, device_ids=ids)  # syncs rank 0's state
        # NCCL exchanges CUDA tensors only; gloo CPU ones
        self.device = (torch.device("cuda", torch.cuda.current_device())
                       if dist.get_backend() == "nccl" else torch.device("cpu"))
        seed = torch.randint(0, 2**31 - 1, (1,)) if self.rank == 0 else torch.zeros(1, dtype=torch.int64)
        seed = seed.to(self.device)
        dist.broadcast(seed, src=0)
        self.seed = int(seed.item())
        self.epoch = 0
        self.store = _store()
        self.name = f"bridge-fit-{self.seed}"


def _store() -> Any:
    """The process group's key-value store (for naming a rank that stops answering)."""
    try:
        return dist.distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError):  # pragma: no cover - older torch
        return None


@contextlib.contextmanager
def distributed_fit(net: Any) -> Iterator[None]:
    """Around one fit: set up DDP when ``net.distributed`` under a launcher; turn a failure
    of another rank into a :class:`DistributedError` that names it."""
    if not getattr(net, "distributed", False) or not is_distributed_run():
        yield
        return
    _join_process_group(net)
    run = _Run(net)
    _runs[net] = run
    try:
        yield
    except DistributedError:
        raise
    except (RuntimeError, OSError) as error:
        stopped = _unresponsive_ranks(run, "failed")
        if stopped:
            raise DistributedError(f"rank(s) {stopped} stopped during epoch {run.epoch + 1} of a "
                                   f"distributed fit (this is rank {run.rank} of {run.world}); "
                                   f"the collective failed with: {error}") from error
        raise
    finally:
        _runs.pop(net, None)


def _unresponsive_ranks(run: _Run, stage: str) -> list[int]:
    """Mark this rank at ``stage`` and wait (up to the timeout, 5 s at most for failures)
    for the others to do the same; return the ranks that did not."""
    if run.store is None:
        return []
    prefix = f"{run.name}/{run.epoch}/{stage}/"
    run.store.set(prefix + str(run.rank), "1")
    keys = [prefix + str(r) for r in range(run.world)]
    wait = min(_timeout(), 5.0) if stage == "failed" else _timeout()
    try:
        run.store.wait(keys, datetime.timedelta(seconds=wait))
        return []
    except (RuntimeError, ValueError):  # DistStoreError on timeout
        return [r for r, key in enumerate(keys) if not run.store.check([key])]


def training_module(net: Any) -> torch.nn.Module:
    """The module a training step calls: the DDP wrapper while a distributed fit trains with
    gradients, else ``module_`` (validation and predict never need the other ranks)."""
    run = _runs.get(net)
    if run is None or not torch.is_grad_enabled() or not net.module_.training:
        return net.module_
    return run.module


def writes_files(callback: Any) -> bool:
    """Whether ``callback`` writes files or logs, which only rank 0 does in a distributed fit
    (checkpoints, PrintLog, ProgressBar, or any callback with ``rank_zero_only = True``)."""
    from bridge.callbacks.checkpoint import _FileTargets
    from bridge.callbacks.logging import PrintLog, ProgressBar

    return isinstance(callback, _FileTargets | PrintLog | ProgressBar) or bool(
        getattr(callback, "rank_zero_only", False))


def skip_on_this_rank(net: Any, callback: Any) -> bool:
    """True on ranks other than 0 of a distributed fit for callbacks that write."""
    return net in _runs and _runs[net].rank != 0 and writes_files(callback)


class _EpochShards:
    """Batches of this rank's shard, a new shard each epoch (``DistributedSampler`` order)."""

    def __init__(self, make: Any, sampler: DistributedSampler, run: _Run):
        self.make, self.sampler, self.run = make, sampler, run

    def __len__(self) -> int:
        return len(self.make(list(range(len(self.sampler)))))

    def __iter__(self) -> Iterator[Any]:
        self.sampler.set_epoch(self.run.epoch)
        return iter(self.make(list(self.sampler)))


def sharded_iterator(net: Any, dataset: Any, iterator: Any, kwargs: dict[str, Any]) -> Any:
    """The training iterator of a distributed fit: this rank's shard of ``dataset`` each epoch,
    batched as ``iterator(dataset, **kwargs)`` would batch it (the in-memory fast path kept).

    Returns None outside a distributed fit (the caller builds its usual iterator).
    """
    from bridge.net.data import TensorBatchIterator, _base_and_indices, fast_iterator_for

    run = _runs.get(net)
    if run is None:
        return None
    kwargs = dict(kwargs)
    shuffle = bool(kwargs.pop("shuffle", False))
    if "sampler" in kwargs or "batch_sampler" in kwargs:
        raise DistributedError("distributed=True gives each rank its shard through a "
                               "DistributedSampler; iterator_train__sampler / batch_sampler "
                               "cannot be combined with it")
    sampler = DistributedSampler(dataset, num_replicas=run.world, rank=run.rank,
                                 shuffle=shuffle, seed=run.seed, drop_last=False)
    fast = fast_iterator_for(dataset, iterator, kwargs, net.device)
    if fast is not None:
        _, base = _base_and_indices(dataset)

        def make(positions: list[int]) -> TensorBatchIterator:
            rows = torch.as_tensor(positions, dtype=torch.int64)
            if base is not None:
                rows = torch.as_tensor(base, dtype=torch.int64)[rows]
            return TensorBatchIterator(fast.X, fast.y, rows.to(fast.device), fast.batch_size,
                                       drop_last=fast.drop_last)

        return _EpochShards(make, sampler, run)
    if iterator is not DataLoader and "sampler" not in _parameters(iterator):
        raise DistributedError(f"iterator_train={iterator!r} takes no sampler; distributed=True "
                               "needs torch's DataLoader (or an iterator with a sampler argument)")
    return _EpochShards(lambda positions: iterator(dataset, sampler=_Fixed(positions), **kwargs),
                        sampler, run)


class _Fixed(torch.utils.data.Sampler):
    """Yields the given positions in order (one epoch's shard)."""

    def __init__(self, positions: list[int]):
        self.positions = positions

    def __iter__(self) -> Iterator[int]:
        return iter(self.positions)

    def __len__(self) -> int:
        return len(self.positions)


def _parameters(function: Any) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return set()


def _shares_history(net: Any) -> bool:
    """Whether the net records into a :class:`bridge.history.DistributedHistory`, which shares
    every rank's batch rows itself (then the rows are left as they are)."""
    from bridge import history

    shared = getattr(history, "DistributedHistory", None)
    return shared is not None and isinstance(net.history_, shared)


def before_epoch_end(net: Any) -> None:
    """Average this epoch's per-batch losses across ranks (before callbacks read them), after
    checking every rank reached the end of the epoch."""
    run = _runs.get(net)
    if run is None:
        return
    if _shares_history(net):
        return
    stopped = _unresponsive_ranks(run, "end")
    if stopped:
        raise DistributedError(f"rank(s) {stopped} did not reach the end of epoch "
                               f"{run.epoch + 1} within {_timeout():g} s ({TIMEOUT_ENV}); "
                               f"rank {run.rank} stops")
    batches = net.history[-1]["batches"]
    keys = sorted({k for row in batches for k in row if k.endswith("_loss")})
    values = [float(row.get(k, 0.0)) for row in batches for k in keys]
    if not values:
        return
    tensor = torch.tensor(values, dtype=torch.float64, device=run.device)
    sizes = torch.tensor([len(values), -len(values)], dtype=torch.int64, device=run.device)
    dist.all_reduce(sizes, op=dist.ReduceOp.MAX)  # the largest count and minus the smallest
    if int(sizes[0]) != -int(sizes[1]):
        raise DistributedError(f"rank {run.rank} ran {len(batches)} batches in epoch "
                               f"{run.epoch + 1}; the ranks' counts range from {-int(sizes[1])} to {int(sizes[0])} "
                               "loss values")
    dist.all_reduce(tensor)
    averaged = iter((tensor / run.world).tolist())
    for row in batches:
        for key in keys:
            value = next(averaged)
            if key in row:
                row[key] = value


def after_epoch_end(net: Any) -> None:
    """Copy rank 0's history row of this epoch to every rank (epoch-level scores, durations,
    checkpoint events), so every rank's history is the same."""
    run = _runs.get(net)
    if run is None:
        return
    run.epoch += 1
    if _shares_history(net):
        return
    row = [dict(net.history[-1]) if run.rank == 0 else None]
    dist.broadcast_object_list(row, src=0)
    net.history[-1].clear()
    net.history[-1].update(row[0])
