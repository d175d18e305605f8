"""bridge.toy: the ready-made MLPs build the layers they describe and train inside the nets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification, make_regression

from bridge import NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor
from bridge.toy import MLPModule, make_binary_classifier, make_classifier, make_regressor


@pytest.mark.parametrize("num_hidden", [0, 1, 3])
def test_mlp_layers(num_hidden):
    module = MLPModule(input_units=5, output_units=3, hidden_units=7, num_hidden=num_hidden, dropout=0.25)
    assert len(module.sequential) == 3 * num_hidden + 1
    assert module.sequential[-1].out_features == 3
    if num_hidden:
        assert isinstance(module.sequential[2], torch.nn.Dropout) and module.sequential[2].p == 0.25
    assert module(torch.zeros(4, 5)).shape == (4, 3)


def test_squeeze_output_only_for_single_column():
    assert MLPModule(input_units=2, output_units=1, squeeze_output=True)(torch.zeros(3, 2)).shape == (3,)
    assert MLPModule(input_units=2, output_units=2, squeeze_output=True)(torch.zeros(3, 2)).shape == (3, 2)


@pytest.mark.parametrize("kwargs", [{"num_hidden": -1}, {"dropout": 1.5}])
def test_invalid_settings_are_named(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        MLPModule(**kwargs)


def test_factories_train_in_nets():
    X, y = make_classification(120, 6, n_informative=4, random_state=0)
    X = X.astype(np.float32)
    clf = NeuralNetClassifier(make_classifier(input_units=6, output_units=2), max_epochs=20, lr=0.2, batch_size=16,
                              train_split=None, verbose=0).fit(X, y)
    assert isinstance(clf.module_.sequential[-1], torch.nn.Softmax)
    assert clf.score(X, y) > 0.7  # chance is 0.5
    binary = NeuralNetBinaryClassifier(make_binary_classifier(input_units=6), max_epochs=20, lr=0.2, batch_size=16,
                                       train_split=None, verbose=0).fit(X, y.astype(np.float32))
    assert binary.score(X, y) > 0.7  # chance is 0.5
    Xr, yr = make_regression(120, 6, random_state=0)
    yr = (yr / yr.std()).astype(np.float32).reshape(-1, 1)
    reg = NeuralNetRegressor(make_regressor(input_units=6), max_epochs=20, lr=0.05, batch_size=16, train_split=None,
                             verbose=0).fit(Xr.astype(np.float32), yr)
    assert reg.history[-1, "train_loss"] < reg.history[0, "train_loss"]
