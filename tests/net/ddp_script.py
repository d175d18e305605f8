"""What tests/net/test_distributed.py runs under ``torchrun --nproc_per_node=2`` (or alone):
fits a small regression or classification net with ``distributed=True`` and writes, per rank,
what the test compares (parameters, history, rows seen, predictions, checkpoint saves).

Usage: ``python ddp_script.py OUT_DIR CASE[,CASE...]`` with cases ``regression``,
``classification``, ``uneven`` (101 rows), ``dataset`` (a torch Dataset, not in-memory
arrays) and ``die`` (rank 1 exits in epoch 2); each case
writes into ``OUT_DIR/CASE``.
"""

from __future__ import annotations

import json
import os
import pickle
import sys

import numpy as np
import torch

from bridge import NeuralNetClassifier, NeuralNetRegressor
from bridge.callbacks import Callback, Checkpoint

ROOT, CASES = sys.argv[1], sys.argv[2].split(",")
RANK = int(os.environ.get("RANK", "0"))
WORLD = int(os.environ.get("WORLD_SIZE", "1"))
BATCH = 8  # per rank; the single-process reference uses BATCH * WORLD
torch.set_num_threads(1)


class SeenRows(Callback):
    """Records the row ids (feature 0 holds id / n) of every training batch."""

    def initialize(self):
        self.rows = []
        return self

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        if training:
            self.rows.extend(batch[0][:, 0].tolist())


class Die(Callback):
    """Rank 1 exits abruptly at the start of the second epoch (the failure case)."""

    def on_epoch_begin(self, net, **kwargs):
        if RANK == 1 and len(net.history) == 2:
            os._exit(3)


class CountingCheckpoint(Checkpoint):
    """A checkpoint that also notes, per rank, each time it saves (beside its folder)."""

    def save_model(self, net):
        notes = os.path.join(os.path.dirname(self.dirname), f"saves-rank{RANK}.txt")
        with open(notes, "a") as handle:
            handle.write(f"{len(net.history)}\n")
        super().save_model(net)


def data(n_rows: int, classification: bool):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_rows, 4)).astype(np.float32)
    X[:, 0] = np.arange(n_rows) / n_rows  # a row id the callback can read back
    if classification:
        return X, (X[:, 1] + X[:, 2] > 0).astype(np.int64) + (X[:, 3] > 1)
    return X, (X @ np.array([0.5, -1.0, 2.0, 0.3], dtype=np.float32)).astype(np.float32)


def make_net(classification: bool, batch_size: int, distributed: bool, callbacks: list):
    torch.manual_seed(0)
    common = dict(max_epochs=4, lr=0.05, batch_size=batch_size, distributed=distributed,
                  callbacks=callbacks, verbose=0)
    if classification:
        module = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(),
                                     torch.nn.Linear(16, 3))
        return NeuralNetClassifier(module, criterion=torch.nn.CrossEntropyLoss, **common)
    module = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    return NeuralNetRegressor(module, train_split=None, **common)


def run(case: str) -> None:
    OUT = os.path.join(ROOT, case)
    os.makedirs(OUT, exist_ok=True)
    classification = case == "classification"
    n_rows = 101 if case == "uneven" else 120
    X, y = data(n_rows, classification)
    seen = SeenRows()
    callbacks = [("seen", seen), ("checkpoint", CountingCheckpoint(
        dirname=os.path.join(OUT, "checkpoint"), monitor="train_loss_best"))]
    if case == "die":
        callbacks.append(("die", Die()))
    def fit(net):
        if case == "dataset":  # the DataLoader path, not the in-memory fast path
            return net.fit(torch.utils.data.TensorDataset(torch.from_numpy(X),
                                                          torch.from_numpy(y)), None)
        return net.fit(X, y)

    net = fit(make_net(classification, BATCH, True, callbacks))
    restored = pickle.loads(pickle.dumps(net))
    report = {
        "rank": RANK, "world": WORLD,
        "history": json.loads(json.dumps(list(net.history), default=float)),
        "rows": sorted(round(r * n_rows) for r in seen.rows),
        "state_keys": list(restored.module_.state_dict()),
        "predictions": np.asarray(net.predict(X)).tolist(),
    }
    torch.save(net.module_.state_dict(), os.path.join(OUT, f"params-rank{RANK}.pt"))
    if RANK == 0:
        reference = fit(make_net(classification, BATCH * WORLD, False, None))
        torch.save(reference.module_.state_dict(), os.path.join(OUT, "params-single.pt"))
        report["single_history"] = json.loads(json.dumps(list(reference.history), default=float))
    with open(os.path.join(OUT, f"report-rank{RANK}.json"), "w") as handle:
        json.dump(report, handle)


if __name__ == "__main__":
    for name in CASES:
        run(name)
