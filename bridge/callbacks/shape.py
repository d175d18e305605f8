"""Set the module's input size from the training data, so nets fit data whose width is only
known at fit time (e.g. after feature selection in a pipeline)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bridge.callbacks.base import Callback

__all__ = ["InputShapeSetter"]


class InputShapeSetter(Callback):
    """Set ``<module_name>__<param_name>`` from ``X`` at the beginning of training.

    When the value differs from the current one, ``net.set_params`` re-initialises the
    module (and the optimizer) with the new size before the first epoch.

    Parameters
    ----------
    param_name : str, default='input_dim'
        The keyword of the module's ``__init__`` that receives the input size.
    input_dim_fn : callable or None, default=None
        ``input_dim_fn(X) -> int``; by default the last dimension, ``X.shape[-1]``.
    module_name : str, default='module'
        Which of the net's modules to set (``'module'`` unless the net has several).

    Raises
    ------
    ValueError
        From ``on_train_begin``, when ``X`` has fewer than two dimensions or no shape and no
        ``input_dim_fn`` was given.
    """

    def __init__(
        self,
        param_name: str = "input_dim",
        input_dim_fn: Callable[[Any], int] | None = None,
        module_name: str = "module",
    ):
        self.param_name = param_name
        self.input_dim_fn = input_dim_fn
        self.module_name = module_name

    def get_input_dim(self, X: Any) -> int:
        """Return the input size that ``X`` implies.

        Parameters
        ----------
        X : array-like
            The training input passed to ``fit``.

        Returns
        -------
        int
            ``input_dim_fn(X)`` when given, else ``X.shape[-1]``.

        Raises
        ------
        ValueError
            When ``X`` has no shape or fewer than two dimensions.
        """
        if self.input_dim_fn is not None:
            return self.input_dim_fn(X)
        shape = getattr(X, "shape", None)
        if shape is None or len(shape) < 2:
            raise ValueError(
                f"InputShapeSetter expects X with at least two dimensions, got shape {shape}; "
                "pass input_dim_fn to derive the input size from other inputs"
            )
        return int(shape[-1])

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        """Set the module's input size to that of ``X`` (re-initialising on change)."""
        input_dim = self.get_input_dim(X)
        key = f"{self.module_name}__{self.param_name}"
        if net.get_params().get(key) == input_dim:
            return
        net.set_params(**{key: input_dim})
