"""Input validation and conversion for converted estimators: arrays, DataFrames and tensors in,
one tensor (or one per column) out, with scikit-learn-style errors for shape, dtype and NaN."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from bridge.errors import InvalidInputError

try:  # built by setup.py where a C compiler was found (bridge/_buffers.c)
    from bridge import _buffers
except ImportError:
    _buffers = None

CPU = torch.device("cpu")
TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
                 np.dtype(np.int64): torch.int64}


@dataclass(frozen=True)
class InputSpec:
    """What the graph takes: element dtype, rank, feature count and the estimator's rules.

    Attributes
    ----------
    dtype : numpy.dtype
        The graph input's element type (float32, float64 or int64).
    rank : int
        2 for ``(n_samples, n_features)`` inputs, 1 for label inputs (LabelBinarizer).
    n_features : int or None
        Features the estimator was fitted on (``None`` when unknown or rank 1).
    allow_nan : bool
        Whether the estimator accepts NaN (its ``allow_nan`` tag).
    feature_names : tuple of str or None
        The estimator's ``feature_names_in_`` (checked against DataFrame columns).
    per_column : bool
        The graph takes one ``(N, 1)`` input per column (string column selectors).
    estimator_name : str
        Shown in error messages.
    text_columns : tuple of str
        Columns (with ``per_column``) that hold text: they go in as int64 indices into the
        graph input's vocabulary, -1 for a value outside it.
    """

    dtype: np.dtype
    rank: int
    n_features: int | None
    allow_nan: bool
    feature_names: tuple[str, ...] | None
    per_column: bool
    estimator_name: str
    text_columns: tuple[str, ...] = ()

    def prepare(self, X, device: torch.device,
                vocabularies: dict[str, list] | None = None) -> tuple[list[torch.Tensor], bool]:
        """Validate ``X`` and return the graph inputs plus whether ``X`` was not a tensor.

        ``vocabularies`` maps the text columns to the labels their indices stand for (the
        graph module's ``input_vocabularies``).

        Raises
        ------
        ValueError
            Wrong number of dimensions or features, a non-numeric dtype, DataFrame
            columns that differ from the fitted ones, or NaN/infinity where the
            estimator rejects them.
        """
        if self.text_columns:
            return self._text_and_numbers(X, device, vocabularies or {}), True
        is_tensor = isinstance(X, torch.Tensor)
        if is_tensor:
            tensor = self._from_tensor(X, device)
            self._check_shape(tuple(tensor.shape))
            if not self.allow_nan and tensor.is_floating_point():
                if tensor.device.type == "cpu":  # numpy's check costs a fifth of torch's
                    view = tensor.detach() if tensor.requires_grad else tensor
                    self._check_finite_array(view.numpy())
                else:
                    self._check_finite(tensor)
        else:
            array = self._from_array(X)
            self._check_shape(array.shape)
            if not self.allow_nan and array.dtype.kind == "f":
                self._check_finite_array(array)
            tensor = torch.from_numpy(array)
            if device.type != "cpu":
                tensor = tensor.to(device)
        if self.per_column:
            return [tensor[:, i : i + 1] for i in range(tensor.shape[1])], not is_tensor
        return [tensor], not is_tensor

    def served(self, X, device: torch.device) -> torch.Tensor | None:
        """The serving case in a few attribute reads: ``X`` as the graph's one input when it
        is a plain C-contiguous array (or a tensor that records no gradient) of the graph's
        dtype, rank and width, on ``device``, and finite where it must be; None otherwise.

        None never means invalid: :meth:`prepare` takes over, converting what it can and
        raising the errors. Array inputs work on the CPU only (a GPU model copies them in
        :meth:`prepare`).
        """
        rules = self._served_rules
        if rules is None:
            return None
        char, dtype, rank, width, finite = rules
        kind = type(X)
        if kind is torch.Tensor:
            if (X.dtype is not dtype or X.dim() != rank or X.requires_grad or X.device != device
                    or not X.numel() or (width >= 0 and X.shape[1] != width)
                    or (finite and not _all_finite(X))):
                return None  # GPU tensors among them: prepare's checks
            return X
        if kind is not np.ndarray:
            return None
        return torch.from_numpy(X) if self.serves_array(X, device) else None

    def serves_array(self, X: np.ndarray, device: torch.device) -> bool:
        """Whether numpy array ``X`` is the serving case (what :meth:`served` wraps as a
        tensor): the numpy checks alone, for callers that run numpy rows themselves."""
        rules = self._served_rules
        if rules is None or device != CPU:  # (a device's .type costs ~0.2 us)
            return False
        char, _, rank, width, finite = rules
        if _buffers is not None:  # every check in one C call
            return _buffers.served_array(X, char, rank, width, finite)
        return not (X.dtype != self.dtype or X.ndim != rank or not X.flags.c_contiguous
                    or not X.size or (width >= 0 and X.shape[1] != width)
                    or (finite and not _all_finite(X)))

    @functools.cached_property
    def _served_rules(self) -> tuple[str, torch.dtype, int, int, bool] | None:
        """What :meth:`served` checks, found once: the dtype (as numpy's character and as
        torch's), the rank, the width (-1: not checked) and whether values must be
        finite; None when no input is served as it is (one input per column)."""
        if self.per_column or self.text_columns:
            return None
        width = self.n_features if self.rank == 2 and self.n_features is not None else -1
        return (self.dtype.char, TORCH_DTYPES[self.dtype], self.rank, width,
                not self.allow_nan and self.dtype.kind == "f")

    def _text_and_numbers(self, X, device: torch.device,
                          vocabularies: dict[str, list]) -> list[torch.Tensor]:
        """One ``(N, 1)`` input per column of a DataFrame (or 2-D array) mixing text and
        numbers: text as vocabulary indices, numbers in the graph's float dtype."""
        if isinstance(X, torch.Tensor):
            raise ValueError(
                f"{self.estimator_name} (converted) reads text columns "
                f"{list(self.text_columns)}, which a tensor cannot hold; pass a pandas "
                "DataFrame or a 2-D object array"
            )
        if hasattr(X, "columns") and hasattr(X, "to_numpy"):
            self._check_columns(list(X.columns))
            X = X.to_numpy(dtype=object)
        values = np.asarray(X, dtype=object)
        self._check_shape(values.shape)
        inputs = []
        for position, name in enumerate(self.feature_names or ()):
            column = values[:, position]
            if name in self.text_columns:
                index = {label: i for i, label in enumerate(vocabularies.get(name, ()))}
                codes = np.fromiter((index.get(v, -1) for v in column), np.int64, len(column))
                refused_by = getattr(vocabularies.get(name), "refused_by", None)
                if refused_by is not None and (codes < 0).any():  # named while the text is here
                    row = int(np.flatnonzero(codes < 0)[0])
                    raise InvalidInputError(
                        f"column {name!r} of {self.estimator_name} (converted) holds "
                        f"{column[row]!r} (row {row}), a category that {refused_by} does not "
                        f"know and refuses (handle_unknown='error'); known categories: "
                        f"{sorted(index)[:10]}{' ...' if len(index) > 10 else ''}"
                    )
                inputs.append(torch.from_numpy(codes).view(-1, 1).to(device))
                continue
            try:
                numbers = column.astype(self.dtype)
            except (TypeError, ValueError):
                raise ValueError(
                    f"column {name!r} of {self.estimator_name} (converted) holds numbers; got "
                    f"values such as {column[:3].tolist()} that are not"
                ) from None
            tensor = torch.from_numpy(numbers).view(-1, 1).to(device)
            self._check_finite(tensor)
            inputs.append(tensor)
        return inputs

    def _from_array(self, X) -> np.ndarray:
        if type(X) is np.ndarray and X.dtype == self.dtype and X.flags.c_contiguous:
            return X  # the serving case: nothing to convert
        if hasattr(X, "columns") and hasattr(X, "to_numpy"):  # pandas DataFrame
            self._check_columns(list(X.columns))
            X = X.to_numpy()
        array = np.asarray(X)
        if array.dtype.kind == "O":  # numbers held as objects (a mixed DataFrame's values)
            try:
                array = array.astype(self.dtype)
            except (TypeError, ValueError):
                pass
        if array.dtype.kind not in "biuf":
            raise ValueError(
                f"{self.estimator_name} (converted) takes numeric input; got dtype "
                f"{array.dtype}, expected a numeric array convertible to {self.dtype}"
            )
        return np.ascontiguousarray(array.astype(self.dtype, copy=False))

    def _from_tensor(self, X: torch.Tensor, device: torch.device) -> torch.Tensor:
        if X.is_complex() or X.dtype == torch.bool:
            raise ValueError(
                f"{self.estimator_name} (converted) takes real numeric tensors; got "
                f"{X.dtype}, expected {TORCH_DTYPES[self.dtype]} (other real dtypes are cast)"
            )
        if X.device != device:
            raise ValueError(
                f"input tensor is on {X.device} but the converted {self.estimator_name} is on "
                f"{device}; move one of them with .to()"
            )
        dtype = TORCH_DTYPES[self.dtype]
        return X if X.dtype == dtype else X.to(dtype)

    def _check_columns(self, columns: list) -> None:
        if self.feature_names is None:
            return
        if [str(c) for c in columns] != list(self.feature_names):
            raise ValueError(
                "The feature names should match those that were passed during fit: got "
                f"{columns}, expected {list(self.feature_names)} (in that order)"
            )

    def _check_shape(self, shape: tuple) -> None:
        if len(shape) != self.rank:
            expected = "(n_samples, n_features)" if self.rank == 2 else "(n_samples,)"
            raise ValueError(
                f"Expected a {self.rank}D input of shape {expected} for {self.estimator_name}; "
                f"got shape {shape}"
                + (". Reshape with X.reshape(-1, 1) for a single feature or "
                   "X.reshape(1, -1) for a single sample" if len(shape) == 1 else "")
            )
        if self.rank == 2 and self.n_features is not None and shape[1] != self.n_features:
            raise ValueError(
                f"X has shape {shape} ({shape[1]} features), but {self.estimator_name} is "
                f"expecting {self.n_features} features: shape (n_samples, {self.n_features})"
            )

    def _check_finite_array(self, array: np.ndarray) -> None:
        """NaN/infinity check on an array (or a CPU tensor's numpy view): one sum, as
        scikit-learn does; only a non-finite sum (NaN, infinity, or finite values whose
        sum overflows) pays for the element-wise check that finds out which."""
        if array.size == 0 or _all_finite(array):
            return
        self._check_finite(torch.from_numpy(np.ascontiguousarray(array)))

    def _check_finite(self, tensor: torch.Tensor) -> None:
        if self.allow_nan or bool(torch.isfinite(tensor).all()):  # one pass in the common case
            return
        if bool(torch.isnan(tensor).any()):
            raise ValueError(
                f"Input X contains NaN. {self.estimator_name} does not accept missing values "
                "encoded as NaN natively; impute them first (e.g. sklearn.impute.SimpleImputer)"
            )
        if bool(torch.isinf(tensor).any()):
            raise ValueError(
                f"Input X contains infinity or a value too large for {tensor.dtype}."
            )


SMALL_SUM = 64  # values summed as Python floats: a numpy or torch sum costs more below this


def _all_finite(X) -> bool:
    """Whether CPU array/tensor ``X`` holds only finite values; False means "not known to":
    another device, or (without the C check) a sum that is not finite, then the element-wise
    check decides. The C loop (``_buffers.c``) reads a contiguous float32/float64 block in
    0.1-0.5 us for one row; otherwise a sum: as Python floats for small inputs (0.3 us
    against 0.8 for numpy's sum and 1.3 for a tensor's), where NaN, infinity and finite
    values whose sum overflows all give a sum that is not finite."""
    if isinstance(X, torch.Tensor):
        if not X.is_cpu:
            return False
        if _buffers is not None and X.dtype in _C_DTYPES and X.is_contiguous():
            return _buffers.finite(X.data_ptr(), X.numel(), X.dtype is torch.float64)
        if X.numel() <= SMALL_SUM:
            return math.isfinite(sum(map(sum, X.tolist())) if X.dim() == 2 else
                                 sum(X.reshape(-1).tolist()))
        return math.isfinite(X.numpy().sum())
    if _buffers is not None and X.dtype.char in "fd" and X.flags.c_contiguous:
        return _buffers.finite_array(X)
    if X.size <= SMALL_SUM:
        return math.isfinite(sum(X.ravel().tolist()))
    return math.isfinite(X.sum())


_C_DTYPES = (torch.float32, torch.float64)


def text_columns(estimator, X_sample=None) -> set[str]:
    """Names of the columns that hold text: a DataFrame sample's non-numeric columns, else
    the columns whose first fitted step (in any ColumnTransformer of ``estimator``) learnt
    text categories or text fill values (OneHotEncoder, OrdinalEncoder, SimpleImputer)."""
    if hasattr(X_sample, "dtypes") and hasattr(X_sample, "columns"):
        return {str(c) for c, t in zip(X_sample.columns, X_sample.dtypes)
                if getattr(t, "kind", "O") not in "biuf"}  # pandas' own dtypes have a kind too
    from sklearn.compose import ColumnTransformer

    names: set[str] = set()
    for part in parts(estimator):
        if not isinstance(part, ColumnTransformer):
            continue
        for _, transformer, columns in part.transformers_:
            first = transformer
            while hasattr(first, "steps"):
                first = first.steps[0][1]
            if _learnt_text(first) and isinstance(columns, list | tuple):
                names.update(str(c) for c in columns)
    return names


def parts(estimator):
    """``estimator`` and every estimator nested in it (pipeline steps, transformers)."""
    yield estimator
    for _, step in getattr(estimator, "steps", []):
        yield from parts(step)
    for entry in getattr(estimator, "transformers_", []):
        yield from parts(entry[1])


def _learnt_text(step) -> bool:
    categories = getattr(step, "categories_", None)
    if categories is not None:
        return any(np.asarray(c).dtype.kind in "OUS" for c in categories)
    statistics = getattr(step, "statistics_", None)
    return statistics is not None and np.asarray(statistics).dtype.kind in "OUS"
