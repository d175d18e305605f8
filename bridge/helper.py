"""Helpers that make torch data fit scikit-learn's tools.

:class:`SliceDict` (a dict of arrays that slices by rows), :class:`SliceDataset` (a torch
Dataset that sklearn can index), :func:`predefined_split` and :class:`DataFrameTransformer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from bridge.utils import multi_indexing

__all__ = ["DataFrameTransformer", "SliceDataset", "SliceDict", "predefined_split"]


class SliceDict(dict):
    """A dict of equally long arrays that slices by rows, so sklearn can split it.

    ``sd['key']`` returns a value; ``sd[0:10]`` or ``sd[np.array([1, 3])]`` returns a
    ``SliceDict`` of the selected rows. ``len(sd)`` and ``sd.shape`` are the number of rows.

    Parameters
    ----------
    **kwargs : array-like
        The named arrays, all with the same length.

    Raises
    ------
    ValueError
        When the arrays have different lengths.
    """

    def __init__(self, **kwargs: Any):
        unsized = [key for key, value in kwargs.items() if not hasattr(value, "__len__")]
        if unsized:
            raise TypeError(f"SliceDict values must be arrays (one entry per row); {unsized} "
                            "are not")
        lengths = {len(value) for value in kwargs.values()}
        if len(lengths) > 1:
            raise ValueError(f"all values of a SliceDict must have the same length; got lengths {sorted(lengths)}")
        self._len = lengths.pop() if lengths else 0
        super().__init__(**kwargs)

    def __len__(self) -> int:
        return self._len

    @property
    def shape(self) -> tuple[int]:
        """``(number of rows,)``."""
        return (self._len,)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(key)
        if isinstance(key, (int, np.integer)):
            return {k: v[key] for k, v in self.items()}
        return type(self)(**{k: multi_indexing(v, key) for k, v in self.items()})

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"SliceDict keys must be strings; got {key!r}")
        if self and len(value) != self._len:
            raise ValueError(f"cannot add {key!r} with {len(value)} rows to a SliceDict of {self._len} rows")
        if not self:
            self._len = len(value)
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Set several entries, each checked like ``sd[key] = value``."""
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def copy(self) -> SliceDict:
        """A shallow copy."""
        return type(self)(**self)

    @classmethod
    def fromkeys(cls, *args: Any, **kwargs: Any) -> SliceDict:
        """Not supported: a SliceDict needs arrays of equal length."""
        raise TypeError("SliceDict.fromkeys is not supported: build it from named arrays")

    def __repr__(self) -> str:
        return f"SliceDict(**{dict(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, dict) or self.keys() != other.keys():
            return False
        return all(_same_values(value, other[key]) for key, value in self.items())

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment] - mutable

    def __reduce__(self) -> tuple:
        return (_rebuild_slicedict, (dict(self),))


