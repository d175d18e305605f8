"""The host side of text and dict inputs: raw documents, dicts and label sets → the sparse
entries ``(row, column, value)`` of the matrix the converted graph takes.

torch holds no strings, so this is the only part of a converted text model that runs in
Python: scikit-learn's own analyzers (``build_analyzer``: lowercase, strip_accents,
token_pattern, stop words, n-grams, char / char_wb) turn each document into terms, which
become vocabulary columns (CountVectorizer, TfidfVectorizer) or hashed columns
(HashingVectorizer, FeatureHasher, with scikit-learn's murmurhash3 and alternate sign).
Weighting, normalisation and the downstream estimator run in the graph, as tensors.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
from sklearn.base import clone
from sklearn.utils import murmurhash3_32

from bridge.errors import InvalidInputError

#: scikit-learn's murmurhash3 value whose absolute value int32 cannot hold
_INT32_MIN = -(2**31)


class Entries:
    """Sparse entries of an ``(n_rows, width)`` matrix, gathered row by row; repeated
    positions add up. A row's values default to ones (term counts)."""

    def __init__(self, n_rows: int):
        self.n_rows = n_rows
        self.lengths: list[int] = []
        self.columns: list[int] = []
        self.values: list[float] = []
        self.weighted = False

    def add_row(self, columns: list[int], values: list[float] | None = None) -> None:
        """Append the next row's columns (and values, ones when None)."""
        self.lengths.append(len(columns))
        self.columns.extend(columns)
        if values is not None:
            if not self.weighted:  # the rows so far counted ones
                self.values = [1.0] * (len(self.columns) - len(columns))
                self.weighted = True
            self.values.extend(values)
        elif self.weighted:
            self.values.extend([1.0] * len(columns))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows and columns as int64, values as float64."""
        rows = np.repeat(np.arange(len(self.lengths), dtype=np.int64), self.lengths)
        columns = np.asarray(self.columns, dtype=np.int64)
        values = (np.asarray(self.values, dtype=np.float64) if self.weighted
                  else np.ones(len(columns), dtype=np.float64))
        return rows, columns, values


def _rows(X, estimator_name: str, what: str) -> list:
    """The input as a list of rows, refusing a lone string and arrays that are not 1-D."""
    if isinstance(X, str | bytes):
        raise InvalidInputError(
            f"{estimator_name} (converted) takes an iterable of {what}; got a single "
            f"string {X[:40]!r}: wrap it in a list"
        )
    if hasattr(X, "to_numpy") and hasattr(X, "columns"):  # a DataFrame
        raise InvalidInputError(
            f"{estimator_name} (converted) takes a 1-D iterable of {what}; got a DataFrame "
            f"with columns {list(X.columns)[:5]}: pass one column (frame['name'])"
        )
    if hasattr(X, "to_numpy"):  # a pandas Series
        X = X.to_numpy()
    if isinstance(X, np.ndarray) and X.ndim != 1:
        raise InvalidInputError(
            f"{estimator_name} (converted) takes a 1-D iterable of {what}; got an array of "
            f"shape {X.shape} (use X.ravel() for one column of documents)"
        )
    if not isinstance(X, Iterable):
        raise InvalidInputError(
            f"{estimator_name} (converted) takes an iterable of {what}; got "
            f"{type(X).__name__} {X!r:.60}"
        )
    return list(X)


class HostEncoder:
    """Turns raw rows into the entries of the graph's input matrix (``width`` columns)."""

    estimator_name: str
    width: int

    def entries(self, X) -> Entries:
        """The sparse entries of the graph input for the raw rows ``X``."""
        raise NotImplementedError


class _DocumentEncoder(HostEncoder):
    """Shared by the text vectorizers: a parameters-only copy of the vectorizer builds
    scikit-learn's analyzer (rebuilt after unpickling)."""

    def __init__(self, vectorizer):
        self.estimator_name = type(vectorizer).__name__
        self.vectorizer = clone(vectorizer)  # parameters only: no vocabulary to carry twice

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_analyzer", None)
        return state

    @property
    def analyzer(self):
        """scikit-learn's analyzer for the vectorizer's parameters (built once)."""
        analyzer = self.__dict__.get("_analyzer")
        if analyzer is None:
            analyzer = self.__dict__["_analyzer"] = self.vectorizer.build_analyzer()
        return analyzer

    def _documents(self, X) -> list:
        documents = _rows(X, self.estimator_name, "documents")
        content = self.vectorizer.input == "content"
        for row, document in enumerate(documents):
            if content and not isinstance(document, str | bytes):
                raise InvalidInputError(
                    f"{self.estimator_name} (converted) takes text documents (str or bytes); "
                    f"row {row} holds {document!r:.60} of type {type(document).__name__}"
                )
        return documents

    def _terms(self, row: int, document) -> list:
        try:
            return self.analyzer(document)
        except (UnicodeDecodeError, ValueError) as error:  # undecodable bytes, ...
            raise InvalidInputError(
                f"{self.estimator_name} (converted) could not analyse row {row} "
                f"({document!r:.60}): {error}"
            ) from error


