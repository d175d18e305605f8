"""Text columns of a DataFrame: a ColumnTransformer (first in a pipeline, or alone) whose
transformers include text or dict vectorizers on named columns.

Each vectorized column becomes one graph input as wide as its vectorizer's output, filled by
its host encoder; the other columns go in as the ColumnTransformer path always sends them
(one ``(N, 1)`` input each, categories as vocabulary indices).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer

from bridge.errors import InvalidInputError, UnsupportedEstimatorError
from bridge.sklearn.inputs import TORCH_DTYPES, InputSpec
from bridge.sklearn.text.encoders import HostEncoder


@dataclass(frozen=True)
class ColumnsInputSpec(InputSpec):
    """Per-column inputs of a DataFrame where some columns hold documents, dicts or label
    sets: ``encoders`` maps those columns to their host encoders."""

    encoders: dict[str, HostEncoder] = field(default_factory=dict)
    unused: tuple[str, ...] = ()

    def served(self, X, device: torch.device) -> None:
        """Never the numeric fast path: the columns are encoded by :meth:`prepare`."""
        return None

    def prepare(self, X, device: torch.device,
                vocabularies: dict[str, list] | None = None) -> tuple[list[torch.Tensor], bool]:
        """One graph input per column, in the fitted column order (numpy out: True).

        Raises
        ------
        InvalidInputError
            ``X`` is not a DataFrame, or a vectorized column holds a value its vectorizer
            refuses.
        ValueError
            The columns differ from the fitted ones, or a numeric column holds text.
        """
        if not (hasattr(X, "columns") and hasattr(X, "to_numpy")):
            raise InvalidInputError(
                f"{self.estimator_name} (converted) reads the DataFrame columns "
                f"{list(self.feature_names or ())}; got {type(X).__name__}"
            )
        self._check_columns(list(X.columns))
        others = [c for c in self.feature_names or ()
                  if c not in self.encoders and c not in self.unused]
        numbers = iter(())
        if others:
            rest = InputSpec(self.dtype, 2, len(others), self.allow_nan, tuple(others), True,
                             self.estimator_name,
                             tuple(c for c in self.text_columns if c in others))
            frame = X[[c for c in X.columns if str(c) in others]]
            numbers = iter(rest._text_and_numbers(frame, device, vocabularies or {}))
        inputs = []
        for position, name in enumerate(self.feature_names or ()):
            encoder = self.encoders.get(name)
            if name in self.unused:  # dropped by every transformer: its values never count
                inputs.append(torch.zeros((len(X), 1), dtype=TORCH_DTYPES[self.dtype],
                                          device=device))
                continue
            if encoder is None:
                inputs.append(next(numbers))
                continue
            inputs.append(_dense(encoder, X.iloc[:, position], self.dtype, device))
        return inputs, True


def _dense(encoder: HostEncoder, rows, dtype: np.dtype, device: torch.device) -> torch.Tensor:
    entries = encoder.entries(rows)
    row, column, value = entries.arrays()
    torch_dtype = TORCH_DTYPES[dtype]
    matrix = torch.zeros((entries.n_rows, encoder.width), dtype=torch_dtype, device=device)
    if len(row):
        matrix.index_put_((torch.from_numpy(row).to(device), torch.from_numpy(column).to(device)),
                          torch.from_numpy(value).to(device, torch_dtype), accumulate=True)
    return matrix


def _column_name(columns, names: list[str], transformer_name: str) -> str:
    """The one column a vectorizer reads (scikit-learn passes it as 1-D: a scalar selector)."""
    if isinstance(columns, str) and columns in names:
        return columns
    if isinstance(columns, int | np.integer) and 0 <= columns < len(names):
        return names[int(columns)]
    raise UnsupportedEstimatorError(
        f"the ColumnTransformer's {transformer_name!r} vectorizes the columns {columns!r}; "
        "bridge converts a vectorizer that reads one named column (a string selector)"
    )


def column_encoding(column_transformer: ColumnTransformer, hosts: dict, weighting, replace,
                    dtype: np.dtype, string_columns: set[str], estimator_name: str):
    """The ColumnTransformer view (vectorizers replaced by their weighting, selectors
    remapped onto the per-column inputs), its input spec and skl2onnx's initial types.

    ``hosts`` maps the host-encoded classes to their encoders; ``weighting`` and ``replace``
    build the stand-in and put it in place of a (nested) first step.
    """
    names = [str(c) for c in getattr(column_transformer, "feature_names_in_", ())]
    if not names:
        raise UnsupportedEstimatorError(
            "a ColumnTransformer with text vectorizers converts when fitted on a DataFrame "
            "(its columns name the graph inputs)"
        )
    encoders: dict[str, HostEncoder] = {}
    transformers = []
    for name, transformer, columns in column_transformer.transformers_:
        first = transformer
        while hasattr(first, "steps"):
            first = first.steps[0][1]
        if type(first) in hosts:
            column = _column_name(columns, names, name)
            encoders[column] = hosts[type(first)](first)
            transformer = replace(transformer, weighting(first))
        transformers.append([name, transformer, columns])
    offsets = np.cumsum([0] + [encoders[c].width if c in encoders else 1 for c in names])
    for entry in transformers:
        entry[2] = _remapped(entry[2], names, encoders, offsets, entry[0])
    view = copy.copy(column_transformer)
    view.transformers_ = [tuple(entry) for entry in transformers]
    used = _used_columns(column_transformer.transformers_, names)
    unused = tuple(n for n in names if n not in used)
    float_type = DoubleTensorType if dtype == np.float64 else FloatTensorType
    initial_types = []
    for name in names:
        if name in encoders:
            initial_types.append((name, float_type([None, encoders[name].width])))
        elif name in string_columns and name not in unused:
            initial_types.append((name, StringTensorType([None, 1])))
        else:
            initial_types.append((name, float_type([None, 1])))
    strings = tuple(n for n in names
                    if n in string_columns and n not in encoders and n not in unused)
    spec = ColumnsInputSpec(np.dtype(dtype), 2, len(names), False, tuple(names), True,
                            estimator_name, strings, encoders=encoders, unused=unused)
    return view, spec, initial_types


def _used_columns(transformers, names: list[str]) -> set[str]:
    """The columns some transformer other than 'drop' reads."""
    used: set[str] = set()
    for _, transformer, columns in transformers:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        if isinstance(columns, str | int | np.integer):
            columns = [columns]
        elif isinstance(columns, slice):
            columns = list(np.arange(len(names))[columns])
        else:
            columns = list(columns)
            if columns and isinstance(columns[0], bool | np.bool_):
                columns = list(np.flatnonzero(columns))
        used.update(c if isinstance(c, str) else names[int(c)] for c in columns)
    return used


def _remapped(columns, names: list[str], encoders: dict, offsets: np.ndarray, owner: str):
    """A selector on the per-column inputs: a vectorized column → every position of its
    input; names stay names; integer positions move past the wider vectorized inputs."""
    if isinstance(columns, str) and columns in encoders:
        return list(range(offsets[names.index(columns)], offsets[names.index(columns) + 1]))
    if isinstance(columns, int | np.integer) and names[int(columns)] in encoders:
        return list(range(offsets[int(columns)], offsets[int(columns) + 1]))
    if isinstance(columns, str):
        return columns
    selected = list(np.arange(len(names))[columns]) if isinstance(columns, slice) else list(
        columns)
    if selected and isinstance(selected[0], bool | np.bool_):
        selected = list(np.flatnonzero(selected))
    remapped = []
    for column in selected:
        if isinstance(column, str):
            remapped.append(column)
            continue
        if names[int(column)] in encoders:
            raise UnsupportedEstimatorError(
                f"the ColumnTransformer's {owner!r} reads the vectorized column "
                f"{names[int(column)]!r} as numbers; bridge cannot convert that"
            )
        remapped.append(int(offsets[int(column)]))
    return remapped
