"""Where text and dict inputs cross into tensors: the host encoders (``encoders.py``) give
sparse entries, the input spec scatters them into the graph's dense input on the model's
device, and the graph (``TermWeighting`` then the rest of the pipeline) does the arithmetic."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction import DictVectorizer, FeatureHasher
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer, TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MultiLabelBinarizer

from bridge.errors import InvalidInputError, UnsupportedEstimatorError
from bridge.sklearn.inputs import TORCH_DTYPES, InputSpec, parts, text_columns
from bridge.sklearn.text.artifact import (
    INPUT_KEY,
    numeric_input_note,
    set_input_note,
    string_head,
    with_string_head,
)
from bridge.sklearn.text.columns import ColumnsInputSpec, column_encoding
from bridge.sklearn.text.encoders import (
    DictEncoder,
    FeatureHashEncoder,
    HashingEncoder,
    HostEncoder,
    LabelSetEncoder,
    VocabularyEncoder,
)

#: The estimators whose input is not a numeric matrix, by the host encoder they get.
HOST_ENCODERS = {
    CountVectorizer: VocabularyEncoder,
    TfidfVectorizer: VocabularyEncoder,
    HashingVectorizer: HashingEncoder,
    DictVectorizer: DictEncoder,
    FeatureHasher: FeatureHashEncoder,
    MultiLabelBinarizer: LabelSetEncoder,
}


class TermWeighting(TransformerMixin, BaseEstimator):
    """What a text or dict vectorizer does after the host side counted or hashed: the graph's
    first step, standing in for the vectorizer in the pipeline bridge converts.

    In scikit-learn's order: ``binary`` caps entries at 1, ``sublinear_tf`` replaces a
    non-zero ``x`` by ``1 + log(x)``, ``idf`` multiplies each column, ``norm`` ('l1' or
    'l2') divides each row by its norm (rows of norm 0 stay 0). All off: the identity.

    Parameters
    ----------
    n_features : int
        Columns of the host side's matrix.
    binary : bool, default False
    sublinear_tf : bool, default False
    idf : array of shape (n_features,), optional
    norm : {'l1', 'l2'}, optional
    source : str, default ""
        The vectorizer it stands for (in messages).
    integer_output : bool, default False
        Give int64 (a standalone CountVectorizer or MultiLabelBinarizer, whose scikit-learn
        output is integer).
    """

    def __init__(self, n_features: int, binary: bool = False, sublinear_tf: bool = False,
                 idf=None, norm: str | None = None, source: str = "",
                 integer_output: bool = False):
        self.n_features = n_features
        self.binary = binary
        self.sublinear_tf = sublinear_tf
        self.idf = idf
        self.norm = norm
        self.source = source
        self.integer_output = integer_output

    def fit(self, X=None, y=None):
        """Nothing to learn: the vectorizer it stands for was fitted. Returns ``self``."""
        self.n_features_in_ = self.n_features
        return self

    def transform(self, X):
        """The weighting in numpy (float64): the reference the graph is checked against.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Counts or hashed values, as the host side gives them.

        Returns
        -------
        numpy.ndarray of shape (n_samples, n_features)
        """
        X = np.array(X, dtype=np.float64)
        if self.binary:
            X = np.minimum(X, 1.0)
        if self.sublinear_tf:
            positive = X > 0
            X[positive] = np.log(X[positive]) + 1.0
        if self.idf is not None:
            X = X * np.asarray(self.idf, dtype=np.float64)
        if self.norm is not None:
            norms = (np.abs(X).sum(axis=1) if self.norm == "l1"
                     else np.sqrt((X * X).sum(axis=1)))
            X = X / np.where(norms == 0, 1.0, norms)[:, None]
        return X.astype(np.int64) if self.integer_output else X


def _weighting(estimator) -> TermWeighting:
    width = HOST_ENCODERS[type(estimator)](estimator).width
    source = type(estimator).__name__
    if isinstance(estimator, TfidfVectorizer):
        return TermWeighting(width, estimator.binary, estimator.sublinear_tf,
                             estimator.idf_ if estimator.use_idf else None, estimator.norm,
                             source).fit()
    if isinstance(estimator, CountVectorizer | HashingVectorizer):
        norm = getattr(estimator, "norm", None)  # HashingVectorizer normalises, counts do not
        return TermWeighting(width, estimator.binary, norm=norm, source=source).fit()
    return TermWeighting(width, source=source).fit()


def first_step(estimator):
    """The step that reads the raw input: the first step of (nested) pipelines."""
    while isinstance(estimator, Pipeline):
        estimator = estimator.steps[0][1]
    return estimator


def _replace_first_step(estimator, replacement):
    if not isinstance(estimator, Pipeline):
        return replacement
    view = copy.copy(estimator)  # the user's pipeline is left untouched
    name, step = estimator.steps[0]
    view.steps = [(name, _replace_first_step(step, replacement))] + list(estimator.steps[1:])
    return view


@dataclass(frozen=True)
class TextInputSpec(InputSpec):
    """An :class:`InputSpec` whose raw input is documents, dicts or label sets: the host
    encoder turns them into entries, scattered (summed) into the graph's dense input
    ``(n_samples, n_features)`` on the model's device."""

    encoder: HostEncoder | None = None

    def served(self, X, device: torch.device) -> None:
        """Never the numeric fast path: raw rows are encoded by :meth:`prepare`."""
        return None

    def prepare(self, X, device: torch.device,
                vocabularies: dict[str, list] | None = None) -> tuple[list[torch.Tensor], bool]:
        """Encode ``X`` on the host and return the graph input (numpy out: always True).

        Raises
        ------
        InvalidInputError
            ``X`` is a tensor, a lone string, or holds a value the estimator refuses
            (named with its row).
        """
        if isinstance(X, torch.Tensor):
            raise InvalidInputError(
                f"{self.estimator_name} (converted) reads raw text, dicts or label sets, which "
                "a tensor cannot hold; pass a list (or a 1-D array or Series) of them"
            )
        entries = self.encoder.entries(X)
        rows, columns, values = entries.arrays()
        dtype = TORCH_DTYPES[self.dtype]
        matrix = torch.zeros((entries.n_rows, self.n_features), dtype=dtype, device=device)
        if len(rows):
            position = (torch.from_numpy(rows).to(device), torch.from_numpy(columns).to(device))
            matrix.index_put_(position, torch.from_numpy(values).to(device, dtype),
                              accumulate=True)
        return [matrix], True