class VocabularyEncoder(_DocumentEncoder):
    """CountVectorizer / TfidfVectorizer: the count of each vocabulary term per document
    (terms outside ``vocabulary_`` are ignored, as in scikit-learn)."""

    def __init__(self, vectorizer):
        super().__init__(vectorizer)
        self.vocabulary = dict(vectorizer.vocabulary_)
        self.width = len(vectorizer.vocabulary_)

    def entries(self, X) -> Entries:
        documents = self._documents(X)
        entries = Entries(len(documents))
        lookup = self.vocabulary.get
        for row, document in enumerate(documents):
            entries.add_row([c for c in map(lookup, self._terms(row, document)) if c is not None])
        return entries


def hashed_column(feature: str | bytes, n_features: int) -> tuple[int, int]:
    """scikit-learn's column and sign for a hashed feature name (murmurhash3, seed 0)."""
    value = murmurhash3_32(feature, seed=0)
    if value == _INT32_MIN:  # abs() overflows in int32; scikit-learn's stand-in value
        return (2**31 - 1 - (n_features - 1)) % n_features, -1
    return abs(value) % n_features, (1 if value >= 0 else -1)


class HashingEncoder(_DocumentEncoder):
    """HashingVectorizer: terms hashed into ``n_features`` columns, signed unless
    ``alternate_sign=False``. With ``binary=True`` every hashed term counts +1 (the graph
    caps it at 1): scikit-learn marks a column present even where signs cancel."""

    def __init__(self, vectorizer):
        super().__init__(vectorizer)
        self.width = int(vectorizer.n_features)

    def entries(self, X) -> Entries:
        documents = self._documents(X)
        entries = Entries(len(documents))
        signed = self.vectorizer.alternate_sign and not self.vectorizer.binary
        cache: dict = {}
        for row, document in enumerate(documents):
            hashed = []
            for term in self._terms(row, document):
                found = cache.get(term)
                if found is None:
                    found = cache[term] = hashed_column(term, self.width)
                hashed.append(found)
            entries.add_row([h[0] for h in hashed],
                            [float(h[1]) for h in hashed] if signed else None)
        return entries


def _number(value, estimator_name: str, row: int, feature) -> float:
    if isinstance(value, numbers.Number) and not isinstance(value, complex):
        return float(value)
    raise InvalidInputError(
        f"{estimator_name} (converted): row {row}, feature {feature!r} holds {value!r:.60} "
        f"of type {type(value).__name__}; expected a number or a string"
    )


class FeatureHashEncoder(HostEncoder):
    """FeatureHasher: ``input_type`` 'dict' (name → value), 'pair' ((name, value) pairs)
    or 'string' (names, value 1); a string value ``v`` of ``name`` hashes ``"name=v"``
    with value 1; zero values are skipped, as in scikit-learn."""

    def __init__(self, hasher):
        self.estimator_name = type(hasher).__name__
        self.width = int(hasher.n_features)
        self.input_type = hasher.input_type
        self.alternate_sign = bool(hasher.alternate_sign)

    def _pairs(self, row: int, sample):
        if self.input_type == "dict":
            if not isinstance(sample, Mapping):
                raise InvalidInputError(
                    f"{self.estimator_name}(input_type='dict') (converted): row {row} holds "
                    f"{sample!r:.60} of type {type(sample).__name__}; expected a dict"
                )
            return sample.items()
        if isinstance(sample, str | bytes) or not isinstance(sample, Iterable):
            expected = "(name, value) pairs" if self.input_type == "pair" else "feature names"
            raise InvalidInputError(
                f"{self.estimator_name}(input_type={self.input_type!r}) (converted): row "
                f"{row} holds {sample!r:.60}; expected an iterable of {expected}"
            )
        if self.input_type == "string":
            return ((name, 1) for name in sample)
        return sample

    def entries(self, X) -> Entries:
        samples = [X] if isinstance(X, Mapping) else _rows(X, self.estimator_name, "samples")
        entries = Entries(len(samples))
        for row, sample in enumerate(samples):
            columns, values = [], []
            for pair in self._pairs(row, sample):
                try:
                    name, value = pair
                except (TypeError, ValueError):
                    raise InvalidInputError(
                        f"{self.estimator_name}(input_type='pair') (converted): row {row} "
                        f"holds {pair!r:.60}; expected (name, value) pairs"
                    ) from None
                if isinstance(value, str):
                    name, value = f"{name}={value}", 1.0
                else:
                    value = _number(value, self.estimator_name, row, name)
                if value == 0:
                    continue
                if not isinstance(name, str | bytes):
                    raise InvalidInputError(
                        f"{self.estimator_name} (converted): row {row} has the feature name "
                        f"{name!r:.60} of type {type(name).__name__}; feature names must be "
                        "strings"
                    )
                column, sign = hashed_column(name, self.width)
                columns.append(column)
                values.append(value * sign if self.alternate_sign else value)
            entries.add_row(columns, values)
        return entries


