"""save_params/load_params (torch and safetensors), pickling, trim_for_prediction and CUDA moves."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from bridge import NeuralNetClassifier
from bridge.callbacks import Checkpoint
from bridge.errors import NotFittedError
from bridge.net.persistence import TrimmedNetError
from tests.net.conftest import IrisMLP


def fitted(iris, **kwargs):
    params = dict(max_epochs=3, lr=0.1, verbose=0, train_split=None)
    params.update(kwargs)
    return NeuralNetClassifier(IrisMLP, **params).fit(*iris)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_save_and_load_params_round_trip(iris, tmp_path, suffix):
    X, y = iris
    net = fitted(iris, optimizer=torch.optim.Adam)
    files = dict(f_params=tmp_path / f"params{suffix}", f_criterion=tmp_path / f"criterion{suffix}",
                 f_history=tmp_path / "history.json")
    net.save_params(f_optimizer=tmp_path / "optimizer.pt", **files)
    fresh = NeuralNetClassifier(IrisMLP, optimizer=torch.optim.Adam, verbose=0).initialize()
    fresh.load_params(f_optimizer=tmp_path / "optimizer.pt", **files)
    np.testing.assert_allclose(fresh.predict_proba(X), net.predict_proba(X))
    assert fresh.history == net.history
    assert fresh.optimizer_.state_dict()["state"][0]["step"] == net.optimizer_.state_dict()["state"][0]["step"]


def test_safetensors_flag_and_file_objects(iris):
    net = fitted(iris)
    buffer = io.BytesIO()
    net.save_params(f_params=buffer, use_safetensors=True)
    buffer.seek(0)
    fresh = NeuralNetClassifier(IrisMLP, verbose=0).initialize()
    fresh.load_params(f_params=buffer, use_safetensors=True)
    np.testing.assert_allclose(fresh.predict_proba(iris[0]), net.predict_proba(iris[0]))
    with pytest.raises(ValueError, match="safetensors"):
        net.save_params(f_optimizer=io.BytesIO(), use_safetensors=True)


def test_load_params_needs_an_initialized_net_and_known_targets(iris, tmp_path):
    net = fitted(iris)
    net.save_params(f_params=tmp_path / "p.pt")
    with pytest.raises(NotFittedError, match="initialize"):
        NeuralNetClassifier(IrisMLP).load_params(f_params=tmp_path / "p.pt")
    with pytest.raises(TypeError, match="f_<part>"):
        net.save_params(params=tmp_path / "x.pt")
    with pytest.raises(TypeError, match="f_module"):
        net.save_params(f_params=tmp_path / "a.pt", f_module=tmp_path / "b.pt")


def test_load_params_refuses_pickled_code(iris, tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("should never run",))

    path = tmp_path / "evil.pt"
    torch.save({"weight": Evil()}, path)
    net = fitted(iris)
    with pytest.raises(pickle.UnpicklingError):
        net.load_params(f_params=path)


def test_load_params_names_a_file_that_holds_no_tensors(iris, tmp_path):
    path = tmp_path / "notes.pt"
    path.write_bytes(b"not a tensor file")
    with pytest.raises(pickle.UnpicklingError, match="notes.pt' is not a file of tensors") as caught:
        fitted(iris).load_params(f_params=path)
    assert "weights_only" not in str(caught.value)  # no advice to unpickle untrusted code


def test_load_params_from_checkpoint(iris, tmp_path):
    checkpoint = Checkpoint(dirname=str(tmp_path), monitor=None)
    net = fitted(iris, callbacks=[checkpoint])
    fresh = NeuralNetClassifier(IrisMLP, verbose=0).initialize()
    fresh.load_params(checkpoint=checkpoint)
    np.testing.assert_allclose(fresh.predict_proba(iris[0]), net.predict_proba(iris[0]))


def test_pickle_round_trip_keeps_predictions_and_training(iris):
    X, y = iris
    net = fitted(iris)
    loaded = pickle.loads(pickle.dumps(net))
    np.testing.assert_allclose(loaded.predict_proba(X), net.predict_proba(X))
    assert loaded.history == net.history
    loaded.partial_fit(X, y)
    assert len(loaded.history) == 6


def test_trim_for_prediction(iris):
    X, y = iris
    net = fitted(iris)
    before = net.predict_proba(X)
    net.trim_for_prediction()
    assert net.optimizer_ is None and net.criterion_ is None and len(net.history) == 0
    np.testing.assert_allclose(net.predict_proba(X), before)
    with pytest.raises(TrimmedNetError):
        net.fit(X, y)
    assert pickle.loads(pickle.dumps(net)).predict(X).shape == (150,)


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a CUDA-pickled net on a CPU-only machine")
def test_cuda_pickle_loads_on_cpu_with_a_warning(iris):
    net = fitted(iris)
    state = net.__getstate__()
    state["__bridge_device__"] = "cuda"
    clone = NeuralNetClassifier.__new__(NeuralNetClassifier)
    with pytest.warns(UserWarning, match="CUDA is not available"):
        clone.__setstate__(state)
    assert clone.device == "cpu"
    np.testing.assert_allclose(clone.predict_proba(iris[0]), net.predict_proba(iris[0]))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_and_prediction_on_cuda(iris):
    X, y = iris
    net = fitted(iris, device="cuda")
    assert next(net.module_.parameters()).device.type == "cuda"
    proba = net.predict_proba(X)
    assert isinstance(proba, np.ndarray) and proba.shape == (150, 3)
    loaded = pickle.loads(pickle.dumps(net))
    np.testing.assert_allclose(loaded.predict_proba(X), proba, rtol=1e-5)
    net.set_params(device="cpu")
    assert next(net.module_.parameters()).device.type == "cpu"
