"""The portable ONNX artifact of a text model: skl2onnx's string head (StringNormalizer,
Tokenizer, TfIdfVectorizer counting vocabulary terms) joined to the graph bridge runs, so
onnxruntime takes the documents themselves.

bridge's modules run the tail only, after scikit-learn's own analyzer counted on the host;
the artifact's head is onnxruntime's StringNormalizer and regex Tokenizer (scikit-learn's
default token patterns translated to re2's Unicode classes), which lower-case a few
letters unlike Python (docs/text.md and tests/sklearn/test_text.py say which).
"""

from __future__ import annotations

import onnx
from onnx import compose, helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import StringTensorType
from sklearn.feature_extraction.text import CountVectorizer

#: metadata key saying what the artifact's input is
INPUT_KEY = "bridge.text_input"
STRING_INPUT = ("documents: a string tensor (N, 1), lower-cased by StringNormalizer and "
                "tokenised by the com.microsoft Tokenizer (re2), which can differ from "
                "scikit-learn's analyzer on a few letters (Greek final sigma, Turkish I)")
_HEAD_PREFIX = "text_"


#: scikit-learn token patterns and their re2 equivalents for onnxruntime's Tokenizer. Python's
#: ``\w`` under ``(?u)`` is a Unicode letter, digit or underscore; re2's ``\w`` is ASCII
#: only (skl2onnx's default ``[a-zA-Z0-9_]+`` drops every word with an accent), and a run
#: of word characters is what ``\b...\b`` delimits.
RE2_TOKEN_PATTERNS = {
    r"(?u)\b\w\w+\b": r"[\p{L}\p{N}_]{2,}",
    r"(?u)\b\w+\b": r"[\p{L}\p{N}_]+",
}


def counting_twin(vectorizer) -> CountVectorizer:
    """A CountVectorizer with ``vectorizer``'s analyzer and vocabulary that counts (no
    binary cap, no weighting): the head skl2onnx converts. Its stop words are left out:
    the vocabulary has none, and skl2onnx would put them in StringNormalizer, which sees
    whole documents."""
    names = set(CountVectorizer().get_params())
    twin = CountVectorizer(**{k: v for k, v in vectorizer.get_params().items() if k in names})
    twin.binary = False
    twin.stop_words = None
    twin.vocabulary_ = dict(vectorizer.vocabulary_)
    twin.fixed_vocabulary_ = getattr(vectorizer, "fixed_vocabulary_", False)
    return twin


def string_head(vectorizer, options: dict | None, target_opset) -> onnx.ModelProto | str:
    """skl2onnx's graph from documents to vocabulary counts, or why it cannot be made.

    ``options`` are the user's skl2onnx options; those keyed on the vectorizer (its id, its
    class or CountVectorizer) apply to the head, e.g. ``{'locale': 'C.UTF-8'}``.
    """
    if vectorizer.analyzer != "word":
        return (f"skl2onnx's graph for analyzer={vectorizer.analyzer!r} tokenises unlike "
                "scikit-learn (it supports analyzer='word' only)")
    if vectorizer.stop_words is not None and vectorizer.ngram_range[1] > 1:
        return ("onnxruntime's n-grams would span the stop words scikit-learn removes before "
                "forming them")
    if vectorizer.preprocessor is not None or vectorizer.tokenizer is not None:
        return "skl2onnx cannot convert a Python preprocessor or tokenizer"
    twin = counting_twin(vectorizer)
    options = options or {}
    head_options = {}
    for key in (id(vectorizer), type(vectorizer), CountVectorizer):
        head_options.update(options.get(key, {}))
    pattern = RE2_TOKEN_PATTERNS.get(vectorizer.token_pattern)
    if pattern is not None and not {"tokenexp", "separators"} & set(head_options):
        head_options["tokenexp"] = pattern
    try:
        return to_onnx(twin, initial_types=[("X", StringTensorType([None, 1]))],
                       options={id(twin): head_options} if head_options else None,
                       target_opset=target_opset)
    except (NotImplementedError, RuntimeError, ValueError, TypeError) as error:
        return f"skl2onnx cannot convert its analyzer ({str(error).splitlines()[0][:160]})"


def with_string_head(head: onnx.ModelProto, tail: onnx.ModelProto) -> onnx.ModelProto:
    """``tail`` (which reads the counts matrix) fed by ``head`` (documents → counts), its
    input named as the tail's, its outputs the tail's."""
    head = onnx.ModelProto.FromString(head.SerializeToString())
    counts = head.graph.output[0].name
    wanted = tail.graph.input[0].type.tensor_type.elem_type
    if head.graph.output[0].type.tensor_type.elem_type != wanted:  # a float64 tail
        cast = f"{counts}_cast"
        head.graph.node.append(helper.make_node("Cast", [counts], [cast], to=wanted,
                                                name="bridge_counts_cast"))
        head.graph.output[0].name = cast
        head.graph.output[0].type.tensor_type.elem_type = wanted
        counts = cast
    versions = {o.domain: o.version for o in tail.opset_import}
    for opset in head.opset_import:  # one version per domain: the tail's where it has one
        opset.version = versions.get(opset.domain, opset.version)
    head.ir_version = tail.ir_version
    merged = compose.merge_models(head, tail, io_map=[(counts, tail.graph.input[0].name)],
                                  prefix1=_HEAD_PREFIX)
    input_name = tail.graph.input[0].name
    prefixed = _HEAD_PREFIX + head.graph.input[0].name
    merged.graph.input[0].name = input_name
    for node in merged.graph.node:
        node.input[:] = [input_name if name == prefixed else name for name in node.input]
    del merged.metadata_props[:]
    merged.metadata_props.extend(tail.metadata_props)
    set_input_note(merged, STRING_INPUT)
    onnx.checker.check_model(merged)
    return merged


def set_input_note(model: onnx.ModelProto, note: str) -> None:
    """Record in the model's metadata what its input is (``bridge.text_input``)."""
    for entry in model.metadata_props:
        if entry.key == INPUT_KEY:
            entry.value = note
            return
    model.metadata_props.append(onnx.StringStringEntryProto(key=INPUT_KEY, value=note))


def numeric_input_note(encoder_name: str, width: int, why: str) -> str:
    """The metadata note of an artifact that reads the host side's matrix."""
    return (f"the host encoding of {encoder_name}'s input: a float tensor (N, {width}) of "
            f"counts / hashed values (bridge.sklearn.text.encoders); {why}")

