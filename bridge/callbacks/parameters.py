"""Callbacks that act on the module's parameters by name: freeze, unfreeze, (re-)initialise or
apply any function to the parameters whose names match a pattern, at a chosen epoch."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from fnmatch import fnmatch
from typing import Any

import torch

from bridge.callbacks.base import Callback
from bridge.utils import freeze_parameter, noop, unfreeze_parameter

__all__ = [
    "ParamMapper",
    "Freezer",
    "Unfreezer",
    "Initializer",
    "freeze_parameter",
    "unfreeze_parameter",
]

# torch.compile wraps a module in an OptimizedModule whose parameter names carry this prefix;
# patterns are matched against the names of the original module.
_COMPILED_PREFIX = "_orig_mod."




def _strip_compiled_prefix(name: str) -> str:
    while name.startswith(_COMPILED_PREFIX):
        name = name[len(_COMPILED_PREFIX) :]
    return name


class ParamMapper(Callback):
    """Apply a function to every parameter whose name matches a pattern.

    By default the function runs once, at the beginning of epoch ``at``
    (``on_epoch_begin``); ``at`` may also be a predicate of the net, and
    ``schedule`` may choose the function anew at every epoch.

    Parameters
    ----------
    patterns : str, callable or list of them
        Unix shell-style patterns (:func:`fnmatch.fnmatch`) matched against the names
        yielded by ``net.get_all_learnable_params()`` (e.g. ``'dense0.*'``), or callables
        taking a name and returning whether it matches. A list matches the union.
    fn : callable, default=no-op
        Called as ``fn(param)`` on each matching parameter.
    at : int or callable, default=1
        The epoch (1-based: ``len(net.history)`` at the epoch's beginning) at which ``fn``
        is applied, or a callable ``at(net) -> bool`` that says whether to apply it now.
    schedule : callable or None, default=None
        When given, overrides ``at``/``fn``: ``schedule(net)`` returns the function to
        apply to the matching parameters at this epoch.

    Raises
    ------
    ValueError
        From :meth:`initialize`, when ``at`` is an integer below 1 or a pattern is neither
        a string nor a callable.
    """

    def __init__(
        self,
        patterns: str | Callable | list,
        fn: Callable = noop,
        at: int | Callable = 1,
        schedule: Callable | None = None,
    ):
        self.patterns = patterns
        self.fn = fn
        self.at = at
        self.schedule = schedule

    def initialize(self) -> ParamMapper:
        """Validate the parameters and build the matchers; returns ``self``."""
        patterns = self.patterns if isinstance(self.patterns, (list, tuple)) else [self.patterns]
        for pattern in patterns:
            if not (isinstance(pattern, str) or callable(pattern)):
                raise ValueError(
                    f"{type(self).__name__}: pattern {pattern!r} is neither a string "
                    "(fnmatch pattern) nor a callable taking a parameter name"
                )
        self.patterns_ = list(patterns)
        if isinstance(self.at, bool) or not (isinstance(self.at, int) or callable(self.at)):
            raise ValueError(
                f"{type(self).__name__}: at={self.at!r} is invalid; pass an epoch number "
                "(int >= 1) or a callable taking the net"
            )
        if isinstance(self.at, int) and self.at < 1:
            raise ValueError(
                f"{type(self).__name__}: at={self.at} is invalid; epochs are numbered from 1"
            )
        return self

    def named_parameters(self, net: Any) -> Iterator[tuple[str, torch.nn.Parameter]]:
        """Yield ``(name, parameter)`` for every learnable parameter of the net."""
        yield from net.get_all_learnable_params()

    def filter_parameters(
        self, patterns: list, params: Iterable[tuple[str, torch.nn.Parameter]]
    ) -> Iterator[tuple[str, torch.nn.Parameter]]:
        """Yield the ``(name, parameter)`` pairs whose name matches any of ``patterns``."""
        for name, param in params:
            plain_name = _strip_compiled_prefix(name)
            for pattern in patterns:
                matched = pattern(plain_name) if callable(pattern) else fnmatch(plain_name, pattern)
                if matched:
                    yield name, param
                    break

    # Whether ``fn`` sets a state that must hold from epoch ``at`` on (freezing), so that a run
    # resumed past ``at`` (LoadInitState, warm start) applies it again at its first epoch.
    _reapply_when_resumed = False

    def _applies_now(self, net: Any, first_epoch_of_run: bool) -> bool:
        if callable(self.at):
            return bool(self.at(net))
        epoch = len(net.history)
        if epoch == self.at:
            return True
        return self._reapply_when_resumed and first_epoch_of_run and epoch > self.at

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        """Note that the next epoch is the first of this training run."""
        self.first_epoch_pending_ = True

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        """Apply the scheduled function to the matching parameters."""
        if not hasattr(self, "patterns_"):
            self.initialize()
        first_epoch_of_run = getattr(self, "first_epoch_pending_", False)
        self.first_epoch_pending_ = False
        if self.schedule is not None:
            map_fn = self.schedule(net)
        elif self._applies_now(net, first_epoch_of_run):
            map_fn = self.fn
        else:
            return
        if map_fn is None:
            return
        matched = 0
        for _, param in self.filter_parameters(self.patterns_, self.named_parameters(net)):
            map_fn(param)
            matched += 1
        if not matched:  # most likely a misspelt pattern: say so rather than train as if applied
            names = [name for name, _ in self.named_parameters(net)]
            shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            warnings.warn(f"{type(self).__name__}: the patterns {self.patterns_!r} match none of "
                          f"the net's learnable parameters ({shown}); nothing was changed",
                          UserWarning, stacklevel=2)


class Freezer(ParamMapper):
    """Freeze the matching parameters (``requires_grad = False``) at epoch ``at``.

    Typical use is transfer learning: ``Freezer(lambda name: not name.startswith('fc'))``
    trains only the new head of a pretrained model. See :class:`ParamMapper` for the
    parameters.

    Freezing is a state, not an event: when a run resumes past epoch ``at`` (from a
    :class:`~bridge.callbacks.LoadInitState` checkpoint, whose history says training is at
    a later epoch), the parameters are frozen again at the run's first epoch. With both a
    Freezer and an :class:`Unfreezer` on the same parameters, list them in the order of
    their ``at`` so that the catch-up ends in the right state.

    Parameters
    ----------
    patterns : str, callable or list of them
        Names to freeze (see :class:`ParamMapper`).
    fn : callable, default=freeze_parameter
        Applied to each matching parameter.
    at : int or callable, default=1
        When to freeze (see :class:`ParamMapper`).
    schedule : callable or None, default=None
        See :class:`ParamMapper`.
    """

    _reapply_when_resumed = True

    def __init__(
        self,
        patterns: str | Callable | list,
        fn: Callable = freeze_parameter,
        at: int | Callable = 1,
        schedule: Callable | None = None,
    ):
        super().__init__(patterns, fn=fn, at=at, schedule=schedule)


class Unfreezer(ParamMapper):
    """Unfreeze the matching parameters (``requires_grad = True``) at epoch ``at``.

    Parameters
    ----------
    patterns : str, callable or list of them
        Names to unfreeze (see :class:`ParamMapper`).
    fn : callable, default=unfreeze_parameter
        Applied to each matching parameter.
    at : int or callable, default=1
        When to unfreeze, e.g. ``at=5`` to fine-tune the whole model from epoch 5 (applied
        again at the first epoch of a run resumed past ``at``, as for :class:`Freezer`).
    schedule : callable or None, default=None
        See :class:`ParamMapper`.
    """

    _reapply_when_resumed = True

    def __init__(
        self,
        patterns: str | Callable | list,
        fn: Callable = unfreeze_parameter,
        at: int | Callable = 1,
        schedule: Callable | None = None,
    ):
        super().__init__(patterns, fn=fn, at=at, schedule=schedule)


class Initializer(ParamMapper):
    """Initialise the matching parameters with ``fn`` at the beginning of epoch ``at``.

    Parameters
    ----------
    patterns : str, callable or list of them
        Names to initialise (see :class:`ParamMapper`).
    fn : callable
        An in-place initialiser, e.g. ``functools.partial(torch.nn.init.uniform_, a=-0.1, b=0.1)``.
    at : int or callable, default=1
        When to initialise (see :class:`ParamMapper`).
    schedule : callable or None, default=None
        See :class:`ParamMapper`.

    Notes
    -----
    When training resumes from saved parameters without the saved history (epoch 1 again),
    the initialiser runs again and overwrites them; save and load the history too (as
    :class:`~bridge.callbacks.Checkpoint` and :class:`~bridge.callbacks.LoadInitState` do).
    """

    def __init__(
        self,
        patterns: str | Callable | list,
        fn: Callable = noop,
        at: int | Callable = 1,
        schedule: Callable | None = None,
    ):
        super().__init__(patterns, fn=fn, at=at, schedule=schedule)

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        """Initialise the matching parameters without recording the operation in autograd."""
        with torch.no_grad():
            super().on_epoch_begin(net, **kwargs)
