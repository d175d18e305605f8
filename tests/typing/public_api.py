"""A client of bridge's public API, checked by ``mypy --strict`` (never run): each name
``bridge/__init__`` exports must give type checkers the types written here."""

from __future__ import annotations

from typing import Any, assert_type

import numpy as np
import onnx
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

import bridge
from bridge.onnx.importer import OnnxGraphModule
from bridge.session import ModelMetadata, NodeArg
from bridge.sklearn.finetune import TrainableModel
from bridge.sklearn.model import ConvertedModel


def converts(X: np.ndarray, y: np.ndarray) -> None:
    estimator = LogisticRegression().fit(X, y)
    assert_type(bridge.from_sklearn(estimator), ConvertedModel)
    assert_type(bridge.from_sklearn(estimator, X[:2], dtype=np.float64), ConvertedModel)
    assert_type(bridge.from_sklearn(estimator, trainable=True), TrainableModel)
    assert_type(bridge.from_onnx("model.onnx"), OnnxGraphModule)
    assert_type(bridge.to_onnx(estimator, "model.onnx", lowered=True), onnx.ModelProto)


def serves(feed: dict[str, np.ndarray]) -> None:
    session = bridge.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
    assert_type(session.run(None, feed), list[Any])
    assert_type(session.get_inputs(), list[NodeArg])
    assert_type(session.get_outputs()[0].shape, list[int | str | None])
    assert_type(session.get_modelmeta(), ModelMetadata)
    assert_type(session.get_providers(), list[str])


def trains(X: np.ndarray, y: np.ndarray) -> None:
    net = bridge.NeuralNetClassifier(nn.Linear(4, 3), criterion=nn.CrossEntropyLoss)
    net.fit(X, y)
    assert_type(net.to_onnx("net.onnx"), onnx.ModelProto)
    regressor = bridge.NeuralNetRegressor(nn.Linear(4, 1))
    assert_type(regressor.predict(torch.zeros(2, 4)), np.ndarray)
    assert isinstance(bridge.errors.BridgeError("x"), Exception)
