"""Train one net data-parallel on several processes with ``distributed=True`` (DDP).

Run with a launcher, one process per GPU (or per CPU share with gloo)::

    torchrun --nproc_per_node=2 examples/ddp_training.py            # --smoke: a fast run

Every rank loads the same data; each trains on its shard of every epoch, gradients are
averaged by DistributedDataParallel, and every rank ends with the same parameters and the
same history. Only rank 0 prints the epoch log and writes the checkpoint. Started without a
launcher (``python examples/ddp_training.py``) the same script trains as one process.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from bridge import NeuralNetClassifier
from bridge.callbacks import Checkpoint


def main(smoke: bool = False, output: str = "ddp_checkpoints") -> dict:
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    torch.manual_seed(0)  # the same initial weights everywhere (DDP also copies rank 0's)
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0,
                                                        stratify=y)
    net = NeuralNetClassifier(
        torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)),
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=2e-3,
        max_epochs=3 if smoke else 20,
        batch_size=32,  # per rank: each optimizer step sees 32 * world rows
        iterator_train__shuffle=True,  # one shared order per epoch, split between ranks
        device="cuda" if torch.cuda.is_available() else "cpu",  # cuda: the rank's own GPU
        distributed=True,
        callbacks=[Checkpoint(dirname=output, monitor="valid_loss_best")],
        verbose=0 if smoke else 1,
    )
    net.fit(X_train, y_train)
    accuracy = float(net.score(X_test, y_test))  # predict works on every rank
    if rank == 0:
        print(f"{world} process(es): held-out accuracy {accuracy:.3f} after {len(net.history)} "
              f"epochs; last train_loss {net.history[-1, 'train_loss']:.4f} (the same on "
              f"every rank); checkpoint in {output}/")
    return {"rank": rank, "world": world, "accuracy": accuracy,
            "train_loss": net.history[-1, "train_loss"]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few epochs only (for CI)")
    parser.add_argument("--output", default="ddp_checkpoints", help="checkpoint folder")
    arguments = parser.parse_args()
    main(arguments.smoke, arguments.output)