class DictEncoder(HostEncoder):
    """DictVectorizer: numbers under their name, a string ``v`` of ``name`` as
    ``name<separator>v`` = 1, an iterable of strings as one such entry per string; names
    not seen in fit are ignored, as in scikit-learn."""

    def __init__(self, vectorizer):
        self.estimator_name = type(vectorizer).__name__
        self.vocabulary = dict(vectorizer.vocabulary_)
        self.separator = vectorizer.separator
        self.dtype = np.dtype(vectorizer.dtype)
        self.width = len(vectorizer.feature_names_)

    def _add(self, row: tuple[list, list], name, value: float) -> None:
        column = self.vocabulary.get(name)
        if column is not None:
            row[0].append(column)
            row[1].append(value)

    def entries(self, X) -> Entries:
        samples = [X] if isinstance(X, Mapping) else _rows(X, self.estimator_name, "dicts")
        entries = Entries(len(samples))
        for row, sample in enumerate(samples):
            if not isinstance(sample, Mapping):
                raise InvalidInputError(
                    f"{self.estimator_name} (converted): row {row} holds {sample!r:.60} of "
                    f"type {type(sample).__name__}; expected a dict of feature → value"
                )
            found: tuple[list, list] = ([], [])
            for name, value in sample.items():
                if isinstance(value, str):
                    self._add(found, f"{name}{self.separator}{value}", 1.0)
                elif value is None or isinstance(value, numbers.Number):
                    self._add(found, name, float(self.dtype.type(value)))
                elif isinstance(value, Iterable) and not isinstance(value, Mapping | bytes):
                    for item in value:
                        if not isinstance(item, str):
                            raise InvalidInputError(
                                f"{self.estimator_name} (converted): row {row}, feature "
                                f"{name!r} holds {item!r:.60} in an iterable; only strings "
                                "may be listed"
                            )
                        self._add(found, f"{name}{self.separator}{item}", 1.0)
                else:
                    raise InvalidInputError(
                        f"{self.estimator_name} (converted): row {row}, feature {name!r} "
                        f"holds {value!r:.60} of type {type(value).__name__}; expected a "
                        "number, a string or an iterable of strings"
                    )
            entries.add_row(*found)
        return entries


class LabelSetEncoder(HostEncoder):
    """MultiLabelBinarizer.transform: one column per class in ``classes_``; unknown labels
    are ignored with scikit-learn's warning."""

    def __init__(self, binarizer):
        self.estimator_name = type(binarizer).__name__
        self.columns = {label: i for i, label in enumerate(binarizer.classes_)}
        self.width = len(binarizer.classes_)

    def entries(self, X) -> Entries:
        samples = _rows(X, self.estimator_name, "label sets")
        entries = Entries(len(samples))
        unknown = set()
        for row, labels in enumerate(samples):
            if isinstance(labels, str) or not isinstance(labels, Iterable):
                raise InvalidInputError(
                    f"{self.estimator_name} (converted): row {row} holds {labels!r:.60}; "
                    "expected an iterable of labels (a tuple, list or set)"
                )
            present = set()
            for label in labels:
                column = self.columns.get(label)
                if column is None:
                    unknown.add(label)
                else:
                    present.add(column)
            entries.add_row(sorted(present))
        if unknown:
            warnings.warn(f"unknown class(es) {sorted(unknown, key=str)} will be ignored",
                          UserWarning, stacklevel=4)
        return entries
