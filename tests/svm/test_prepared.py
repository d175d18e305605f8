"""The per-call C path of the SVM operators: the RBF kernel's elementwise steps in C, tables
checked once per buffer state (bridge/svm/native.py), the column-major layout of support
vectors and pair weights.

Every eager CPU result must agree bit for bit with the torch path the same module runs under
tracing, scripting, autograd or without the extension; tables must follow every change of
the module's tensors, and C must only see tensors the tables own or the call made.
"""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch
from onnx import TensorProto
from sklearn.svm import SVR, NuSVR, OneClassSVM

import bridge
from bridge.onnx.ops.ml import svm as svm_ops
from bridge.onnx.ops.ml.svm import OnnxSVMClassifier, OnnxSVMRegressor
from bridge.svm import native
from tests.onnx.ops.ml.test_svm import svm_attributes
from tests.parity import ML_DOMAIN, single_node_model
from tests.svm.test_native import Counting, fitted_svc, pairs_of, svc_module, without_c

pytestmark = pytest.mark.filterwarnings("ignore:The `probability` parameter:FutureWarning")
built = pytest.mark.skipif(native._svm is None, reason="the C loops are not built here")


def torch_exponent(dots, x_squared, v_squared, gamma):
    """What SvmKernel.forward computes before its exponential."""
    squared = (x_squared[:, None] + v_squared - 2.0 * dots).clamp_min(0.0)
    return -gamma * squared


@built
@pytest.mark.parametrize("gamma", [0.05, 1.0 / 3.0, 7.25])
def test_rbf_exponent_matches_the_torch_steps_bit_for_bit(gamma):
    rng = np.random.default_rng(3)
    dots = torch.from_numpy(rng.normal(scale=4.0, size=(37, 53)).astype(np.float32))
    x_squared = torch.from_numpy(rng.uniform(0, 9, size=37).astype(np.float32))
    v_squared = torch.from_numpy(rng.uniform(0, 9, size=53).astype(np.float32))
    x_squared[0] = 0.0  # with dots 0: exactly 0 before the clamp
    dots[0, :5] = 0.0
    dots[1] = (x_squared[1] + v_squared) / 2.0 + 1e-3  # negative before the clamp
    dots[2, 0], dots[2, 1], dots[2, 2] = float("nan"), float("inf"), float("-inf")
    x_squared[3] = float("inf")
    expected = torch_exponent(dots, x_squared, v_squared, gamma)
    actual = native.rbf_exponent(dots.clone(), x_squared, v_squared, gamma)
    assert torch.equal(actual.isnan(), expected.isnan())
    assert torch.equal(actual.nan_to_num(7.0), expected.nan_to_num(7.0))
    assert (actual[1] == 0).all()


@built
def test_rbf_exponent_writes_in_place_and_copies_strided_input():
    dots, x_squared, v_squared = torch.rand(4, 6), torch.rand(4), torch.rand(6)
    expected = torch_exponent(dots, x_squared, v_squared, 0.5)
    target = dots.clone()
    assert native.rbf_exponent(target, x_squared, v_squared, 0.5) is target
    assert torch.equal(target, expected)
    strided = dots.t().contiguous().t()  # not contiguous: a copy is written, not misread
    assert torch.equal(native.rbf_exponent(strided, x_squared, v_squared, 0.5), expected)


@built
def test_rbf_exponent_refuses_bad_arguments():
    dots, x_squared, v_squared = torch.rand(4, 6), torch.rand(4), torch.rand(6)
    with pytest.raises(ValueError, match="dots must be a 2-D torch.float32"):
        native.rbf_exponent(dots.double(), x_squared, v_squared, 0.5)
    with pytest.raises(ValueError, match="need 4 row and 6 vector norms; got 4 and 5"):
        native.rbf_exponent(dots, x_squared, v_squared[:5], 0.5)
    with pytest.raises(ValueError, match="need 4 row and 6 vector norms; got 3 and 6"):
        native.rbf_exponent(dots, x_squared[:3], v_squared, 0.5)
    with pytest.raises(ValueError, match="x_squared must be a 1-D torch.float32"):
        native.rbf_exponent(dots, x_squared.int(), v_squared, 0.5)
    with pytest.raises(ValueError, match="expected a CPU tensor"):
        native.rbf_exponent(dots.numpy(), x_squared, v_squared, 0.5)


