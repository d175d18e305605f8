"""GradientNormClipping on a real net: the gradient norm seen by the optimizer step."""

from __future__ import annotations

import pytest
import torch

from bridge import NeuralNetClassifier
from bridge.callbacks.base import Callback
from bridge.callbacks.regularization import GradientNormClipping
from tests.net.callbacks.conftest import MLP


class GradNorms(Callback):
    """Record the joint gradient norm (of the given order) after the other callbacks ran."""

    def __init__(self, norm_type=2.0):
        self.norm_type = norm_type

    def on_train_begin(self, net, **kwargs):
        self.norms_ = []

    def on_grad_computed(self, net, named_parameters, **kwargs):
        grads = [p.grad.detach().flatten() for _, p in named_parameters if p.grad is not None]
        self.norms_.append(torch.linalg.vector_norm(torch.cat(grads), ord=self.norm_type).item())


@pytest.mark.parametrize("norm_type, ord_", [(2, 2.0), ("inf", float("inf")), (1, 1.0)])
def test_clipped_norm_is_bounded(iris, norm_type, ord_):
    X, y = iris
    recorder = GradNorms(ord_)
    clip = GradientNormClipping(gradient_clip_value=0.01, gradient_clip_norm_type=norm_type)
    NeuralNetClassifier(
        MLP,
        lr=0.1,
        max_epochs=2,
        batch_size=32,
        verbose=0,
        train_split=None,
        callbacks=[clip, recorder],
    ).fit(X, y)
    assert len(recorder.norms_) == 10
    assert max(recorder.norms_) <= 0.01 * (1 + 1e-4)


def test_no_clipping_without_value(iris):
    X, y = iris
    recorder = GradNorms()
    NeuralNetClassifier(
        MLP,
        lr=0.1,
        max_epochs=1,
        batch_size=32,
        verbose=0,
        train_split=None,
        callbacks=[GradientNormClipping(), recorder],
    ).fit(X, y)
    assert max(recorder.norms_) > 0.01


def test_invalid_norm_type(iris):
    X, y = iris
    net = NeuralNetClassifier(
        MLP,
        max_epochs=1,
        verbose=0,
        train_split=None,
        callbacks=[GradientNormClipping(1.0, gradient_clip_norm_type="fro")],
    )
    with pytest.raises(ValueError, match="fro"):
        net.fit(X, y)


def test_a_clip_value_of_zero_stops_every_update(iris):
    net = NeuralNetClassifier(MLP, max_epochs=1, verbose=0, train_split=None,
                              callbacks=[GradientNormClipping(gradient_clip_value=0)]).initialize()
    before = [p.detach().clone() for p in net.module_.parameters()]
    net.partial_fit(*iris)
    assert all(torch.equal(b, p) for b, p in zip(before, net.module_.parameters()))


@pytest.mark.parametrize("value", [-1.0, "1", True])
def test_a_clip_value_that_is_not_positive_is_named(iris, value):
    net = NeuralNetClassifier(MLP, max_epochs=1, verbose=0, train_split=None,
                              callbacks=[GradientNormClipping(gradient_clip_value=value)])
    with pytest.raises(ValueError, match=f"gradient_clip_value={value!r} is not valid"):
        net.fit(*iris)
