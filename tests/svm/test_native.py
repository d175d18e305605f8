"""The C loops (bridge/svm/native.py, _svm.c) against the torch code they replace on CPU.

Decisions, labels and coupled probabilities must agree bit for bit with the torch path, on
random and adversarial inputs (clamped pair probabilities, NaN, tied votes) and through whole
SVMClassifier modules. Without a C compiler at install time the extension is absent: these
tests then skip, except the ones showing that bridge falls back to the torch code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.svm import SVC

import bridge
from bridge.onnx.ops.ml.svm import OnnxSVMClassifier
from bridge.svm import native
from bridge.svm.coupling import couple_pairwise_probabilities
from tests.onnx.ops.ml.test_svm import classifier_model, svm_attributes
from tests.svm.test_coupling import reference_coupling

pytestmark = pytest.mark.filterwarnings("ignore:The `probability` parameter:FutureWarning")
built = pytest.mark.skipif(native._svm is None, reason="the C loops are not built here")


def pairs_of(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The class pairs (i, j), i < j, in the converter's order."""
    pairs = [(i, j) for i in range(count) for j in range(i + 1, count)]
    return (torch.tensor([i for i, _ in pairs], dtype=torch.int64),
            torch.tensor([j for _, j in pairs], dtype=torch.int64))


def torch_coupling(pair: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor,
                   count: int) -> torch.Tensor:
    """What OnnxSVMClassifier._probabilities does after Platt scaling."""
    pair = pair.clamp(1e-7, 1.0 - 1e-7)
    pairwise = pair.new_zeros((pair.shape[0], count, count))
    pairwise[:, rows, columns] = pair
    pairwise[:, columns, rows] = 1.0 - pair
    return couple_pairwise_probabilities(pairwise)


