"""Registration of a net's torch components: every module, criterion and optimizer it trains.

A component is an ``nn.Module`` or optimizer set on the net inside ``initialize_module``,
``initialize_criterion`` or ``initialize_optimizer`` under a name ending in ``_``
(``module_``, ``module2_``, ...). Registered components are moved to the device, switched
between train and eval mode, trained (their parameters reach the default optimizer; every
registered optimizer steps), saved with ``f_<name>=`` and configured by ``<name>__*``
parameters. Setting one anywhere else raises instead of leaving it silently untrained.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from bridge.errors import NetAttributeError
from bridge.net.params import PREFIXES

__all__ = ["ComponentsMixin"]

_KINDS = {"module": "_modules", "criterion": "_criteria", "optimizer": "_optimizers"}


class ComponentsMixin:
    """Tracks the components created by the ``initialize_*`` methods (names without the ``_``)."""

    #: Routed-parameter prefixes; an instance adds the names of the components it registers.
    prefixes_: list[str] = list(PREFIXES)
    #: Attributes holding device-dependent state; an instance adds its registered components.
    cuda_dependent_attributes_: list[str] = ["module_", "criterion_", "optimizer_"]

    _modules: list[str]
    _criteria: list[str]
    _optimizers: list[str]

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and isinstance(value, torch.nn.Module | torch.optim.Optimizer):
            self._register_component(name, value)
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        super().__delattr__(name)
        if name.endswith("_"):
            for attribute in _KINDS.values():
                registered = self.__dict__.get(attribute)
                if registered and name[:-1] in registered:
                    registered.remove(name[:-1])
                    self._shrink_instance_list("prefixes_", name[:-1])
                    self._shrink_instance_list("cuda_dependent_attributes_", name)

    def _registry(self, kind: str) -> list[str]:
        return self.__dict__.setdefault(_KINDS[kind], [])

    def _register_component(self, name: str, value: Any) -> None:
        part = self.__dict__.get("_initializing")
        is_optimizer = isinstance(value, torch.optim.Optimizer)
        registered = any(name[:-1] in self.__dict__.get(a, ()) for a in _KINDS.values())
        if part is None:
            if registered:
                return  # replacing a registered component (e.g. after loading) keeps its registration
            if not name.endswith("_") and not is_optimizer:
                return  # a parameter such as module=MyModule() or criterion=nn.MSELoss()
            method = "initialize_optimizer" if is_optimizer else "initialize_module"
            raise NetAttributeError(
                f"{type(self).__name__}.{name} = {type(value).__name__}(...) is set outside an initialize "
                f"method, so the net could not move, train or save it; create it inside '{method}' "
                "(with a name ending in '_')")
        if not name.endswith("_"):
            raise NetAttributeError(
                f"{type(self).__name__}.{name}: a module or optimizer created in initialize_{part} must have "
                f"a name ending in '_' (e.g. '{name}_'), which marks it as fitted state")
        kind = "optimizer" if is_optimizer else ("criterion" if part == "criterion" else "module")
        names = self._registry(kind)
        if name[:-1] not in names:
            names.append(name[:-1])
        self._extend_instance_list("prefixes_", name[:-1])
        self._extend_instance_list("cuda_dependent_attributes_", name)

    def _extend_instance_list(self, attribute: str, item: str) -> None:
        # The class-level list stays untouched: each net gets its own copy once it registers.
        current = self.__dict__.get(attribute, getattr(type(self), attribute))
        if item not in current:
            self.__dict__[attribute] = [*current, item]

    def _shrink_instance_list(self, attribute: str, item: str) -> None:
        current = self.__dict__.get(attribute)
        if current is not None and item in current and item not in getattr(type(self), attribute):
            self.__dict__[attribute] = [x for x in current if x != item]

    def _initialize_part(self, part: str) -> None:
        """Run ``initialize_<part>`` with registration open, then move what it created to the device."""
        previous = self.__dict__.get("_initializing")
        self.__dict__["_initializing"] = part
        try:
            getattr(self, "initialize_" + part)()
        finally:
            self.__dict__["_initializing"] = previous
        if part not in ("module", "criterion"):
            return
        for name in self._registry(part):
            component = getattr(self, name + "_", None)
            if not isinstance(component, torch.nn.Module):
                continue
            if self.device is not None:
                moved = component.to(self.device)
                component = moved if isinstance(moved, torch.nn.Module) else component
            if self.compile and not hasattr(component, "_orig_mod"):
                component = torch.compile(component, **self.get_params_for("compile"))
            self.__dict__[name + "_"] = component

    # ---------------------------------------------------------------- views
    def _components(self, kind: str) -> Iterator[tuple[str, Any]]:
        for name in list(self.__dict__.get(_KINDS[kind], ())):
            component = getattr(self, name + "_", None)
            if component is not None:
                yield name, component

    def _registered_optimizers(self) -> list[Any]:
        return [opt for _, opt in self._components("optimizer") if isinstance(opt, torch.optim.Optimizer)]

    def _training_modules(self) -> Iterator[torch.nn.Module]:
        for kind in ("module", "criterion"):
            for _, component in self._components(kind):
                if isinstance(component, torch.nn.Module):
                    yield component
