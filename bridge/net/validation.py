"""Input and parameter checks of the nets, in scikit-learn's words: feature counts, NaN/inf,
empty data, dtypes, the shape of one sample, and values such as ``lr`` or ``batch_size``.

Arrays and DataFrames go through sklearn's ``validate_data``; tensors are checked in place
(without leaving their device); dicts and Datasets pass through unchanged. Parameter values
are checked the same way before ``fit`` (in ``initialize``) and by ``set_params`` on a fitted net.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy import sparse
from sklearn.utils.validation import validate_data
from torch.utils.data import DataLoader

from bridge.dataset import get_len
from bridge.errors import ConfigurationError
from bridge.helper import SliceDataset
from bridge.net.checks import check_sample_shape
from bridge.utils import is_dataset, is_pandas_ndframe

__all__ = ["cast_floating", "check_input", "check_param_values", "require_y"]


def _is_learning_rate(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.dim() == 0 and value.is_floating_point() and bool(torch.isfinite(value)) and float(value) >= 0
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(float(value)) and float(value) >= 0)


def _is_epoch_count(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def _is_batch_size(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and (value >= 1 or value == -1)


_BATCH_SIZE = (lambda value: value is None or _is_batch_size(value),
               "a positive integer, or -1 for all rows in one batch")
#: name -> (test, what is expected); the same rules before fit and in set_params on a fitted net.
PARAM_RULES = {
    "lr": (_is_learning_rate, "a non-negative finite number such as 0.01"),
    "optimizer__lr": (_is_learning_rate, "a non-negative finite number such as 0.01"),
    "max_epochs": (_is_epoch_count, "a non-negative integer"),
    "batch_size": _BATCH_SIZE,
    "iterator_train__batch_size": _BATCH_SIZE,
    "iterator_valid__batch_size": _BATCH_SIZE,
}


def check_param_values(net: Any, params: Mapping[str, Any]) -> None:
    """Check the values of the parameters in ``params`` that have a rule in :data:`PARAM_RULES`.

    Parameters
    ----------
    net : NeuralNet
        The net (named in the message).
    params : mapping
        ``{name: value}``; names without a rule are not looked at.

    Raises
    ------
    ConfigurationError
        Naming each invalid parameter, its value and what is expected.
    """
    problems = []
    for name, value in params.items():
        rule = PARAM_RULES.get(name)
        if rule is not None and not rule[0](value):
            problems.append(f"{name}={value!r} is not valid; expected {rule[1]}")
    if problems:
        raise ConfigurationError(f"{type(net).__name__}: " + "; ".join(problems))


def cast_floating(data: Any, dtype: torch.dtype) -> Any:
    """Cast floating-point arrays/tensors (and dict values) to ``dtype``; other data unchanged.

    Parameters
    ----------
    data : ndarray, tensor, dict of them or anything else
        The data.
    dtype : torch.dtype
        The floating dtype of the module (float32 by default).

    Returns
    -------
    the same structure
        With floating arrays in ``dtype`` (integers stay integers: they may be indices).
    """
    if isinstance(data, torch.Tensor):
        return data.to(dtype) if data.is_floating_point() and data.dtype != dtype else data
    if isinstance(data, np.ndarray):
        np_dtype = torch.empty((), dtype=dtype).numpy().dtype
        return data.astype(np_dtype) if data.dtype.kind == "f" and data.dtype != np_dtype else data
    if isinstance(data, Mapping) and not is_pandas_ndframe(data):
        cast = {key: cast_floating(value, dtype) for key, value in data.items()}
        return type(data)(**cast) if type(data).__name__ == "SliceDict" else cast
    return data


def _check_tensor(net: Any, X: torch.Tensor, reset: bool) -> None:
    if X.dim() < 2:
        raise ValueError(f"Expected a 2D (or higher) tensor, got a {X.dim()}D tensor of shape {tuple(X.shape)}; "
                         "reshape a single feature with X.reshape(-1, 1)")
    if X.shape[0] == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={tuple(X.shape)}) while a minimum of 1 is required.")
    if X.is_floating_point() and not bool(torch.isfinite(X).all()):
        raise ValueError("Input X contains NaN or infinity.")
    n_features = X.shape[1]
    if reset:
        net.n_features_in_ = n_features
        if hasattr(net, "feature_names_in_"):
            del net.feature_names_in_
    elif hasattr(net, "n_features_in_") and n_features != net.n_features_in_:
        raise ValueError(f"X has {n_features} features, but {type(net).__name__} is expecting "
                         f"{net.n_features_in_} features as input.")


def _check_tensor_y(y: torch.Tensor) -> None:
    if y.is_floating_point() and not bool(torch.isfinite(y).all()):
        raise ValueError("Input y contains NaN or infinity.")


def require_y(net: Any, X: Any, y: Any) -> None:
    """Raise unless ``y`` is given or ``X`` is a Dataset that yields targets itself.

    Raises
    ------
    ValueError
        When ``y`` is None for array-like ``X``.
    """
    custom_loader = getattr(net, "iterator_train", DataLoader) is not DataLoader  # it may yield targets
    if y is None and not is_dataset(X) and not custom_loader:
        raise ValueError(f"{type(net).__name__} requires y to be passed, but the target y is None "
                         "(only a torch Dataset X may carry its own targets)")


def check_input(net: Any, X: Any, y: Any = None, *, reset: bool, y_numeric: bool = False) -> tuple[Any, Any]:
    """Validate ``X`` (and ``y``), record or check ``n_features_in_``/``feature_names_in_``/``sample_shape_``.

    Parameters
    ----------
    net : NeuralNet
        The estimator (its fitted attributes are set when ``reset``).
    X : array-like, tensor, dict, SliceDict or torch Dataset
        The input.
    y : array-like, tensor or None
        The targets (None for prediction or when ``X`` holds them).
    reset : bool
        Record the input's shape/names (fit) rather than check them (predict, partial_fit).
    y_numeric : bool
        Convert object-dtype ``y`` to float (regression).

    Returns
    -------
    tuple
        ``(X, y)``: numpy arrays for array-likes and DataFrames, other inputs unchanged.

    Raises
    ------
    ValueError
        For wrong feature counts, NaN/inf, empty or inconsistent data.
    InvalidInputError
        For X of another rank or sample shape than in ``fit`` (see
        :func:`bridge.net.checks.check_sample_shape`); a ``ValueError``.
    TypeError
        For sparse input, which nets do not accept.
    """
    if not reset and isinstance(X, np.ndarray | torch.Tensor) and X.ndim >= 2:  # 1-D: scikit-learn's message
        check_sample_shape(net, X, reset=False, rank_only=True)  # a rank change first, then feature counts
    X, y = _checked_input(net, X, y, reset=reset, y_numeric=y_numeric)
    check_sample_shape(net, X, reset=reset)
    return X, y


def _served(net: Any, X: Any) -> bool:
    """Whether prediction input ``X`` is what ``validate_data`` would hand back unchanged,
    checked in a few attribute reads: a non-empty 2-D float array of the fitted width, with
    no feature names recorded in fit and a finite sum (scikit-learn's own NaN/inf test).
    scikit-learn's validation costs ~100 us, half of a one-row ``predict_proba``."""
    return (type(X) is np.ndarray and X.ndim == 2 and X.dtype.kind == "f" and X.size > 0
            and X.shape[1] == net.__dict__.get("n_features_in_")
            and net.__dict__.get("feature_names_in_") is None
            and math.isfinite(X.sum()))


def _checked_input(net: Any, X: Any, y: Any, *, reset: bool, y_numeric: bool) -> tuple[Any, Any]:
    if not reset and y is None and _served(net, X):
        return X, None
    if sparse.issparse(X):
        raise TypeError("sparse input is not supported by bridge nets; pass X.toarray() (a dense array) "
                        "or a torch Dataset that densifies rows")
    if is_dataset(X) or isinstance(X, SliceDataset):
        return X, _plain_y(y, y_numeric)
    if is_pandas_ndframe(X) and hasattr(X, "columns") and _forward_takes_keywords_only(net):
        # forward(**X): each column becomes a keyword argument of shape (n, 1)
        X = {str(column): X[column].to_numpy().reshape(-1, 1) for column in X.columns}
    if isinstance(X, Mapping) and not is_pandas_ndframe(X):
        n_rows = get_len(X)
        if n_rows == 0:
            raise ValueError("Found array with 0 sample(s) in the dict X while a minimum of 1 is required.")
        if y is not None and get_len(y) != n_rows:
            raise ValueError(f"X has {n_rows} rows but y has {get_len(y)}")
        return X, _plain_y(y, y_numeric)
    if isinstance(X, torch.Tensor):
        _check_tensor(net, X, reset)
        if y is not None:
            if get_len(y) != X.shape[0]:
                raise ValueError(f"Found input variables with inconsistent numbers of samples: [{X.shape[0]}, {get_len(y)}]")
            if isinstance(y, torch.Tensor):
                _check_tensor_y(y)
            else:
                y = _plain_y(y, y_numeric)
        return X, y
    if isinstance(X, (list, tuple)) and X and all(hasattr(v, "shape") and getattr(v, "ndim", 0) >= 2 for v in X):
        return X, _plain_y(y, y_numeric)  # a list of arrays passed to the module as one argument
    options = dict(reset=reset, allow_nd=True, dtype="numeric", accept_sparse=False, ensure_all_finite=True)
    if y is None:
        X = validate_data(net, X, reset=reset, **{k: v for k, v in options.items() if k != "reset"})
        return X, None
    if isinstance(y, torch.Tensor):
        X = validate_data(net, X, reset=reset, **{k: v for k, v in options.items() if k != "reset"})
        if get_len(y) != len(X):
            raise ValueError(f"Found input variables with inconsistent numbers of samples: [{len(X)}, {get_len(y)}]")
        _check_tensor_y(y)
        return X, y
    if isinstance(y, np.ndarray) and (y.ndim > 2 or _is_ragged(y)):
        # sequence targets (n, steps, k) or one array per row go to the criterion unchanged
        X = validate_data(net, X, reset=reset, **{k: v for k, v in options.items() if k != "reset"})
        if len(y) != len(X):
            raise ValueError(f"Found input variables with inconsistent numbers of samples: [{len(X)}, {len(y)}]")
        return X, y
    X, y = validate_data(net, X, y, multi_output=True, y_numeric=y_numeric,
                         **{k: v for k, v in options.items() if k != "reset"}, reset=reset)
    return X, y


def _forward_takes_keywords_only(net: Any) -> bool:
    """Whether the net's module is called as ``forward(**X)`` (no positional input, ``**kwargs``)."""
    module = getattr(net, "module_", None) or getattr(net, "module", None)
    forward = getattr(module, "forward", None)
    if forward is None:
        return False
    try:
        parameters = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        return False
    if parameters and parameters[0].name == "self":
        parameters = parameters[1:]  # the class's function, not a bound method
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    return not positional and any(p.kind is p.VAR_KEYWORD for p in parameters)


def _is_ragged(y: np.ndarray) -> bool:
    """Whether ``y`` is an object array holding one array per row (targets of varying length)."""
    return y.dtype == object and len(y) > 0 and isinstance(y[0], np.ndarray | torch.Tensor)


def _plain_y(y: Any, y_numeric: bool) -> Any:
    if y is None or isinstance(y, torch.Tensor) or is_dataset(y):
        return y
    if isinstance(y, SliceDataset):
        return y
    y = y.to_numpy() if is_pandas_ndframe(y) else np.asarray(y)
    if y_numeric and y.dtype == object:
        y = y.astype(np.float64)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("Input y contains NaN or infinity.")
    return y