def regressor_module(estimator, x) -> OnnxSVMRegressor:
    attributes = svm_attributes(estimator, x)
    model = bridge.from_onnx(single_node_model(
        "SVMRegressor", {"x": x}, attributes=attributes, domain=ML_DOMAIN, ml_opset=1,
        output_types={"y": TensorProto.FLOAT}))
    (module,) = [m for m in model.modules() if isinstance(m, OnnxSVMRegressor)]
    return module


def regression_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    return x, (x @ rng.normal(size=6) + np.sin(x[:, 0])).astype(np.float32)


def batches(x: np.ndarray) -> list[torch.Tensor]:
    """One row, a few, all, and rows with a NaN and an infinity."""
    odd = np.concatenate([x[:3], np.full((1, x.shape[1]), np.nan, np.float32),
                          np.full((1, x.shape[1]), np.inf, np.float32)])
    return [torch.from_numpy(np.ascontiguousarray(rows)) for rows in (x[:1], x[:7], x, odd)]


@built
@pytest.mark.parametrize("estimator", [SVR(), NuSVR(gamma=0.3), OneClassSVM(gamma=0.5),
                                       SVR(kernel="poly")], ids=lambda e: type(e).__name__)
def test_svm_regressor_matches_its_torch_path_bit_for_bit(monkeypatch, estimator):
    x, y = regression_data()
    module = regressor_module(estimator.fit(x, y), x)
    for tensor in batches(x):
        with torch.no_grad():
            assert module._native_runs(tensor) == (estimator.kernel == "rbf")
            actual = module(tensor)
            expected = without_c(monkeypatch, module, tensor)
        assert torch.equal(actual.nan_to_num(-9.0), expected.nan_to_num(-9.0))
        assert torch.equal(module(tensor).nan_to_num(-9.0), expected.nan_to_num(-9.0))


@built
def test_regressor_runs_the_c_step_only_in_eager_cpu_calls_without_autograd(monkeypatch):
    x, y = regression_data(1)
    module = regressor_module(SVR().fit(x, y), x)
    counting = Counting(native._svm)
    monkeypatch.setattr(native, "_svm", counting)
    tensor = torch.from_numpy(x[:5])
    with torch.no_grad():
        module(tensor)
    assert counting.calls == ["rbf_exponent"]
    inputs = tensor.clone().requires_grad_(True)
    module(inputs).sum().backward()
    assert counting.calls == ["rbf_exponent"] and inputs.grad.abs().sum() > 0
    torch.jit.trace(module, (tensor,), check_trace=False)
    torch.jit.script(module)(tensor)
    assert counting.calls == ["rbf_exponent"]


@built
def test_regressor_tables_follow_edits_replacements_and_loads(monkeypatch):
    x, y = regression_data(2)
    module = regressor_module(SVR().fit(x, y), x)
    tensor = torch.from_numpy(x[:9])
    with torch.no_grad():
        before = module(tensor)
        module.kernel.vectors.mul_(1.25)  # in place: a new version
        edited = module(tensor)
        assert not torch.equal(edited, before)
        assert torch.equal(edited, without_c(monkeypatch, module, tensor))
        module.kernel.vectors = module.kernel.vectors * 0.5  # another tensor
        replaced = module(tensor)
        assert torch.equal(replaced, without_c(monkeypatch, module, tensor))
        state = {k: v.clone() for k, v in module.state_dict().items()}
        state["kernel.vectors"].add_(0.125)
        module.load_state_dict(state)
        assert torch.equal(module(tensor), without_c(monkeypatch, module, tensor))
        assert not torch.equal(module(tensor), replaced)


