"""A tree-ensemble operator's eager CPU call as one C call: walk, leaf sums, finish, labels.

At one row the C walk of a 100-tree forest took ~3 us, and the Python and torch operations
around it ~25 us: three module calls, argument and table-version checks, the average, base
values and post transform as torch operations, the label arg-max (``docs/trees.md``, "One C
call per operator call"). Here an operator (``OnnxTreeEnsembleClassifier`` or
``OnnxTreeEnsembleRegressor``, :mod:`bridge.onnx.ops.ml.tree`) builds, once, a ``Forest`` of
``bridge/trees/_walk.c`` holding the addresses of its tables and what its finish does; each
call then checks its input in Python and hands it to ``Forest.run``, which walks, adds the
leaf values as :func:`bridge.trees.native.walk_sum` does, applies
:mod:`bridge.trees.finalize`'s rules and writes labels and probabilities or values.

``Forest.run`` first checks that every tensor it reads is still the one its module holds, at
the version it had (``.to()`` and ``_apply`` replace tensors, in-place edits and
``load_state_dict`` bump versions) and that every module on the way is still in place; when
one changed, the Forest is built again. Writes that bypass version counters (``.data``, a
numpy view) are not seen, as everywhere in bridge. The torch implementation still runs
every call this path does not serve: traced, scripted, exported or compiled calls, CUDA
tensors, other dtypes, calls with autograd through a table that requires grad, forests whose
tests are not one comparison or whose flags depend on the rows, PROBIT and SOFTMAX_ZERO
transforms, strategies other than the walk, and ``BRIDGE_TREE_KERNEL=0``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bridge.derived import EagerMemo, eager_call
from bridge.trees import fused, native

try:  # data addresses of numpy arrays (bridge/_buffers.c, built where a compiler was found)
    from bridge._buffers import address
except ImportError:
    address = None

POSTS = {"NONE": 0, "SOFTMAX": 1, "LOGISTIC": 2}  # the transforms the C finish applies
UNSUPPORTED = False  # a built state: this operator's calls take the torch path
NOT_NOW = None  # this call takes the torch path (too few columns, tables off the CPU)


class Serving(EagerMemo):
    """An operator's built ``Forest`` per input dtype (or :data:`UNSUPPORTED`); copies and
    pickles start empty."""

    def forest(self, dtype: torch.dtype):
        """The ``Forest`` built for rows of ``dtype``, :data:`UNSUPPORTED` or None."""
        state = self._state
        return None if state is None else state.get(dtype)

    def keep(self, dtype: torch.dtype, forest) -> None:
        """Remember ``forest`` for rows of ``dtype``."""
        if self._state is None:
            self._state = {}
        self._state[dtype] = forest


def _rows(x: torch.Tensor) -> tuple[int, int, int] | None:
    """(rows, columns, row stride) of ``x`` when C can serve it: an eager call on a plain
    CPU float32/float64 matrix with rows, its columns adjacent, the C walk on; else None."""
    if not eager_call() or type(x) is not torch.Tensor or not x.is_cpu:
        return None
    dtype = x.dtype
    if (dtype is not torch.float32 and dtype is not torch.float64) or x.dim() != 2:
        return None
    (n_rows, n_columns), (stride, step) = x.shape, x.stride()
    if not n_rows or step != 1 or native._walk is None or not fused.enabled():
        return None
    return n_rows, n_columns, stride


def _walks(trees: nn.Module, n_rows: int) -> bool:
    """Whether ``trees`` (a TreeEnsembleModule) picks the walk for ``n_rows`` CPU rows."""
    name = trees.strategy
    if name == "auto":
        name = trees.choices.get((n_rows, "cpu", True)) or trees.choose(n_rows, "cpu", True)
    if trees.last_strategy != name:
        trees.last_strategy = name
    return name == "traversal"


def _forest(operator: nn.Module, dtype: torch.dtype, n_columns: int, classifier: bool):
    """The operator's ``Forest`` for rows of ``dtype``, built when it has none."""
    memo = operator.__dict__.get("_serving")
    if memo is None:  # (an operator pickled before this module existed)
        memo = operator.__dict__["_serving"] = Serving()
    forest = memo.forest(dtype)
    if forest is None:
        forest = _build(operator, dtype, n_columns, classifier)
        if forest is NOT_NOW:
            return UNSUPPORTED
        memo.keep(dtype, forest)
    return forest


