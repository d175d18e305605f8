"""Components created in initialize_*: registered, moved, trained, routed; set elsewhere they raise."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bridge import NeuralNetRegressor
from bridge.exceptions import SkorchAttributeError
from bridge.toy import MLPModule


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4)).astype(np.float32)
    return X, (X @ np.arange(1, 5, dtype=np.float32)).reshape(-1, 1)


class TwoModules(NeuralNetRegressor):
    """Averages module_ and module2_; module2_ is built from module2__* parameters."""

    def initialize_module(self):
        super().initialize_module()
        self.module2_ = MLPModule(input_units=4, output_units=1, **self.get_params_for("module2"))
        return self

    def infer(self, x, **fit_params):
        x = torch.as_tensor(x)
        return 0.5 * (self.module_(x) + self.module2_(x))


def _net(cls=TwoModules, **kwargs):
    return cls(MLPModule, module__input_units=4, module__output_units=1, max_epochs=2, lr=0.05,
               train_split=None, verbose=0, **kwargs)


def test_extra_module_is_registered_and_trained_by_the_default_optimizer(data):
    net = _net(module2__hidden_units=5).initialize()
    assert net._modules == ["module", "module2"] and "module2" in net.prefixes_
    assert "module2_" in net.cuda_dependent_attributes_
    assert net.module2_.sequential[0].out_features == 5  # module2__* reached it
    before = copy.deepcopy(net.module2_.state_dict())
    net.partial_fit(*data)
    changed = [not torch.equal(before[k], v) for k, v in net.module2_.state_dict().items()]
    assert all(changed)


def test_extra_module_follows_train_and_eval_mode(data):
    net = _net().fit(*data)
    net._set_training(True)
    assert net.module2_.training
    net.predict(data[0])
    assert not net.module2_.training


def test_set_params_on_extra_prefix_reinitializes(data):
    net = _net().initialize()
    first = net.module2_
    net.set_params(module2__hidden_units=3)
    assert net.module2_ is not first and net.module2_.sequential[0].out_features == 3


def test_unknown_prefix_still_rejected():
    with pytest.raises(ValueError, match="module3__x"):
        _net(module3__x=1).initialize()


def test_extra_optimizer_steps(data):
    class TwoOptimizers(TwoModules):
        def initialize_optimizer(self):
            self.optimizer_ = torch.optim.SGD(self.module_.parameters(), lr=self.lr)
            self.optimizer2_ = torch.optim.SGD(self.module2_.parameters(), lr=self.lr)
            return self

    net = _net(TwoOptimizers).initialize()
    assert net._optimizers == ["optimizer", "optimizer2"]
    before = copy.deepcopy(net.module2_.state_dict())
    net.partial_fit(*data)
    assert not torch.equal(before["sequential.0.weight"], net.module2_.sequential[0].weight)


def test_component_outside_initialize_raises():
    class Early(NeuralNetRegressor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.extra_ = torch.nn.Linear(1, 1)

    with pytest.raises(SkorchAttributeError, match="extra_"):
        Early(MLPModule)


def test_component_without_underscore_raises():
    class NoUnderscore(NeuralNetRegressor):
        def initialize_module(self):
            super().initialize_module()
            self.extra = torch.nn.Linear(1, 1)
            return self

    with pytest.raises(SkorchAttributeError, match="'extra_'"):
        NoUnderscore(MLPModule).initialize()


def test_deleting_unregisters():
    net = _net().initialize()
    del net.module2_
    assert "module2" not in net._modules and "module2" not in net.prefixes_


def test_plain_attributes_are_not_parameters(data):
    net = _net()
    net.note = "experiment 3"  # neither checked nor a parameter
    net.fit(*data)
    assert "note" not in net.get_params()