@built
def test_inference_mode_and_inference_tensors(monkeypatch):
    estimator, x = fitted_svc(3, "rbf", True)
    tensor = torch.from_numpy(x[:8])
    module = svc_module(estimator, x)
    with torch.no_grad():
        expected = without_c(monkeypatch, module, tensor)
    with torch.inference_mode():
        label, scores = module(tensor)
        again = module(tensor)
    assert torch.equal(label, expected[0]) and torch.equal(scores, expected[1])
    assert torch.equal(again[1], expected[1])
    assert not module._prepared._state[2].weights64.is_inference()  # kept tables: ordinary
    with torch.inference_mode():  # a module made here holds inference tensors
        made_here = svc_module(estimator, x)
        assert made_here.pair_weights.is_inference()
        for _ in range(2):  # (no version counters: fresh tables each call)
            assert torch.equal(made_here(tensor)[1], expected[1])


@built
def test_c_sees_only_tensors_the_tables_own():
    estimator, x = fitted_svc(4, "rbf", True)
    module = svc_module(estimator, x)
    tables = module._native_tables(torch.from_numpy(x[:1]))
    buffers = {t.untyped_storage().data_ptr() for t in module.buffers()}
    assert not buffers & {t.untyped_storage().data_ptr() for t in tables.owned}
    assert tables.addresses == [t.data_ptr() for t in tables.owned]
    with torch.no_grad():
        module.rho.data = torch.zeros(1000)  # bypasses the version counter: tables stay valid
        label, scores = module(torch.from_numpy(x[:3]))
    assert scores.shape == (3, 4) and torch.isfinite(scores).all()


@built
def test_classifier_tables_refuse_bad_tables_before_c_runs():
    rows, columns = pairs_of(3)
    weights, rho, labels = torch.rand(5, 3), torch.zeros(3), torch.arange(3)
    a, b = torch.ones(3), torch.zeros(3)
    assert native.ClassifierTables.build(weights, rho, rows, columns, labels, a, b) is not None
    assert native.ClassifierTables.build(weights.double(), rho, rows, columns, labels, a,
                                         b) is None
    with pytest.raises(IndexError, match="outside 0..2"):
        native.ClassifierTables(weights, rho, rows, torch.tensor([1, 2, 3]), labels, a, b)
    with pytest.raises(IndexError, match="outside 0..2"):
        native.ClassifierTables(weights, rho, torch.tensor([0, -1, 1]), columns, labels, a, b)
    with pytest.raises(ValueError, match="1 or 3 values"):
        native.ClassifierTables(weights, torch.zeros(2), rows, columns, labels, a, b)
    with pytest.raises(ValueError, match="1 or 3 values"):
        native.ClassifierTables(weights, rho, rows, columns, labels, torch.ones(2), b)
    with pytest.raises(ValueError, match="one entry per pair"):
        native.ClassifierTables(weights, rho, rows[:2], columns[:2], labels, a, b)
    with pytest.raises(ValueError, match="labels must be a 1-D torch.int64"):
        native.ClassifierTables(weights, rho, rows, columns, labels.int(), a, b)
    tables = native.ClassifierTables(weights, rho, rows, columns, labels, a[:0], b[:0])
    with pytest.raises(ValueError, match="no Platt coefficients"):
        tables.probabilities(torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="unexpected kernel sums"):
        tables.decide(torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="unexpected kernel sums"):
        tables.decide(torch.zeros(2, 3))


def test_converter_lays_support_vectors_and_pair_weights_out_by_column():
    estimator, x = fitted_svc(3, "rbf", True)
    module = svc_module(estimator, x)
    for tensor in (module.kernel.vectors, module.pair_weights):
        assert tensor.t().is_contiguous() and not tensor.is_contiguous()
    for twin in (copy.deepcopy(module), pickle.loads(pickle.dumps(module)),
                 module.to(torch.float32)):
        assert twin.kernel.vectors.t().is_contiguous() and twin.pair_weights.t().is_contiguous()
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    loaded = svc_module(estimator, x)
    loaded.load_state_dict(torch.load(buffer))
    assert loaded.kernel.vectors.t().is_contiguous()


