"""bridge.utils conversions and atomic writes, and bridge.history.History indexing and files."""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
import pytest
import torch

from bridge.errors import DeviceError
from bridge.history import History
from bridge.utils import (
    atomic_write,
    check_device,
    data_from_dataset,
    get_map_location,
    multi_indexing,
    params_for,
    to_device,
    to_numpy,
    to_tensor,
)


def test_to_tensor_converts_containers_and_keeps_dtype():
    data = {"a": np.arange(3, dtype=np.int64), "b": [np.ones(2, dtype=np.float32)]}
    out = to_tensor(data, device="cpu")
    assert out["a"].dtype == torch.int64 and out["b"][0].dtype == torch.float32
    assert to_tensor(pd.DataFrame({"x": [1.0, 2.0]}), "cpu").shape == (2, 1)
    assert to_tensor(3, None).item() == 3
    with pytest.raises(TypeError, match="cannot convert"):
        to_tensor(object(), "cpu")
    with pytest.raises(TypeError, match="dtype object"):
        to_tensor(np.array(["a"], dtype=object), "cpu")


def test_to_numpy_round_trips_tensors_dicts_and_pandas():
    t = torch.arange(4.0, requires_grad=True) * 2
    np.testing.assert_array_equal(to_numpy(t), [0, 2, 4, 6])
    assert to_numpy({"k": torch.ones(2)})["k"].shape == (2,)
    assert isinstance(to_numpy(pd.Series([1, 2])), np.ndarray)
    with pytest.raises(TypeError):
        to_numpy(object())


def test_to_device_handles_modules_tuples_and_none():
    module = torch.nn.Linear(2, 2)
    assert to_device(module, "cpu") is module
    pair = to_device((torch.ones(1), torch.zeros(1)), "cpu")
    assert isinstance(pair, tuple) and len(pair) == 2
    tensor = torch.ones(1)
    assert to_device(tensor, None) is tensor


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_check_device_names_available_devices():
    with pytest.raises(DeviceError, match=r"available devices: \['cpu'"):
        check_device("cuda")
    assert get_map_location("cuda").type == "cpu"
    check_device("cpu")
    check_device(None)


def test_params_for_and_multi_indexing():
    assert params_for("module", {"module__a": 1, "modulex": 2, "optimizer__b": 3}) == {"a": 1}
    X = {"a": np.arange(5), "b": torch.arange(5)}
    picked = multi_indexing(X, np.array([0, 2]))
    np.testing.assert_array_equal(picked["a"], [0, 2])
    assert picked["b"].tolist() == [0, 2]
    assert multi_indexing(pd.DataFrame({"c": range(5)}), [1, 3])["c"].tolist() == [1, 3]
    assert multi_indexing([10, 11, 12], np.array([2, 0])) == [12, 10]


def test_data_from_dataset_follows_subsets():
    from bridge.dataset import Dataset

    ds = Dataset(np.arange(10).reshape(5, 2), np.arange(5))
    X, y = data_from_dataset(torch.utils.data.Subset(ds, [1, 3]))
    np.testing.assert_array_equal(y, [1, 3])
    with pytest.raises(AttributeError):
        data_from_dataset(torch.utils.data.TensorDataset(torch.ones(2)))


def test_atomic_write_replaces_whole_file_or_nothing(tmp_path):
    target = tmp_path / "file.bin"
    atomic_write(target, lambda f: f.write(b"first"))
    assert target.read_bytes() == b"first"

    def failing_writer(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, failing_writer)
    assert target.read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["file.bin"]  # no temp file left behind
    buffer = io.BytesIO()
    atomic_write(buffer, lambda f: f.write(b"x"))
    assert buffer.getvalue() == b"x"


@pytest.fixture
def history():
    h = History()
    for epoch in range(3):
        h.new_epoch()
        h.record("epoch", epoch + 1)
        h.record("train_loss", 1.0 / (epoch + 1))
        if epoch > 0:
            h.record("valid_loss", 2.0 / (epoch + 1))
        for batch in range(2):
            h.new_batch()
            h.record_batch("train_loss", epoch + batch / 10)
    return h


def test_history_indexing(history):
    assert history[-1, "epoch"] == 3
    assert history[:, "train_loss"] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert history[:, "valid_loss"] == [1.0, pytest.approx(2 / 3)]  # epochs without the key are skipped
    assert history[:, "batches", :, "train_loss"] == [[0.0, 0.1], [1.0, 1.1], [2.0, 2.1]]
    assert history[-1, "batches", -1, "train_loss"] == 2.1
    assert history[:, ("epoch", "train_loss")][1] == (2, 0.5)  # a tuple of keys gives tuples, a list gives lists
    assert isinstance(history[-1], dict) and isinstance(history[:2], History)
    with pytest.raises(KeyError):
        history[0, "valid_loss"]
    with pytest.raises(KeyError):
        history[:, "missing"]


def test_history_record_errors_and_files(history, tmp_path):
    with pytest.raises(ValueError, match="new_epoch"):
        History().record("x", 1)
    empty_epoch = History()
    empty_epoch.new_epoch()
    with pytest.raises(ValueError, match="new_batch"):
        empty_epoch.record_batch("x", 1)
    path = tmp_path / "history.json"
    history.to_file(path)
    assert History.from_file(path) == history
    text = io.StringIO()
    history.to_file(text)
    text.seek(0)
    assert History.from_file(text)[-1, "epoch"] == 3
