"""Text and dict inputs through from_sklearn (bridge/sklearn/text): parity with scikit-learn on
a seeded corpus for every vectorizer parameter the host side reproduces, pipelines, float64,
onnxruntime on the same artifact, and the errors for input that is not text."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from sklearn.feature_extraction import DictVectorizer, FeatureHasher
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MultiLabelBinarizer, StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils import murmurhash3_32

import bridge
from bridge.errors import ConversionError, InvalidInputError, UnsupportedEstimatorError
from bridge.sklearn.text import artifact_feed
from bridge.sklearn.text.artifact import INPUT_KEY
from tests.parity import assert_parity, run_onnxruntime
from tests.sklearn.checks import assert_method_matches

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "café", "naïve",
         "résumé", "Straße", "ÉCOLE", "emoji🙂", "e-mail", "don't", "C++", "42", "3.14",
         "data", "model", "torch", "onnx", "and", "of", "to", "is", "Ünïcödé", "x", "ab"]
NEW_WORDS = ["zebra", "quantum", "ñandú", "unseen-word", "XYZZY"]
PUNCTUATION = ["", ".", ",", "!", "?", ";", " -", "...", "'"]


def _document(rng, vocabulary: list[str]) -> str:
    words = []
    for _ in range(rng.integers(0, 14)):
        word = str(rng.choice(vocabulary))
        word = word.upper() if rng.random() < 0.15 else word
        words.append(word + str(rng.choice(PUNCTUATION)))
    return " ".join(words)


def corpus(rows: int, seed: int, unknown: bool = False) -> list[str]:
    """Seeded documents: mixed case, accents, emoji, punctuation, numbers, empty strings;
    ``unknown`` mixes in words the training corpus never had."""
    rng = np.random.default_rng(seed)
    vocabulary = WORDS + NEW_WORDS if unknown else WORDS
    documents = [_document(rng, vocabulary) for _ in range(rows)]
    return documents + ["", "   ", "!!!", "THE DOG", "naïve café\tRÉSUMÉ\nstraße"]


TRAIN = corpus(150, seed=0)
TEST = corpus(60, seed=1, unknown=True)
TARGET = np.array([("dog" in d.lower()) + ("café" in d.lower()) for d in TRAIN])

COUNT_VARIANTS = [
    {}, {"lowercase": False}, {"ngram_range": (1, 2)}, {"ngram_range": (2, 3)},
    {"stop_words": "english"}, {"stop_words": ["the", "and", "of"], "ngram_range": (1, 2)},
    {"strip_accents": "unicode"}, {"strip_accents": "ascii"},
    {"analyzer": "char", "ngram_range": (2, 4)}, {"analyzer": "char_wb", "ngram_range": (1, 3)},
    {"max_features": 12}, {"min_df": 3, "max_df": 0.6}, {"binary": True},
    {"token_pattern": r"(?u)\b\w+\b"}, {"vocabulary": ["dog", "fox", "café", "zebra", "42"]},
    {"analyzer": str.split},
]
TFIDF_VARIANTS = COUNT_VARIANTS + [
    {"norm": "l1"}, {"norm": None}, {"sublinear_tf": True}, {"use_idf": False},
    {"smooth_idf": False}, {"sublinear_tf": True, "binary": True, "norm": "l1"},
]


def _dense(values) -> np.ndarray:
    return values.toarray() if hasattr(values, "toarray") else np.asarray(values)


def _vectorizer_params():
    for cls, variants in ((CountVectorizer, COUNT_VARIANTS), (TfidfVectorizer, TFIDF_VARIANTS)):
        for params in variants:
            name = ",".join(f"{k}={getattr(v, '__name__', v)}" for k, v in params.items())
            yield pytest.param(cls, params, id=f"{cls.__name__}({name})")


@pytest.mark.parametrize(("cls", "params"), list(_vectorizer_params()))
def test_vectorizers_match_sklearn(cls, params):
    vectorizer = cls(**params).fit(TRAIN)
    model = bridge.from_sklearn(vectorizer)
    for documents in (TRAIN, TEST):
        expected = _dense(vectorizer.transform(documents))
        actual = model.transform(documents)
        # a CountVectorizer alone counts in scikit-learn's integer dtype; weights are float32
        assert actual.shape == expected.shape
        assert actual.dtype == (np.int64 if cls is CountVectorizer else np.float32)
        assert_parity(actual, expected, rtol=1e-5, atol=1e-6, what=str(vectorizer))


HASHING_VARIANTS = [
    {}, {"alternate_sign": False}, {"binary": True}, {"binary": True, "alternate_sign": False},
    {"norm": "l1"}, {"norm": None}, {"analyzer": "char_wb", "ngram_range": (2, 3)},
    {"ngram_range": (1, 2), "stop_words": "english", "strip_accents": "unicode"},
]


@pytest.mark.parametrize("params", HASHING_VARIANTS, ids=lambda p: str(p) or "default")
def test_hashing_vectorizer_matches_sklearn(params):
    # 64 columns: many collisions, so cancelling signs and the binary rule are exercised
    vectorizer = HashingVectorizer(n_features=64, **params).fit(TRAIN)
    model = bridge.from_sklearn(vectorizer)
    for documents in (TRAIN, TEST):
        assert_parity(model.transform(documents), _dense(vectorizer.transform(documents)),
                      rtol=1e-5, atol=1e-6, what=str(vectorizer))


def test_hashing_vectorizer_default_width():
    vectorizer = HashingVectorizer().fit(TRAIN)  # 2**20 columns: dense output, 3 rows
    actual = bridge.from_sklearn(vectorizer).transform(TEST[:3])
    assert actual.shape == (3, 2**20)
    assert_parity(actual, _dense(vectorizer.transform(TEST[:3])), rtol=1e-5, atol=1e-6)


def test_hashed_columns_and_signs_are_scikit_learns():
    from bridge.sklearn.text.encoders import hashed_column

    rng = np.random.default_rng(7)
    names = ["".join(rng.choice(list("abcdé🙂 -"), rng.integers(1, 8))) for _ in range(500)]
    hasher = FeatureHasher(n_features=7, input_type="string")  # odd width: every bit counts
    expected = hasher.transform([[name] for name in names])
    for row, name in enumerate(names):
        column, sign = hashed_column(name, 7)
        assert expected[row, column] == sign, name
    # murmurhash3 of these 4 bytes is -2**31 (found by inverting the hash), whose abs()
    # overflows int32: scikit-learn's stand-in column, through the whole converted model
    minimum = b"U\x07o\x83"
    assert murmurhash3_32(minimum, seed=0) == -(2**31)
    for width in (7, 2**20):
        model = bridge.from_sklearn(FeatureHasher(n_features=width, input_type="string").fit([]))
        reference = FeatureHasher(n_features=width, input_type="string").transform([[minimum]])
        assert_parity(model.transform([[minimum]]), _dense(reference), rtol=0, atol=0)


@pytest.mark.parametrize(("input_type", "rows"), [
    ("dict", [{"city": "paris", "temp": 21.5, "rain": 0}, {"city": "rome", "wind": -3},
              {}, {"city": "oslo", "temp": 1e-3, b"raw": 2}]),
    ("pair", [[("city", "paris"), ("temp", 21.5), ("temp", 1.0)], [], [("x", -2)]]),
    ("string", [["a", "b", "a"], ["café", "emoji🙂"], []]),
])
@pytest.mark.parametrize("alternate_sign", [True, False])
def test_feature_hasher_matches_sklearn(input_type, rows, alternate_sign):
    hasher = FeatureHasher(n_features=16, input_type=input_type,
                           alternate_sign=alternate_sign).fit(rows)
    model = bridge.from_sklearn(hasher)
    assert_parity(model.transform(rows), _dense(hasher.transform(rows)), rtol=1e-6, atol=1e-6)


DICT_ROWS = [{"city": "paris", "temp": 21.5, "tags": ["sun", "wind"]},
             {"city": "rome", "temp": -3.0, "rain": 1},
             {"city": "oslo", "snow": 2.0, "tags": ["snow", "snow"]}]
NEW_DICT_ROWS = [{"city": "tokyo", "temp": 30.0, "unseen": 5.0}, {}, {"tags": ["sun"]},
                 {"rain": None}]


@pytest.mark.parametrize("params", [{}, {"sort": False}, {"separator": "::"}],
                         ids=["default", "unsorted", "separator"])
def test_dict_vectorizer_matches_sklearn(params):
    vectorizer = DictVectorizer(**params).fit(DICT_ROWS)
    model = bridge.from_sklearn(vectorizer)
    for rows in (DICT_ROWS, NEW_DICT_ROWS):
        assert_parity(model.transform(rows), _dense(vectorizer.transform(rows)),
                      rtol=1e-6, atol=1e-6)
    single = DICT_ROWS[0]  # one mapping: one row, as in scikit-learn
    assert_parity(model.transform(single), _dense(vectorizer.transform(single)), rtol=0,
                  atol=1e-6)


def test_multilabel_binarizer_matches_sklearn_and_warns_on_unknown_labels():
    binarizer = MultiLabelBinarizer().fit([{"sci-fi", "drama"}, {"comedy"}, set()])
    model = bridge.from_sklearn(binarizer)
    rows = [("drama",), ("comedy", "sci-fi", "comedy"), ()]
    assert_parity(model.transform(rows), binarizer.transform(rows), rtol=0, atol=0)
    assert model.transform(rows).dtype == binarizer.transform(rows).dtype == np.int64
    with pytest.warns(UserWarning, match=r"unknown class\(es\) \['horror'\] will be ignored"):
        assert_parity(model.transform([["horror", "drama"]]),
                      np.array([[0, 1, 0]]), rtol=0, atol=0)


PIPELINES = {
    "tfidf-logistic": lambda: make_pipeline(TfidfVectorizer(), LogisticRegression()),
    "tfidf-bigrams-logistic": lambda: make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(C=10.0)),
    "count-multinomialnb": lambda: make_pipeline(CountVectorizer(), MultinomialNB()),
    "char-tfidf-linearsvc": lambda: make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3)), LinearSVC(random_state=0)),
    "hashing-logistic": lambda: make_pipeline(HashingVectorizer(n_features=256),
                                              LogisticRegression()),
    "nested": lambda: make_pipeline(make_pipeline(CountVectorizer(binary=True)),
                                    MultinomialNB(alpha=0.5)),
}


@pytest.mark.parametrize("name", list(PIPELINES))
def test_text_pipelines_match_sklearn(name):
    pipeline = PIPELINES[name]().fit(TRAIN, TARGET)
    model = bridge.from_sklearn(pipeline, X_sample=TRAIN[:3])
    for method in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
        if hasattr(pipeline, method):
            for documents in (TRAIN, TEST):
                assert_method_matches(pipeline, model, method, documents, predicts_labels=True)
    assert model.predict(np.array(TEST, dtype=object)).tolist() == pipeline.predict(TEST).tolist()


def test_dict_pipeline_with_string_classes():
    target = np.array(["warm" if row.get("temp", 0) > 0 else "cold" for row in DICT_ROWS * 4])
    pipeline = make_pipeline(DictVectorizer(sparse=False), StandardScaler(),
                             LogisticRegression())
    pipeline.fit(DICT_ROWS * 4, target)
    model = bridge.from_sklearn(pipeline)
    for rows in (DICT_ROWS, NEW_DICT_ROWS[:3]):
        assert_method_matches(pipeline, model, "predict", rows, predicts_labels=True)
        assert_method_matches(pipeline, model, "predict_proba", rows, predicts_labels=True)


def test_float64_graphs_agree_to_rounding():
    pipeline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression())
    pipeline.fit(TRAIN, TARGET)
    model = bridge.from_sklearn(pipeline, dtype=np.float64)
    proba = model.predict_proba(TEST)
    assert proba.dtype == np.float64
    assert_parity(proba, pipeline.predict_proba(TEST), rtol=1e-12, atol=1e-12)
    vectorizer = bridge.from_sklearn(pipeline[0], dtype=np.float64)
    assert_parity(vectorizer.transform(TEST), _dense(pipeline[0].transform(TEST)), rtol=1e-12,
                  atol=1e-13)


@pytest.mark.parametrize("make", [
    lambda: (CountVectorizer(ngram_range=(1, 2)), TRAIN),
    lambda: (HashingVectorizer(n_features=128, norm="l1"), TRAIN),
    lambda: (DictVectorizer(), DICT_ROWS),
    lambda: (FeatureHasher(n_features=32), [DICT_ROWS[1], {"a": 2.5, "b": "x"}]),
    lambda: (MultiLabelBinarizer(), [("a", "b"), ("c",), ()]),
], ids=["CountVectorizer", "HashingVectorizer", "DictVectorizer", "FeatureHasher",
        "MultiLabelBinarizer"])
def test_float64_transforms(make):
    estimator, rows = make()
    estimator.fit(rows)
    result = bridge.from_sklearn(estimator, dtype=np.float64).transform(rows)
    integer = isinstance(estimator, CountVectorizer | MultiLabelBinarizer)  # as scikit-learn
    assert result.dtype == (np.int64 if integer else np.float64)
    assert_parity(result, _dense(estimator.transform(rows)), rtol=1e-12, atol=1e-13)


def test_series_input_and_pickling():
    pandas = pytest.importorskip("pandas")
    pipeline = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TRAIN, TARGET)
    model = pickle.loads(pickle.dumps(bridge.from_sklearn(pipeline)))
    series = pandas.Series(TEST, name="body")
    np.testing.assert_array_equal(model.predict(series), pipeline.predict(TEST))


# onnxruntime runs the artifact's string head (StringNormalizer, then the com.microsoft
# Tokenizer with scikit-learn's token pattern translated to re2's Unicode classes); bridge
# runs scikit-learn's analyzer. Both agree with scikit-learn on the whole corpus (accents,
# emoji, decomposed accents, ligatures, CJK, numbers, punctuation); onnxruntime alone
# differs where Python's lower-casing is not per letter (observed with onnxruntime 1.31).
EXOTIC = ["e\u0301cole decomposed", "ﬁne ligature", "中文 文字", "Ⅻ roman ½ half",
          "tab\tsep\nnew", "x_y __ a1", "ab x cd", "dog the barks"]
ONNXRUNTIME_DIFFERS = {
    "ΟΔΟΣ οδός": "Python lower-cases a word-final Σ to ς, onnxruntime to σ",
    "İstanbul": "Python lower-cases İ to i + combining dot, onnxruntime to i",
}


def _with_locale(graph: onnx.ModelProto) -> onnx.ModelProto:
    """The artifact with StringNormalizer's locale set to one this machine has (onnxruntime
    defaults to en_US.UTF-8, absent from minimal images)."""
    graph = onnx.ModelProto.FromString(graph.SerializeToString())
    for node in graph.graph.node:
        if node.op_type == "StringNormalizer":
            del node.attribute[:]  # keep the others, set the locale
            node.attribute.extend([helper.make_attribute("case_change_action", "LOWER"),
                                   helper.make_attribute("is_case_sensitive", 0),
                                   helper.make_attribute("locale", "C.UTF-8")])
    return graph


@pytest.mark.parametrize("make", [
    TfidfVectorizer, lambda: CountVectorizer(ngram_range=(1, 2)),
    lambda: CountVectorizer(lowercase=False, token_pattern=r"(?u)\b\w+\b"),
    lambda: TfidfVectorizer(stop_words="english", sublinear_tf=True, max_features=40),
    lambda: CountVectorizer(ngram_range=(1, 3), binary=True, min_df=2),
], ids=["tfidf", "bigrams", "cased-single-letters", "stop-words", "trigrams-binary"])
def test_onnxruntime_runs_the_documents_artifact(make):
    documents = TRAIN + TEST + EXOTIC
    pipeline = make_pipeline(make(), LogisticRegression(max_iter=500))
    pipeline.fit(documents + list(ONNXRUNTIME_DIFFERS), list(TARGET) + [0] * (
        len(documents) - len(TARGET)) + [1, 2])
    model = bridge.from_sklearn(pipeline)
    graph = _with_locale(model.onnx_model["predict_proba"])
    note = {e.key: e.value for e in graph.metadata_props}[INPUT_KEY]
    assert note.startswith("documents")
    def onnxruntime_proba(rows):
        return run_onnxruntime(graph, artifact_feed(model, rows))[1]

    expected = pipeline.predict_proba(documents)
    assert_parity(model.predict_proba(documents), expected, rtol=0, atol=1e-5)
    assert_parity(onnxruntime_proba(documents), expected, rtol=0, atol=1e-5)
    differing = list(ONNXRUNTIME_DIFFERS)
    assert_parity(model.predict_proba(differing), pipeline.predict_proba(differing), rtol=0,
                  atol=1e-5)
    analyze, vocabulary = pipeline[0].build_analyzer(), pipeline[0].vocabulary_
    if pipeline[0].lowercase and all(set(analyze(d)) & set(vocabulary) for d in differing):
        gap = np.abs(onnxruntime_proba(differing) - pipeline.predict_proba(differing))
        assert (gap.max(axis=1) > 1e-5).all(), (
            "onnxruntime now lower-cases as Python: update ONNXRUNTIME_DIFFERS and docs")


def test_stop_words_with_ngrams_keep_the_counts_artifact():
    vectorizer = CountVectorizer(stop_words="english", ngram_range=(1, 2)).fit(TRAIN)
    note = {e.key: e.value for e in bridge.from_sklearn(vectorizer).onnx_model.metadata_props}
    assert "n-grams would span the stop words" in note[INPUT_KEY]


@pytest.mark.parametrize("estimator", [
    HashingVectorizer(n_features=32), CountVectorizer(strip_accents="unicode"),
    DictVectorizer(), MultiLabelBinarizer()], ids=lambda e: type(e).__name__)
def test_onnxruntime_runs_the_host_encoding_artifact(estimator):
    rows = {"DictVectorizer": DICT_ROWS, "MultiLabelBinarizer": [("a", "b"), ("c",)]}.get(
        type(estimator).__name__, TRAIN)
    estimator.fit(rows)
    model = bridge.from_sklearn(estimator)
    note = {e.key: e.value for e in model.onnx_model.metadata_props}[INPUT_KEY]
    assert note.startswith("the host encoding")
    (reference,) = run_onnxruntime(model.onnx_model, artifact_feed(model, rows))
    assert_parity(model.raw_outputs("transform", rows)[0], reference, rtol=1e-6, atol=1e-6)
    assert_parity(reference, _dense(estimator.transform(rows)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("documents", "match"), [
    (["fine", 3, "text"], r"row 1 holds 3 of type int"),
    (["fine", None], r"row 1 holds None"),
    (["fine", float("nan")], r"row 1 holds nan of type float"),
    ("one document", r"got a single string 'one document': wrap it in a list"),
    (np.array([["a"], ["b"]], dtype=object), r"shape \(2, 1\)"),
    (42, r"got int 42"),
])
def test_non_text_input_is_refused_naming_row_and_value(documents, match):
    model = bridge.from_sklearn(CountVectorizer().fit(TRAIN))
    with pytest.raises(InvalidInputError, match=match):
        model.transform(documents)


def test_other_refusals():
    model = bridge.from_sklearn(CountVectorizer().fit(TRAIN))
    with pytest.raises(InvalidInputError, match="a tensor cannot hold"):
        model.transform(torch.zeros(2, 3))
    dicts = bridge.from_sklearn(DictVectorizer().fit(DICT_ROWS))
    with pytest.raises(InvalidInputError, match=r"row 1 holds 'rome' of type str; expected a dict"):
        dicts.transform([{"city": "paris"}, "rome"])
    with pytest.raises(InvalidInputError, match=r"row 0, feature 'temp' holds \{"):
        dicts.transform([{"temp": {"nested": 1}}])
    hasher = bridge.from_sklearn(FeatureHasher(8).fit([{"a": 1}]))
    with pytest.raises(InvalidInputError, match="feature name 7 of type int"):
        hasher.transform([{7: 1.0}])
    with pytest.raises(InvalidInputError, match=r"row 0, feature 'a' holds \[1\]"):
        hasher.transform([{"a": [1]}])


def _frame(pandas, documents: list[str], seed: int):
    rng = np.random.default_rng(seed)
    rows = len(documents)
    return pandas.DataFrame({
        "x": rng.normal(size=rows), "body": documents, "city": rng.choice(["a", "b", "c"], rows),
        "title": [d[:12] for d in documents], "y": rng.normal(size=rows)})


@pytest.mark.parametrize("with_sample", [True, False])
def test_dataframe_with_text_columns_matches_sklearn(with_sample):
    pandas = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    frame = _frame(pandas, TRAIN, seed=0)
    columns = ColumnTransformer([
        ("body", TfidfVectorizer(ngram_range=(1, 2)), "body"),
        ("x", StandardScaler(), ["x"]),
        ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ("title", make_pipeline(CountVectorizer(binary=True)), 3),  # an integer selector
    ], remainder="passthrough")  # "y", selected by position
    pipeline = make_pipeline(columns, LogisticRegression(max_iter=500)).fit(frame, TARGET)
    model = bridge.from_sklearn(pipeline, X_sample=frame.head(3) if with_sample else None)
    unseen = _frame(pandas, TEST, seed=1)
    unseen.loc[:4, "city"] = "tokyo"
    for rows in (frame, unseen):
        assert_method_matches(pipeline, model, "predict", rows, predicts_labels=True)
        assert_method_matches(pipeline, model, "predict_proba", rows, predicts_labels=True)
    onnxruntime_proba = run_onnxruntime(model.onnx_model["predict_proba"],
                                        artifact_feed(model, unseen))[1]
    assert_parity(onnxruntime_proba, pipeline.predict_proba(unseen), rtol=0, atol=1e-5)
    copied = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copied.predict(unseen), pipeline.predict(unseen))
    with pytest.raises(InvalidInputError, match="reads the DataFrame columns"):
        model.predict(TEST)
    broken = unseen.head(3).astype({"body": object})
    broken.loc[1, "body"] = 7
    with pytest.raises(InvalidInputError, match="row 1 holds 7 of type int"):
        model.predict(broken)


def test_vectorizers_elsewhere_are_refused_clearly():
    pandas = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import FunctionTransformer

    frame = _frame(pandas, TRAIN, seed=0)
    # a list selector hands the vectorizer a DataFrame (scikit-learn then reads its names)
    listed = ColumnTransformer([("text", TfidfVectorizer(), ["body"])]).fit(frame)
    with pytest.raises(UnsupportedEstimatorError, match="reads one named column"):
        bridge.from_sklearn(listed)
    later = make_pipeline(FunctionTransformer(), TfidfVectorizer()).fit(TRAIN)
    with pytest.raises(UnsupportedEstimatorError, match="converts only as the first step"):
        bridge.from_sklearn(later)


def test_x_sample_fixes_no_width_for_text_and_a_1d_sample_is_named():
    vectorizer = CountVectorizer().fit(TRAIN)
    model = bridge.from_sklearn(vectorizer, X_sample=TRAIN[:2])  # issue 19's first error
    assert model.transform(TEST[:4]).shape == (4, len(vectorizer.vocabulary_))
    from sklearn.preprocessing import FunctionTransformer

    no_width = FunctionTransformer(np.abs)  # fitted without data: no n_features_in_
    no_width.fit(None)
    with pytest.raises(ConversionError, match=r"X_sample has shape \(3,\)"):
        bridge.from_sklearn(no_width, X_sample=[1.0, 2.0, 3.0])


def test_term_weighting_numpy_reference_matches_tfidf():
    from bridge.sklearn.text import TermWeighting

    vectorizer = TfidfVectorizer(sublinear_tf=True, norm="l1").fit(TRAIN)
    counts = _dense(CountVectorizer(vocabulary=vectorizer.vocabulary_).transform(TEST))
    weighting = TermWeighting(counts.shape[1], sublinear_tf=True, idf=vectorizer.idf_,
                              norm="l1").fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_parity(weighting.transform(counts), _dense(vectorizer.transform(TEST)),
                      rtol=1e-12, atol=1e-14)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_counts_are_scattered_on_the_models_device():
    pipeline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression())
    pipeline.fit(TRAIN, TARGET)
    model = bridge.from_sklearn(pipeline).to("cuda")
    (encoded,), _ = model._input_spec.prepare(TEST, torch.device("cuda"))
    assert encoded.device.type == "cuda"
    assert_parity(model.predict_proba(TEST), pipeline.predict_proba(TEST), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(model.predict(TEST), pipeline.predict(TEST))


def test_trainable_conversion_of_a_text_pipeline_is_refused_clearly():
    pipeline = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TRAIN, TARGET)
    with pytest.raises(UnsupportedEstimatorError, match=r"train on vectorizer.transform"):
        bridge.from_sklearn(pipeline, trainable=True)


@pytest.mark.parametrize("with_sample", [True, False])
def test_dropped_text_columns_are_not_read(with_sample):
    pandas = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer

    frame = _frame(pandas, TRAIN, seed=0)  # "city" and "title" hold text nobody reads
    columns = ColumnTransformer([("body", TfidfVectorizer(), "body"),
                                 ("numbers", StandardScaler(), ["x", "y"])])
    pipeline = make_pipeline(columns, LogisticRegression()).fit(frame, TARGET)
    model = bridge.from_sklearn(pipeline, X_sample=frame.head(3) if with_sample else None)
    unseen = _frame(pandas, TEST, seed=2)
    assert_method_matches(pipeline, model, "predict_proba", unseen, predicts_labels=True)


def test_compiled_serving_of_a_dataframe_text_model():
    pandas = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer

    frame = _frame(pandas, TRAIN, seed=0)
    columns = ColumnTransformer([("body", TfidfVectorizer(), "body"),
                                 ("numbers", StandardScaler(), ["x", "y"])])
    pipeline = make_pipeline(columns, LogisticRegression()).fit(frame, TARGET)
    served = bridge.compile_for_serving(bridge.from_sklearn(pipeline),
                                        methods=["predict_proba"])
    unseen = _frame(pandas, TEST, seed=2)
    assert_parity(served.predict_proba(unseen), pipeline.predict_proba(unseen), rtol=0,
                  atol=1e-5)


def test_artifact_feed_refuses_a_numeric_model():
    model = bridge.from_sklearn(StandardScaler().fit(np.eye(3)))
    with pytest.raises(InvalidInputError, match="reads numbers"):
        artifact_feed(model, np.eye(3))
