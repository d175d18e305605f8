"""The callbacks that steer training (checkpoints, early stopping, parameter changes), in one namespace.

They are defined in their own modules; this one gathers them under the ``callbacks.training``
path that code written for skorch imports from.
"""

from bridge.callbacks.checkpoint import Checkpoint, LoadInitState, TrainEndCheckpoint
from bridge.callbacks.early_stopping import EarlyStopping
from bridge.callbacks.parameters import Freezer, Initializer, ParamMapper, Unfreezer
from bridge.callbacks.shape import InputShapeSetter

__all__ = ["Checkpoint", "EarlyStopping", "Freezer", "Initializer", "InputShapeSetter", "LoadInitState",
           "ParamMapper", "TrainEndCheckpoint", "Unfreezer"]
