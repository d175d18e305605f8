"""Setters for "virtual" parameters: values a fitted net applies to a live object in place.

:func:`optimizer_setter` changes the learning rate or another option of an optimizer's
param groups without re-creating the optimizer (so its state, e.g. momentum, is kept).
"""

from __future__ import annotations

from typing import Any

__all__ = ["optimizer_setter"]


def optimizer_setter(net: Any, param: str, value: Any, optimizer_attr: str = "optimizer_",
                     optimizer_name: str = "optimizer") -> None:
    """Apply ``param=value`` to the optimizer ``net.<optimizer_attr>`` in place.

    Parameters
    ----------
    net : NeuralNet
        The fitted net.
    param : str
        ``'lr'`` (every param group, and ``net.lr``), ``'<optimizer_name>__<option>'`` (every
        param group) or ``'<optimizer_name>__param_groups__<index>__<option>'`` (one group).
    value : object
        The new value.
    optimizer_attr : str
        The attribute holding the optimizer.
    optimizer_name : str
        The parameter prefix of that optimizer.

    Raises
    ------
    AttributeError
        When ``param`` has none of these forms, naming it and the optimizer.
    """
    groups = getattr(net, optimizer_attr).param_groups
    if param == "lr":
        net.lr = value
        for group in groups:
            group["lr"] = value
        return
    parts = param.split("__")
    if len(parts) == 4 and parts[0] == optimizer_name and parts[1] == "param_groups" and parts[2].isdigit():
        index = int(parts[2])
        if index >= len(groups):
            raise AttributeError(f"{param!r}: {optimizer_name!r} has {len(groups)} param groups; "
                                 f"index {index} is out of range")
        groups[index][parts[3]] = value
        return
    if len(parts) == 2 and parts[0] == optimizer_name:
        for group in groups:
            group[parts[1]] = value
        return
    raise AttributeError(f"{param!r} is not a parameter of optimizer {optimizer_name!r}; expected 'lr', "
                         f"'{optimizer_name}__<option>' or '{optimizer_name}__param_groups__<index>__<option>'")
