"""The experiment-tracker loggers against the real services, offline: what a fit writes is read back."""

from __future__ import annotations

import json
import pickle
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification

from bridge import NeuralNetClassifier
from bridge.callbacks import (
    LRScheduler,
    MlflowLogger,
    NeptuneLogger,
    SacredLogger,
    TensorBoard,
    WandbLogger,
)
from bridge.callbacks.loggers import loggable_keys
from bridge.errors import ConfigurationError
from tests.net.callbacks.conftest import ParamSnapshots, states_equal

EPOCH_KEYS = {"dur", "train_loss", "valid_loss", "valid_acc"}


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = torch.nn.Linear(8, 2)

    def forward(self, X):
        return torch.softmax(self.dense(X), dim=-1)


@pytest.fixture
def data():
    X, y = make_classification(60, 8, random_state=0)
    return X.astype(np.float32), y.astype(np.int64)


def fit(data, *callbacks, **kwargs):
    params = {"max_epochs": 3, "batch_size": 16, "verbose": 0, **kwargs}
    return NeuralNetClassifier(Linear, callbacks=list(callbacks), **params).fit(*data)


def test_loggable_keys_leave_out_bookkeeping():
    row = {"epoch": 1, "batches": [], "train_loss": 0.5, "train_loss_best": True, "train_batch_count": 3,
           "event_lr": 0.1, "dur": 0.2, "note": 1.0}
    assert list(loggable_keys(row, ["note"])) == ["train_loss", "dur"]


@pytest.mark.parametrize("make", [
    lambda ignored: TensorBoard(object(), keys_ignored=ignored),
    lambda ignored: MlflowLogger(object(), object(), keys_ignored=ignored),
    lambda ignored: SacredLogger(object(), keys_ignored=ignored),
    lambda ignored: WandbLogger(object(), keys_ignored=ignored),
])
@pytest.mark.parametrize("ignored, expected", [("a", {"a", "batches"}), (["a", "b"], {"a", "b", "batches"}),
                                               (None, {"batches"})])
def test_keys_ignored_takes_a_key_or_a_list(make, ignored, expected):
    assert make(ignored).initialize().keys_ignored_ == expected


# ------------------------------------------------------------------ TensorBoard
def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_writes_every_epoch_value(data, tmp_path):
    tensorboard = pytest.importorskip("torch.utils.tensorboard")
    net = fit(data, TensorBoard(tensorboard.SummaryWriter(str(tmp_path))))
    scalars = _scalars(tmp_path)
    assert set(scalars) == {"dur", "Loss/train_loss", "Loss/valid_loss", "Loss/valid_acc"}
    for key in EPOCH_KEYS:
        tag = key if key == "dur" else f"Loss/{key}"
        assert [step for step, _ in scalars[tag]] == [1, 2, 3]
        np.testing.assert_allclose([value for _, value in scalars[tag]], net.history[:, key], rtol=1e-6)


def test_tensorboard_from_a_directory_with_ignored_keys_and_mapper(data, tmp_path):
    pytest.importorskip("torch.utils.tensorboard")
    logger = TensorBoard(str(tmp_path / "run"), keys_ignored="dur", key_mapper=str.upper)
    fit(data, logger)
    assert set(_scalars(tmp_path / "run")) == {"TRAIN_LOSS", "VALID_LOSS", "VALID_ACC"}
    assert logger.writer_.all_writers is None  # closed after training


def test_tensorboard_keeps_the_writer_open_when_asked(data, tmp_path):
    tensorboard = pytest.importorskip("torch.utils.tensorboard")
    writer = tensorboard.SummaryWriter(str(tmp_path))
    fit(data, TensorBoard(writer, close_after_train=False))
    assert writer.all_writers is not None
    writer.close()


def test_a_net_with_tensorboard_pickles_and_its_copy_logs_to_the_same_directory(data, tmp_path):
    tensorboard = pytest.importorskip("torch.utils.tensorboard")
    net = fit(data, TensorBoard(tensorboard.SummaryWriter(str(tmp_path))), max_epochs=2)
    copy = pickle.loads(pickle.dumps(net))
    copy.partial_fit(*data)
    assert [step for step, _ in _scalars(tmp_path)["Loss/train_loss"]] == [1, 2, 3, 4]


def test_add_scalar_maybe_writes_only_real_numbers(tmp_path):
    tensorboard = pytest.importorskip("torch.utils.tensorboard")
    logger = TensorBoard(tensorboard.SummaryWriter(str(tmp_path)))
    history = [{"loss": 0.5, "words": ["a", "b"]}, {"loss": 0.25, "words": ["c"]}]
    for key in ("loss", "words", "absent"):
        logger.add_scalar_maybe(history, key=key, tag=key)
    logger.writer.close()
    assert _scalars(tmp_path) == {"loss": [(2, 0.25)]}


