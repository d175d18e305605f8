"""The :class:`NeuralNet` class: construction, initialization of its parts, callbacks and hooks.

Training and inference live in ``training.py`` and ``inference.py``, saving and pickling in
``persistence.py``, parameter routing in ``params.py``; this file puts them together.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from sklearn.base import BaseEstimator
from torch.utils.data import DataLoader

from bridge.callbacks import EpochTimer, PassthroughScoring, PrintLog
from bridge.callbacks.base import HOOK_NAMES, overrides_hook
from bridge.dataset import Dataset, ValidSplit
from bridge.errors import NotFittedError
from bridge.history import DistributedHistory, History
from bridge.net.checks import construction_context, raise_restated
from bridge.net.components import ComponentsMixin
from bridge.net.distributed import skip_on_this_rank
from bridge.net.inference import InferenceMixin
from bridge.net.params import ParamsMixin
from bridge.net.persistence import PersistenceMixin
from bridge.net.routing import RoutingMixin
from bridge.net.training import TrainingMixin
from bridge.net.validation import PARAM_RULES, check_param_values
from bridge.utils import check_device

if TYPE_CHECKING:
    import onnx

__all__ = ["NeuralNet"]


class NeuralNet(ComponentsMixin, RoutingMixin, ParamsMixin, TrainingMixin, InferenceMixin, PersistenceMixin, BaseEstimator):
    """A torch module with the scikit-learn estimator API (skorch-compatible).

    Parameters
    ----------
    module : torch.nn.Module class or instance
        The network; a class is instantiated with the ``module__*`` parameters.
    criterion : torch loss class or instance
        The loss; a class is instantiated with ``criterion__*``.
    optimizer : torch optimizer class
        Instantiated with the learnable parameters, ``lr`` and ``optimizer__*``.
    lr : float
        Learning rate (``optimizer__lr`` takes precedence).
    max_epochs : int
        Epochs per ``fit``.
    batch_size : int
        Rows per batch (``-1``: all rows); ``iterator_*__batch_size`` take precedence.
    iterator_train, iterator_valid : class
        DataLoader-like classes; with torch's ``DataLoader`` and in-memory data, batches are cut
        straight from tensors on the device (same batches, no per-row indexing).
    dataset : class or instance
        Builds the dataset from ``(X, y)``; default :class:`bridge.dataset.Dataset`.
    train_split : callable or None
        ``train_split(dataset, y) -> (dataset_train, dataset_valid)``; None trains on all data.
    callbacks : list, None or 'disable'
        Callback instances, classes or ``(name, callback)`` pairs, run after the defaults;
        ``'disable'`` runs no callback at all, defaults included (as in skorch).
    predict_nonlinearity : 'auto', callable or None
        Applied to the module output in ``predict_proba``; 'auto' picks softmax for
        ``CrossEntropyLoss``, sigmoid for ``BCEWithLogitsLoss``, identity otherwise.
    warm_start : bool
        Keep the fitted module on a new ``fit`` instead of re-initializing.
    verbose : int
        0 silences the per-epoch log.
    device : str, torch.device or None
        Where the module and data go (``'cuda'`` needs CUDA); None leaves them where they are.
    compile : bool
        Wrap every registered module and criterion with ``torch.compile`` (``compile__*`` are
        its arguments).
    use_caching : 'auto' or bool
        Whether scoring callbacks reuse the epoch's predictions ('auto': each callback decides).
    torch_load_kwargs : dict or None
        Extra arguments of ``torch.load`` in :meth:`load_params` (``weights_only=True`` always).
    distributed : bool
        Data-parallel training under ``torchrun`` (DDP; gloo on CPU, NCCL on CUDA): each rank
        trains on its shard, histories agree, rank 0 alone writes (see
        :mod:`bridge.net.distributed`). Without a launcher the net trains as one process.
    **kwargs
        Routed parameters: ``module__*``, ``criterion__*``, ``optimizer__*``,
        ``iterator_train__*``, ``iterator_valid__*``, ``dataset__*``, ``callbacks__<name>[__*]``,
        ``compile__*``. Checked when the net is initialized.

    Attributes
    ----------
    sample_shape_ : tuple, dict of tuples, or absent
        The shape of one row of the ``X`` seen in ``fit`` (a dict of them for a dict ``X``;
        absent for Datasets). ``predict``, ``predict_proba``, ``score`` and ``partial_fit``
        refuse ``X`` of another rank or row shape (:class:`~bridge.errors.InvalidInputError`);
        set an axis to None to accept any length there.

    Notes
    -----
    Checks (see :mod:`bridge.net.checks` and :mod:`bridge.net.validation`): ``lr``,
    ``optimizer__lr``, ``max_epochs`` and the batch sizes are validated in :meth:`initialize`
    and, with the same message, by ``set_params`` on a fitted net (other optimizer options go
    through a throwaway optimizer first); an error of the module's, criterion's or optimizer's
    constructor is re-raised (same type) naming the class and the routed parameters.

    Integer or boolean ``X`` is cast to the dtype of the module's first floating parameter
    (as an ``nn.Linear`` or ``nn.Conv*`` needs), unless the module holds an ``nn.Embedding``
    or ``nn.EmbeddingBag`` (its integers may be indices) or has no floating parameter; then it
    is passed unchanged, as skorch does. A dtype error the module still raises is restated
    naming X's shape and dtype and this rule.
    """

    def __init__(
        self,
        module: Any,
        criterion: Any,
        optimizer: Any = torch.optim.SGD,
        lr: float = 0.01,
        max_epochs: int = 10,
        batch_size: int = 128,
        iterator_train: Any = DataLoader,
        iterator_valid: Any = DataLoader,
        dataset: Any = Dataset,
        train_split: Any = ValidSplit(5),  # noqa: B008 - a stateless default, as in skorch
        callbacks: Any = None,
        predict_nonlinearity: Any = "auto",
        warm_start: bool = False,
        verbose: int = 1,
        device: Any = "cpu",
        compile: bool = False,
        use_caching: Any = "auto",
        torch_load_kwargs: dict | None = None,
        distributed: bool = False,
        **kwargs: Any,
    ):
        self.module = module
        self.criterion = criterion
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.iterator_train = iterator_train
        self.iterator_valid = iterator_valid
        self.dataset = dataset
        self.train_split = train_split
        self.callbacks = callbacks
        self.predict_nonlinearity = predict_nonlinearity
        self.warm_start = warm_start
        self.verbose = verbose
        self.device = device
        self.compile = compile
        self.use_caching = use_caching
        self.torch_load_kwargs = torch_load_kwargs
        self.distributed = distributed
        self._remember_given(kwargs)
        for key, value in kwargs.items():
            setattr(self, key, value)

    # ------------------------------------------------------------------ sklearn protocol
    @property
    def initialized_(self) -> bool:
        """Whether :meth:`initialize` has run."""
        return self.__dict__.get("_initialized", False)

    @property
    def history(self) -> History:
        """The training history (:class:`bridge.history.History`)."""
        return self.history_

    @history.setter
    def history(self, value: History) -> None:
        self.history_ = value

    def __sklearn_is_fitted__(self) -> bool:
        return self.initialized_

    def check_is_fitted(self, attributes: Any = None, *args: Any, **kwargs: Any) -> None:
        """Raise :class:`bridge.errors.NotFittedError` unless the net is initialized.

        Raises
        ------
        NotFittedError
            Before ``fit``/``initialize``.
        """
        check_is_fitted(self, attributes, *args, **kwargs)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True  # random initialization and shuffling
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.input_tags.three_d_array = True
        tags.input_tags.dict = True
        return tags

    # ------------------------------------------------------------------ callbacks
    @property
    def _default_callbacks(self) -> list[tuple[str, Any]]:
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("print_log", PrintLog()),
        ]

    def get_default_callbacks(self) -> list[tuple[str, Any]]:
        """The ``(name, callback)`` pairs every net of this class starts with."""
        return self._default_callbacks

    def _collect_callbacks(self) -> list[tuple[str, Any]]:
        if isinstance(self.callbacks, str) and self.callbacks == "disable":
            return []
        if self.callbacks is not None and not isinstance(self.callbacks, list | tuple):
            raise TypeError(f"callbacks={self.callbacks!r} is not valid; expected a list of "
                            "callbacks or (name, callback) pairs, None, or 'disable'")
        named: list[tuple[str, Any]] = list(self.get_default_callbacks())
        user: list[tuple[str, Any]] = []
        for item in self.callbacks or []:
            if isinstance(item, tuple):
                if len(item) != 2 or not isinstance(item[0], str):
                    raise ValueError(f"a callback given as a tuple must be (name, callback); got {item!r}")
                user.append(item)
            else:
                cb = item() if isinstance(item, type) else item
                user.append((None, cb))  # type: ignore[arg-type]
        explicit = Counter(name for name, _ in user if name is not None)
        duplicates = [name for name, count in explicit.items() if count > 1]
        if duplicates:
            raise ValueError(f"callback names must be unique; found several callbacks named {sorted(duplicates)}")
        taken = {name for name, _ in named} | set(explicit)
        auto_counts = Counter(type(cb).__name__ for name, cb in user if name is None)
        seen: Counter = Counter()
        for name, cb in user:
            cb = cb() if isinstance(cb, type) else cb
            if name is None:
                base = type(cb).__name__
                name = base
                if auto_counts[base] > 1:
                    seen[base] += 1
                    name = f"{base}_{seen[base]}"
                if name in {n for n, _ in named}:
                    named = [(n, c) for n, c in named if n != name]
            elif name in taken and name in {n for n, _ in named}:
                named = [(n, c) for n, c in named if n != name]  # a user callback replaces a default
            named.append((name, cb))
        return named

    def initialize_callbacks(self) -> NeuralNet:
        """Build ``callbacks_`` from the defaults, ``callbacks`` and ``callbacks__*`` parameters.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For duplicate names or a ``callbacks__<name>`` that names no callback.
        """
        named = self._collect_callbacks()
        routed = self.get_params_for("callbacks")
        names = [name for name, _ in named]
        replacements = {k: v for k, v in routed.items() if "__" not in k}
        nested = {k: v for k, v in routed.items() if "__" in k}
        for key in list(replacements) + [k.split("__", 1)[0] for k in nested]:
            if key not in names:
                raise ValueError(f"callbacks__{key} names no callback; known callback names: {names}")
        named = [(n, replacements.get(n, cb)) for n, cb in named]
        by_name = dict(named)
        for key, value in nested.items():
            name, param = key.split("__", 1)
            if by_name[name] is None:
                raise ValueError(f"callbacks__{key}={value!r} sets a parameter of callback {name!r}, which is "
                                 f"disabled (callbacks__{name}=None); drop one of the two")
            by_name[name].set_params(**{param: value})
        named = [(n, cb) for n, cb in named if cb is not None]
        for _, cb in named:
            cb.initialize()
        # The default PrintLog runs last, so that it prints the columns user callbacks record.
        last = [(n, cb) for n, cb in named if n == "print_log" and isinstance(cb, PrintLog)]
        self.callbacks_ = [(n, cb) for n, cb in named if (n, cb) not in last] + last
        return self

    def _active_callbacks(self) -> Iterator[Any]:
        for _, callback in self.callbacks_:
            if isinstance(callback, PrintLog) and not self.verbose:
                continue
            if self.__dict__.get("distributed") and skip_on_this_rank(self, callback):
                continue  # a distributed fit: only rank 0 writes (bridge/net/distributed.py)
            yield callback

    def _hook_methods(self, hook: str) -> list[Any]:
        """Bound methods to call for ``hook``: the net's own, then each callback that overrides it."""
        methods = [getattr(self, hook)]
        methods += [getattr(cb, hook) for cb in self._active_callbacks() if overrides_hook(cb, hook)]
        return methods

    def notify(self, method_name: str, **cb_kwargs: Any) -> None:
        """Call ``method_name`` on the net and then on every callback, with ``cb_kwargs``.

        Raises
        ------
        ValueError
            When ``method_name`` is not a hook.
        """
        if method_name not in HOOK_NAMES:
            raise ValueError(f"{method_name!r} is not a callback hook; hooks: {list(HOOK_NAMES)}")
        for method in self._hook_methods(method_name):
            method(self, **cb_kwargs)

    # The net's own hooks (callbacks have the same signatures).
    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        """Hook: start of training (no-op)."""

    def on_train_end(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        """Hook: end of training (no-op)."""

    def on_epoch_begin(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        """Hook: open a new epoch row in the history."""
        self.history.new_epoch()
        self.history.record("epoch", len(self.history))

    def on_epoch_end(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None, **kwargs: Any) -> None:
        """Hook: end of an epoch (no-op)."""

    def on_batch_begin(self, net: Any, batch: Any = None, training: bool | None = None, **kwargs: Any) -> None:
        """Hook: open a new batch row in the history."""
        self.history.new_batch()

    def on_batch_end(self, net: Any, batch: Any = None, training: bool | None = None, **kwargs: Any) -> None:
        """Hook: end of a batch (no-op)."""

    def on_grad_computed(self, net: Any, named_parameters: Any, batch: Any = None, training: bool = True, **kwargs: Any) -> None:
        """Hook: gradients are ready (no-op)."""

    # ------------------------------------------------------------------ initialization
    def initialize_module(self) -> NeuralNet:
        """Build ``module_`` from ``module`` and ``module__*``.

        Modules set here under a name ending in ``_`` (``self.module2_ = ...``) are registered:
        moved to ``device`` afterwards, trained, saved and configured by ``module2__*``.
        """
        self.module_ = self._constructed("module", self.module, self.get_params_for("module"))
        return self

    def initialize_criterion(self) -> NeuralNet:
        """Build ``criterion_`` from ``criterion`` and ``criterion__*``."""
        self.criterion_ = self._constructed("criterion", self.criterion, self.get_params_for("criterion"))
        return self

    def _constructed(self, prefix: str, value: Any, params: dict[str, Any]) -> Any:
        """:meth:`initialized_instance`, with an error of the constructor restated naming the
        class and the ``<prefix>__*`` parameters it got (same exception type, original chained)."""
        try:
            return self.initialized_instance(value, params)
        except (TypeError, ValueError, RuntimeError) as error:
            raise_restated(error, construction_context(prefix, value, params))

    def get_all_learnable_params(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        """``(name, parameter)`` for every parameter of the registered modules and criteria (each once).

        The parameters of ``module_`` and ``criterion_`` keep their own names; those of other
        registered components are prefixed with the attribute, e.g. ``'module2_.dense.weight'``.
        """
        seen: set[int] = set()
        for kind in ("module", "criterion"):
            for owner_name, owner in self._components(kind):
                if not isinstance(owner, torch.nn.Module):
                    continue
                prefix = "" if owner_name in ("module", "criterion") else owner_name + "_."
                for name, param in owner.named_parameters():
                    if id(param) not in seen:
                        seen.add(id(param))
                        yield prefix + name, param

    def initialize_optimizer(self, triggered_directly: Any = None) -> NeuralNet:
        """Build ``optimizer_`` over :meth:`get_all_learnable_params` with ``lr`` and ``optimizer__*``."""
        args, kwargs = self.get_params_for_optimizer("optimizer", self.get_all_learnable_params())
        try:
            self.optimizer_ = self.optimizer(*args, **kwargs)
        except (TypeError, ValueError) as error:
            raise_restated(error, construction_context("optimizer", self.optimizer, kwargs))
        return self

    def initialize_history(self) -> NeuralNet:
        """Start an empty ``history_`` (a :class:`~bridge.history.DistributedHistory` set on the net is kept).

        A distributed history is shared with the other processes of a data-parallel run, so it is
        not replaced; a fresh one per ``fit`` is the caller's choice.
        """
        current = self.__dict__.get("history_")
        if isinstance(current, DistributedHistory):
            return self
        # A history of the user's own class (history=MyHistory()) stays of that class, emptied.
        self.history_ = type(current)() if isinstance(current, History) else History()
        return self

    def initialize(self) -> NeuralNet:
        """Check parameters and build callbacks, module, criterion, optimizer and history.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For unknown or misspelled parameters, or a bad ``use_caching``.
        DeviceError
            When ``device`` is not available.
        """
        if self.use_caching not in ("auto", True, False):
            raise ValueError(f"use_caching must be 'auto', True or False; got {self.use_caching!r}")
        if self.get_params_for("iterator_valid").get("shuffle"):
            import warnings

            warnings.warn("iterator_valid__shuffle=True shuffles the rows of predict and predict_proba; "
                          "this is most likely not what you want", UserWarning, stacklevel=2)
        check_device(self.device)
        _check_components(self)
        check_param_values(self, {name: getattr(self, name) for name in PARAM_RULES if name in vars(self)})
        for attribute in ("_modules", "_criteria", "_optimizers", "prefixes_", "cuda_dependent_attributes_"):
            self.__dict__.pop(attribute, None)
        self._check_param_names(name for name in self._routed_param_names()
                                if name.split("__", 1)[0] in type(self).prefixes_ or "__" not in name)
        self.initialize_callbacks()
        for part in ("module", "criterion", "optimizer"):
            self._initialize_part(part)
        self._check_param_names(self._routed_param_names())  # <name>__* of the registered components
        self.initialize_history()
        self._initialized = True
        return self

    def _set_training(self, training: bool = True) -> None:
        for component in self._training_modules():
            if component.training != training:
                component.train(training)

    def module_dtype(self) -> torch.dtype:
        """The floating dtype of the module's parameters (the default dtype before initialization)."""
        module = getattr(self, "module_", None)
        if isinstance(module, torch.nn.Module):
            for param in module.parameters():
                if param.is_floating_point() and not isinstance(param, torch.nn.parameter.UninitializedParameter):
                    return param.dtype
        return torch.get_default_dtype()

    def to_onnx(self, path: str | os.PathLike[str] | None = None,
                **kwargs: Any) -> onnx.ModelProto:
        """Export to a checked ONNX model; the same as ``bridge.to_onnx(self, path, **kwargs)``.

        Parameters
        ----------
        path : str or PathLike, optional
            Where to write the file (atomically).
        **kwargs
            ``X_sample``, ``opset``, ``exporter``: see :func:`bridge.to_onnx`.

        Returns
        -------
        onnx.ModelProto
        """
        import bridge  # the public API: models know nothing of bridge.export's internals

        return bridge.to_onnx(self, path, **kwargs)

    def __repr__(self) -> str:
        shown = {name: getattr(self, name) for name in ("module", "criterion")}
        if self.initialized_:
            shown["module_"] = self.module_
        body = ",\n  ".join(f"{k}={v!r}" for k, v in shown.items())
        state = "initialized" if self.initialized_ else "uninitialized"
        return f"<class '{type(self).__module__}.{type(self).__name__}'>[{state}](\n  {body},\n)"


def check_is_fitted(net: Any, attributes: Any = None, *args: Any, **kwargs: Any) -> None:
    """Raise :class:`bridge.errors.NotFittedError` unless ``net`` is initialized and has ``attributes``.

    Parameters
    ----------
    net : NeuralNet
        The net.
    attributes : list of str or None
        Attributes that must exist; default: every registered module (``module_``, ...).

    Raises
    ------
    NotFittedError
        Before ``fit``/``initialize``, or when one of ``attributes`` is missing.
    """
    names = attributes or [name + "_" for name in net.__dict__.get("_modules", ())] or ["module_"]
    missing = [name for name in names if not hasattr(net, name)]
    if not net.initialized_ or missing:
        raise NotFittedError(f"This {type(net).__name__} instance is not initialized yet; call 'initialize' "
                             "or 'fit' with appropriate arguments before using this method"
                             + (f" (missing: {missing})." if net.initialized_ else "."))


def _check_components(net: Any) -> None:
    """Raise TypeError naming ``module``, ``criterion``, ``optimizer`` or ``train_split`` when
    it is not something the net can build or call (a string, say)."""
    wanted = {"module": "a torch.nn.Module instance, class or factory",
              "criterion": "a loss module instance, class or callable",
              "optimizer": "a torch.optim.Optimizer class or factory"}
    for name, expected in wanted.items():
        value = getattr(net, name)
        if not (callable(value) or isinstance(value, torch.nn.Module)):
            raise TypeError(f"{name}={value!r} is not valid; expected {expected}")
    split = net.train_split
    if split is not None and split is not False and not callable(split):
        raise TypeError(f"train_split={split!r} is not valid; expected a callable such as "
                        "bridge.dataset.ValidSplit(0.2), or None for no validation split")