def _forget(operator: nn.Module, dtype: torch.dtype) -> None:
    """Drop the operator's ``Forest`` for ``dtype`` (a tensor it reads changed)."""
    operator.__dict__["_serving"].keep(dtype, None)


def classify(operator: nn.Module, x: torch.Tensor, labels: bool = True,
             probabilities: bool = True) -> tuple | None:
    """An ``OnnxTreeEnsembleClassifier`` call in C.

    Parameters
    ----------
    operator : OnnxTreeEnsembleClassifier
        The operator (its ``trees`` and ``output`` modules are read).
    x : torch.Tensor
        The rows [N, F].
    labels, probabilities : bool
        Which outputs to compute.

    Returns
    -------
    tuple or None
        (labels [N] int64 or None, probabilities [N, classes] float32 or None), or None
        when C does not serve this call (the torch modules then answer it).

    Raises
    ------
    IndexError
        When the operator's tables lead a walk outside them (checked when built).
    """
    rows = _rows(x)
    if rows is None or not _walks(operator._modules["trees"], rows[0]):
        return None
    n_rows, n_columns, stride = rows
    for _ in range(2):  # (a stale Forest is built again once)
        forest = _forest(operator, x.dtype, n_columns, True)
        if forest is UNSUPPORTED:
            return None
        label = torch.empty(n_rows, dtype=torch.int64) if labels else None
        scores = (torch.empty(n_rows, forest.n_outputs, dtype=torch.float32)
                  if probabilities else None)
        code = forest.run(x.data_ptr(), stride, n_columns, n_rows, torch.is_grad_enabled(),
                          0 if label is None else label.data_ptr(),
                          0 if scores is None else scores.data_ptr())
        if code == 0:
            return label, scores
        if code == 2:
            return None
        _forget(operator, x.dtype)
    return None


