"""bridge's converters for Isomap's and the iterative decompositions' transform (NMF,
MiniBatchNMF, LatentDirichletAllocation): new data, float64, onnxruntime, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from sklearn.decomposition import NMF, LatentDirichletAllocation, MiniBatchNMF
from sklearn.manifold import Isomap

import bridge
from bridge.errors import UnsupportedEstimatorError
from tests.parity import assert_parity, run_onnxruntime
from tests.sklearn.cases import get_dataset


def _new_rows(width: int, scale: float = 2.0) -> np.ndarray:
    return np.random.default_rng(7).normal(scale=scale, size=(800, width))


def _in_onnxruntime(model, X):
    graph = model.onnx_model
    return run_onnxruntime(graph, {graph.graph.input[0].name: X.astype(model._input_spec.dtype)})


@pytest.mark.parametrize("n_neighbors", [3, 5, 12])
def test_isomap_new_rows_float64_and_onnxruntime(n_neighbors):
    X = get_dataset("features").X
    isomap = Isomap(n_neighbors=n_neighbors, n_components=3).fit(X)
    new = _new_rows(X.shape[1])
    expected = isomap.transform(new)
    scale = np.abs(expected).max()
    exact = bridge.from_sklearn(isomap, dtype=np.float64)
    assert_parity(exact.transform(new), expected, rtol=1e-10, atol=1e-10 * scale,
                  what="float64")
    assert_parity(_in_onnxruntime(exact, new)[0], expected, rtol=1e-10, atol=1e-10 * scale,
                  what="onnxruntime float64")
    single = bridge.from_sklearn(isomap)
    assert_parity(single.transform(new), expected, rtol=1e-4, atol=1e-5 * scale,
                  what="float32")


def test_isomap_refuses_radius_and_other_metrics_by_name():
    X = get_dataset("features").X
    with pytest.raises(UnsupportedEstimatorError, match="radius=3.0"):
        bridge.from_sklearn(Isomap(n_neighbors=None, radius=3.0).fit(X))
    with pytest.raises(UnsupportedEstimatorError, match="metric='manhattan'"):
        bridge.from_sklearn(Isomap(metric="manhattan").fit(X))


def _positive(seed: int, rows: int) -> np.ndarray:
    return np.abs(np.random.default_rng(seed).normal(scale=2.0, size=(rows, 6)))


@pytest.mark.parametrize("factory", [
    lambda: NMF(3, max_iter=500, random_state=0),
    lambda: NMF(4, alpha_W=0.01, l1_ratio=0.5, max_iter=500, random_state=0),
    lambda: NMF(3, solver="mu", max_iter=500, random_state=0),
    lambda: NMF(3, solver="mu", alpha_W=0.01, max_iter=400, random_state=0),
    lambda: MiniBatchNMF(3, random_state=0),
    lambda: MiniBatchNMF(3, alpha_W=0.01, l1_ratio=0.3, random_state=0),
], ids=["nmf", "nmf-penalised", "nmf-mu", "nmf-mu-penalised", "minibatch",
        "minibatch-penalised"])
def test_nmf_follows_scikit_learn_iterations_on_the_same_batch(factory):
    model_input = _positive(0, 200)
    estimator = factory().fit(model_input)
    new = _positive(1, 300)
    expected = estimator.transform(new)
    scale = np.abs(expected).max()
    exact = bridge.from_sklearn(estimator, dtype=np.float64)
    # the same stopping rule on the same batch: the same iterations, float64 rounding apart
    assert_parity(exact.transform(new), expected, rtol=1e-9, atol=1e-9 * scale,
                  what="float64")
    assert_parity(_in_onnxruntime(exact, new)[0], expected, rtol=1e-9, atol=1e-9 * scale,
                  what="onnxruntime float64")
    single = bridge.from_sklearn(estimator)
    assert_parity(single.transform(new), expected, rtol=1e-4, atol=1e-4 * scale,
                  what="float32")


def test_nmf_rows_scored_alone_converge_to_the_batch_solution():
    # scikit-learn's stopping rule reads the whole batch; a row alone stops elsewhere but
    # reaches the same non-negative least-squares solution within the solver's tolerance
    estimator = NMF(3, max_iter=500, random_state=0).fit(_positive(0, 200))
    new = _positive(1, 50)
    model = bridge.from_sklearn(estimator, dtype=np.float64)
    alone = np.vstack([model.transform(new[i:i + 1]) for i in range(len(new))])
    expected = estimator.transform(new)
    assert_parity(alone, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max(),
                  what="one row at a time")


def test_nmf_refusals_name_the_setting():
    X = _positive(0, 100)
    for estimator, match in [(NMF(3, solver="mu", beta_loss=1, max_iter=300),
                              "beta_loss=1"),
                             (NMF(3, shuffle=True, random_state=0), "shuffle=True"),
                             (MiniBatchNMF(3, beta_loss="kullback-leibler"),
                              "beta_loss='kullback-leibler'")]:
        with pytest.raises(UnsupportedEstimatorError, match=match):
            bridge.from_sklearn(estimator.fit(X))


def _counts(seed: int, rows: int, rate: float = 1.5) -> np.ndarray:
    return np.random.default_rng(seed).poisson(rate, size=(rows, 20)).astype(np.float64)


@pytest.mark.parametrize("factory", [
    lambda: LatentDirichletAllocation(3, random_state=0),
    lambda: LatentDirichletAllocation(5, learning_method="online", doc_topic_prior=0.5,
                                      random_state=0),
], ids=["batch", "online"])
def test_lda_follows_each_documents_iterations(factory):
    estimator = factory().fit(_counts(0, 200))
    new = _counts(1, 300, rate=2.0)
    new[:5] = 0.0  # empty documents stay at the prior
    expected = estimator.transform(new)
    exact = bridge.from_sklearn(estimator, dtype=np.float64)
    assert_parity(exact.transform(new), expected, rtol=1e-9, atol=1e-12, what="float64")
    assert_parity(_in_onnxruntime(exact, new)[0], expected, rtol=1e-9, atol=1e-12,
                  what="onnxruntime float64")
    # each document stops on its own: one row at a time gives the same numbers
    alone = np.vstack([exact.transform(new[i:i + 1]) for i in range(8)])
    assert_parity(alone, expected[:8], rtol=1e-9, atol=1e-12, what="one row at a time")
    single = bridge.from_sklearn(estimator)
    assert_parity(single.transform(new), expected, rtol=0, atol=2e-4, what="float32")


def test_lda_digamma_is_scikit_learns():
    from scipy.special import psi
    from skl2onnx.common._topology import Scope

    from bridge.sklearn.converters.lda import add_psi
    from bridge.sklearn.converters.nmf import _Body

    body = _Body(Scope("psi"), TensorProto.DOUBLE)
    output = add_psi(body, "x")
    graph = helper.make_graph(
        body.nodes, "psi", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None])],
        [helper.make_tensor_value_info(output, TensorProto.DOUBLE, [None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = np.concatenate([[1e-7, 1e-6, 2e-6, 0.01, 0.5, 1.0], np.geomspace(1e-3, 1e4, 200)])
    (values,) = run_onnxruntime(model, {"x": x})
    keep = x > 1e-6
    # scikit-learn's series stops at x**-6 above 6: digamma within 1e-8 (the LDA tests above
    # show the graph's steps equal scikit-learn's own)
    assert_parity(values[keep], psi(x[keep]), rtol=1e-8, atol=1e-8, what="psi")
    np.testing.assert_allclose(values[~keep], -0.5772156649015329 - 1.0 / x[~keep])
