"""Sparse coding (``transform``) of ``DictionaryLearning``, ``MiniBatchDictionaryLearning`` and
``SparseCoder``, for ``transform_algorithm`` 'omp' and 'threshold', which skl2onnx lacks.

'omp' (orthogonal matching pursuit, scikit-learn's default) runs its fixed number of steps
(``transform_n_nonzero_coefs``, or scikit-learn's default) unrolled: each step picks the
atom most correlated with the residual (first maximum, as numpy), orthogonalises it against
the atoms already picked (Gram-Schmidt; scikit-learn updates a Cholesky factor, the same
projection), and removes its part from the residual; back-substitution then gives the
coefficients. A row stops where scikit-learn's stops: no correlation left, or an atom
dependent on those picked; "no" and "dependent" are relative to the graph's float type (a
thousand times its epsilon, of the row's norm and of the atom's), where scikit-learn's
float64 solver tests against float64 epsilon. 'threshold' is ``sign(c) max(|c| - alpha, 0)`` of the
correlations ``c``. ``split_sign`` and ``positive_code`` ('threshold') as scikit-learn.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx._supported_operators import sklearn_operator_name_map
from sklearn.decomposition import DictionaryLearning, MiniBatchDictionaryLearning, SparseCoder

from bridge.errors import UnsupportedEstimatorError
from bridge.sklearn.converters._graph import add_constant, add_node, float_type_of, proto_float_of

CODERS = {DictionaryLearning: "BridgeDictionaryLearning",
          MiniBatchDictionaryLearning: "BridgeMiniBatchDictionaryLearning",
          SparseCoder: "BridgeSparseCoder"}


def _dictionary(model) -> np.ndarray:
    atoms = model.dictionary if isinstance(model, SparseCoder) else model.components_
    return np.asarray(atoms, dtype=np.float64)


def _steps(model, atoms: np.ndarray) -> int:
    """scikit-learn's number of OMP steps (``_sparse_encode``)."""
    n_components, n_features = atoms.shape
    if model.transform_n_nonzero_coefs is not None:
        return int(model.transform_n_nonzero_coefs)
    return int(min(max(n_features / 10, 1), n_components))


def coder_shape(operator) -> None:
    """``(N, n_components)``, twice as wide with ``split_sign``."""
    model = operator.raw_operator
    width = len(_dictionary(model)) * (2 if model.split_sign else 1)
    operator.outputs[0].type = float_type_of(operator)([None, width])


def _dot(scope, container, a: str, b: str, axis: str) -> str:
    """Row-wise dot products of two (N, d) values, as (N, 1)."""
    return add_node(scope, container, "ReduceSum", [
        add_node(scope, container, "Mul", [a, b], "sc_products"), axis], "sc_dot", keepdims=1)


