"""Inference of the nets: forward_iter, forward, evaluation_step, predict_proba and predict.

In-memory inputs are run in large chunks under ``torch.inference_mode`` and read back to
numpy once, after the last chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from bridge.dask import is_dask_collection
from bridge.dask import score as dask_score
from bridge.dataset import unpack_data
from bridge.net.checks import cast_integer_input
from bridge.net.data import fast_iterator_for
from bridge.net.validation import cast_floating, check_input
from bridge.utils import is_dataset, to_device, to_numpy

__all__ = ["InferenceMixin", "INFERENCE_CHUNK_ROWS"]

#: Rows per forward pass when predicting on in-memory data (unless iterator_valid__batch_size is set).
INFERENCE_CHUNK_ROWS = 8192


def _identity(x: Any) -> Any:
    return x


def _softmax_last_dim(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


def _first_output(y_pred: Any) -> Any:
    return y_pred[0] if isinstance(y_pred, tuple) else y_pred


class InferenceMixin:
    """Prediction methods, shared by every net."""

    def _prepare_predict_data(self, X: Any) -> Any:
        """Validate ``X`` against what was seen in fit and cast floats to the module's dtype."""
        self.check_is_fitted()
        X, _ = check_input(self, X, None, reset=False)
        return cast_integer_input(self, cast_floating(X, self.module_dtype()))

    def evaluation_step(self, batch: Any, training: bool = False) -> Any:
        """The module's output for one batch (no gradients unless ``training``)."""
        self.check_is_fitted()
        Xi, _ = unpack_data(batch)
        self._set_training(training)
        if training:
            return self.infer(Xi)
        with torch.inference_mode():
            return self.infer(Xi)

    def _inference_iterator(self, dataset: Any, training: bool) -> Any:
        kwargs = self.get_params_for("iterator_train" if training else "iterator_valid")
        iterator = self.iterator_train if training else self.iterator_valid
        if "batch_size" not in kwargs and not training:
            chunk = len(dataset) if self.batch_size == -1 else max(self.batch_size, INFERENCE_CHUNK_ROWS)
            fast = fast_iterator_for(dataset, iterator, {**kwargs, "batch_size": chunk}, self.device)
            if fast is not None:
                return fast
        return self.get_iterator(dataset, training=training)

    def forward_iter(self, X: Any, training: bool = False, device: Any = "cpu") -> Iterator[Any]:
        """Yield the module's output batch by batch, moved to ``device`` (None: leave it).

        Parameters
        ----------
        X : array-like, tensor, dict or torch Dataset
            The input.
        training : bool
            Run in training mode (with gradients).
        device : str, torch.device or None
            Where each output goes.

        Yields
        ------
        tensor or tuple of tensors
        """
        dataset = self.get_dataset(X)
        for batch in self._inference_iterator(dataset, training):
            yield to_device(self.evaluation_step(batch, training=training), device)

    def forward(self, X: Any, training: bool = False, device: Any = "cpu") -> Any:
        """The module's output on all of ``X`` (outputs concatenated along the first dimension).

        Returns
        -------
        tensor or tuple of tensors
        """
        outputs = list(self.forward_iter(X, training=training, device=device))
        if isinstance(outputs[0], tuple):
            return tuple(torch.cat(parts) for parts in zip(*outputs))
        return torch.cat(outputs)

    def _get_predict_nonlinearity(self) -> Callable:
        self.check_is_fitted()
        if "_trimmed_nonlinearity" in self.__dict__:
            return self._trimmed_nonlinearity
        nonlinearity = self.predict_nonlinearity
        if nonlinearity is None:
            return _identity
        if nonlinearity == "auto":
            return self._auto_nonlinearity()
        if not callable(nonlinearity):
            raise TypeError(f"predict_nonlinearity must be 'auto', None or a callable; got {nonlinearity!r}")
        return nonlinearity

    def _auto_nonlinearity(self) -> Callable:
        # With several criteria (or none under the usual name) no single choice is right: identity.
        if len(self.__dict__.get("_criteria", ())) > 1:
            return _identity
        criterion = getattr(self, "criterion_", None)
        if isinstance(criterion, torch.nn.CrossEntropyLoss):
            return _softmax_last_dim
        if isinstance(criterion, torch.nn.BCEWithLogitsLoss):
            return torch.sigmoid
        return _identity

    def _raw_probabilities(self, X: Any) -> torch.Tensor:
        if not is_dataset(X):
            X = self._prepare_predict_data(X)
        else:
            self.check_is_fitted()
        nonlinearity = self._get_predict_nonlinearity()
        outputs = [torch.as_tensor(nonlinearity(_first_output(y_pred)))  # a nonlinearity may return numpy
                   for y_pred in self.forward_iter(X, training=False, device=None)]
        if not outputs:
            raise ValueError("predict got no data (X has 0 rows)")
        return outputs[0] if len(outputs) == 1 else torch.cat([o.to(outputs[0].device) for o in outputs])

    def predict_proba(self, X: Any) -> np.ndarray:
        """The module's output after ``predict_nonlinearity``, as a numpy array.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict or torch Dataset
            The input.

        Returns
        -------
        ndarray

        Raises
        ------
        NotFittedError
            Before ``fit``/``initialize``.
        ValueError
            When ``X`` does not match the data seen in ``fit``.
        """
        if is_dask_collection(X):  # Dask in: a lazy Dask result (bridge/dask)
            return dask_score(self, X, "predict_proba")
        return to_numpy(self._raw_probabilities(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predictions as a numpy array (for the base net: :meth:`predict_proba`).

        Returns
        -------
        ndarray
        """
        if is_dask_collection(X):  # Dask in: a lazy Dask result (bridge/dask)
            return dask_score(self, X, "predict")
        return self.predict_proba(X)