def pair_probabilities(rng: np.random.Generator, n: int, n_pairs: int) -> torch.Tensor:
    """Pair probabilities [n, pairs]: uniform ones, values the clamp changes (0, 1, 1e-9,
    1 - 1e-9), and one row with a NaN."""
    values = rng.uniform(0, 1, size=(n, n_pairs)).astype(np.float32)
    extremes = np.array([0.0, 1.0, 1e-9, 1 - 1e-9, 0.5], dtype=np.float32)
    values[: n // 4] = rng.choice(extremes, size=(n // 4, n_pairs))
    values[-1, 0] = np.nan
    return torch.from_numpy(values)


@built
@pytest.mark.parametrize("count", [2, 3, 4, 5, 6, 8, 11, 15, 20])
def test_c_coupling_matches_the_torch_coupling_bit_for_bit(count):
    rng = np.random.default_rng(count)
    rows, columns = pairs_of(count)
    pair = pair_probabilities(rng, 40, len(rows))
    expected = torch_coupling(pair, rows, columns, count)
    actual = native.couple(pair, rows, columns, count)
    assert actual.dtype == torch.float32 and actual.shape == (40, count)
    assert torch.equal(actual.isnan(), expected.isnan())
    assert torch.equal(actual.nan_to_num(-1), expected.nan_to_num(-1))
    assert not actual[:-1].isnan().any()  # only the row with a NaN pair has NaNs (or 1/C)


@built
@pytest.mark.parametrize("sweeps", [0, 1, 3])
def test_c_coupling_caps_sweeps_like_the_reference(sweeps):
    rng = np.random.default_rng(sweeps)
    rows, columns = pairs_of(7)
    pair = torch.from_numpy(rng.uniform(0.001, 0.999, size=(10, len(rows))).astype(np.float32))
    actual = native.couple(pair, rows, columns, 7, max_sweeps=sweeps)
    expected = torch_coupling(pair, rows, columns, 7)  # (100 sweeps)
    r = torch.zeros(10, 7, 7)
    r[:, rows, columns] = pair
    r[:, columns, rows] = 1.0 - pair
    for row, matrix in zip(actual.numpy(), r.numpy()):
        np.testing.assert_array_equal(row, reference_coupling(matrix, sweeps))
    if sweeps == 0:
        assert torch.equal(actual, torch.full((10, 7), 1.0 / 7))
    if sweeps == 1:  # not yet where 100 sweeps end
        assert not torch.equal(actual, expected)


@built
def test_c_coupling_beyond_twenty_classes_follows_the_reference():
    # above ~20 classes torch's batched matmul may sum in another order; the C loop keeps
    # onnxruntime's index order at every size
    rng = np.random.default_rng(25)
    rows, columns = pairs_of(25)
    pair = torch.from_numpy(rng.uniform(0, 1, size=(3, len(rows))).astype(np.float32))
    actual = native.couple(pair, rows, columns, 25)
    r = torch.zeros(3, 25, 25)
    r[:, rows, columns] = pair.clamp(1e-7, 1 - 1e-7)
    r[:, columns, rows] = 1.0 - pair.clamp(1e-7, 1 - 1e-7)
    for row, matrix in zip(actual.numpy(), r.numpy()):
        np.testing.assert_array_equal(row, reference_coupling(matrix))
    torch.testing.assert_close(actual, torch_coupling(pair, rows, columns, 25),
                               rtol=0, atol=1e-6)


def torch_decisions(sums: torch.Tensor, rho: torch.Tensor, count: int,
                    labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What OnnxSVMClassifier.forward does with the kernel sums (votes by matmul)."""
    rows, columns = pairs_of(count)
    winner = torch.zeros(len(rows), count)
    loser = torch.zeros(len(rows), count)
    winner[torch.arange(len(rows)), rows] = 1.0
    loser[torch.arange(len(rows)), columns] = 1.0
    decisions = (sums + rho).to(torch.float32)
    wins = (decisions > 0).to(torch.float32)
    votes = wins @ winner + (1.0 - wins) @ loser
    return decisions, labels[torch.argmax(votes, dim=1)]


@built
@pytest.mark.parametrize("count", [2, 3, 4, 6, 9])
@pytest.mark.parametrize("one_rho", [False, True])
def test_decide_matches_the_torch_votes(count, one_rho):
    rng = np.random.default_rng(count)
    rows, columns = pairs_of(count)
    n_pairs = len(rows)
    sums = torch.from_numpy(rng.normal(size=(64, n_pairs)))
    sums[:16] = torch.from_numpy(rng.choice([-1.0, 0.0, 1.0, np.nan], size=(16, n_pairs)))
    sums[16] = 0.0  # every decision 0: class j wins every pair, ties everywhere else
    rho = torch.from_numpy(rng.normal(size=1 if one_rho else n_pairs).astype(np.float32))
    rho[0] = 0.0
    labels = torch.from_numpy(rng.permutation(100)[:count].astype(np.int64))
    decisions, label = native.decide(sums, rho, rows, columns, labels)
    expected_decisions, expected_label = torch_decisions(sums, rho, count, labels)
    assert torch.equal(decisions.nan_to_num(7.0), expected_decisions.nan_to_num(7.0))
    assert label.dtype == torch.int64 and torch.equal(label, expected_label)


@built
def test_decide_breaks_tied_votes_towards_the_lowest_class():
    rows, columns = pairs_of(3)
    # pairs (0,1) (0,2) (1,2): 0 beats 1, 2 beats 0, 1 beats 2: one vote each
    sums = torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]], dtype=torch.float64)
    labels = torch.tensor([10, 20, 30])
    _, label = native.decide(sums, torch.zeros(3), rows, columns, labels)
    assert label.tolist() == [10, 10]


def fitted_svc(n_classes: int, kernel: str, probability: bool, seed: int = 0):
    x, y = make_classification(n_samples=150, n_features=6, n_informative=4,
                               n_classes=n_classes, n_clusters_per_class=1, random_state=seed)
    x = x.astype(np.float32)
    return SVC(kernel=kernel, probability=probability, random_state=seed).fit(x, y), x


def svc_module(estimator, x, post_transform: str | None = None) -> OnnxSVMClassifier:
    attributes = svm_attributes(estimator, x)
    if post_transform:
        attributes["post_transform"] = post_transform
    module = bridge.from_onnx(classifier_model(x, attributes))
    (svc,) = [m for m in module.modules() if isinstance(m, OnnxSVMClassifier)]
    return svc


def without_c(monkeypatch, module, x):
    with monkeypatch.context() as patch:
        patch.setenv(native.SWITCH, "0")
        assert not module._native_runs(x)
        return module(x)


@built
@pytest.mark.parametrize("kernel", ["rbf", "poly", "sigmoid", "linear"])
@pytest.mark.parametrize("n_classes", [2, 3, 5])
@pytest.mark.parametrize("probability", [True, False])
def test_svc_module_matches_its_torch_path_bit_for_bit(monkeypatch, kernel, n_classes,
                                                       probability):
    estimator, x = fitted_svc(n_classes, kernel, probability)
    module = svc_module(estimator, x)
    for rows in (x[:1], x[:7], x, np.concatenate([x[:3], np.full((1, 6), np.nan, np.float32)])):
        tensor = torch.from_numpy(np.ascontiguousarray(rows))
        with torch.no_grad():
            assert module._native_runs(tensor)
            label, scores = module(tensor)
            expected_label, expected_scores = without_c(monkeypatch, module, tensor)
        assert torch.equal(label, expected_label)
        assert torch.equal(scores.nan_to_num(-1), expected_scores.nan_to_num(-1))


@built
@pytest.mark.parametrize("post_transform", ["SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO"])
def test_svc_post_transforms_match_the_torch_path(monkeypatch, post_transform):
    estimator, x = fitted_svc(3, "rbf", True, seed=1)
    module = svc_module(estimator, x, post_transform)
    tensor = torch.from_numpy(x)
    label, scores = module(tensor)
    expected_label, expected_scores = without_c(monkeypatch, module, tensor)
    assert torch.equal(label, expected_label) and torch.equal(scores, expected_scores)


class Counting:
    """Stands in for the extension, counting the calls of each of its functions."""

    def __init__(self, extension):
        self.extension, self.calls = extension, []

    def __getattr__(self, name):
        function = getattr(self.extension, name)

        def counted(*arguments):
            self.calls.append(name)
            return function(*arguments)
        return counted


@built
def test_module_runs_the_c_loops_only_in_eager_cpu_calls_without_autograd(monkeypatch):
    estimator, x = fitted_svc(3, "rbf", True)
    module = svc_module(estimator, x)
    counting = Counting(native._svm)
    monkeypatch.setattr(native, "_svm", counting)
    one_call = ["rbf_exponent", "decide_platt", "couple"]
    tensor = torch.from_numpy(x[:5])
    with torch.no_grad():
        module(tensor)
    assert counting.calls == one_call
    module(tensor)  # grad mode, but nothing requires grad: the C loops still run
    assert counting.calls == one_call * 2
    inputs = tensor.clone().requires_grad_(True)
    label, scores = module(inputs)
    assert counting.calls == one_call * 2 and scores.requires_grad
    scores[:, 0].sum().backward()
    assert inputs.grad is not None and inputs.grad.abs().sum() > 0
    module.prob_a.requires_grad_(True)  # (no new version: still seen)
    module(tensor)
    assert counting.calls == one_call * 2
    module.prob_a.requires_grad_(False)
    torch.jit.trace(module, (tensor,), check_trace=False)
    assert counting.calls == one_call * 2


@built
def test_edited_buffers_are_seen(monkeypatch):
    # the eager path keeps |v|^2, float64 weights and -prob_a/-prob_b; edits must reach them
    estimator, x = fitted_svc(3, "rbf", True)
    module = svc_module(estimator, x)
    tensor = torch.from_numpy(x[:9])
    with torch.no_grad():
        before = module(tensor)[1]
        module.kernel.vectors.mul_(1.5)
        module.pair_weights.mul_(-1.0)
        module.prob_a.add_(0.5)
        module.prob_b.sub_(0.25)
        after = module(tensor)
    expected = without_c(monkeypatch, module, tensor)
    assert torch.equal(after[0], expected[0]) and torch.equal(after[1], expected[1])
    assert not torch.equal(after[1], before)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    state["kernel.vectors"].mul_(0.5)
    module.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(module(tensor)[1], without_c(monkeypatch, module, tensor)[1])


@built
def test_bad_arguments_raise_before_touching_memory():
    rows, columns = pairs_of(3)
    pair = torch.rand(2, 3)
    with pytest.raises(IndexError, match="outside 0..2"):
        native.couple(pair, rows, torch.tensor([1, 2, 3]), 3)
    with pytest.raises(IndexError, match="outside 0..2"):
        native.couple(pair, torch.tensor([0, -1, 1]), columns, 3)
    with pytest.raises(IndexError, match="outside 0..1"):
        native.decide(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(3), rows, columns,
                      torch.tensor([4, 5]))
    with pytest.raises(ValueError, match="pairs must be a 2-D torch.float32"):
        native.couple(pair.double(), rows, columns, 3)
    with pytest.raises(ValueError, match="one entry per pair"):
        native.couple(pair, rows[:2], columns, 3)
    with pytest.raises(ValueError, match="pair_rows must be a 1-D torch.int64"):
        native.couple(pair, rows.int(), columns, 3)
    with pytest.raises(ValueError, match="n_classes=5000"):
        native.couple(pair, rows, columns, 5000)
    with pytest.raises(ValueError, match="expected a CPU tensor"):
        native.couple(pair.numpy(), rows, columns, 3)
    with pytest.raises(ValueError, match="sums must be a 2-D torch.float64"):
        native.decide(torch.zeros(2, 3), torch.zeros(3), rows, columns, torch.arange(3))
    with pytest.raises(ValueError, match="1 or 3 rho values"):
        native.decide(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2), rows, columns,
                      torch.arange(3))
    strided = torch.rand(3, 6)[:, ::2]  # not contiguous: copied, not misread
    torch.testing.assert_close(native.couple(strided, rows, columns, 3),
                               native.couple(strided.contiguous(), rows, columns, 3),
                               rtol=0, atol=0)


def test_without_the_extension_the_torch_code_runs(monkeypatch):
    estimator, x = fitted_svc(3, "rbf", True)
    module = svc_module(estimator, x)
    tensor = torch.from_numpy(x[:6])
    with torch.no_grad():
        expected = without_c(monkeypatch, module, tensor)
        monkeypatch.setattr(native, "_svm", None)
        assert not native.available() and not module._native_runs(tensor)
        label, scores = module(tensor)
    assert torch.equal(label, expected[0]) and torch.equal(scores, expected[1])
    rows, columns = pairs_of(3)
    with pytest.raises(RuntimeError, match="not built"):
        native.couple(torch.rand(1, 3), rows, columns, 3)
