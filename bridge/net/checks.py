"""Checks that turn silent mistakes of the nets into clear errors.

The shape of one sample seen in ``fit`` (checked in prediction), the module output against the
target on the first batch, integer input for modules that consume floats, and errors raised by
a module's or criterion's constructor, forward or loss, restated with what the net passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import numpy as np
import torch
from sklearn.base import is_classifier

from bridge.errors import ConfigurationError, InvalidInputError
from bridge.utils import is_pandas_ndframe

__all__ = ["ELEMENTWISE_LOSSES", "cast_integer_input", "check_loss_shapes", "check_sample_shape",
           "construction_context", "describe", "explain_forward_error", "integer_input_dtype", "raise_restated", "restated"]

#: Losses that compare output and target element by element: torch broadcasts mismatched
#: shapes (an (n, 1) target against an (n,) output gives an (n, n) loss) instead of failing.
ELEMENTWISE_LOSSES = (torch.nn.MSELoss, torch.nn.L1Loss, torch.nn.SmoothL1Loss, torch.nn.HuberLoss,
                      torch.nn.BCELoss, torch.nn.BCEWithLogitsLoss, torch.nn.SoftMarginLoss,
                      torch.nn.PoissonNLLLoss)

_EMBEDDINGS = (torch.nn.Embedding, torch.nn.EmbeddingBag)


def describe(value: Any) -> str:
    """``'shape (32, 2) float32'`` for arrays and tensors, the type name for anything else."""
    shape = getattr(value, "shape", None)
    if shape is None:
        return type(value).__name__
    dtype = str(getattr(value, "dtype", "")).replace("torch.", "")
    return f"shape {tuple(shape)} {dtype}".rstrip()


def restated(error: BaseException, context: str) -> BaseException:
    """``error`` again, of the same type, with ``context`` in front of its message.

    The type is kept so that code catching the original (``except TypeError``) still does;
    raise the result ``from error`` to keep the original traceback. Exceptions whose
    constructor does not take one message are returned unchanged.
    """
    try:
        return type(error)(f"{context}: {type(error).__name__}: {error}")
    except Exception:  # an exception class with a constructor of its own
        return error


def raise_restated(error: BaseException, context: str) -> NoReturn:
    """Raise :func:`restated` ``(error, context)`` from ``error`` (``error`` itself when it cannot be restated)."""
    new = restated(error, context)
    if new is error:
        raise error
    raise new from error


def construction_context(prefix: str, value: Any, params: dict[str, Any]) -> str:
    """``'building the module MLP with module__hidden=-5 failed'`` (the routed names as the user wrote them)."""
    name = getattr(value, "__name__", None) or type(value).__name__
    shown = ", ".join(f"{key if key == 'lr' and prefix == 'optimizer' else prefix + '__' + key}={item!r}"
                      for key, item in params.items()) or f"no {prefix}__* parameters"
    return f"building the {prefix} {name} with {shown} failed"


# ---------------------------------------------------------------------- one sample's shape
def _sample_shape(X: Any) -> Any:
    """``X.shape[1:]`` for arrays, tensors and DataFrames; a dict of them for a dict of arrays;
    None where no shape can be known without reading the data (Datasets, lists of arrays)."""
    if isinstance(X, Mapping) and not is_pandas_ndframe(X):
        shapes = {key: tuple(value.shape[1:]) for key, value in X.items() if hasattr(value, "shape")}
        return shapes if len(shapes) == len(X.keys()) else None  # len(SliceDict) counts rows
    shape = getattr(X, "shape", None)
    if shape is None or not isinstance(X, np.ndarray | torch.Tensor) and not is_pandas_ndframe(X):
        return None
    return tuple(int(n) for n in shape[1:])


def _matches(seen: tuple, expected: tuple) -> bool:
    return len(seen) == len(expected) and all(e is None or s == e for s, e in zip(seen, expected))


def check_sample_shape(net: Any, X: Any, reset: bool, rank_only: bool = False) -> None:
    """Record (``reset``) or check the shape of one sample of ``X`` as ``net.sample_shape_``.

    ``sample_shape_`` is ``X.shape[1:]`` from ``fit`` (a dict of them for a dict ``X``). An
    axis set to None accepts any length there, e.g. ``net.sample_shape_ = (8, None)`` for
    signals of 8 channels and any length. The first axis is ``n_features_in_``, which
    scikit-learn's ``validate_data`` checks in any case. Datasets and other inputs whose shape
    is not known up front are neither recorded nor checked.

    ``rank_only`` checks the rank alone (the feature count is then left to scikit-learn's
    ``validate_data``, whose message users know).

    Raises
    ------
    InvalidInputError
        When ``X`` has another rank or another sample shape than in ``fit``.
    """
    shape = _sample_shape(X)
    if reset:
        if shape is None:
            net.__dict__.pop("sample_shape_", None)
        else:
            net.sample_shape_ = shape
        return
    expected = net.__dict__.get("sample_shape_")
    if expected is None or shape is None:
        return
    name = type(net).__name__
    if isinstance(expected, dict) != isinstance(shape, dict):
        kind = "a dict of arrays" if isinstance(expected, dict) else "one array"
        raise InvalidInputError(f"{name} was fitted on {kind} as X; got {type(X).__name__}")
    if isinstance(expected, dict):
        for key, wanted in expected.items():
            if key in shape and not _matches(shape[key], wanted):
                raise InvalidInputError(
                    f"X[{key!r}] has samples of shape {shape[key]} (rank {len(shape[key]) + 1} with the "
                    f"batch axis), but {name} was fitted on samples of shape {wanted} (rank {len(wanted) + 1})")
        return
    if rank_only and len(shape) == len(expected):
        return
    if not _matches(shape, expected):
        hint = f"pass X of shape (n_samples, {', '.join('any' if n is None else str(n) for n in expected)})"
        raise InvalidInputError(
            f"X has shape {tuple(X.shape)}: rank {len(shape) + 1} with samples of shape {shape}, but {name} "
            f"was fitted on X of rank {len(expected) + 1} with samples of shape {expected}; {hint} "
            "(set an axis of net.sample_shape_ to None to accept any length there)")


# ---------------------------------------------------------------------- integer input
def integer_input_dtype(net: Any) -> torch.dtype | None:
    """The dtype integer ``X`` is cast to, or None when integers go to the module unchanged.

    Integers stay integers when the module holds an ``nn.Embedding``/``nn.EmbeddingBag``
    (they may be indices) or has no floating parameter; otherwise they are cast to the dtype
    of the module's first floating parameter, as an ``nn.Linear`` or ``nn.Conv*`` needs.
    """
    module = getattr(net, "module_", None)
    if not isinstance(module, torch.nn.Module):
        return None
    if any(isinstance(part, _EMBEDDINGS) for part in module.modules()):
        return None
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), None)


def cast_integer_input(net: Any, X: Any) -> Any:
    """Integer or boolean ``X`` (array or tensor) cast as :func:`integer_input_dtype` decides."""
    if isinstance(X, torch.Tensor):
        if X.is_floating_point() or X.is_complex():
            return X
        dtype = integer_input_dtype(net)
        return X if dtype is None else X.to(dtype)
    if isinstance(X, np.ndarray) and X.dtype.kind in "biu":
        dtype = integer_input_dtype(net)
        return X if dtype is None else X.astype(torch.empty((), dtype=dtype).numpy().dtype)
    return X


def explain_forward_error(net: Any, x: Any, error: RuntimeError) -> BaseException:
    """A dtype error from the module's forward restated with what the net passed in."""
    text = str(error)
    if not any(word in text for word in ("dtype", "scalar type", "Expected tensor for argument")):
        return error
    module = getattr(net, "module_", None)
    kept = " (kept as integers: the module holds an nn.Embedding)" if isinstance(module, torch.nn.Module) and any(
        isinstance(part, _EMBEDDINGS) for part in module.modules()) else ""
    return restated(error, f"{type(module).__name__} could not take X of {describe(x)}{kept}; bridge casts "
                           "integer X to the module's float dtype unless the module holds an embedding, and float "
                           "X to the dtype of its parameters; convert X to what forward expects")


# ---------------------------------------------------------------------- output vs target
def check_loss_shapes(net: Any, criterion: Any, y_pred: Any, y_true: Any) -> None:
    """Raise when an element-wise loss would broadcast the output against a target of another shape.

    Raises
    ------
    ConfigurationError
        Naming the criterion, the output's and the target's shapes and dtypes.
    """
    if not isinstance(criterion, ELEMENTWISE_LOSSES):
        return
    if not isinstance(y_pred, torch.Tensor) or not isinstance(y_true, torch.Tensor):
        return
    if y_pred.shape == y_true.shape:
        return
    name = type(net).__name__
    message = (f"{name}: the module's output ({describe(y_pred)}) and the target ({describe(y_true)}) differ "
               f"in shape, and {type(criterion).__name__} would broadcast one against the other instead of "
               "comparing them row by row")
    if is_classifier(net):
        message += ("; a classifier's target is one class index per row: use CrossEntropyLoss (logits) "
                    "or NLLLoss (probabilities), or NeuralNet with targets shaped like the output")
    else:
        message += "; make the module output one column per target column (or y of the output's shape)"
    raise ConfigurationError(message)