def _same_values(a: Any, b: Any) -> bool:
    """Equality of two values of a SliceDict: same type, then element-wise for arrays and tensors."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, np.ndarray):
        return bool(np.array_equal(a, b))
    return bool(a == b)


def _rebuild_slicedict(items: dict) -> SliceDict:
    return SliceDict(**items)


class SliceDataset(Sequence):
    """A view of one part of a torch Dataset's items that sklearn can index by rows.

    ``SliceDataset(ds, idx=0)`` behaves like an array of ``ds[i][0]``, so it can be passed to
    ``cross_val_score`` or ``GridSearchCV`` as ``X`` (and ``idx=1`` as ``y``).

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Items are tuples (usually ``(X, y)``). The view is a sequence, not a Dataset, so a net
        given ``SliceDataset`` inputs wraps them in its own dataset and reads rows lazily.
    idx : int
        Which element of each item to expose.
    indices : array of int or None
        The rows of ``dataset`` this view covers (all when None).

    Raises
    ------
    IndexError
        When indexed with something other than an int, a slice or an integer/boolean array.
    """

    def __init__(self, dataset: Any, idx: int = 0, indices: Any = None):
        self.dataset = dataset
        self.idx = idx
        self.indices = indices
        self.indices_ = np.arange(len(dataset)) if indices is None else np.asarray(indices)
        self.ndim = 1

    def __len__(self) -> int:
        return len(self.indices_)

    @property
    def shape(self) -> tuple[int]:
        """``(number of rows,)``."""
        return (len(self),)

    def transform(self, data: Any) -> Any:
        """Per-item transformation hook; identity by default."""
        return data

    def _select_item(self, row: int) -> Any:
        item = self.dataset[int(self.indices_[row])]
        if isinstance(item, (tuple, list)) and not -len(item) <= self.idx < len(item):
            raise IndexError(f"SliceDataset(idx={self.idx}): the dataset's items have "
                             f"{len(item)} parts (valid idx: 0..{len(item) - 1})")
        return self.transform(item[self.idx])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, tuple) and len(i) == 2 and i[1] is Ellipsis:
            i = i[0]  # sklearn indexes rows as ``X[rows, ...]``
        if isinstance(i, (int, np.integer)):
            return self._select_item(i)
        if isinstance(i, np.ndarray | torch.Tensor) and i.ndim != 1:
            raise IndexError(f"SliceDataset rows are selected with a 1-D index; got one with {i.ndim} dimensions")
        if isinstance(i, slice) or (isinstance(i, (np.ndarray, list, torch.Tensor))):
            rows = self.indices_[np.asarray(i) if not isinstance(i, slice) else i]
            return type(self)(self.dataset, idx=self.idx, indices=rows)
        raise IndexError(f"SliceDataset can be indexed by int, slice or integer/boolean array; got {type(i).__name__}")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = [np.asarray(self._select_item(row)) for row in range(len(self))]
        array = np.stack(values) if values else np.empty((0,))
        return array.astype(dtype) if dtype is not None else array


def _use_given_valid(dataset: Any, y: Any = None, valid_ds: Any = None, **kwargs: Any) -> tuple[Any, Any]:
    return dataset, valid_ds


def predefined_split(dataset: Any) -> Any:
    """A ``train_split`` that trains on all data and validates on the given ``dataset``.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        The validation data.

    Returns
    -------
    callable
        To pass as ``train_split=``.
    """
    return partial(_use_given_valid, valid_ds=dataset)


class DataFrameTransformer(TransformerMixin, BaseEstimator):
    """Turn a DataFrame into a dict a net's module accepts as keyword arguments.

    Numeric and boolean columns are stacked into one float array under ``'X'``; each
    categorical column (and integer columns when ``treat_int_as_categorical``) becomes its own
    integer-code array under the column's name, ready for an ``nn.Embedding``.

    Parameters
    ----------
    treat_int_as_categorical : bool
        Whether integer columns are categorical.
    float_dtype : numpy dtype or None
        dtype of ``'X'`` (None: as in the DataFrame).
    int_dtype : numpy dtype or None
        dtype of the categorical codes (None: pandas' own codes, e.g. int8, for categorical columns).
    """

    def __init__(self, treat_int_as_categorical: bool = False, float_dtype: Any = np.float32, int_dtype: Any = np.int64):
        self.treat_int_as_categorical = treat_int_as_categorical
        self.float_dtype = float_dtype
        self.int_dtype = int_dtype

    def _column_kind(self, dtype: Any) -> str:
        import pandas as pd

        if isinstance(dtype, pd.CategoricalDtype):
            return "category"
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
            return "numeric"
        if pd.api.types.is_integer_dtype(dtype):
            return "category" if self.treat_int_as_categorical else "numeric"
        return "unsupported"

    def fit(self, df: Any, y: Any = None, **fit_params: Any) -> DataFrameTransformer:
        """Record the columns and their kinds.

        Raises
        ------
        TypeError
            When a column has a dtype that is neither numeric, boolean nor categorical.
        """
        kinds = {column: self._column_kind(dtype) for column, dtype in df.dtypes.items()}
        bad = {c: str(df.dtypes[c]) for c, kind in kinds.items() if kind == "unsupported"}
        if bad:
            raise TypeError(f"columns with unsupported dtypes: {bad}; accepted: float, int, bool, category")
        if "X" in kinds and any(kind == "numeric" for kind in kinds.values()):
            raise ValueError("the DataFrame has a column named 'X', the key under which the numeric columns "
                             "are stacked; rename that column")
        self.column_kinds_ = kinds
        self.categories_ = {
            c: (list(df[c].cat.categories) if hasattr(df[c], "cat") else sorted(df[c].unique().tolist()))
            for c, kind in kinds.items() if kind == "category"
        }
        return self

    def transform(self, df: Any) -> dict[str, np.ndarray]:
        """The dict ``{'X': floats, <categorical column>: codes, ...}``.

        Raises
        ------
        ValueError
            When the columns differ from those seen in ``fit``.
        """
        check_is_fitted(self, "column_kinds_")
        if list(df.columns) != list(self.column_kinds_):
            raise ValueError(f"columns {list(df.columns)} differ from those seen in fit: {list(self.column_kinds_)}")
        numeric = [c for c, kind in self.column_kinds_.items() if kind == "numeric"]
        result: dict[str, np.ndarray] = {}
        if numeric:
            values = df[numeric].to_numpy()
            result["X"] = values if self.float_dtype is None else values.astype(self.float_dtype)
        for column, categories in self.categories_.items():
            series = df[column]
            if self.int_dtype is None and hasattr(series, "cat") and list(series.cat.categories) == categories:
                result[column] = series.cat.codes.to_numpy()
                continue
            lookup = {value: code for code, value in enumerate(categories)}
            values = df[column].tolist()
            unknown = sorted({v for v in values if v not in lookup}, key=str)
            if unknown:
                raise ValueError(f"column {column!r} has categories not seen in fit: {unknown[:5]}")
            result[column] = np.asarray([lookup[v] for v in values], dtype=self.int_dtype or np.int64)
        return result

    def describe_signature(self, df: Any) -> dict[str, dict[str, Any]]:
        """For each key of :meth:`transform`'s output on ``df``, its torch dtype and number of input units.

        ``df`` is described as :meth:`fit` would see it (fitting is not needed), so the result can
        size a module's layers before anything is fitted.
        """
        fitted = self if df is None else clone(self).fit(df)
        check_is_fitted(fitted, "column_kinds_")
        signature: dict[str, dict[str, Any]] = {}
        numeric = [c for c, kind in fitted.column_kinds_.items() if kind == "numeric"]
        if numeric:
            signature["X"] = {"dtype": _torch_dtype(self.float_dtype or np.float64), "input_units": len(numeric)}
        for column, categories in fitted.categories_.items():
            signature[column] = {"dtype": _torch_dtype(self.int_dtype or np.int64), "input_units": len(categories)}
        return signature


def _torch_dtype(numpy_dtype: Any) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=numpy_dtype)).dtype


def __getattr__(name: str) -> Any:
    # The training doctor lives in bridge.doctor; skorch code imports it from the helper module.
    if name in ("NetDoctor", "SkorchDoctor"):
        from bridge import doctor

        return getattr(doctor, name)
    raise AttributeError(f"module 'bridge.helper' has no attribute {name!r}")