def regress(operator: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """An ``OnnxTreeEnsembleRegressor`` call in C.

    Parameters
    ----------
    operator : OnnxTreeEnsembleRegressor
        The operator (its ``trees`` and ``output`` modules are read).
    x : torch.Tensor
        The rows [N, F].

    Returns
    -------
    torch.Tensor or None
        Values [N, targets] (float32, or ``x``'s dtype for the opset-5 operator), or None
        when C does not serve this call.

    Raises
    ------
    IndexError
        As :func:`classify`.
    """
    rows = _rows(x)
    if rows is None or not _walks(operator._modules["trees"], rows[0]):
        return None
    n_rows, n_columns, stride = rows
    for _ in range(2):
        forest = _forest(operator, x.dtype, n_columns, False)
        if forest is UNSUPPORTED:
            return None
        values = torch.empty(n_rows, forest.n_outputs,
                             dtype=x.dtype if forest.input_dtype else torch.float32)
        code = forest.run(x.data_ptr(), stride, n_columns, n_rows, torch.is_grad_enabled(), 0,
                          values.data_ptr())
        if code == 0:
            return values
        if code == 2:
            return None
        _forget(operator, x.dtype)
    return None


ARRAY_DTYPES = {"f": torch.float32, "d": torch.float64}  # numpy's dtype.char -> torch's


def _array_rows(X: np.ndarray) -> bool:
    """Whether C can serve numpy rows ``X`` with numpy results (an eager call on a plain
    C-contiguous float32/float64 matrix with rows, the C walk and addresses available)."""
    return (address is not None and native._walk is not None and type(X) is np.ndarray
            and X.ndim == 2 and X.shape[0] > 0 and X.dtype.char in ARRAY_DTYPES
            and X.dtype.isnative and X.flags.c_contiguous and fused.enabled() and eager_call())


def classify_array(operator: nn.Module, X: np.ndarray, labels: bool = True,
                   probabilities: bool = True) -> tuple | None:
    """:func:`classify` for numpy rows, with numpy results: no tensor is made on the way
    (wrapping the input, allocating the outputs and viewing them as numpy cost ~1.8 us of
    a ~9 us one-row call). Results carry no autograd, so tables that require grad do not
    stop it. None when C does not serve this call (the caller takes the tensor path)."""
    if not _array_rows(X) or not _walks(operator._modules["trees"], X.shape[0]):
        return None
    n_rows, n_columns = X.shape
    dtype = ARRAY_DTYPES[X.dtype.char]
    for _ in range(2):  # (a stale Forest is built again once)
        forest = _forest(operator, dtype, n_columns, True)
        if forest is UNSUPPORTED:
            return None
        label = np.empty(n_rows, np.int64) if labels else None
        scores = np.empty((n_rows, forest.n_outputs), np.float32) if probabilities else None
        code = forest.run(address(X), n_columns, n_columns, n_rows, False,
                          0 if label is None else address(label),
                          0 if scores is None else address(scores))
        if code == 0:
            return label, scores
        if code == 2:
            return None
        _forget(operator, dtype)
    return None


def regress_array(operator: nn.Module, X: np.ndarray) -> np.ndarray | None:
    """:func:`regress` for numpy rows, with a numpy result (see :func:`classify_array`)."""
    if not _array_rows(X) or not _walks(operator._modules["trees"], X.shape[0]):
        return None
    n_rows, n_columns = X.shape
    dtype = ARRAY_DTYPES[X.dtype.char]
    for _ in range(2):
        forest = _forest(operator, dtype, n_columns, False)
        if forest is UNSUPPORTED:
            return None
        values = np.empty((n_rows, forest.n_outputs),
                          X.dtype if forest.input_dtype else np.float32)
        code = forest.run(address(X), n_columns, n_columns, n_rows, False, 0, address(values))
        if code == 0:
            return values
        if code == 2:
            return None
        _forget(operator, dtype)
    return None


class Built:
    """A ``Forest`` with what Python needs of it (its output width and dtype rule)."""

    __slots__ = ("forest", "n_outputs", "input_dtype", "run")

    def __init__(self, forest, n_outputs: int, input_dtype: bool):
        self.forest, self.n_outputs, self.input_dtype = forest, n_outputs, input_dtype
        self.run = forest.run


def _build(operator: nn.Module, dtype: torch.dtype, width: int, classifier: bool):
    """The operator's ``Forest`` for rows of ``dtype`` and ``width`` columns,
    :data:`UNSUPPORTED` when C cannot compute what the torch path computes, or
    :data:`NOT_NOW` when it cannot for this call alone."""
    trees = operator._modules["trees"]
    strategies, aggregators = trees._modules["strategies"], trees._modules["aggregators"]
    walk, aggregator = strategies._modules.get("traversal"), aggregators._modules.get("traversal")
    output = operator._modules["output"]
    if walk is None or aggregator is None or not walk.simple_tests or not aggregator.sums_in_walk:
        return UNSUPPORTED
    finish = _finish(output, aggregator, classifier)
    if finish is UNSUPPORTED:
        return UNSUPPORTED
    tests = walk._modules["tests"]
    fill = walk.missing_fill is not None
    if width < walk.n_features or walk.feature.device.type != "cpu":
        return NOT_NOW  # the torch path answers (or raises its error for such rows)
    threshold_name = "threshold64" if dtype == torch.float64 else "threshold32"
    values_name = "values64" if dtype == torch.float64 else "values32"
    watched = [(walk, name) for name in ("feature", "first_child", "roots", "depths")]
    watched += [(tests, threshold_name), (aggregator, values_name), (aggregator, "constant_has")]
    watched += [(output, name) for name in finish["tensors"]]
    modules = [(operator, "trees"), (operator, "output"), (trees, "strategies"),
               (strategies, "traversal"), (walk, "tests"), (trees, "aggregators"),
               (aggregators, "traversal")]
    watch = tuple((owner._modules, name, owner._modules[name], -1) for owner, name in modules)
    inference = False
    for owner, name in watched:
        tensor = owner._buffers[name]
        frozen = tensor.is_inference()  # no version counter: the torch path runs
        inference |= frozen
        watch += ((owner._buffers, name, tensor, -1 if frozen else tensor._version),)
    buffers = {name: owner._buffers[name] for owner, name in watched}
    if any(t.device.type != "cpu" for t in buffers.values()):
        return NOT_NOW
    tables = {name: buffers[name].contiguous()
              for name in ("feature", "first_child", threshold_name, "constant_has")}
    rank = walk.forest_rank
    roots, depths = walk.roots[rank].contiguous(), walk.depths[rank].contiguous()
    values = buffers[values_name]
    if aggregator.tree_outputs is not None:  # one value per terminal id (values_by_terminal)
        values = values.gather(0, aggregator.terminal_output).squeeze(0).contiguous()
    else:
        values = values.t().contiguous()
    feature, first_child = tables["feature"], tables["first_child"]
    threshold = tables[threshold_name]
    native._check_tables(dtype, feature, threshold, first_child, roots, depths,
                         tests.single_mode)
    native._check_values(dtype, first_child.numel(), roots.numel(), values,
                         aggregator.tree_outputs)
    finish_tensors = [buffers[name].contiguous() for name in finish["tensors"]]
    n_outputs = aggregator.n_outputs
    has = tables["constant_has"]
    single = aggregator.tree_outputs
    walked = 2 * walk.n_features if fill else width
    walk_arguments = (
        feature.data_ptr(), threshold.data_ptr(), first_child.data_ptr(), roots.data_ptr(),
        depths.data_ptr(), values.data_ptr(), 0 if single is None else single.data_ptr(),
        roots.numel(), first_child.numel(), n_outputs, walked, int(tests.single_mode),
        int(dtype == torch.float64), int(first_child.dtype == torch.int64), int(fill),
        float(walk.missing_fill) if fill else 0.0, walk.n_features)
    base = finish_tensors[finish["base"]] if finish["base"] is not None else None
    if finish.get("base_by_dtype"):  # a regressor's base values in the scores' dtype
        base = finish_tensors[1 if dtype == torch.float64 else 0]
    labels = finish_tensors[finish["labels"]] if finish["labels"] is not None else None
    input_dtype = bool(getattr(operator, "input_dtype", False))
    finish_arguments = (
        int(classifier), int(finish["average"]), finish["post"],
        int(input_dtype and dtype == torch.float64), int(finish["mask_unscored"]),
        int(finish["binary_case"]), int(finish["all_positive"]),
        0 if base is None else base.data_ptr(), finish["n_base"],
        has.data_ptr() if finish["has"] else 0, 0 if labels is None else labels.data_ptr())
    keep = (feature, threshold, first_child, roots, depths, values, single, has, *finish_tensors)
    forest = native._walk.forest(tuple(t for t in keep if t is not None), watch, inference,
                                 walk_arguments, finish_arguments)
    return Built(forest, n_outputs, input_dtype)


def _finish(output: nn.Module, aggregator: nn.Module, classifier: bool) -> dict | bool:
    """What the C finish does for ``output`` (a ClassifierOutput or RegressionOutput of
    :mod:`bridge.trees.finalize`), or :data:`UNSUPPORTED`."""
    if classifier:
        k, n_base = output.n_classes, output.n_base
        post = POSTS.get(output.post_transform)
        if post is None or k < 2 or (k > 2 and n_base not in (0, 1, k)) or (
                k == 2 and n_base > 2) or output.base.dtype != torch.float32:
            return UNSUPPORTED
        return {"tensors": ("base", "labels"), "base": 0 if n_base else None, "labels": 1,
                "n_base": n_base, "post": post, "average": False, "mask_unscored": False,
                "binary_case": output.binary_case, "all_positive": output.all_positive,
                "has": k == 2 or (n_base == 0 and not output.always_scored)}
    name = output.post_transform
    if name == "NONE" or (output.n_outputs == 1 and name != "PROBIT"):
        name = "NONE"  # onnxruntime applies only PROBIT to a single target
    post = POSTS.get(name)
    if post is None:
        return UNSUPPORTED
    mask = output.n_outputs > 1 and not output.always_scored
    return {"tensors": ("base32", "base64") if output.use_base else (),
            "base": None, "base_by_dtype": output.use_base, "labels": None, "n_base": 0,
            "post": post, "average": output.aggregate == "AVERAGE", "mask_unscored": mask,
            "binary_case": False, "all_positive": False, "has": mask}