@built
def test_row_major_buffers_still_agree_bit_for_bit(monkeypatch):
    # a module saved before the column-major layout (or given contiguous tensors) runs the
    # same arithmetic on both paths, only slower
    estimator, x = fitted_svc(3, "rbf", True)
    module = svc_module(estimator, x)
    module.kernel.vectors = module.kernel.vectors.contiguous()
    module.pair_weights = module.pair_weights.contiguous()
    for tensor in batches(x):
        with torch.no_grad():
            label, scores = module(tensor)
            expected = without_c(monkeypatch, module, tensor)
        assert torch.equal(label, expected[0])
        assert torch.equal(scores.nan_to_num(-1), expected[1].nan_to_num(-1))


@built
def test_copies_and_pickles_start_without_tables():
    estimator, x = fitted_svc(3, "rbf", True)
    module = svc_module(estimator, x)
    tensor = torch.from_numpy(x[:4])
    with torch.no_grad():
        expected = module(tensor)[1]
    assert module._prepared._state is not None
    for twin in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        assert twin._prepared._state is None and twin.kernel._prepared._state is None
        with torch.no_grad():
            assert torch.equal(twin(tensor)[1], expected)
        assert twin._prepared._state[2] is not module._prepared._state[2]


def test_classifier_without_the_switch_takes_the_torch_path(monkeypatch):
    estimator, x = fitted_svc(3, "rbf", True)
    module = svc_module(estimator, x)
    monkeypatch.setenv(native.SWITCH, "0")
    assert module._native_tables(torch.from_numpy(x[:2])) is None
    assert isinstance(module, OnnxSVMClassifier)


@pytest.mark.parametrize("kind", ["classifier", "decisions", "regressor"])
def test_large_batches_run_in_row_blocks_on_both_paths_alike(monkeypatch, kind):
    if kind != "regressor":
        estimator, x = fitted_svc(4, "rbf", kind == "classifier")
        module = svc_module(estimator, x)
    else:
        x, y = regression_data(3)
        module = regressor_module(SVR().fit(x, y), x)
    tensor = torch.from_numpy(np.concatenate([x, x[:33]]))  # not a multiple of the block
    with torch.no_grad():
        whole = module(tensor)
        monkeypatch.setattr(svm_ops, "ROW_BLOCK_VALUES", 1)  # blocks of 32 rows
        assert module.kernel.row_block(tensor) == 32 and module.kernel.row_block(x[:32]) == 0
        starts = []
        original = type(module).forward

        def recording(self, rows):
            starts.append(rows.shape[0])
            return original(self, rows)
        monkeypatch.setattr(type(module), "forward", recording)
        blocked = module(tensor)
        monkeypatch.setattr(type(module), "forward", original)
        expected = without_c(monkeypatch, module, tensor) if native._svm is not None else blocked
    n = tensor.shape[0]
    assert starts == [n] + [32] * (n // 32) + [n % 32]
    whole, blocked, expected = (r if isinstance(r, tuple) else (r,) for r in
                                (whole, blocked, expected))
    for a, b, c in zip(blocked, expected, whole):
        assert torch.equal(a, b)  # the C and torch paths block alike: the same bits
        torch.testing.assert_close(a, c, rtol=1e-6, atol=1e-6)  # and rows do not mix
    with torch.no_grad():  # traced calls run the batch whole
        traced = torch.jit.trace(module, (tensor,), check_trace=False)
        result = traced(tensor)
    torch.testing.assert_close(result if kind == "regressor" else result[1], whole[-1],
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("probability", [True, False])
def test_empty_batches(monkeypatch, probability):
    estimator, x = fitted_svc(3, "rbf", probability)
    module = svc_module(estimator, x)
    x_, y = regression_data(4)
    regressor = regressor_module(SVR().fit(x_, y), x_)
    with torch.no_grad():
        label, scores = module(torch.from_numpy(x[:0]))
        expected = without_c(monkeypatch, module, torch.from_numpy(x[:0]))
        values = regressor(torch.from_numpy(x_[:0]))
    assert label.shape == (0,) and scores.shape == expected[1].shape
    assert scores.shape[0] == 0 and values.shape == (0, 1)
