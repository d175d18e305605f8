"""The training loop of the nets: fit, partial_fit, epochs, train/validation steps and data plumbing.

Losses stay on the device during an epoch and are read back once at its end, when the
per-batch history rows are filled in (callbacks get each batch's loss tensor as it is).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from bridge.dataset import get_len, unpack_data
from bridge.net.checks import (
    cast_integer_input,
    check_loss_shapes,
    describe,
    explain_forward_error,
    raise_restated,
)
from bridge.net.data import fast_iterator_for
from bridge.net.distributed import (
    after_epoch_end,
    before_epoch_end,
    distributed_fit,
    sharded_iterator,
    training_module,
)
from bridge.net.validation import cast_floating, check_input
from bridge.utils import FirstStepAccumulator, is_dataset, to_tensor

__all__ = ["TrainingMixin"]


def _is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (numpy's included), not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


class TrainingMixin:
    """fit, partial_fit and the pieces of the loop, each overridable as in skorch."""

    # ------------------------------------------------------------------ data preparation
    def _prepare_fit_data(self, X: Any, y: Any, reset: bool, classes: Any = None) -> tuple[Any, Any]:
        """Validate and convert ``(X, y)`` for training; subclasses add target handling."""
        X, y = check_input(self, X, y, reset=reset, y_numeric=False)
        return cast_floating(X, self.module_dtype()), y

    def check_data(self, X: Any, y: Any = None) -> None:
        """Hook for extra checks of the training data (none by default)."""

    def get_dataset(self, X: Any, y: Any = None) -> Any:
        """The dataset for ``(X, y)``: ``X`` itself if it is a torch Dataset, else ``dataset(X, y, **dataset__*)``.

        Raises
        ------
        TypeError
            When ``dataset`` is an instance and ``dataset__*`` parameters are also given.
        """
        if is_dataset(X):
            return X
        kwargs = self.get_params_for("dataset")
        if is_dataset(self.dataset):
            if kwargs:
                raise TypeError(f"dataset is already an instance ({self.dataset!r}); dataset__* parameters "
                                f"{sorted(kwargs)} cannot be applied to it")
            return self.dataset
        return self.dataset(X, y, **kwargs)

    def get_split_datasets(self, X: Any, y: Any = None, **fit_params: Any) -> tuple[Any, Any]:
        """``(dataset_train, dataset_valid)`` from ``train_split`` (``dataset_valid`` is None without one)."""
        dataset = self.get_dataset(X, y)
        if not self.train_split:
            return dataset, None
        accepted = _accepted_kwargs(self.train_split, fit_params)
        if y is None:
            return self.train_split(dataset, **accepted)
        return self.train_split(dataset, y, **accepted)

    def get_iterator(self, dataset: Any, training: bool = False) -> Any:
        """The batch iterator over ``dataset``: ``iterator_train``/``iterator_valid`` with their parameters.

        With torch's DataLoader over bridge's default Dataset of in-memory arrays, a
        :class:`bridge.net.data.TensorBatchIterator` yields the same batches from tensors on the device.
        """
        prefix = "iterator_train" if training else "iterator_valid"
        iterator = self.iterator_train if training else self.iterator_valid
        kwargs = self.get_params_for(prefix)
        name = f"{prefix}__batch_size" if "batch_size" in kwargs else "batch_size"
        kwargs.setdefault("batch_size", self.batch_size)
        size = kwargs["batch_size"]
        if size is not None and (not _is_int(size) or (size < 1 and size != -1)):
            raise ValueError(f"{name}={size!r} is not valid; expected a positive integer, or -1 "
                             "for all rows in one batch")
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        if training and self.__dict__.get("distributed"):  # each rank its shard (net/distributed.py)
            sharded = sharded_iterator(self, dataset, iterator, kwargs)
            if sharded is not None:
                return sharded
        fast = fast_iterator_for(dataset, iterator, kwargs, self.device)
        return fast if fast is not None else iterator(dataset, **kwargs)

    # ------------------------------------------------------------------ steps
    def get_loss(self, y_pred: Any, y_true: Any, X: Any = None, training: bool = False) -> torch.Tensor:
        """The criterion applied to ``y_pred`` and ``y_true`` (moved to the net's device).

        An error of the criterion is restated naming it and the shapes and dtypes of the
        module's output and the target (same exception type, original chained).
        """
        y_true = to_tensor(y_true, device=self.device)
        try:
            return self.criterion_(y_pred, y_true)
        except (RuntimeError, ValueError, IndexError, TypeError) as error:
            raise_restated(error, f"the criterion {type(self.criterion_).__name__} failed on the module's output "
                                  f"({describe(y_pred)}) and the target ({describe(y_true)})")

    def get_train_step_accumulator(self) -> FirstStepAccumulator:
        """Collects the step result of the optimizer's closure calls."""
        return FirstStepAccumulator()

    def train_step_single(self, batch: Any, **fit_params: Any) -> dict[str, Any]:
        """Forward, loss and backward for one batch; returns ``{'loss', 'y_pred'}``."""
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    def train_step(self, batch: Any, **fit_params: Any) -> dict[str, Any]:
        """One optimizer step (through a closure, so LBFGS-like optimizers work)."""
        accumulator = self.get_train_step_accumulator()
        grad_hooks = self.__dict__.get("_grad_hooks")
        if grad_hooks is None:
            grad_hooks = self._hook_methods("on_grad_computed")[1:]

        optimizers = self._registered_optimizers()
        others = [opt for opt in optimizers if opt is not self.optimizer_]

        def step_fn() -> torch.Tensor:
            self.optimizer_.zero_grad()
            for optimizer in others:
                optimizer.zero_grad()
            step = self.train_step_single(batch, **fit_params)
            accumulator.store_step(step)
            if grad_hooks:
                named = list(self.get_all_learnable_params())
                for hook in grad_hooks:
                    hook(self, named_parameters=named, batch=batch, training=True)
            return step["loss"]

        self.optimizer_.step(step_fn)
        for optimizer in others:  # extra optimizers from initialize_optimizer step on the same gradients
            optimizer.step()
        return accumulator.get_step()

    def validation_step(self, batch: Any, **fit_params: Any) -> dict[str, Any]:
        """Forward and loss without gradients for one batch; returns ``{'loss', 'y_pred'}``."""
        self._set_training(False)
        Xi, yi = unpack_data(batch)
        with torch.inference_mode():
            y_pred = self.infer(Xi, **fit_params)
            loss = self.get_loss(y_pred, yi, X=Xi, training=False)
        return {"loss": loss, "y_pred": y_pred}

    # ------------------------------------------------------------------ loops
    def run_single_epoch(self, iterator: Any, training: bool, prefix: str, step_fn: Callable, **fit_params: Any) -> None:
        """Run ``step_fn`` over every batch of ``iterator`` and record losses and batch sizes.

        The losses are gathered on the device and copied back once, after the last batch.
        """
        if iterator is None:
            return
        begin_hooks = self._hook_methods("on_batch_begin")
        end_hooks = self._hook_methods("on_batch_end")
        first_row = len(self.history.current_batches())
        losses: list[torch.Tensor] = []
        sizes: list[int] = []
        for batch in iterator:
            for hook in begin_hooks:
                hook(self, batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            losses.append(step["loss"].detach())
            Xi = batch[0] if isinstance(batch, (tuple, list)) else batch
            sizes.append(get_len(Xi))
            for hook in end_hooks:
                hook(self, batch=batch, training=training, **step)
        values = torch.stack([loss.float().reshape(()) for loss in losses]).tolist() if losses else []
        self.history.fill_batch_rows(first_row, {prefix + "_loss": values, prefix + "_batch_size": sizes})
        self.history.record(prefix + "_batch_count", len(values))

    def fit_loop(self, X: Any, y: Any = None, epochs: int | None = None, **fit_params: Any) -> Any:
        """Train for ``epochs`` (default ``max_epochs``) on already validated ``(X, y)``; returns self."""
        self.check_data(X, y)
        name, epochs = ("max_epochs", self.max_epochs) if epochs is None else ("epochs", epochs)
        if not _is_int(epochs) or epochs < 0:
            raise ValueError(f"{name}={epochs!r} is not valid; expected a non-negative integer")
        split_params, forward_params = self._route_fit_params(self.__dict__.get("_fit_method", "fit"), fit_params)
        dataset_train, dataset_valid = self.get_split_datasets(X, y, **split_params)
        epoch_kwargs = {"dataset_train": dataset_train, "dataset_valid": dataset_valid}
        iterator_train = self.get_iterator(dataset_train, training=True)
        iterator_valid = self.get_iterator(dataset_valid, training=False) if dataset_valid is not None else None
        self._grad_hooks = self._hook_methods("on_grad_computed")[1:]
        try:
            for _ in range(epochs):
                self.notify("on_epoch_begin", **epoch_kwargs)
                self.run_single_epoch(iterator_train, training=True, prefix="train",
                                      step_fn=self.train_step, **forward_params)
                self.run_single_epoch(iterator_valid, training=False, prefix="valid",
                                      step_fn=self.validation_step, **forward_params)
                before_epoch_end(self)  # distributed fits: losses averaged across ranks
                self.notify("on_epoch_end", **epoch_kwargs)
                after_epoch_end(self)  # distributed fits: rank 0's history row on every rank
        finally:
            del self._grad_hooks
        return self

    def partial_fit(self, X: Any, y: Any = None, classes: Any = None, **fit_params: Any) -> Any:
        """Train for ``max_epochs`` more epochs without re-initializing (initializes if needed).

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, SliceDict or torch Dataset
            Inputs; a dict is passed to the module's ``forward`` as keyword arguments.
        y : array-like, tensor or None
            Targets (None when ``X`` is a Dataset that yields them).
        classes : array-like or None
            Classifiers: all class labels, when the first call does not see every class.
        **fit_params
            Passed to the module's ``forward`` (and ``groups`` to ``train_split``).

        Returns
        -------
        self
        """
        self._check_not_trimmed()
        first = not self.initialized_
        X, y = self._prepare_fit_data(X, y, reset=first, classes=classes)
        if first:
            self.initialize()
        X = cast_integer_input(self, X)
        self._fit_method = "partial_fit"  # which set_<method>_request applies (metadata routing)
        try:
            return self._train(X, y, **fit_params)
        finally:
            self._fit_method = "fit"

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        """Initialize (unless ``warm_start`` and already fitted) and train for ``max_epochs``.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, SliceDict or torch Dataset
            Inputs; a dict is passed to the module's ``forward`` as keyword arguments.
        y : array-like, tensor or None
            Targets (None when ``X`` is a Dataset that yields them).
        **fit_params
            Passed to the module's ``forward`` (and ``groups`` to ``train_split``).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For invalid data or parameters (see :mod:`bridge.net.validation`).
        """
        self._check_not_trimmed()
        reinitialize = not self.warm_start or not self.initialized_
        X, y = self._prepare_fit_data(X, y, reset=reinitialize)
        if reinitialize:
            if self.initialized_ and self.verbose:
                print("Re-initializing module.\nRe-initializing criterion.\nRe-initializing optimizer.")
            self.initialize()
        return self._train(cast_integer_input(self, X), y, **fit_params)

    def _train(self, X: Any, y: Any, **fit_params: Any) -> Any:
        self.__dict__.pop("_loss_shapes_checked", None)  # checked again on this fit's first batch
        with distributed_fit(self):  # DDP under a launcher when distributed=True
            self.notify("on_train_begin", X=X, y=y)
            try:
                self.fit_loop(X, y, **fit_params)
            except KeyboardInterrupt:
                pass
            self.notify("on_train_end", X=X, y=y)
        return self

    def _merge_x_and_fit_params(self, x: Mapping, fit_params: Mapping) -> dict[str, Any]:
        duplicates = sorted(set(x) & set(fit_params))
        if duplicates:
            raise ValueError(f"X and fit_params share the keys {duplicates}; rename one of them")
        return {**x, **fit_params}

    def infer(self, x: Any, **fit_params: Any) -> Any:
        """Run the module on ``x`` (a dict is passed as keyword arguments)."""
        x = to_tensor(x, device=self.device)
        module = training_module(self) if self.__dict__.get("distributed") else self.module_
        if isinstance(x, Mapping):
            return module(**self._merge_x_and_fit_params(x, fit_params))
        try:
            return module(x, **fit_params)
        except RuntimeError as error:  # a dtype mismatch is restated with what the net passed in
            explained = explain_forward_error(self, x, error)
            if explained is error:
                raise
            raise explained from error

    def _check_loss_shapes_once(self, y_pred: Any, y_true: Any) -> None:
        """Compare the module's output with the target on the first batch of a fit (see
        :func:`bridge.net.checks.check_loss_shapes`); later batches cost one dict lookup."""
        if "_loss_shapes_checked" in self.__dict__:
            return
        check_loss_shapes(self, self.criterion_, y_pred, y_true)
        self.__dict__["_loss_shapes_checked"] = True


def _accepted_kwargs(function: Callable, kwargs: dict[str, Any]) -> dict[str, Any]:
    if not kwargs:
        return {}
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in parameters}