# ------------------------------------------------------------------ MLflow
@pytest.fixture
def mlflow_client(tmp_path, monkeypatch):
    tracking = pytest.importorskip("mlflow.tracking")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks to opt into a file store
    return tracking.MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())


def test_mlflow_metrics_artifacts_and_status(data, mlflow_client, tmp_path):
    run = mlflow_client.create_run(mlflow_client.create_experiment("bridge"))
    run_id = run.info.run_id
    net = fit(data, MlflowLogger(run, mlflow_client))
    for key in EPOCH_KEYS:
        metrics = mlflow_client.get_metric_history(run_id, key)
        assert [m.step for m in metrics] == [1, 2, 3]
        np.testing.assert_allclose([m.value for m in metrics], net.history[:, key], rtol=1e-6)
    names = {info.path for info in mlflow_client.list_artifacts(run_id)}
    assert names == {"params.pth", "optimizer.pth", "criterion.pth", "history.json"}
    assert mlflow_client.get_run(run_id).info.status == "FINISHED"
    params = mlflow_client.download_artifacts(run_id, "params.pth", str(tmp_path))
    copy = NeuralNetClassifier(Linear).initialize()
    copy.load_params(f_params=params)
    np.testing.assert_array_equal(copy.predict_proba(data[0]), net.predict_proba(data[0]))


def test_mlflow_batch_values_have_suffixes_and_batch_steps(data, mlflow_client):
    run = mlflow_client.create_run(mlflow_client.create_experiment("bridge"))
    logger = MlflowLogger(run, mlflow_client, log_on_batch_end=True, create_artifact=False,
                          terminate_after_train=False)
    net = fit(data, logger)
    run_id = run.info.run_id
    assert mlflow_client.get_run(run_id).info.status == "RUNNING"
    rows = [row for epoch in net.history for row in epoch["batches"]]  # train then valid batches, per epoch
    logged = mlflow_client.get_metric_history(run_id, "train_loss_batch")
    train_rows = [(i + 1, row["train_loss"]) for i, row in enumerate(rows) if "train_loss" in row]
    assert [m.step for m in logged] == [step for step, _ in train_rows]
    np.testing.assert_allclose([m.value for m in logged], [v for _, v in train_rows], rtol=1e-6)
    sizes = mlflow_client.get_metric_history(run_id, "valid_batch_size_batch")
    assert [m.value for m in sizes] == [row["valid_batch_size"] for row in rows if "valid_batch_size" in row]
    assert [m.step for m in mlflow_client.get_metric_history(run_id, "train_loss_epoch")] == [1, 2, 3]


def test_mlflow_takes_the_active_run_and_a_default_client(data, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    with mlflow.start_run() as active:
        net = fit(data, MlflowLogger(create_artifact=False, terminate_after_train=False))
    metrics = mlflow.tracking.MlflowClient().get_run(active.info.run_id).data.metrics
    assert metrics["train_loss"] == pytest.approx(net.history[-1, "train_loss"], rel=1e-6)


def test_mlflow_without_an_active_run_says_how_to_start_one(mlflow_client):
    with pytest.raises(ConfigurationError, match="mlflow.start_run"):
        MlflowLogger(client=mlflow_client).initialize()


def test_missing_service_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ImportError, match="pip install mlflow"):
        MlflowLogger().initialize()
    monkeypatch.setitem(sys.modules, "neptune.types", None)
    with pytest.raises(ImportError, match="pip install neptune"):
        NeptuneLogger(object()).initialize()
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        TensorBoard("runs").initialize()


# ------------------------------------------------------------------ Neptune
@pytest.fixture
def neptune_run(tmp_path, monkeypatch):
    neptune = pytest.importorskip("neptune")
    monkeypatch.chdir(tmp_path)  # neptune keeps its local files under the working directory
    run = neptune.init_run(mode="debug")
    yield run
    if run.get_state() != "stopped":
        run.stop()


