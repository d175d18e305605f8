"""Run the ONNX backend node conformance cases through :func:`bridge.from_onnx`.

The ``onnx`` package ships the cases: as generators (``collect_testcases``) in current
releases, as files under ``onnx/backend/test/data/node/`` in older ones. Both are read.
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from bridge.errors import UnsupportedOperatorError
from bridge.onnx.dtypes import numpy_to_torch, torch_to_numpy
from bridge.onnx.importer import from_onnx


@dataclass
class ConformanceCase:
    """One conformance case: a model and its (inputs, expected outputs) data sets."""

    name: str
    model: onnx.ModelProto
    data_sets: list[tuple[list, list]]
    rtol: float = 1e-3
    atol: float = 1e-7

    @property
    def operators(self) -> set[tuple[str, str]]:
        return {(n.domain if n.domain != "ai.onnx" else "", n.op_type) for n in self.model.graph.node}


@dataclass
class CaseResult:
    """The outcome of one case: ``status`` is passed, failed, unsupported or error."""

    name: str
    status: str
    operators: set[tuple[str, str]] = field(default_factory=set)
    message: str = ""


def load_cases() -> list[ConformanceCase]:
    """Return every node conformance case of the installed ``onnx`` package."""
    try:
        from onnx.backend.test.case import node as node_cases

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            collected = node_cases.collect_testcases(None)
        return [
            ConformanceCase(c.name, c.model, list(c.data_sets or []), c.rtol, c.atol)
            for c in collected
        ]
    except (ImportError, AttributeError, TypeError):
        return _load_case_files()


def _load_case_files() -> list[ConformanceCase]:
    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    cases = []
    for directory in sorted(glob.glob(os.path.join(root, "test_*"))):
        model = onnx.load(os.path.join(directory, "model.onnx"))
        data_sets = []
        for data_dir in sorted(glob.glob(os.path.join(directory, "test_data_set_*"))):
            data_sets.append(
                (_read_tensors(data_dir, "input"), _read_tensors(data_dir, "output"))
            )
        cases.append(ConformanceCase(os.path.basename(directory), model, data_sets))
    return cases


def _read_tensors(directory: str, prefix: str) -> list[np.ndarray]:
    tensors = []
    for path in sorted(glob.glob(os.path.join(directory, f"{prefix}_*.pb")),
                       key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0])):
        proto = onnx.TensorProto()
        with open(path, "rb") as handle:
            proto.ParseFromString(handle.read())
        tensors.append(numpy_helper.to_array(proto))
    return tensors


def _as_array(value) -> np.ndarray:
    """A case's tensor value as numpy: arrays, numpy scalars and TensorProtos are accepted;
    sequences (lists) and optionals (None) are not."""
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, (np.ndarray, np.generic)):
        return np.asarray(value)
    raise TypeError(f"{type(value).__name__} values (sequences, optionals) are not supported")


def _to_input(value, vocabulary: list | None) -> torch.Tensor:
    array = _as_array(value)
    if array.dtype.kind in "OUS":
        if vocabulary is None:
            raise TypeError("string input without a vocabulary")
        lookup = {label: i for i, label in enumerate(vocabulary)}
        flat = [lookup.get(v.decode() if isinstance(v, bytes) else v, -1) for v in array.ravel()]
        return torch.tensor(flat, dtype=torch.int64).reshape(array.shape)
    return numpy_to_torch(array)


def _to_output(value: torch.Tensor, vocabulary: list | None) -> np.ndarray:
    if vocabulary is not None:
        labels = np.asarray(vocabulary, dtype=object)
        return labels[value.detach().cpu().numpy()]
    return torch_to_numpy(value)


def _compare(actual: np.ndarray, expected, rtol: float, atol: float) -> None:
    expected = _as_array(expected)
    if expected.dtype.kind in "OUS":
        decoded = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v, otypes=[object])
        np.testing.assert_array_equal(decoded(actual), decoded(expected))
        return
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {actual.shape} != expected {expected.shape}")
    if expected.dtype != actual.dtype and not (
        expected.dtype.kind == actual.dtype.kind == "f" and expected.dtype.itemsize == 2
    ):
        raise AssertionError(f"dtype {actual.dtype} != expected {expected.dtype}")
    if expected.dtype.kind == "V":  # bfloat16 / float8 (ml_dtypes): compare as float32
        actual, expected = actual.astype(np.float32), expected.astype(np.float32)
    if expected.dtype.kind in "fc":
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
    else:
        np.testing.assert_array_equal(actual, expected)


def _compare_sequence(actual: list, expected, rtol: float, atol: float) -> None:
    if not isinstance(expected, list) or len(actual) != len(expected):
        raise AssertionError(f"a sequence of {len(actual)} tensors, expected {expected!r:.80}")
    for tensor, wanted in zip(actual, expected):
        _compare(torch_to_numpy(tensor), wanted, rtol, atol)


def run_case(case: ConformanceCase) -> CaseResult:
    """Convert and run one case; never raises, the outcome is in the result."""
    try:
        module = from_onnx(case.model)
    except UnsupportedOperatorError as error:
        return CaseResult(case.name, "unsupported", case.operators, str(error))
    except Exception as error:
        return CaseResult(case.name, "error", case.operators, f"{type(error).__name__}: {error}")
    try:
        for inputs, expected in case.data_sets:
            arguments = [
                _to_input(value, module.input_vocabularies.get(name))
                for name, value in zip(module.input_names, inputs)
            ]
            with torch.no_grad():
                result = module(*arguments)
            results = list(result) if isinstance(result, tuple) else [result]
            if len(results) != len(expected):
                raise AssertionError(f"{len(results)} outputs, expected {len(expected)}")
            for name, actual, wanted in zip(module.output_names, results, expected):
                if isinstance(actual, list):  # a sequence: a list of tensors, in order
                    _compare_sequence(actual, wanted, case.rtol, case.atol)
                    continue
                _compare(_to_output(actual, module.output_vocabularies.get(name)), wanted,
                         case.rtol, case.atol)
    except Exception as error:
        message = f"{type(error).__name__}: {error}".strip()
        return CaseResult(case.name, "failed", case.operators, message[:500])
    return CaseResult(case.name, "passed", case.operators)


def run_cases(cases: Iterable[ConformanceCase]) -> list[CaseResult]:
    """Run every case; see :func:`run_case`."""
    return [run_case(case) for case in cases]
