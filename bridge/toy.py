"""Small ready-made networks for examples, tests and quick experiments (skorch's ``toy`` names).

:class:`MLPModule` is a configurable multi-layer perceptron; the ``make_*`` helpers return a
constructor with defaults suited to classification or regression, to pass as a net's ``module``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

__all__ = ["MLPModule", "make_binary_classifier", "make_classifier", "make_regressor"]


class MLPModule(nn.Module):
    """A multi-layer perceptron: ``num_hidden`` blocks of Linear → nonlinearity → Dropout, then Linear.

    Parameters
    ----------
    input_units : int
        Features per row.
    output_units : int
        Outputs per row.
    hidden_units : int
        Width of each hidden layer.
    num_hidden : int
        Number of hidden blocks (0 gives a single linear layer).
    nonlin : torch.nn.Module
        The activation after each hidden linear layer (the same instance is reused).
    output_nonlin : torch.nn.Module or None
        Appended after the output layer when given (e.g. ``nn.Softmax(dim=-1)``).
    dropout : float
        Dropout probability after each activation.
    squeeze_output : bool
        Remove a trailing output dimension of size 1 (a ``(n, 1)`` output becomes ``(n,)``).

    Raises
    ------
    ValueError
        For a negative ``num_hidden`` or a ``dropout`` outside ``[0, 1]``.
    """

    def __init__(self, input_units: int = 20, output_units: int = 2, hidden_units: int = 10,
                 num_hidden: int = 1, nonlin: nn.Module | None = None, output_nonlin: nn.Module | None = None,
                 dropout: float = 0.0, squeeze_output: bool = False):
        super().__init__()
        if num_hidden < 0:
            raise ValueError(f"num_hidden={num_hidden!r} is not valid; expected an integer >= 0")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout={dropout!r} is not valid; expected a probability in [0, 1]")
        self.input_units = input_units
        self.output_units = output_units
        self.hidden_units = hidden_units
        self.num_hidden = num_hidden
        self.nonlin = nn.ReLU() if nonlin is None else nonlin
        self.output_nonlin = output_nonlin
        self.dropout = dropout
        self.squeeze_output = squeeze_output
        self.reset_params()

    def reset_params(self) -> None:
        """Build ``sequential`` anew from the stored settings (fresh random weights)."""
        layers: list[nn.Module] = []
        width = self.input_units
        for _ in range(self.num_hidden):
            layers += [nn.Linear(width, self.hidden_units), self.nonlin, nn.Dropout(self.dropout)]
            width = self.hidden_units
        layers.append(nn.Linear(width, self.output_units))
        if self.output_nonlin is not None:
            layers.append(self.output_nonlin)
        self.sequential = nn.Sequential(*layers)

    def forward(self, X: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The network's output for ``X`` of shape ``(n, input_units)``."""
        output = self.sequential(X)
        if self.squeeze_output and output.dim() > 1 and output.shape[-1] == 1:
            output = output.squeeze(-1)
        return output


def make_classifier(output_nonlin: nn.Module | None = None, **kwargs: Any) -> Callable[..., MLPModule]:
    """An :class:`MLPModule` constructor ending in a softmax, for :class:`~bridge.NeuralNetClassifier`.

    Parameters
    ----------
    output_nonlin : torch.nn.Module or None
        Default ``nn.Softmax(dim=-1)`` (probabilities, as the default ``NLLLoss`` expects).
    **kwargs
        Any other :class:`MLPModule` argument.

    Returns
    -------
    callable
        Calling it (with further keyword arguments, if any) builds the module.
    """
    return partial(MLPModule, output_nonlin=nn.Softmax(dim=-1) if output_nonlin is None else output_nonlin,
                   **kwargs)


def make_binary_classifier(squeeze_output: bool = True, **kwargs: Any) -> Callable[..., MLPModule]:
    """An :class:`MLPModule` constructor with one logit per row, for :class:`~bridge.NeuralNetBinaryClassifier`.

    Parameters
    ----------
    squeeze_output : bool
        Return shape ``(n,)`` rather than ``(n, 1)``.
    **kwargs
        Any other :class:`MLPModule` argument (``output_units`` defaults to 1).

    Returns
    -------
    callable
    """
    kwargs.setdefault("output_units", 1)
    return partial(MLPModule, squeeze_output=squeeze_output, **kwargs)


def make_regressor(output_units: int = 1, **kwargs: Any) -> Callable[..., MLPModule]:
    """An :class:`MLPModule` constructor with a linear output, for :class:`~bridge.NeuralNetRegressor`.

    Parameters
    ----------
    output_units : int
        Targets per row.
    **kwargs
        Any other :class:`MLPModule` argument.

    Returns
    -------
    callable
    """
    return partial(MLPModule, output_units=output_units, **kwargs)