def test_neptune_logs_config_epoch_and_batch_values(data, neptune_run):
    net = fit(data, NeptuneLogger(neptune_run, log_on_batch_end=True, close_after_train=False))
    assert neptune_run.get_state() == "started"
    base = neptune_run["training"]
    np.testing.assert_allclose(base["train/epoch/loss"].fetch_values()["value"], net.history[:, "train_loss"])
    np.testing.assert_allclose(base["validation/epoch/acc"].fetch_values()["value"], net.history[:, "valid_acc"])
    np.testing.assert_allclose(base["epoch_duration"].fetch_values()["value"], net.history[:, "dur"])
    rows = [row for epoch in net.history for row in epoch["batches"]]
    assert list(base["train/batch/batch_size"].fetch_values()["value"]) == [
        row["train_batch_size"] for row in rows if "train_batch_size" in row]
    np.testing.assert_allclose(base["validation/batch/loss"].fetch_values()["value"],
                               [row["valid_loss"] for row in rows if "valid_loss" in row], rtol=1e-6)
    assert base["config/lr"].fetch() == net.lr
    assert base["config/optimizer"].fetch() == "SGD"
    assert base["model/model_type"].fetch() == "Linear"
    assert not neptune_run.exists("training/train/epoch/event_lr")  # no scheduler, no events


def test_neptune_namespace_handler_and_lr_events(data, neptune_run):
    scheduler = LRScheduler("StepLR", step_size=1, gamma=0.5)
    net = fit(data, NeptuneLogger(neptune_run["experiment"], close_after_train=False), scheduler)
    assert neptune_run.exists("experiment/training/train/epoch/loss")
    assert not neptune_run.exists("training")
    events = neptune_run["experiment/training/train/epoch/event_lr"].fetch_values()["value"]
    np.testing.assert_allclose(events, net.history[:, "event_lr"])


@pytest.mark.parametrize("namespace", [None, "experiment"])
def test_neptune_stops_the_run_or_the_handlers_root(data, neptune_run, namespace):
    fit(data, NeptuneLogger(neptune_run if namespace is None else neptune_run[namespace]))
    assert neptune_run.get_state() == "stopped"


# ------------------------------------------------------------------ Sacred
class ScalarRecorder:
    """What SacredLogger is handed: an object with Sacred's ``log_scalar(name, value)``."""

    def __init__(self):
        self.calls = []

    def log_scalar(self, name, value, step=None):
        self.calls.append((name, value))


def test_sacred_suffixes_when_both_levels_are_logged(data):
    recorder = ScalarRecorder()
    net = fit(data, SacredLogger(recorder, log_on_batch_end=True), train_split=None, max_epochs=2)
    batch_rows = [row for epoch in net.history for row in epoch["batches"]]
    logged = {}
    for name, value in recorder.calls:
        logged.setdefault(name, []).append(value)
    assert set(logged) == {"train_loss_batch", "train_batch_size_batch", "train_loss_epoch", "dur_epoch"}
    np.testing.assert_allclose(logged["train_loss_batch"], [row["train_loss"] for row in batch_rows], rtol=1e-6)
    assert logged["train_batch_size_batch"] == [16, 16, 16, 12] * 2
    np.testing.assert_allclose(logged["train_loss_epoch"], net.history[:, "train_loss"])


def test_sacred_experiment_records_metrics(data, tmp_path):
    sacred = pytest.importorskip("sacred")
    from sacred.observers import FileStorageObserver

    experiment = sacred.Experiment("bridge", save_git_info=False)
    experiment.observers.append(FileStorageObserver(str(tmp_path)))
    fitted = {}

    @experiment.main
    def main(_run):
        fitted["net"] = fit(data, SacredLogger(_run, keys_ignored="dur"))

    experiment.run()
    metrics = json.loads((tmp_path / "1" / "metrics.json").read_text())
    assert set(metrics) == {"train_loss", "valid_loss", "valid_acc"}
    np.testing.assert_allclose(metrics["valid_loss"]["values"], fitted["net"].history[:, "valid_loss"])


# ------------------------------------------------------------------ Weights & Biases
def test_wandb_offline_run_summary_and_best_model(data, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(mode="offline", dir=str(tmp_path), project="bridge-tests")
    snapshots = ParamSnapshots()
    try:
        net = fit(data, WandbLogger(run, keys_ignored=["valid_acc"]), snapshots, max_epochs=4)
        summary = dict(run.summary)
        saved = torch.load(f"{run.dir}/best_model.pth", weights_only=True)
    finally:
        run.finish()
    assert EPOCH_KEYS - {"valid_acc"} <= set(summary) and "valid_acc" not in summary
    assert summary["train_loss"] == pytest.approx(net.history[-1, "train_loss"])
    best_epoch = [row["epoch"] for row in net.history if row.get("valid_loss_best")][-1]
    assert states_equal(saved, snapshots.snapshots_[best_epoch])
