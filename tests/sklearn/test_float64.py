"""float64 mode over the whole coverage list: ``from_sklearn(estimator, dtype=np.float64)``
converts every case of tests/sklearn/cases.py, and every converted method agrees with
scikit-learn at least as closely as the float32 graphs must (tests/sklearn/checks.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import bridge
from bridge.errors import BridgeError
from tests.sklearn.cases import CASES, LOOSE_TOLERANCE, fitted
from tests.sklearn.checks import assert_method_matches, predicts_labels

# one dataset per case keeps the run short
FLOAT64_CASES = [(case, names[0]) for case, (_, names) in CASES.items()]

# Cases whose float64 conversion skl2onnx refuses; bridge says so by name
REFUSED: dict[str, str] = {
    "IsolationForest": "IsolationForest cannot be converted with dtype=float64",
    "KNNImputer": "KNNImputer cannot be converted with dtype=float64",
}
_TREE_CLASSIFIER = ("ai.onnx.ml's TreeEnsembleClassifier writes float32 scores whatever its "
                    "input (the values agree with scikit-learn all the same)")
_ENCODER = "skl2onnx's encoders write float32 codes whatever their input (exact integers)"
# Cases whose graphs compute in float64 but hand some method's values over as float32
FLOAT32_OUTPUTS: dict[str, str] = {
    **dict.fromkeys(("DecisionTreeClassifier", "ExtraTreeClassifier", "RandomForestClassifier",
                     "ExtraTreesClassifier", "GradientBoostingClassifier",
                     "HistGradientBoostingClassifier"), _TREE_CLASSIFIER),
    **dict.fromkeys(("OrdinalEncoder", "OneHotEncoder", "KBinsDiscretizer-onehot",
                     "KBinsDiscretizer-ordinal", "KBinsDiscretizer-sparse-onehot"), _ENCODER),
}


@pytest.mark.parametrize(("case", "data_name"), FLOAT64_CASES, ids=[c for c, _ in FLOAT64_CASES])
def test_float64_graphs_match_scikit_learn(case, data_name):
    estimator, data = fitted(case, data_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case in REFUSED:
            with pytest.raises(BridgeError, match=REFUSED[case]):
                bridge.from_sklearn(estimator, dtype=np.float64)
            return
        model = bridge.from_sklearn(estimator, dtype=np.float64)
    X = data.X if case in ("LabelBinarizer", "LabelEncoder") else np.asarray(data.X, np.float64)
    for method in model._method_outputs:
        assert_method_matches(estimator, model, method, X, predicts_labels(estimator),
                              LOOSE_TOLERANCE.get(case, 1.0))
        result = getattr(model, method)(X)
        if case not in FLOAT32_OUTPUTS and method in (
                "predict_proba", "decision_function", "transform", "score_samples") \
                and getattr(result, "dtype", None) is not None and result.dtype.kind == "f":
            assert result.dtype == np.float64, f"{case}.{method} gave {result.dtype}"