@dataclass(frozen=True)
class HostEncoding:
    """What ``from_sklearn`` converts for an estimator whose input is not numeric: the
    estimator with its first step replaced by a :class:`TermWeighting`, the input spec that
    encodes raw rows, and skl2onnx's initial types for the graph input."""

    numeric_view: object
    input_spec: TextInputSpec
    initial_types: list
    first_step: object

    def artifacts(self, graphs: dict, options: dict | None, target_opset) -> dict:
        """The graphs to keep as the model's ONNX artifact: with skl2onnx's string head
        where it converts the vectorizer (documents in), else the graphs bridge runs (the
        host encoding in), each saying which in its metadata (``bridge.text_input``)."""
        if isinstance(self.first_step, ColumnTransformer):
            note = ("one input per DataFrame column; vectorized columns take their host "
                    "encoding (bridge.sklearn.text.encoders), as wide as the vectorizer's output")
            for graph in graphs.values():
                set_input_note(graph, note)
            return graphs
        encoder = self.input_spec.encoder
        why = _NO_STRING_HEAD.get(type(self.first_step).__name__)
        if why is None:
            head = string_head(self.first_step, options, target_opset)
            if not isinstance(head, str):
                return {key: with_string_head(head, graph) for key, graph in graphs.items()}
            why = head
        note = numeric_input_note(encoder.estimator_name, encoder.width, why)
        for graph in graphs.values():
            set_input_note(graph, note)
        return graphs


#: Why an estimator's artifact reads the host encoding rather than raw input.
_NO_STRING_HEAD = {
    "HashingVectorizer": "skl2onnx has no HashingVectorizer converter",
    "FeatureHasher": "skl2onnx's FeatureHasher graph takes string tensors of input_type "
                     "'string' only",
    "DictVectorizer": "onnxruntime's DictVectorizer reads one map per run, not a batch",
    "MultiLabelBinarizer": "ONNX has no label-set input",
}


