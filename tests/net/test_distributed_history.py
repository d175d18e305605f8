"""DistributedHistory: ranks share their records through a real torch.distributed store."""

from __future__ import annotations

import pickle
import socket

import numpy as np
import pytest
import torch
from torch.distributed import HashStore, TCPStore

from bridge import NeuralNetClassifier
from bridge.history import DistributedHistory
from bridge.toy import make_classifier


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def two_ranks():
    port = _free_port()
    master = TCPStore("127.0.0.1", port, world_size=2, is_master=True, wait_for_workers=False)
    client = TCPStore("127.0.0.1", port, world_size=2, is_master=False)
    return (DistributedHistory(store=master, rank=0, world_size=2),
            DistributedHistory(store=client, rank=1, world_size=2))


def _epoch(history, losses, score):
    history.new_epoch()
    for loss in losses:
        history.new_batch()
        history.record_batch("train_loss", loss)
    history.record("valid_acc", score)


def test_each_rank_reads_every_ranks_batches(two_ranks):
    first, second = two_ranks
    _epoch(first, [1.0, 2.0], 0.5)
    _epoch(second, [3.0], 0.7)
    for history in two_ranks:
        assert history[-1, "batches", :, "train_loss"] == [1.0, 2.0, 3.0]  # rank 0's first
    assert first[-1, "valid_acc"] == 0.5 and second[-1, "valid_acc"] == 0.7  # own epoch values win
    _epoch(first, [4.0], 0.6)
    assert first[:, "batches", :, "train_loss"] == [[1.0, 2.0, 3.0], [4.0]]  # rank 1 has not started epoch 2


def test_fill_batch_rows_is_published(two_ranks):
    first, second = two_ranks
    for history in two_ranks:
        history.new_epoch()
        history.new_batch()
        history.new_batch()
    second.fill_batch_rows(0, {"train_loss": [5.0, 6.0]})
    assert first[-1, "batches", :, "train_loss"] == [5.0, 6.0]


def test_unserialisable_value_is_named():
    history = DistributedHistory(store=HashStore(), rank=0, world_size=1)
    history.new_epoch()
    with pytest.raises(TypeError, match="'weights'"):
        history.record("weights", np.zeros(3))


def test_single_process_without_store_and_invalid_settings():
    history = DistributedHistory()
    _epoch(history, [1.0], 0.5)
    assert history[-1, "batches", 0, "train_loss"] == 1.0
    with pytest.raises(ValueError, match="store"):
        DistributedHistory(rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank=3"):
        DistributedHistory(store=HashStore(), rank=3, world_size=2)


def test_pickled_copy_keeps_merged_records(two_ranks):
    first, second = two_ranks
    _epoch(first, [1.0], 0.5)
    _epoch(second, [2.0], 0.5)
    copy = pickle.loads(pickle.dumps(first))
    assert copy.store is None and copy[-1, "batches", :, "train_loss"] == [1.0, 2.0]


def test_net_keeps_a_given_distributed_history():
    torch.manual_seed(0)
    X = np.random.default_rng(0).normal(size=(40, 20)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    history = DistributedHistory(store=HashStore(), rank=0, world_size=1)
    net = NeuralNetClassifier(make_classifier(), max_epochs=2, train_split=None, verbose=0)
    net.history = history
    net.fit(X, y)
    assert net.history is history and len(history) == 2
    assert history[-1, "train_loss"] == pytest.approx(np.mean(history[-1, "batches", :, "train_loss"]))
