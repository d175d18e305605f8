"""NeuralNet core: construction and routed parameters, initialization, the loop's pieces, inputs and devices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from torch.utils.data import DataLoader

from bridge import NeuralNet, NeuralNetClassifier
from bridge.callbacks import Callback, EpochScoring
from bridge.dataset import Dataset
from bridge.errors import DeviceError, NotFittedError
from bridge.helper import SliceDict
from bridge.net.data import TensorBatchIterator
from tests.net.conftest import DictInputModule, IrisMLP, LogitMLP


def make_classifier(**kwargs):
    params = dict(max_epochs=3, lr=0.1, batch_size=32, verbose=0, train_split=None)
    params.update(kwargs)
    return NeuralNetClassifier(IrisMLP, **params)


def test_init_stores_arguments_only():
    net = make_classifier(module__num_units=7, iterator_train__shuffle=True)
    assert net.module__num_units == 7 and not net.initialized_
    assert not any(k.endswith("_") for k in vars(net))
    params = net.get_params(deep=False)
    assert params["module__num_units"] == 7 and params["iterator_train__shuffle"] is True
    cloned = clone(net)
    assert cloned.get_params(deep=False)["module__num_units"] == 7


@pytest.mark.parametrize("name, suggestion", [
    ("iterator_train_shuffle", "iterator_train__shuffle"),
    ("modul__num_units", "module__num_units"),
    ("max_epoch", "max_epochs"),
])
def test_unknown_parameters_fail_with_suggestion(iris, name, suggestion):
    net = make_classifier(**{name: 1})
    with pytest.raises(ValueError, match=f"{name}.*did you mean '{suggestion}'"):
        net.fit(*iris)


def test_set_params_routes_and_reinitializes(iris):
    net = make_classifier().fit(*iris)
    old_module = net.module_
    net.set_params(lr=0.5)
    assert net.optimizer_.param_groups[0]["lr"] == 0.5 and net.module_ is old_module
    net.set_params(optimizer__momentum=0.9)
    assert net.optimizer_.param_groups[0]["momentum"] == 0.9
    net.set_params(module__num_units=5)
    assert net.module_.dense.out_features == 5 and net.module_ is not old_module
    assert net.optimizer_.param_groups[0]["params"][0] is net.module_.dense.weight
    with pytest.raises(ValueError, match="unexpected parameter 'optimizer_momentum'"):
        net.set_params(optimizer_momentum=0.1)
    net.set_params(callbacks__print_log=None)
    assert "print_log" not in dict(net.callbacks_)


def test_callback_params_are_routed(iris):
    net = make_classifier(train_split=None, callbacks=[("acc", EpochScoring("accuracy", on_train=True))])
    params = net.get_params()
    assert params["callbacks__acc__on_train"] is True and "callbacks__print_log" in params
    net.set_params(callbacks__acc__name="training_accuracy", callbacks__acc__lower_is_better=False).fit(*iris)
    assert "training_accuracy" in net.history[-1]
    with pytest.raises(ValueError, match="names no callback"):
        make_classifier(callbacks__nope__x=1).fit(*iris)


def test_duplicate_callback_names_and_auto_names():
    class Noop(Callback):
        pass

    net = make_classifier(callbacks=[Noop(), Noop(), ("named", Noop())]).initialize()
    names = [name for name, _ in net.callbacks_]
    assert {"Noop_1", "Noop_2", "named"} <= set(names)
    with pytest.raises(ValueError, match="unique"):
        make_classifier(callbacks=[("a", Noop()), ("a", Noop())]).initialize()


def test_notify_order_and_history_rows(iris):
    calls = []

    class Recorder(Callback):
        def on_train_begin(self, net, **kw):
            calls.append("train_begin")

        def on_epoch_begin(self, net, **kw):
            calls.append("epoch_begin")

        def on_batch_end(self, net, batch=None, training=None, loss=None, y_pred=None, **kw):
            calls.append(("batch", training, tuple(y_pred.shape), loss.requires_grad))

        def on_grad_computed(self, net, named_parameters, batch=None, training=True, **kw):
            calls.append(("grad", all(p.grad is not None for _, p in named_parameters)))

        def on_epoch_end(self, net, **kw):
            calls.append("epoch_end")

        def on_train_end(self, net, **kw):
            calls.append("train_end")

    X, y = iris
    net = make_classifier(max_epochs=1, batch_size=100, callbacks=[Recorder()], train_split=lambda ds, y: (ds, ds))
    net.fit(X, y)
    assert calls[0] == "train_begin" and calls[1] == "epoch_begin" and calls[-2:] == ["epoch_end", "train_end"]
    assert ("grad", True) in calls
    batches = [c for c in calls if isinstance(c, tuple) and c[0] == "batch"]
    assert [b[1] for b in batches] == [True, True, False, False]
    assert batches[0][2] == (100, 3) and batches[0][3] is True
    rows = net.history[-1, "batches"]
    assert [r.get("train_batch_size") for r in rows[:2]] == [100, 50]
    assert [r.get("valid_batch_size") for r in rows[2:]] == [100, 50]
    expected = (rows[0]["train_loss"] * 100 + rows[1]["train_loss"] * 50) / 150
    assert net.history[-1, "train_loss"] == pytest.approx(expected)
    assert net.history[-1, "train_batch_count"] == 2


def test_fast_iterator_matches_dataloader_batches(iris):
    X, y = iris
    net = make_classifier(batch_size=40).initialize()
    dataset = net.get_dataset(X, y)
    fast = net.get_iterator(torch.utils.data.Subset(dataset, np.arange(10, 150)), training=False)
    assert isinstance(fast, TensorBatchIterator) and len(fast) == 4
    slow = DataLoader(torch.utils.data.Subset(dataset, np.arange(10, 150)), batch_size=40)
    for (Xf, yf), (Xs, ys) in zip(fast, slow):
        torch.testing.assert_close(Xf, Xs)
        torch.testing.assert_close(yf, ys)
    shuffled = net.set_params(iterator_train__shuffle=True, iterator_train__drop_last=True)
    batches = list(shuffled.get_iterator(dataset, training=True))
    assert len(batches) == 3 and all(len(b[0]) == 40 for b in batches)
    seen = torch.cat([b[1] for b in batches])
    assert len(set(torch.cat([b[0] for b in batches])[:, 0].tolist())) > 1 and len(seen) == 120


def test_custom_iterator_and_dataset_use_the_dataloader_path(iris):
    X, y = iris

    class MyDataset(Dataset):
        pass

    net = make_classifier(dataset=MyDataset).initialize()
    assert isinstance(net.get_iterator(net.get_dataset(X, y), training=True), DataLoader)
    net = make_classifier(iterator_train__collate_fn=torch.utils.data.default_collate).initialize()
    assert isinstance(net.get_iterator(net.get_dataset(X, y), training=True), DataLoader)
    torch.manual_seed(0)
    slow = make_classifier(dataset=MyDataset).fit(X, y)
    torch.manual_seed(0)
    fast = make_classifier().fit(X, y)
    np.testing.assert_allclose(slow.history[:, "train_loss"], fast.history[:, "train_loss"], rtol=1e-5)


def test_torch_dataset_input_goes_through_dataloader(iris):
    X, y = iris
    ds = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    net = make_classifier().fit(ds, None)
    proba = net.predict_proba(ds)
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba, net.predict_proba(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("as_slicedict", [False, True])
def test_dict_inputs_are_passed_as_keyword_arguments(iris, as_slicedict):
    X, y = iris
    inputs = dict(first=X[:, :2], second=X[:, 2:])
    if as_slicedict:
        inputs = SliceDict(**inputs)
    net = NeuralNetClassifier(DictInputModule, max_epochs=5, lr=0.2, verbose=0, train_split=None).fit(inputs, y)
    assert net.predict_proba(inputs).shape == (150, 3)
    assert net.score(inputs, y) > 0.6


def test_tensor_and_dataframe_inputs(iris):
    X, y = iris
    net = make_classifier().fit(torch.from_numpy(X), torch.from_numpy(y))
    assert net.n_features_in_ == 4 and net.predict(torch.from_numpy(X)).shape == (150,)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    net = make_classifier().fit(frame, y)
    assert list(net.feature_names_in_) == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="4 features"):
        net.predict(X[:, :3])
    with pytest.raises(ValueError, match="4 features"):
        net.predict(torch.from_numpy(X[:, :3]))


def test_float64_input_is_cast_to_the_module_dtype(iris):
    X, y = iris
    net = make_classifier().fit(X.astype(np.float64), y)
    assert net.predict_proba(X.astype(np.float64)).dtype == np.float32


def test_forward_infer_and_steps(iris):
    X, y = iris
    net = NeuralNet(LogitMLP, torch.nn.CrossEntropyLoss, max_epochs=2, verbose=0, train_split=None).fit(X, y)
    out = net.forward(X)
    assert out.shape == (150, 3) and out.device.type == "cpu" and not out.requires_grad
    chunks = list(net.forward_iter(X, device=None))
    assert len(chunks) == 1  # in-memory inference runs in large chunks
    torch.testing.assert_close(torch.cat(chunks), out)
    np.testing.assert_allclose(net.predict_proba(X), torch.softmax(out, 1).numpy(), rtol=1e-5, atol=1e-6)
    batch = (torch.from_numpy(X[:8]), torch.from_numpy(y[:8]))
    step = net.train_step(batch)
    assert step["loss"].requires_grad and step["y_pred"].shape == (8, 3)
    valid = net.validation_step(batch)
    assert not valid["loss"].requires_grad
    assert net.evaluation_step(batch).shape == (8, 3)
    loss = net.get_loss(net.infer(batch[0]), batch[1])
    assert loss.ndim == 0


def test_not_fitted_and_device_errors(iris):
    with pytest.raises(NotFittedError):
        make_classifier().predict(iris[0])
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="available devices"):
            make_classifier(device="cuda").fit(*iris)


@pytest.mark.parametrize("params, message", [
    ({"batch_size": 0}, "batch_size=0 is not valid"),
    ({"batch_size": -2}, "batch_size=-2 is not valid"),
    ({"batch_size": 2.5}, "batch_size=2.5 is not valid"),
    ({"iterator_train__batch_size": "8"}, "iterator_train__batch_size='8' is not valid"),
    ({"max_epochs": -1}, "max_epochs=-1 is not valid"),
    ({"max_epochs": 2.0}, "max_epochs=2.0 is not valid"),
])
def test_bad_batch_size_or_epochs_are_named(iris, params, message):
    with pytest.raises(ValueError, match=message):
        make_classifier(**params).fit(*iris)


def test_a_module_of_the_wrong_type_is_named(iris):
    with pytest.raises(TypeError, match="module='mlp' is not valid"):
        NeuralNetClassifier("mlp", max_epochs=1, verbose=0).fit(*iris)


@pytest.mark.parametrize("params, message", [
    ({"criterion": "ce"}, "criterion='ce' is not valid"),
    ({"optimizer": "sgd"}, "optimizer='sgd' is not valid"),
    ({"train_split": 0.2}, "train_split=0.2 is not valid"),
    ({"callbacks": EpochScoring("accuracy")}, "callbacks=.* is not valid"),
])
def test_components_of_the_wrong_type_are_named(iris, params, message):
    with pytest.raises(TypeError, match=message):
        make_classifier(**params).fit(*iris)


def test_callbacks_disable_runs_no_callback(iris, capsys):
    net = make_classifier(callbacks="disable", verbose=1).fit(*iris)
    assert net.callbacks_ == [] and capsys.readouterr().out == ""
    assert "train_loss" not in net.history[-1] and len(net.history) == 3


def test_batch_size_minus_one_and_numpy_integers_are_accepted(iris):
    net = make_classifier(batch_size=-1, max_epochs=np.int64(1)).fit(*iris)
    assert net.history[-1, "train_batch_count"] == 1
    make_classifier(iterator_valid__batch_size=np.int32(7)).fit(*iris).predict(iris[0])


def test_device_none_leaves_tensors_where_they_are(iris):
    X, y = iris
    net = make_classifier(device=None).fit(torch.from_numpy(X), torch.from_numpy(y))
    assert net.predict(X).shape == (150,)


def test_warm_start_and_partial_fit_continue_training(iris):
    net = make_classifier(warm_start=True).fit(*iris)
    module = net.module_
    net.fit(*iris)
    assert net.module_ is module and len(net.history) == 6
    net.partial_fit(*iris)
    assert len(net.history) == 9
    cold = make_classifier().fit(*iris)
    first = cold.module_
    cold.fit(*iris)
    assert cold.module_ is not first and len(cold.history) == 3


def test_compile_flag_wraps_the_module(iris):
    net = make_classifier(compile=True, compile__backend="eager", max_epochs=1)
    net.fit(*iris)
    assert hasattr(net.module_, "_orig_mod")
    assert net.predict(iris[0]).shape == (150,)


def test_iterator_valid_shuffle_warns(iris):
    with pytest.warns(UserWarning, match="iterator_valid__shuffle"):
        make_classifier(iterator_valid__shuffle=True, max_epochs=1).fit(*iris)


def test_parameters_of_a_disabled_callback_are_refused():
    net = NeuralNetClassifier(IrisMLP, callbacks__print_log=None, callbacks__print_log__sink=print)
    with pytest.raises(ValueError, match="callbacks__print_log__sink"):
        net.initialize()


def test_print_log_runs_after_user_callbacks():
    class Recorder(Callback):
        pass

    net = NeuralNetClassifier(IrisMLP, callbacks=[Recorder()]).initialize()
    assert [name for name, _ in net.callbacks_][-2:] == ["Recorder", "print_log"]
