"""Callbacks of the nets: hooks called at fixed points of training (skorch-compatible names)."""

from bridge.callbacks.base import Callback
from bridge.callbacks.checkpoint import Checkpoint, LoadInitState, TrainEndCheckpoint
from bridge.callbacks.early_stopping import EarlyStopping
from bridge.callbacks.loggers import (
    MlflowLogger,
    NeptuneLogger,
    SacredLogger,
    TensorBoard,
    WandbLogger,
)
from bridge.callbacks.logging import EpochTimer, PrintLog, ProgressBar
from bridge.callbacks.lr_scheduler import LRScheduler, WarmRestartLR
from bridge.callbacks.parameters import Freezer, Initializer, ParamMapper, Unfreezer
from bridge.callbacks.regularization import GradientNormClipping
from bridge.callbacks.scoring import BatchScoring, EpochScoring, PassthroughScoring
from bridge.callbacks.shape import InputShapeSetter

__all__ = [
    "BatchScoring",
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "EpochScoring",
    "EpochTimer",
    "Freezer",
    "GradientNormClipping",
    "Initializer",
    "InputShapeSetter",
    "LRScheduler",
    "LoadInitState",
    "MlflowLogger",
    "NeptuneLogger",
    "ParamMapper",
    "PassthroughScoring",
    "PrintLog",
    "ProgressBar",
    "SacredLogger",
    "TensorBoard",
    "TrainEndCheckpoint",
    "Unfreezer",
    "WandbLogger",
    "WarmRestartLR",
]
