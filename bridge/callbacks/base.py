"""The :class:`Callback` base class: a net calls its hooks at fixed points of training."""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator

__all__ = ["Callback"]


class Callback(BaseEstimator):
    """Base class of callbacks; override only the hooks you need.

    A callback's ``__init__`` stores its arguments (so ``get_params``/``set_params`` and the
    net's ``callbacks__<name>__<param>`` routing work); :meth:`initialize` sets up state.
    Hooks receive the net first and keyword arguments after it.
    """

    def initialize(self) -> Callback:
        """(Re)set the callback's state before training; returns ``self``."""
        return self

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        """Called at the start of ``fit``/``partial_fit``."""

    def on_train_end(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        """Called at the end of ``fit``/``partial_fit`` (also after an interruption)."""

    def on_epoch_begin(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        """Called at the start of each epoch."""

    def on_epoch_end(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        """Called at the end of each epoch, after the validation pass."""

    def on_batch_begin(self, net: Any, batch: Any = None, training: bool | None = None, **kwargs: Any) -> None:
        """Called before each training or validation batch."""

    def on_batch_end(self, net: Any, batch: Any = None, training: bool | None = None, **kwargs: Any) -> None:
        """Called after each batch with ``loss`` and ``y_pred`` (device tensors) in ``kwargs``."""

    def on_grad_computed(self, net: Any, named_parameters: Any, batch: Any = None, training: bool = True, **kwargs: Any) -> None:
        """Called after ``loss.backward()`` and before the optimizer step."""

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments (sklearn convention)."""
        return super().get_params(deep=deep)

    def set_params(self, **params: Any) -> Callback:
        """Set constructor arguments (sklearn convention); returns ``self``."""
        return super().set_params(**params)


HOOK_NAMES = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_batch_begin",
    "on_batch_end",
    "on_grad_computed",
)


def overrides_hook(callback: Any, hook: str) -> bool:
    """Whether ``callback`` does something in ``hook`` (it overrides the base no-op)."""
    method = getattr(type(callback), hook, None)
    if method is None or not isinstance(callback, Callback):  # any object with the hook (a Mock too)
        return callable(getattr(callback, hook, None))
    return method is not getattr(Callback, hook)
