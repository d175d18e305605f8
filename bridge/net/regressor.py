"""The regressor net, :class:`NeuralNetRegressor` (skorch-compatible, also accepting 1-D targets)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import RegressorMixin

from bridge.dask import is_dask_collection
from bridge.dask import score as dask_score
from bridge.net.net import NeuralNet
from bridge.net.validation import cast_floating, check_input, require_y
from bridge.utils import get_dim

__all__ = ["NeuralNetRegressor"]


class NeuralNetRegressor(RegressorMixin, NeuralNet):
    """A regression net; ``predict`` returns the module's output (1-D when ``y`` was 1-D).

    Parameters
    ----------
    module : torch.nn.Module class or instance
        The network; output ``(n, n_targets)``.
    criterion : torch loss class or instance
        Default ``torch.nn.MSELoss``.
    **kwargs
        Every other :class:`~bridge.net.NeuralNet` parameter, routed ones included.
    """

    def __init__(self, module: Any, criterion: Any = torch.nn.MSELoss, **kwargs: Any):
        super().__init__(module, criterion=criterion, **kwargs)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y of shape (n, n_targets) with a module of n_targets outputs
        return tags

    def _prepare_fit_data(self, X: Any, y: Any, reset: bool, classes: Any = None) -> tuple[Any, Any]:
        require_y(self, X, y)
        X, y = check_input(self, X, y, reset=reset, y_numeric=True)
        if y is not None and not isinstance(y, torch.utils.data.Dataset):
            if reset or not hasattr(self, "target_ndim_"):
                self.target_ndim_ = get_dim(y)
            y = cast_floating(y.astype(np.float64) if isinstance(y, np.ndarray) and y.dtype.kind in "biu" else y,
                              self.module_dtype())
            if isinstance(y, torch.Tensor) and not y.is_floating_point():
                y = y.to(self.module_dtype())
        return cast_floating(X, self.module_dtype()), y

    def get_loss(self, y_pred: Any, y_true: Any, X: Any = None, training: bool = False) -> torch.Tensor:
        """The criterion, with 1-D targets matched to a single-column output.

        Raises
        ------
        ConfigurationError
            On the first batch of a fit, when the module's output and the target differ in
            shape for an element-wise loss (2 output columns for 1 target column, or an
            ``(n,)`` output for an ``(n, 1)`` target, which torch would broadcast to ``(n, n)``).
        """
        if isinstance(y_pred, torch.Tensor) and y_pred.dim() == 2 and y_pred.shape[1] == 1 and get_dim(y_true) == 1:
            y_true = y_true.reshape(-1, 1)
        self._check_loss_shapes_once(y_pred, y_true)
        return super().get_loss(y_pred, y_true, X=X, training=training)

    def predict(self, X: Any) -> np.ndarray:
        """The module's output; flattened to ``(n,)`` when trained on 1-D targets with one output.

        Returns
        -------
        ndarray
        """
        if is_dask_collection(X):  # Dask in: a lazy Dask result (bridge/dask)
            return dask_score(self, X, "predict")
        prediction = self.predict_proba(X)
        if getattr(self, "target_ndim_", 2) == 1 and prediction.ndim == 2 and prediction.shape[1] == 1:
            return prediction.ravel()
        return prediction
