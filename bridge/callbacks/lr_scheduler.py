"""Learning-rate schedules as callbacks: any ``torch.optim.lr_scheduler`` policy stepped per
epoch or per batch, with the learning rate recorded in the history, and SGDR warm restarts."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.optim import lr_scheduler as torch_schedulers
from torch.optim.lr_scheduler import ReduceLROnPlateau

from bridge.callbacks.base import Callback

__all__ = ["LRScheduler", "WarmRestartLR"]

_STEP_EVERY = ("epoch", "batch")
# Constructor arguments of LRScheduler itself; everything else goes to the policy.
_OWN_PARAMS = ("policy", "monitor", "event_name", "step_every")


def _per_group(name: str, optimizer: torch.optim.Optimizer, value: float | Sequence[float]) -> list:
    """One value per parameter group: a scalar is repeated, a sequence must match."""
    n_groups = len(optimizer.param_groups)
    if not isinstance(value, (list, tuple, np.ndarray)):
        return [float(value)] * n_groups
    if len(value) != n_groups:
        raise ValueError(
            f"{name} has {len(value)} values but the optimizer has {n_groups} parameter groups; "
            "pass one value, or one per group"
        )
    return [float(v) for v in value]


class WarmRestartLR(torch_schedulers.LRScheduler):
    """Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter, ICLR 2017).

    Within a period of ``P`` steps the learning rate falls from ``max_lr`` to ``min_lr``
    along a half cosine, ``min_lr + (max_lr - min_lr) * (1 + cos(pi * t / P)) / 2`` for
    ``t = 0 .. P``; then it restarts at ``max_lr`` with the period multiplied by
    ``period_mult``.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        The optimizer whose learning rates are set.
    min_lr : float or list of float, default=1e-6
        The lowest learning rate of each period, for all groups or per group.
    max_lr : float or list of float, default=0.05
        The learning rate at the start of each period, for all groups or per group.
    base_period : int, default=10
        The length of the first period.
    period_mult : int, default=2
        The factor by which each period is longer than the previous one.
    last_epoch : int, default=-1
        The index of the last step taken (``-1`` to start afresh).

    Raises
    ------
    ValueError
        When a per-group list has the wrong length or ``base_period`` is not positive.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        min_lr: float | Sequence[float] = 1e-6,
        max_lr: float | Sequence[float] = 0.05,
        base_period: int = 10,
        period_mult: int = 2,
        last_epoch: int = -1,
    ):
        if base_period <= 0:
            raise ValueError(f"WarmRestartLR: base_period={base_period} must be positive")
        self.min_lr = _per_group("min_lr", optimizer, min_lr)
        self.max_lr = _per_group("max_lr", optimizer, max_lr)
        self.base_period = base_period
        self.period_mult = period_mult
        super().__init__(optimizer, last_epoch)

    def _position_in_period(self) -> tuple[float, float]:
        """``(t, P)``: the step inside the current period and that period's length."""
        step, period = float(self.last_epoch), float(self.base_period)
        while step > period:
            step -= period + 1
            period *= self.period_mult
        return step, period

    def get_lr(self) -> list[float]:
        """The learning rate of each parameter group at step ``last_epoch``."""
        step, period = self._position_in_period()
        cosine = (1.0 + math.cos(math.pi * step / period)) / 2.0
        return [low + (high - low) * cosine for low, high in zip(self.min_lr, self.max_lr)]


