"""Parameter routing of the nets: ``module__x``, ``optimizer__x``, ``callbacks__name__x``, ...

``get_params``/``set_params`` follow scikit-learn's convention so that ``clone`` and
``GridSearchCV`` work; unknown names fail with a suggestion of the closest valid one.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Iterable
from typing import Any

import torch

from bridge.net.checks import raise_restated
from bridge.net.validation import check_param_values
from bridge.utils import params_for

__all__ = ["ParamsMixin"]

PREFIXES = ("module", "criterion", "optimizer", "iterator_train", "iterator_valid", "dataset", "callbacks", "compile")


# constructors (a class and the net classes it extends) → their parameter names
_PARAM_NAMES: dict[tuple, list[str]] = {}


class ParamsMixin:
    """get_params/set_params with skorch's routed (``prefix__name``) parameters."""

    prefixes_: list[str] = list(PREFIXES)

    @classmethod
    def _init_param_names(cls) -> list[str]:
        """Constructor parameters of this class and of every net class it extends.

        Read with ``inspect.signature`` once per set of constructors (every prediction
        routes parameters: the signatures were half of a one-row ``predict_proba``)."""
        constructors = tuple(vars(klass)["__init__"] for klass in cls.__mro__
                             if "__init__" in vars(klass) and issubclass(klass, ParamsMixin))
        names = _PARAM_NAMES.get(constructors)
        if names is None:
            names = []
            for init in constructors:
                for name, p in inspect.signature(init).parameters.items():
                    if (name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
                            and name not in names):
                        names.append(name)
            _PARAM_NAMES[constructors] = names
        return list(names)

    def _routed_param_names(self) -> list[str]:
        """Names given to ``__init__``/``set_params`` beyond the constructor's own (``module__x``, ...).

        An attribute set by plain assignment (``net.note = 'x'``) is not a parameter: it is
        neither checked nor returned by ``get_params``.
        """
        own = set(self._init_param_names())
        present = vars(self)
        return sorted(k for k in self.__dict__.get("_given_params", ()) if k not in own and k in present)

    def _remember_given(self, names: Iterable[str]) -> None:
        given = self.__dict__.setdefault("_given_params", set())
        given.update(n for n in names if not n.endswith("_"))

    def _get_param_names(self) -> list[str]:
        return self._init_param_names() + self._routed_param_names()

    # ------------------------------------------------------------------ validation
    def _check_param_names(self, names: Iterable[str]) -> None:
        """Raise ValueError for names that are neither parameters nor routed to a known prefix."""
        known = set(self._init_param_names())
        messages = []
        for name in sorted(names):
            if name in known or name.endswith("_"):
                continue
            prefix = next((p for p in sorted(self.prefixes_, key=len, reverse=True)
                           if name == p or name.startswith(p + "__")), None)
            if prefix is not None:
                continue
            almost = next((p for p in sorted(self.prefixes_, key=len, reverse=True) if name.startswith(p)), None)
            if almost is not None:
                suggestion = almost + "__" + name[len(almost):].lstrip("_")
            else:
                head, _, tail = name.partition("__")
                close = difflib.get_close_matches(head, list(known) + list(self.prefixes_), n=1)
                suggestion = (close[0] + ("__" + tail if tail else "")) if close else None
            hint = f"; did you mean {suggestion!r}?" if suggestion else ""
            messages.append(f"{type(self).__name__} got an unexpected parameter {name!r}{hint}")
        if messages:
            accepted = ", ".join(p + "__<name>" for p in self.prefixes_)
            valid = ", ".join(self._init_param_names())
            raise ValueError("\n".join(messages) + f"\n(routed parameters must start with one of: {accepted}). "
                             f"Valid parameters are: {valid}.")

    # ------------------------------------------------------------------ get/set
    def get_params_for(self, prefix: str) -> dict[str, Any]:
        """The routed parameters ``<prefix>__name`` as ``{name: value}``.

        Parameters
        ----------
        prefix : str
            E.g. ``'module'``, ``'iterator_train'``.

        Returns
        -------
        dict
        """
        return params_for(prefix, {k: getattr(self, k) for k in self._routed_param_names()})

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The net's parameters, including routed ones; with ``deep``, also the callbacks'.

        Parameters
        ----------
        deep : bool
            Include the parameters of callbacks (``callbacks__<name>__<param>``).

        Returns
        -------
        dict
        """
        params = {name: getattr(self, name) for name in self._get_param_names()}
        if not deep:
            return params
        for name, callback in self._named_callbacks_for_params():
            key = "callbacks__" + name
            params.setdefault(key, callback)
            if callback is not None and hasattr(callback, "get_params"):
                for sub, value in callback.get_params().items():
                    params.setdefault(key + "__" + sub, value)
        return params

    def _named_callbacks_for_params(self) -> list[tuple[str, Any]]:
        # The configured callbacks, not the fitted ``callbacks_``: parameters must not change in fit.
        try:
            return self._collect_callbacks()
        except (TypeError, ValueError):
            return []

    def set_params(self, **params: Any) -> Any:
        """Set parameters; re-initializes only what the change requires when fitted.

        A changed ``module__*`` re-initializes the module, criterion and optimizer; a changed
        ``criterion__*`` the criterion and optimizer; ``lr`` and ``optimizer__*`` update the
        optimizer's param groups in place when they can.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For an unknown parameter name (with the closest valid one), once the net is
            initialized; before that, names are checked by :meth:`initialize`.
        ConfigurationError
            For an invalid value (``lr=-0.5``, ``batch_size=0``, an option the optimizer refuses)
            on an initialized net, checked as :meth:`initialize` checks it before ``fit``;
            nothing is changed then.
        """
        if getattr(self, "initialized_", False):
            self._check_param_names(params)
            check_param_values(self, params)
            self._check_optimizer_options(params)
        self._remember_given(params)
        for key, value in params.items():
            setattr(self, key, value)
        if not getattr(self, "initialized_", False):
            return self
        changed = {key.split("__", 1)[0] if "__" in key else key for key in params}
        if "callbacks" in changed:
            self.initialize_callbacks()
        modules = {"module", "compile", *self.__dict__.get("_modules", ())}
        criteria = {"criterion", *self.__dict__.get("_criteria", ())}
        custom_optimizers = set(self.__dict__.get("_optimizers", ())) - {"optimizer"}
        if changed & modules:
            self._reinitialize(("module", "criterion", "optimizer"), params)
        elif changed & criteria or "criterion" in params:
            self._reinitialize(("criterion", "optimizer"), params)
        elif "optimizer" in params or changed & custom_optimizers:
            self._reinitialize(("optimizer",), params)
        elif changed & {"optimizer", "lr"}:
            self._update_optimizer_in_place(params)
        if "device" in params:
            self._reinitialize(("module", "criterion", "optimizer"), params)
        return self

    def _check_optimizer_options(self, params: dict[str, Any]) -> None:
        """Build a throwaway optimizer with the options ``params`` would give, so that torch's own
        checks run before the options reach the fitted optimizer's param groups in place."""
        optimizer = params.get("optimizer", self.optimizer)
        if not any(key == "lr" or key.startswith("optimizer__") for key in params):
            return
        if not (isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)):
            return
        current = {key: getattr(self, key) for key in self._routed_param_names()}
        kwargs = params_for("optimizer", {**current, **params})
        kwargs = {key: value for key, value in kwargs.items() if not key.startswith("param_groups")}
        kwargs.setdefault("lr", params.get("lr", self.lr))
        try:
            optimizer([torch.nn.Parameter(torch.zeros(1))], **kwargs)
        except (TypeError, ValueError) as error:
            shown = ", ".join(f"{key}={value!r}" for key, value in params.items())
            raise_restated(error, f"{type(self).__name__}.set_params({shown}): {optimizer.__name__} refuses "
                                  "these options")

    def _reinitialize(self, parts: tuple[str, ...], params: dict[str, Any]) -> None:
        if self.verbose:
            shown = ", ".join(sorted(params))
            print(f"Re-initializing {parts[0]} because the following parameters were re-set: {shown}.")
            for part in parts[1:]:
                print(f"Re-initializing {part}.")
        for part in parts:
            self._initialize_part(part)

    def _update_optimizer_in_place(self, params: dict[str, Any]) -> None:
        groups = self.optimizer_.param_groups
        for key, value in params.items():
            name = "lr" if key == "lr" else key.split("__", 1)[1]
            if name.startswith("param_groups__"):
                _, index, option = name.split("__")
                groups[int(index)][option] = value
            elif all(name in group for group in groups):
                if key == "lr" and "optimizer__lr" in vars(self):
                    continue  # an explicit optimizer__lr wins over lr
                for group in groups:
                    group[name] = value
            else:
                self._reinitialize(("optimizer",), params)
                return

    # ------------------------------------------------------------------ construction helpers
    def initialized_instance(self, instance_or_cls: Any, kwargs: dict[str, Any]) -> Any:
        """An instance from a class and its routed kwargs, or the given instance unchanged.

        Raises
        ------
        TypeError
            When routed kwargs are given for something already instantiated and not re-creatable.
        """
        is_instance = isinstance(instance_or_cls, torch.nn.Module) or (
            not callable(instance_or_cls) and not isinstance(instance_or_cls, type))
        if is_instance and not kwargs:
            return instance_or_cls
        if is_instance:
            return type(instance_or_cls)(**kwargs)
        return instance_or_cls(**kwargs)

    def get_params_for_optimizer(self, prefix: str, named_parameters: Iterable[tuple[str, torch.nn.Parameter]]) -> tuple[tuple, dict]:
        """``(args, kwargs)`` for the optimizer: param groups (``<prefix>__param_groups``) and options.

        Parameters
        ----------
        prefix : str
            Usually ``'optimizer'``.
        named_parameters : iterable of (str, Parameter)
            The learnable parameters.

        Returns
        -------
        tuple
            ``((param_groups,), kwargs)``; ``lr`` defaults to the net's ``lr``.
        """
        kwargs = self.get_params_for(prefix)
        named = list(named_parameters)
        group_specs = kwargs.pop("param_groups", None) or []
        kwargs.setdefault("lr", self.lr)
        used: set[str] = set()
        groups = []
        for pattern, options in group_specs:
            members = [p for n, p in named if fnmatch.fnmatch(n, pattern) and n not in used]
            used.update(n for n, _ in named if fnmatch.fnmatch(n, pattern))
            groups.append({"params": members, **options})
        default = {"params": [p for n, p in named if n not in used]}
        if groups and not default["params"]:
            return (groups,), kwargs
        return (groups + [default],), kwargs  # the groups in the order given, the rest last
