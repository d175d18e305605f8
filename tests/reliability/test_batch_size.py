"""Catalogue: a graph exported with a fixed batch size runs at that size only, as in onnxruntime.

Decision (see ``bridge.onnx.importer.check_inputs``): bridge honours every declared fixed
size, the batch axis included. Nothing proves an exported graph batch-independent: the
TorchScript exporter bakes the export's batch into reshape targets, so a graph exported at
batch 2 and called at batch 4 would return 2 rows of twice the width without the check.
Graphs that declare a symbolic batch axis (skl2onnx's, exports with dynamic axes) run at
any batch size, and a single row given as a vector is still accepted where the declared
batch is free or 1 (tree ensembles).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression

import bridge
from bridge.errors import InvalidInputError


class Flatten(torch.nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1) * 2


def _export(dynamic: bool) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Flatten(), (torch.randn(2, 3, 4),), buffer, dynamo=False,
                          opset_version=17, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}} if dynamic else None)
    return onnx.load_from_string(buffer.getvalue())


def test_fixed_batch_export_called_with_another_batch_names_input_and_shapes():
    module = bridge.from_onnx(_export(dynamic=False))
    with pytest.raises(InvalidInputError, match=r"graph input 'x' has shape \(2, 3, 4\); got "
                                         r"\(4, 3, 4\) \(axis 0 differs\); the graph was "
                                         "exported with a fixed batch size.*dynamic_axes"):
        module(torch.randn(4, 3, 4))


class ConvNorm(torch.nn.Module):
    """A ConvNeXt-like block whose output is flattened per sample."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.norm = torch.nn.LayerNorm(4)

    def forward(self, x):
        y = self.norm(self.conv(x).permute(0, 2, 3, 1))
        return y.reshape(x.shape[0], -1).mean(1)


def test_dynamo_export_without_dynamic_shapes_is_refused_at_another_batch():
    pytest.importorskip("onnxscript")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(ConvNorm().eval(), (torch.randn(2, 3, 5, 5),), dynamo=True,
                                    verbose=False)
    module = bridge.from_onnx(program.model_proto)
    with pytest.raises(InvalidInputError, match=r"'x' has shape \(2, 3, 5, 5\); got "
                                                r"\(4, 3, 5, 5\) \(axis 0 differs\).*fixed "
                                                "batch size"):
        module(torch.randn(4, 3, 5, 5))


def test_fixed_batch_export_runs_at_its_own_batch():
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(bridge.from_onnx(_export(dynamic=False))(x), x.reshape(2, -1) * 2)


@pytest.mark.parametrize("batch", [1, 4, 9])
def test_dynamic_batch_export_runs_at_any_batch(batch):
    x = torch.randn(batch, 3, 4)
    torch.testing.assert_close(bridge.from_onnx(_export(dynamic=True))(x),
                               x.reshape(batch, -1) * 2)


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.rand(40, 3).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] > 1).astype(np.int64)


@pytest.mark.parametrize("batch", [1, 7, 40])
def test_skl2onnx_graph_exported_from_one_row_runs_at_any_batch(data, batch):
    X, y = data
    estimator = LogisticRegression().fit(X, y)
    module = bridge.from_onnx(to_onnx(estimator, X[:1]))
    labels, _ = module(torch.from_numpy(X[:batch]))
    assert labels.tolist() == estimator.predict(X[:batch]).tolist()


def test_tree_ensemble_takes_one_row_as_a_vector(data):
    X, y = data
    forest = RandomForestRegressor(n_estimators=3, max_depth=3, random_state=0).fit(X, y)
    module = bridge.from_onnx(to_onnx(forest, X[:1]))
    row = module(torch.from_numpy(X[0]))
    np.testing.assert_allclose(row.numpy().reshape(-1), forest.predict(X[:1]), rtol=1e-5)


def test_one_row_as_a_vector_is_refused_for_a_fixed_batch_above_one():
    module = bridge.from_onnx(_export(dynamic=False))
    with pytest.raises(InvalidInputError, match=r"got \(3, 4\), one row of a fixed batch of 2"):
        module(torch.randn(3, 4))
