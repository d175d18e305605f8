"""InputShapeSetter on a real net: the module's input size follows the training data."""

from __future__ import annotations

import pytest
from sklearn.feature_selection import SelectKBest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from bridge import NeuralNetClassifier
from bridge.callbacks.shape import InputShapeSetter
from tests.net.callbacks.conftest import MLP


def make_net(**kwargs):
    params = dict(
        module__input_dim=1, lr=0.1, max_epochs=2, batch_size=32, verbose=0, train_split=None
    )
    params.update(kwargs)
    return NeuralNetClassifier(MLP, **params)


def test_input_dim_follows_X(iris):
    X, y = iris
    net = make_net(callbacks=[InputShapeSetter()])
    net.fit(X, y)
    assert net.module_.dense0.in_features == 4
    net.fit(X[:, :3], y)
    assert net.module_.dense0.in_features == 3
    assert net.predict(X[:, :3]).shape == (len(X),)


def test_input_dim_fn_and_param_name(iris):
    X, y = iris
    setter = InputShapeSetter(param_name="hidden", input_dim_fn=lambda X: 2 * X.shape[1])
    net = make_net(callbacks=[setter], module__input_dim=4)
    net.fit(X, y)
    assert net.module_.dense0.out_features == 8
    assert net.get_params()["module__hidden"] == 8


def test_one_dimensional_X_is_rejected(iris):
    X, _ = iris
    with pytest.raises(ValueError, match="input_dim_fn"):
        InputShapeSetter().get_input_dim(X[:, 0])
    with pytest.raises(ValueError, match="input_dim_fn"):
        InputShapeSetter().get_input_dim([[1.0, 2.0]])  # no shape: needs input_dim_fn
    assert InputShapeSetter(input_dim_fn=len).get_input_dim([[1.0, 2.0]]) == 1


def test_in_a_pipeline_with_feature_selection(iris):
    X, y = iris
    pipe = Pipeline(
        [("select", SelectKBest(k=2)), ("net", make_net(callbacks=[InputShapeSetter()]))]
    )
    search = GridSearchCV(pipe, {"select__k": [1, 3]}, cv=2).fit(X, y)
    k = search.best_params_["select__k"]
    assert search.best_estimator_.named_steps["net"].module_.dense0.in_features == k