def host_encoding(estimator, dtype: np.dtype, X_sample=None) -> HostEncoding | None:
    """The host-side encoding of ``estimator``'s raw input, or None for numeric estimators.

    A ColumnTransformer first (or alone) with vectorizers on named DataFrame columns gets
    one graph input per column (``columns.py``); ``X_sample`` then tells text columns apart
    as for other ColumnTransformers.

    Parameters
    ----------
    estimator : fitted scikit-learn estimator
    dtype : numpy.dtype
        The graph's float type.
    X_sample : DataFrame, optional
        A few input rows (``from_sklearn``'s).

    Returns
    -------
    HostEncoding or None

    Raises
    ------
    UnsupportedEstimatorError
        A text or dict vectorizer somewhere other than first (inside a ColumnTransformer,
        say), or a HashingVectorizer / DictVectorizer configured in a way bridge does not
        reproduce.
    """
    first = first_step(estimator)
    encoder_class = HOST_ENCODERS.get(type(first))
    if isinstance(first, ColumnTransformer) and any(
            type(part) in HOST_ENCODERS for part in parts(first)):
        view, spec, initial_types = column_encoding(
            first, HOST_ENCODERS, _weighting, _replace_first_step, np.dtype(dtype),
            text_columns(estimator, X_sample), type(estimator).__name__)
        return HostEncoding(_replace_first_step(estimator, view), spec, initial_types, first)
    if encoder_class is None:
        for part in parts(estimator):
            if type(part) in HOST_ENCODERS:
                raise UnsupportedEstimatorError(
                    f"{type(part).__name__} converts only as the first step of a pipeline (or "
                    f"alone); in {type(estimator).__name__} it reads a column of a larger "
                    "input, which bridge's text boundary does not split yet"
                )
        return None
    encoder = encoder_class(first)
    width = int(encoder.width)
    spec = TextInputSpec(np.dtype(dtype), 2, width, True, None, False, type(estimator).__name__,
                         encoder=encoder)
    tensor_type = DoubleTensorType if np.dtype(dtype) == np.float64 else FloatTensorType
    weighting = _weighting(first)
    if first is estimator and (isinstance(first, MultiLabelBinarizer) or (
            type(first) is CountVectorizer and np.dtype(first.dtype).kind in "iu")):
        weighting.integer_output = True  # alone, scikit-learn's dtype: integer counts
    view = _replace_first_step(estimator, weighting)
    return HostEncoding(view, spec, [("X", tensor_type([None, width]))], first)


def artifact_feed(model, X) -> dict[str, np.ndarray]:
    """The onnxruntime feed of ``model.onnx_model`` for the raw rows ``X`` of a converted
    text or dict model: the documents themselves where the artifact takes documents, else
    the host encoding bridge computes (one array per graph input).

    Parameters
    ----------
    model : ConvertedModel
        Converted by ``from_sklearn`` from an estimator with text or dict input.
    X : documents, dicts, label sets or DataFrame
        What the model's methods take.

    Returns
    -------
    dict
        Graph input name → numpy array, for ``InferenceSession.run(None, feed)``.

    Raises
    ------
    InvalidInputError
        The model does not read text or dicts, or ``X`` holds a value it refuses.
    """
    spec = model._input_spec
    if not isinstance(spec, TextInputSpec | ColumnsInputSpec):
        raise InvalidInputError(
            f"the converted {model.estimator_name} reads numbers; feed onnxruntime the array")
    graphs = model.onnx_model
    graph = next(iter(graphs.values())) if isinstance(graphs, dict) else graphs
    names = [value.name for value in graph.graph.input]
    notes = {entry.key: entry.value for entry in graph.metadata_props}
    if notes.get(INPUT_KEY, "").startswith("documents"):
        documents = spec.encoder._documents(X)  # the same refusals as the model's methods
        return {names[0]: np.array(documents, dtype=object).reshape(-1, 1)}
    module = next(iter(model.graph_modules.values()))
    inputs, _ = spec.prepare(X, torch.device("cpu"), module.input_vocabularies)
    feed = {name: tensor.numpy() for name, tensor in zip(names, inputs, strict=True)}
    for name in spec.text_columns:  # category columns: the artifact reads the strings
        feed[name] = X[name].to_numpy(dtype=object).reshape(-1, 1)
    return feed