def _omp(scope, container, x: str, atoms: np.ndarray, steps: int, proto: int) -> str:
    n_components = len(atoms)
    relative = 1e3 * float(np.finfo(np.float64 if proto == TensorProto.DOUBLE
                                    else np.float32).eps)
    axis = add_constant(scope, container, "sc_axis", [1], TensorProto.INT64)
    flat = add_constant(scope, container, "sc_flat", [-1], TensorProto.INT64)
    table = add_constant(scope, container, "sc_atoms", atoms, proto)
    transposed = add_constant(scope, container, "sc_atoms_t", atoms.T, proto)
    # |correlation| must exceed relative * |x| * (largest atom norm); an orthogonalised
    # atom's squared norm must exceed (relative * its own norm)^2
    x_norm = add_node(scope, container, "Sqrt", [_dot(scope, container, x, x, axis)],
                      "sc_x_norm")
    floor = add_node(scope, container, "Mul", [x_norm, add_constant(
        scope, container, "sc_floor_scale",
        [relative * float(np.linalg.norm(atoms, axis=1).max())], proto)], "sc_floor")
    squared_norms = add_constant(scope, container, "sc_atom_norms2",
                                 (relative ** 2) * np.sum(atoms ** 2, axis=1), proto)
    tiny = add_constant(scope, container, "sc_tiny", [float(np.finfo(np.float32).tiny)], proto)
    zero = add_constant(scope, container, "sc_zero", [0.0], proto)
    one = add_constant(scope, container, "sc_one", [1.0], proto)
    positions = add_constant(scope, container, "sc_positions",
                             np.arange(n_components).reshape(1, -1), TensorProto.INT64)
    residual, going = x, None
    basis, picks, projections, diagonals = [], [], [], []
    above: dict[tuple[int, int], str] = {}  # R[i, t] for i < t
    for step in range(steps):
        correlations = add_node(scope, container, "MatMul", [residual, transposed], "sc_corr")
        pick = add_node(scope, container, "ArgMax", [
            add_node(scope, container, "Abs", [correlations], "sc_abs")], "sc_pick", axis=1,
            keepdims=1)
        top = add_node(scope, container, "GatherElements", [correlations, pick], "sc_top",
                       axis=1)
        atom = add_node(scope, container, "Gather", [table, add_node(
            scope, container, "Reshape", [pick, flat], "sc_pick_flat")], "sc_atom", axis=0)
        orthogonal = atom
        for i, q in enumerate(basis):
            above[i, step] = _dot(scope, container, q, atom, axis)
            orthogonal = add_node(scope, container, "Sub", [orthogonal, add_node(
                scope, container, "Mul", [above[i, step], q], "sc_part")], "sc_orthogonal")
        norm2 = _dot(scope, container, orthogonal, orthogonal, axis)
        least = add_node(scope, container, "Gather", [squared_norms, add_node(
            scope, container, "Reshape", [pick, flat], "sc_pick_rows")], "sc_least", axis=0)
        least = add_node(scope, container, "Reshape", [least, add_constant(
            scope, container, "sc_column", [-1, 1], TensorProto.INT64)], "sc_least_column")
        ok = add_node(scope, container, "And", [
            add_node(scope, container, "Greater", [
                add_node(scope, container, "Abs", [top], "sc_top_abs"), floor],
                "sc_correlated"),
            add_node(scope, container, "Greater", [norm2, least], "sc_independent")],
            "sc_ok")
        going = ok if going is None else add_node(scope, container, "And", [going, ok],
                                                  "sc_going")
        diagonal = add_node(scope, container, "Where", [
            going, add_node(scope, container, "Sqrt", [
                add_node(scope, container, "Max", [norm2, tiny], "sc_norm2_safe")],
                "sc_norm"), one], "sc_diagonal")
        weight = add_node(scope, container, "Where", [going, one, zero], "sc_weight")
        q = add_node(scope, container, "Mul", [
            add_node(scope, container, "Div", [orthogonal, diagonal], "sc_unit"), weight],
            "sc_q")
        projection = _dot(scope, container, q, x, axis)
        residual = add_node(scope, container, "Sub", [residual, add_node(
            scope, container, "Mul", [projection, q], "sc_removed")], "sc_residual")
        for i in range(len(basis)):
            above[i, step] = add_node(scope, container, "Mul", [above[i, step], weight],
                                      "sc_above")
        basis.append(q)
        picks.append(pick)
        projections.append(projection)
        diagonals.append(diagonal)
    coefficients: list[str | None] = [None] * steps
    for t in reversed(range(steps)):  # R gamma = Q^T x, R upper triangular
        value = projections[t]
        for j in range(t + 1, steps):
            value = add_node(scope, container, "Sub", [value, add_node(
                scope, container, "Mul", [above[t, j], coefficients[j]], "sc_known")],
                "sc_rest")
        coefficients[t] = add_node(scope, container, "Div", [value, diagonals[t]], "sc_gamma")
    code = None
    for pick, gamma in zip(picks, coefficients):
        placed = add_node(scope, container, "Mul", [add_node(
            scope, container, "Cast", [add_node(scope, container, "Equal", [positions, pick],
                                                "sc_slot")], "sc_slot_float", to=proto),
            gamma], "sc_placed")
        code = placed if code is None else add_node(scope, container, "Add", [code, placed],
                                                    "sc_code")
    return code


def _threshold(scope, container, x: str, atoms: np.ndarray, model, proto: int) -> str:
    alpha = model.transform_alpha
    if alpha is None:
        alpha = getattr(model, "alpha", None)
    alpha = 1.0 if alpha is None else float(alpha)
    correlations = add_node(scope, container, "MatMul", [
        x, add_constant(scope, container, "sc_atoms_t", atoms.T, proto)], "sc_corr")
    shrunk = add_node(scope, container, "Relu", [add_node(scope, container, "Sub", [
        add_node(scope, container, "Abs", [correlations], "sc_abs"),
        add_constant(scope, container, "sc_alpha", [alpha], proto)], "sc_over")], "sc_shrunk")
    code = add_node(scope, container, "Mul", [
        add_node(scope, container, "Sign", [correlations], "sc_sign"), shrunk], "sc_code")
    if model.positive_code:
        code = add_node(scope, container, "Relu", [code], "sc_positive")
    return code


def convert_coder(scope, operator, container) -> None:
    """The sparse code of each row (see the module docstring)."""
    model = operator.raw_operator
    name = type(model).__name__
    atoms = _dictionary(model)
    proto = proto_float_of(operator)
    x = operator.inputs[0].full_name
    if model.transform_algorithm == "omp":
        code = _omp(scope, container, x, atoms, _steps(model, atoms), proto)
    elif model.transform_algorithm == "threshold":
        code = _threshold(scope, container, x, atoms, model, proto)
    else:
        raise UnsupportedEstimatorError(
            f"{name}(transform_algorithm={model.transform_algorithm!r}) has no conversion "
            "(an iterative solve); supported: 'omp', 'threshold'")
    target = [operator.outputs[0].full_name]
    if not model.split_sign:
        container.add_node("Identity", [code], target,
                           name=scope.get_unique_operator_name("Identity"))
        return
    positive = add_node(scope, container, "Relu", [code], "sc_plus")
    negative = add_node(scope, container, "Relu", [
        add_node(scope, container, "Neg", [code], "sc_negated")], "sc_minus")
    container.add_node("Concat", [positive, negative], target, axis=1,
                       name=scope.get_unique_operator_name("Concat"))


def register() -> list[str]:
    """Register the coders skl2onnx lacks; return their names."""
    registered = []
    for cls, alias in CODERS.items():
        if cls in sklearn_operator_name_map:
            continue
        update_registered_converter(cls, alias, coder_shape, convert_coder)
        registered.append(cls.__name__)
    return registered
