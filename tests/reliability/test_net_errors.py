"""Catalogue: mistakes with the nets that used to pass silently or fail deep inside torch.

Each test makes one mistake a new user makes and asserts the exception type and the words the
message must contain: X of another rank than in fit, invalid ``set_params`` values on a fitted
net, a module output that does not match y, integer X, ``lr='fast'``, a module constructor that
fails, and a criterion that does not fit the task. The legitimate neighbours of each mistake are
tested to keep working.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bridge import NeuralNet, NeuralNetClassifier, NeuralNetRegressor
from bridge.errors import BridgeError, ConfigurationError, InvalidInputError
from bridge.helper import SliceDict


class MLP(torch.nn.Module):
    """A small MLP over the last axis of X."""

    def __init__(self, n_in: int = 4, hidden: int = 8, n_out: int = 1, flat: bool = False):
        super().__init__()
        self.hidden = torch.nn.Linear(n_in, hidden)
        self.out = torch.nn.Linear(hidden, n_out)
        self.flat = flat

    def forward(self, X):
        out = self.out(torch.relu(self.hidden(X)))
        return out.reshape(-1) if self.flat else out


class Probabilities(MLP):
    def forward(self, X):
        return torch.softmax(super().forward(X), dim=-1)


class MeanOverSteps(MLP):
    """Signals (n, 4 channels, steps) averaged over the steps: any number of steps works."""

    def forward(self, X):
        return super().forward(X.mean(dim=2))


class EmbeddingBagModel(torch.nn.Module):
    """Integer X are token indices."""

    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(10, 3)
        self.out = torch.nn.Linear(3, 1)
        self.seen_dtypes: list[torch.dtype] = []

    def forward(self, X):
        self.seen_dtypes.append(X.dtype)
        return self.out(self.embedding(X).mean(dim=1))


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.rand(64, 4).astype(np.float32)
    return X, (X @ np.arange(1, 5, dtype=np.float32)).reshape(-1, 1), (X[:, 0] > 0.5).astype(np.int64)


def regressor(module=MLP, **kwargs):
    options = dict(max_epochs=2, batch_size=16, train_split=None, verbose=0)
    return NeuralNetRegressor(module, **{**options, **kwargs})


@pytest.fixture(scope="module")
def fitted(data):
    X, y, _ = data
    torch.manual_seed(0)
    return regressor().fit(X, y)


# ------------------------------------------------------------------ 1. X of another rank
@pytest.mark.parametrize("method", ["predict", "predict_proba", "score", "partial_fit"])
def test_3d_input_to_a_net_fitted_on_2d_raises_naming_the_shapes(fitted, method):
    X3 = np.random.RandomState(1).rand(5, 4, 4).astype(np.float32)  # last axis and axis 1 both match
    args = (X3, np.zeros((5, 1), np.float32)) if method in ("score", "partial_fit") else (X3,)
    net = pickle_copy(fitted) if method == "partial_fit" else fitted
    with pytest.raises(InvalidInputError, match="rank 3") as caught:
        getattr(net, method)(*args)
    assert isinstance(caught.value, ValueError)
    for words in ("(5, 4, 4)", "rank 2", "(4,)", "(n_samples, 4)"):
        assert words in str(caught.value)


def test_integer_3d_input_and_tensors_are_checked_too(fitted):
    with pytest.raises(InvalidInputError, match=r"\(5, 4, 4\).*rank 2"):
        fitted.predict(np.ones((5, 4, 4), dtype=np.int64))
    with pytest.raises(InvalidInputError, match=r"\(5, 4, 4\).*rank 2"):
        fitted.predict(torch.ones(5, 4, 4))


def test_2d_input_to_a_net_fitted_on_sequences_raises(data):
    X = np.random.RandomState(0).rand(32, 4, 3).astype(np.float32)
    net = regressor(MeanOverSteps).fit(X, data[1][:32])
    assert net.sample_shape_ == (4, 3)
    with pytest.raises(InvalidInputError, match=r"rank 2 with samples of shape \(4,\).*rank 3"):
        net.predict(X[:, :, 0])
    with pytest.raises(InvalidInputError, match=r"samples of shape \(4, 7\).*samples of shape \(4, 3\)"):
        net.predict(np.random.rand(5, 4, 7).astype(np.float32))
    net.sample_shape_ = (4, None)  # any number of steps: the documented way to free an axis
    assert net.predict(np.random.rand(5, 4, 7).astype(np.float32)).shape == (5, 1)


def test_dict_inputs_are_checked_per_key(data):
    class TwoInputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = torch.nn.Linear(6, 1)

        def forward(self, a, b):
            return self.dense(torch.cat([a, b], dim=-1))

    X, y, _ = data
    net = regressor(TwoInputs).fit({"a": X, "b": X[:, :2]}, y)
    assert net.sample_shape_ == {"a": (4,), "b": (2,)}
    with pytest.raises(InvalidInputError, match=r"X\['a'\] has samples of shape \(4, 4\)"):
        net.predict({"a": np.ones((3, 4, 4), np.float32), "b": X[:3, :2]})
    assert net.predict({"a": X[:3], "b": X[:3, :2]}).shape == (3, 1)
    sliced = SliceDict(a=X, b=X[:, :2])  # len() counts rows here, not keys
    net = regressor(TwoInputs).fit(sliced, y)
    assert net.sample_shape_ == {"a": (4,), "b": (2,)} and net.predict(sliced[:3]).shape == (3, 1)
    with pytest.raises(InvalidInputError, match=r"X\['b'\] has samples of shape \(2, 1\)"):
        net.predict(SliceDict(a=X[:3], b=X[:3, :2, None]))


def test_datasets_are_not_recorded_and_still_work(data):
    X, y, _ = data
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    net = regressor().fit(dataset, None)
    assert not hasattr(net, "sample_shape_")
    assert net.predict(dataset).shape == (64, 1) and net.predict(X).shape == (64, 1)


# ------------------------------------------------------------------ 2. set_params on a fitted net
INVALID = [("lr", -0.5, "non-negative"), ("lr", "fast", "non-negative"), ("lr", float("nan"), "finite"),
           ("max_epochs", -1, "non-negative integer"), ("max_epochs", 2.5, "non-negative integer"),
           ("batch_size", 0, "positive integer"), ("iterator_train__batch_size", -3, "positive integer"),
           ("optimizer__lr", -1.0, "non-negative")]


@pytest.mark.parametrize(("name", "value", "expected"), INVALID)
def test_set_params_on_a_fitted_net_is_validated_as_before_fit(data, fitted, name, value, expected):
    net = pickle_copy(fitted)
    before = net.optimizer_.param_groups[0]["lr"]
    with pytest.raises(ConfigurationError) as after_fit:
        net.set_params(**{name: value})
    assert f"{name}={value!r}" in str(after_fit.value) and expected in str(after_fit.value)
    assert net.optimizer_.param_groups[0]["lr"] == before and getattr(net, name, None) != value
    with pytest.raises(ConfigurationError) as before_fit:
        regressor(**{name: value}).fit(*data[:2])
    assert str(before_fit.value) == str(after_fit.value)  # the same rule, the same words


def test_optimizer_options_on_a_fitted_net_go_through_torchs_checks(fitted):
    net = pickle_copy(fitted)
    with pytest.raises(ValueError, match=r"optimizer__momentum=-1.*SGD refuses.*Invalid momentum"):
        net.set_params(optimizer__momentum=-1)
    assert net.optimizer_.param_groups[0]["momentum"] == 0
    net.set_params(lr=0.05, optimizer__momentum=0.9)  # valid values still go in place
    assert net.optimizer_.param_groups[0]["lr"] == 0.05 and net.optimizer_.param_groups[0]["momentum"] == 0.9


# ------------------------------------------------------------------ 3. output vs target shapes
def test_two_output_columns_for_one_target_column(data):
    X, y, _ = data
    with pytest.raises(ConfigurationError) as caught:
        regressor(module__n_out=2).fit(X, y)
    for words in ("(16, 2)", "(16, 1)", "MSELoss", "broadcast"):
        assert words in str(caught.value)


def test_vector_output_for_a_column_target(data):
    X, y, _ = data
    with pytest.raises(ConfigurationError, match=r"shape \(16,\) float32\).*shape \(16, 1\) float32"):
        regressor(module__flat=True).fit(X, y)


def test_matching_shapes_keep_working(data):
    X, y, yc = data
    assert regressor(module__flat=True).fit(X, y.ravel()).predict(X).shape == (64,)
    assert regressor().fit(X, y.ravel()).predict(X).shape == (64,)  # (n,) y matched to (n, 1) output
    assert regressor(module__n_out=3).fit(X, np.hstack([y, y, y])).predict(X).shape == (64, 3)
    assert regressor(criterion=torch.nn.MSELoss(reduction="sum")).fit(X, y).predict(X).shape == (64, 1)
    assert regressor(criterion=torch.nn.L1Loss).fit(X, y).predict(X).shape == (64, 1)
    classifier = NeuralNetClassifier(Probabilities, module__n_out=2, max_epochs=2, train_split=None, verbose=0)
    assert classifier.fit(X, yc).predict(X).shape == (64,)  # NLLLoss: (n, 2) output, (n,) labels


# ------------------------------------------------------------------ 4. integer X
def test_integer_X_is_cast_for_a_module_that_consumes_floats(data):
    X = np.random.RandomState(0).randint(0, 5, (64, 4))
    y = data[1]
    torch.manual_seed(0)
    from_integers = regressor().fit(X, y)
    torch.manual_seed(0)
    from_floats = regressor().fit(X.astype(np.float32), y)
    np.testing.assert_array_equal(from_integers.predict(X), from_floats.predict(X.astype(np.float32)))
    np.testing.assert_array_equal(from_integers.predict(torch.from_numpy(X)), from_integers.predict(X))


def test_integer_X_stays_integer_for_an_embedding(data):
    X = np.random.RandomState(0).randint(0, 10, (64, 5))
    net = regressor(EmbeddingBagModel).fit(X, data[1])
    assert net.predict(X).shape == (64, 1)
    assert set(net.module_.seen_dtypes) == {torch.int64}


def test_integer_X_that_still_fails_says_so(data):
    X = np.random.RandomState(0).rand(64, 5).astype(np.float32)  # floats into an embedding
    with pytest.raises(RuntimeError) as caught:
        regressor(EmbeddingBagModel).fit(X, data[1])
    for words in ("EmbeddingBagModel could not take X", "float32", "embedding", "convert X"):
        assert words in str(caught.value)
    assert isinstance(caught.value.__cause__, RuntimeError)


# ------------------------------------------------------------------ 5. parameters that cannot work
def test_lr_fast(data):
    with pytest.raises(ConfigurationError, match=r"lr='fast' is not valid; expected a non-negative"):
        regressor(lr="fast").fit(*data[:2])


def test_module_constructor_errors_name_the_module_and_its_parameters(data):
    with pytest.raises(RuntimeError) as caught:
        regressor(module__hidden=-5).fit(*data[:2])
    for words in ("building the module MLP", "module__hidden=-5", "negative dimension"):
        assert words in str(caught.value)
    assert "negative dimension" in str(caught.value.__cause__)
    with pytest.raises(TypeError, match=r"module MLP with module__hiden=3 failed.*unexpected keyword"):
        regressor(module__hiden=3).fit(*data[:2])


def test_mse_loss_on_a_classifier(data):
    X, _, yc = data
    net = NeuralNetClassifier(Probabilities, module__n_out=2, criterion=torch.nn.MSELoss, batch_size=16,
                              max_epochs=1, train_split=None, verbose=0)
    with pytest.raises(ConfigurationError) as caught:
        net.fit(X, yc)
    for words in ("MSELoss", "(16, 2) float32", "(16,) int64", "one class index per row", "CrossEntropyLoss"):
        assert words in str(caught.value)
    assert isinstance(caught.value, BridgeError)


def test_criterion_errors_name_the_shapes_and_dtypes(data):
    X, y, _ = data
    net = NeuralNet(MLP, criterion=torch.nn.CrossEntropyLoss, module__n_out=3, batch_size=16, max_epochs=1,
                    train_split=None, verbose=0)
    with pytest.raises(RuntimeError, match=r"criterion CrossEntropyLoss failed on the module's output "
                                           r"\(shape \(16, 3\) float32\) and the target \(shape \(16, 1\) float32\)"):
        net.fit(X, y)


def pickle_copy(net):
    import pickle

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pickle.loads(pickle.dumps(net))