class LRScheduler(Callback):
    """Set the learning rate of every parameter group according to a schedule.

    The schedule steps at the end of every epoch (``step_every='epoch'``) or after every
    training batch (``'batch'``); the learning rate used (of the first parameter group) is
    recorded in the history under ``event_name``, per epoch or per batch.

    When training continues from a non-empty history (``warm_start``, ``partial_fit`` or
    :class:`~bridge.callbacks.LoadInitState`), the schedule is rebuilt from the optimizer's
    initial learning rates and replayed over the epochs (or batches) already in the history
    (for ``ReduceLROnPlateau``: over their recorded ``monitor`` values), so a resumed run
    follows the same learning rates as an uninterrupted one whatever the callback order.
    (skorch instead restarts the policy at ``last_epoch=len(history) - 1`` from the loaded
    learning rate, which repeats or skips a decay depending on when the optimizer was saved.)
    Without recorded scores (a callable ``monitor``) or with an explicit ``last_epoch``
    keyword, nothing is replayed and the policy starts from the current learning rate.

    Parameters
    ----------
    policy : str or class, default='WarmRestartLR'
        A scheduler class taking the optimizer first (``torch.optim.lr_scheduler.StepLR``,
        ``CyclicLR``, ``OneCycleLR``, ``ReduceLROnPlateau``, :class:`WarmRestartLR`, ...)
        or the name of one in ``torch.optim.lr_scheduler`` or of ``'WarmRestartLR'``.
    monitor : str or callable, default='train_loss'
        For ``ReduceLROnPlateau`` only: the history key whose value is passed to ``step``,
        or a callable ``monitor(net) -> float``.
    event_name : str or None, default='event_lr'
        The history key for the learning rate; ``None`` records nothing.
    step_every : {'epoch', 'batch'}, default='epoch'
        When the scheduler steps.
    **kwargs
        Passed to the policy, e.g. ``step_size=7, gamma=0.1`` for ``StepLR``. They are
        parameters of this callback, so ``callbacks__<name>__gamma`` routes to them.

    Attributes
    ----------
    lr_scheduler_ : scheduler
        The policy instance of the current training run.
    batch_idx_ : int
        The number of training batches seen (for ``step_every='batch'``).

    Raises
    ------
    ValueError
        For an unknown ``policy`` name or ``step_every`` value, or (with
        ``ReduceLROnPlateau``) a ``monitor`` key missing from the history.
    """

    def __init__(
        self,
        policy: str | type = "WarmRestartLR",
        monitor: str | Callable[[Any], float] = "train_loss",
        event_name: str | None = "event_lr",
        step_every: str = "epoch",
        **kwargs: Any,
    ):
        self.policy = policy
        self.monitor = monitor
        self.event_name = event_name
        self.step_every = step_every
        vars(self).update(kwargs)

    def _get_param_names(self) -> list[str]:
        # The policy's keyword arguments are parameters too (get_params, set_params, clone).
        return sorted(key for key in vars(self) if not key.endswith("_"))

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments passed to the policy."""
        return {
            key: value
            for key, value in vars(self).items()
            if key not in _OWN_PARAMS and not key.endswith("_") and not key.startswith("_")
        }

    def _get_policy_cls(self) -> Any:
        if not isinstance(self.policy, str):
            return self.policy
        if self.policy == "WarmRestartLR":
            return WarmRestartLR
        policy = getattr(torch_schedulers, self.policy, None)
        if not isinstance(policy, type):
            known = sorted(
                name
                for name, obj in vars(torch_schedulers).items()
                if isinstance(obj, type) and name.endswith(("LR", "Plateau")) and name[0] != "_"
            )
            raise ValueError(
                f"LRScheduler: policy={self.policy!r} is not a scheduler in "
                f"torch.optim.lr_scheduler; accepted names: WarmRestartLR, {', '.join(known)}"
            )
        return policy

    def _check_step_every(self) -> None:
        if self.step_every not in _STEP_EVERY:
            raise ValueError(
                f"LRScheduler: step_every={self.step_every!r} is invalid; accepted: "
                f"{', '.join(_STEP_EVERY)}"
            )

    def initialize(self) -> LRScheduler:
        """Check the parameters and resolve the policy; returns ``self``."""
        self._check_step_every()
        self.policy_ = self._get_policy_cls()
        self.lr_scheduler_ = None
        self.batch_idx_ = 0
        self.built_for_epochs_ = None
        self.check_on_epoch_begin_ = False
        return self

    def simulate(self, steps: int, initial_lr: float, step_args: Any = None) -> np.ndarray:
        """Return the learning rates the policy would set over ``steps`` steps.

        Parameters
        ----------
        steps : int
            How many steps to simulate.
        initial_lr : float
            The optimizer's learning rate before the first step.
        step_args : None, float or sequence of float, default=None
            Passed to ``step``: a sequence gives one value per step, a scalar the same
            value every step (e.g. the score for ``ReduceLROnPlateau``).

        Returns
        -------
        numpy.ndarray
            The learning rate in use at each of the ``steps`` steps.
        """
        weight = torch.zeros(1, requires_grad=True)
        optimizer = torch.optim.SGD([weight], lr=initial_lr)
        scheduler = self._get_policy_cls()(optimizer, **self.kwargs)
        rates = []
        for index in range(steps):
            optimizer.step()
            rates.append(optimizer.param_groups[0]["lr"])
            if step_args is None:
                scheduler.step()
            elif isinstance(step_args, (Sequence, np.ndarray)):
                scheduler.step(step_args[index])
            else:
                scheduler.step(step_args)
        return np.asarray(rates, dtype=float)

    # ----------------------------------------------------------------- building and resuming
    def _past_scores(self, net: Any, epochs: list) -> list | None:
        """Recorded ``monitor`` values of the completed epochs (or their training batches)."""
        if callable(self.monitor):
            return None
        if self.step_every == "epoch":
            scores = [row.get(self.monitor) for row in epochs]
        else:
            scores = [batch.get(self.monitor) for row in epochs for batch in _train_batches(row)]
        return None if any(score is None for score in scores) else scores

    def _build(self, net: Any, completed_epochs: int) -> None:
        """Create the policy for ``net.optimizer_`` and replay the completed steps."""
        self._check_step_every()
        self.policy_ = self._get_policy_cls()
        kwargs = self.kwargs
        optimizer = net.optimizer_
        done = list(net.history[:completed_epochs])
        self.batch_idx_ = sum(_count_train_batches(row) for row in done)
        n_steps = completed_epochs if self.step_every == "epoch" else self.batch_idx_
        is_plateau = isinstance(self.policy_, type) and issubclass(self.policy_, ReduceLROnPlateau)
        scores = self._past_scores(net, done) if is_plateau else None
        replay = (
            n_steps > 0 and "last_epoch" not in kwargs and (not is_plateau or scores is not None)
        )
        if replay or n_steps == 0:
            _restart_learning_rates(optimizer, remember=is_plateau)
        self.lr_scheduler_ = self.policy_(optimizer, **kwargs)
        if replay:
            with warnings.catch_warnings():
                # Replaying steps without optimizer steps; torch warns about the order.
                warnings.simplefilter("ignore", UserWarning)
                for index in range(n_steps):
                    if is_plateau:
                        self.lr_scheduler_.step(scores[index])
                    else:
                        self.lr_scheduler_.step()
        self.built_for_epochs_ = completed_epochs

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        """Create the scheduler (continuing the schedule of a non-empty history)."""
        self._build(net, completed_epochs=len(net.history))
        self.check_on_epoch_begin_ = True

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        """Rebuild once if a later ``on_train_begin`` (e.g. LoadInitState) changed the history."""
        if not getattr(self, "check_on_epoch_begin_", False):
            return
        self.check_on_epoch_begin_ = False
        completed = len(net.history) - 1  # the current epoch's row already exists
        if completed != self.built_for_epochs_:
            self._build(net, completed_epochs=completed)

    # ------------------------------------------------------------------------------ stepping
    def _current_lr(self, net: Any) -> float:
        return net.optimizer_.param_groups[0]["lr"]

    def _score(self, net: Any, batch_level: bool) -> float:
        if callable(self.monitor):
            return self.monitor(net)
        try:
            if batch_level:
                return net.history[-1, "batches", -1, self.monitor]
            return net.history[-1, self.monitor]
        except KeyError as exc:
            raise ValueError(
                f"LRScheduler monitors {self.monitor!r}, which is not in the history; place the "
                f"callback that writes {self.monitor!r} before the LRScheduler callback"
            ) from exc

    def _step(self, net: Any, batch_level: bool) -> None:
        if isinstance(self.lr_scheduler_, ReduceLROnPlateau):
            self.lr_scheduler_.step(self._score(net, batch_level))
        else:
            self.lr_scheduler_.step()

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        """Record the epoch's learning rate and step (``step_every='epoch'``)."""
        if self.step_every != "epoch":
            return
        if self.event_name is not None:
            net.history.record(self.event_name, self._current_lr(net))
        self._step(net, batch_level=False)

    def on_batch_end(self, net: Any, training: bool = False, **kwargs: Any) -> None:
        """Record the batch's learning rate and step (``step_every='batch'``, training only)."""
        if not training or self.step_every != "batch":
            return
        if self.event_name is not None:
            net.history.record_batch(self.event_name, self._current_lr(net))
        self._step(net, batch_level=True)
        self.batch_idx_ += 1


def _train_batches(epoch_row: dict) -> list:
    """The per-batch dicts of one epoch that belong to training batches."""
    return [
        batch
        for batch in epoch_row.get("batches", [])
        if "train_loss" in batch or "train_batch_size" in batch
    ]


def _count_train_batches(epoch_row: dict) -> int:
    if "train_batch_count" in epoch_row:
        return int(epoch_row["train_batch_count"])
    return len(_train_batches(epoch_row))


def _restart_learning_rates(optimizer: torch.optim.Optimizer, remember: bool) -> None:
    """Put every group back at its ``initial_lr``.

    torch's schedulers record ``initial_lr`` themselves (and some, like ``CyclicLR``, choose
    it); ``remember`` records it for those that do not (``ReduceLROnPlateau``), so that a
    resumed run can replay from it.
    """
    for group in optimizer.param_groups:
        if "initial_lr" in group:
            group["lr"] = group["initial_lr"]
        elif remember:
            group["initial_lr"] = group["lr"]
