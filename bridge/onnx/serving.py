"""``compile_for_serving`` for imported ONNX graphs: one AOTInductor function per module.

An imported module (:func:`bridge.from_onnx`) is exported with ``torch.export`` (batch
axis free), its small convolutions rewritten into forms inductor fuses (below), and
compiled by AOTInductor with the weights frozen into the code; a call checks its inputs
as the module does, then runs the native function directly. docs/serving.md has the figures.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from bridge.errors import ConversionError, InvalidInputError
from bridge.onnx.importer import OnnxGraphModule, check_inputs

_aten = torch.ops.aten

# Inductor settings measured best at batch 1 on one CPU thread (benchmarks/real_models.py):
# freezing folds the weights (and their transposes) into constants and packs the GEMMs and
# the convolutions left to torch for oneDNN. Where freezing fails to lower a graph (seen
# on a BERT exported at fixed shapes), the graph is compiled again without it.
INDUCTOR_CONFIGS = {"freezing": True}


# torch's fused recurrent kernels, kept whole (AOTInductor calls aten's implementation)
RECURRENT_KERNELS = (_aten.lstm.input, _aten.gru.input, _aten.rnn_tanh.input,
                     _aten.rnn_relu.input)


def _pair(values: Sequence[int]) -> list[int]:
    values = list(values)
    return values * 2 if len(values) == 1 else values


def _shifted_windows(x: torch.Tensor, kernel: tuple[int, int], stride: list[int],
                     padding: list[int], dilation: list[int]):
    """Yield ``(i, j, window)``: the strided view of the padded input that kernel tap
    ``(i, j)`` multiplies, one per tap (so a convolution is a sum over taps)."""
    height, width = x.shape[-2:]
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    padded = F.pad(x, (pw, pw, ph, ph)) if (ph or pw) else x
    rows = (height + 2 * ph - dh * (kernel[0] - 1) - 1) // sh + 1
    columns = (width + 2 * pw - dw * (kernel[1] - 1) - 1) // sw + 1
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            yield i, j, padded[:, :, i * dh: i * dh + sh * (rows - 1) + 1: sh,
                               j * dw: j * dw + sw * (columns - 1) + 1: sw]


def convolution_as_loops(x, weight, bias=None, stride=(1,), padding=(0,), dilation=(1,),
                         groups=1):
    """``aten.conv2d`` as operations inductor generates code for (a decomposition).

    * depthwise (one filter per channel): a sum of the kernel's shifted windows times
      their per-channel weights, which inductor fuses into one loop with the bias and
      whatever element-wise operations follow;
    * ``groups == 1``: a GEMM over channels-last rows (a 1x1 convolution's rows are the
      pixels; larger kernels gather their windows first, im2col), MKL's shape of choice.

    Anything else (other groupings, string padding, not 2-D) returns ``NotImplemented``
    and keeps torch's own convolution.
    """
    if x.dim() != 4 or weight.dim() != 4 or isinstance(padding, str):
        return NotImplemented
    channels = x.shape[1]
    out_channels, per_group, kh, kw = weight.shape
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if groups == channels and per_group == 1 and out_channels == channels:
        result = None
        for i, j, window in _shifted_windows(x, (kh, kw), stride, padding, dilation):
            term = window * weight[:, 0, i, j].reshape(1, channels, 1, 1)
            result = term if result is None else result + term
        return result if bias is None else result + bias.reshape(1, channels, 1, 1)
    if groups != 1:
        return NotImplemented
    if (kh, kw) == (1, 1) and stride == [1, 1] and padding == [0, 0]:
        rows = x.permute(0, 2, 3, 1)  # (batch, height, width, channels)
    else:
        windows = _shifted_windows(x, (kh, kw), stride, padding, dilation)
        rows = torch.cat([window.permute(0, 2, 3, 1) for _, _, window in windows], dim=-1)
        weight = weight.permute(0, 2, 3, 1)  # taps in the order the windows were gathered
    batch, height, width, depth = rows.shape
    flat = rows.reshape(-1, depth)
    weight = weight.reshape(out_channels, depth)
    result = torch.mm(flat, weight.t())  # the form inductor's freezing packs for oneDNN
    if bias is not None:
        result = result + bias
    return result.reshape(batch, height, width, out_channels).permute(0, 3, 1, 2)


def decompositions(convolutions: bool = True) -> dict:
    """torch.export's default decomposition table without the recurrent kernels
    (:data:`RECURRENT_KERNELS`), plus :func:`convolution_as_loops` for ``aten.conv2d``
    when ``convolutions`` is True."""
    table = torch.export.default_decompositions()
    for fused in RECURRENT_KERNELS:  # decomposed, they unroll into one kernel per time step
        table.pop(fused, None)
    if convolutions:
        table[_aten.conv2d.default] = convolution_as_loops
    return table


class CompiledGraph:
    """An imported ONNX graph compiled by :func:`compile_for_serving`.

    Called like the module (tensors in graph-input order; one tensor, or a tuple in
    graph-output order), without autograd. ``compile_seconds`` is what the compilation
    took; ``input_shapes`` the shapes compiled for (``None`` on a free batch axis) and
    ``input_dtypes`` their dtypes; ``module`` is the imported module, unchanged.
    """

    def __init__(self, module: OnnxGraphModule, runner, input_shapes: list[tuple],
                 input_dtypes: list[torch.dtype], device: torch.device, tuple_output: bool,
                 compile_seconds: float):
        self.module = module
        self.input_names = list(module.input_names)
        self._declared_shapes = module.__dict__.get("input_shapes") or [None] * len(self.input_names)
        self.output_names = list(module.output_names)
        self.input_shapes = input_shapes
        self.input_dtypes = input_dtypes
        self.device = device
        self.compile_seconds = compile_seconds
        self._runner = runner  # torch._C._aoti.AOTIModelPackageLoader: run(list) -> list
        self._tuple_output = tuple_output

    def __call__(self, *inputs: torch.Tensor):
        check_inputs(self.input_names, self._declared_shapes, inputs)  # the module's own check
        for name, shape, dtype, value in zip(self.input_names, self.input_shapes,
                                             self.input_dtypes, inputs):
            self._check_input(name, shape, dtype, value)
        if self.input_shapes and self.input_shapes[0][0] is None and inputs[0].shape[0] == 0:
            return self.module(*inputs)  # compiled for one row or more: empty runs eagerly
        values = self._runner.run([value.contiguous() for value in inputs])
        return tuple(values) if self._tuple_output else values[0]

    def _check_input(self, name: str, shape: tuple, dtype: torch.dtype,
                     value: torch.Tensor) -> None:
        if value.dtype != dtype:
            raise InvalidInputError(f"graph input {name!r} was compiled for {dtype}; got "
                                    f"{value.dtype} (convert it, or compile again)")
        if value.device != self.device:
            raise InvalidInputError(f"graph input {name!r} was compiled for device "
                                    f"{self.device}; got a tensor on {value.device}")
        if value.requires_grad:
            raise InvalidInputError(
                f"graph input {name!r} requires grad; the compiled graph runs without "
                "autograd (call the imported module itself to differentiate)")
        if value.dim() != len(shape):
            raise InvalidInputError(f"graph input {name!r} was compiled for shape "
                                    f"{_shown(shape)}; got {tuple(value.shape)}")
        for axis, (size, got) in enumerate(zip(shape, value.shape)):
            if size is not None and got != size:
                raise InvalidInputError(
                    f"graph input {name!r} was compiled for shape {_shown(shape)}; got "
                    f"{tuple(value.shape)} (axis {axis} differs): only the batch axis is "
                    "free; compile again with example inputs of the new shape")

    def __repr__(self) -> str:
        shapes = ", ".join(f"{name}: {_shown(shape)} {dtype}" for name, shape, dtype
                           in zip(self.input_names, self.input_shapes, self.input_dtypes))
        return f"CompiledGraph({shapes}; {self.device})"


def _shown(shape: Sequence) -> str:
    return "(" + ", ".join("?" if size is None else str(size) for size in shape) + ")"


def _free_batch(module: OnnxGraphModule, inputs: Sequence[torch.Tensor]) -> bool:
    """Whether the graph declares its inputs' first axis free (and every input has one)."""
    shapes = module.__dict__.get("input_shapes") or [None] * len(inputs)
    return all(value.dim() >= 1 and (shape is None or not shape or shape[0] is None)
               for shape, value in zip(shapes, inputs))


def _compile(program: torch.export.ExportedProgram, convolutions: bool, configs: dict):
    """AOTInductor's runner for ``program`` (its package written to a temporary folder).
    Compiled without autograd: inductor freezes the weights only then."""
    with torch.no_grad(), tempfile.TemporaryDirectory() as folder:
        program = program.run_decompositions(decompositions(convolutions))
        path = os.path.join(folder, "graph.pt2")
        try:
            torch._inductor.aoti_compile_and_package(program, package_path=path,
                                                     inductor_configs=configs)
        except Exception:  # noqa: BLE001  (inductor's lowering errors have no common type)
            if not configs.get("freezing"):
                raise
            torch._inductor.aoti_compile_and_package(
                program, package_path=path, inductor_configs={**configs, "freezing": False})
        return torch._inductor.aoti_load_package(path).loader


def _compiled_with_free_batch(module: OnnxGraphModule, inputs: list[torch.Tensor],
                              max_batch: int, convolutions: bool, configs: dict):
    """The runner compiled with the batch axis free, or None where torch.export cannot
    keep it free (a guard on the batch size) or the compiled code still asserts a size
    it saw (checked by running it on the examples and on their first row)."""
    # torch.export specializes sizes 0 and 1: trace at two rows at least
    traced = [value if value.shape[0] > 1 else torch.cat([value, value]) for value in inputs]
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    try:
        with torch.no_grad():
            program = torch.export.export(module, tuple(traced),
                                          dynamic_shapes=tuple({0: batch} for _ in traced))
    except Exception:  # noqa: BLE001  (a guard on the batch size: compiled at fixed shapes)
        return None
    runner = _compile(program, convolutions, configs)
    try:
        runner.run([value.contiguous() for value in inputs])
        runner.run([value[:1].contiguous() for value in inputs])
    except RuntimeError:  # (AOTInductor's size checks raise RuntimeError)
        return None
    return runner


def compile_for_serving(module: OnnxGraphModule, example_inputs: Sequence[torch.Tensor], *,
                        max_batch: int = 1024, convolutions: bool = True,
                        inductor_configs: dict | None = None) -> CompiledGraph:
    """Compile an imported ONNX graph ahead of time for fast calls (serving).

    The module is exported with ``torch.export`` (the batch axis free when the graph
    declares it free), 2-D convolutions are rewritten by :func:`convolution_as_loops`,
    torch's fused recurrent kernels are kept whole, and AOTInductor compiles the program
    with the weights frozen in (:data:`INDUCTOR_CONFIGS`). The result runs that native
    function directly. Measured on one CPU thread at batch 1 against onnxruntime:
    benchmarks/real_models.py, docs/serving.md.

    What it gives up, by design:

    * **compile time**: seconds to a minute per model on a small VM (a C++ compiler must
      be present, as for ``torch.compile`` on CPU);
    * **shapes**: only the batch axis is free (1 to ``max_batch`` rows, where the graph
      and ``torch.export`` allow it; otherwise the example's batch only); every other axis
      is fixed at the example's size;
    * **device, dtype and weights** are those of the compile: the weights are folded into
      the compiled code, so later edits of the module's tensors or ``.to()`` are not seen
      (compile again);
    * **autograd**: inference only; an input that requires grad is refused;
    * **rounding**: fused float32 arithmetic in another order; measured within 2e-6 of
      onnxruntime relative to the output's largest magnitude on the real models, tested at
      rtol 1e-4 / atol 1e-5.

    Parameters
    ----------
    module : OnnxGraphModule
        What :func:`bridge.from_onnx` returned; it stays usable as it is.
    example_inputs : sequence of torch.Tensor
        One tensor per graph input, with the shapes, dtype and device calls will have (the
        batch size aside).
    max_batch : int, default 1024
        The most rows a call may hold where the batch axis is free.
    convolutions : bool, default True
        Rewrite 2-D convolutions (depthwise ones as fused loops, the others as GEMMs);
        False keeps torch's convolutions.
    inductor_configs : dict, optional
        Overrides of :data:`INDUCTOR_CONFIGS` (``torch._inductor.config`` names).

    Returns
    -------
    CompiledGraph
        Callable like the module; ``compile_seconds`` says what compiling cost.

    Raises
    ------
    TypeError
        ``module`` is not an imported graph, or an example input is not a tensor.
    InvalidInputError
        Example inputs that do not fit the graph's declared inputs.
    ValueError
        ``max_batch`` below 1.
    ConversionError
        The graph could not be exported or compiled (the cause is chained).
    """
    if not isinstance(module, OnnxGraphModule):
        raise TypeError("compile_for_serving takes an imported graph (bridge.from_onnx); got "
                        f"{type(module).__name__}")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be a positive int; got {max_batch!r}")
    inputs = list(example_inputs) if isinstance(example_inputs, (list, tuple)) else [
        example_inputs]
    shapes = module.__dict__.get("input_shapes") or [None] * len(module.input_names)
    check_inputs(module.input_names, shapes, tuple(inputs))
    if any(value.shape[0] == 0 for value in inputs if value.dim()):
        raise InvalidInputError("example inputs need at least one row; got shapes "
                                f"{[tuple(value.shape) for value in inputs]}")
    devices = {value.device for value in inputs}
    if len(devices) != 1:
        raise InvalidInputError(f"example inputs must share one device; got {sorted(map(str, devices))}")
    inputs = [value.detach() for value in inputs]
    try:
        with torch.no_grad():
            result = module(*inputs)
    except Exception as error:  # an operator refusing the examples (a dtype, most often)
        raise ConversionError(f"the imported graph could not run on the example inputs "
                              f"({type(error).__name__}: {str(error).splitlines()[0]})") from error
    if not (isinstance(result, torch.Tensor) or (
            isinstance(result, tuple) and all(isinstance(r, torch.Tensor) for r in result))):
        raise ConversionError("compile_for_serving compiles graphs whose outputs are tensors; "
                              f"this one returns {type(result).__name__} (sequences or maps)")
    configs = {**INDUCTOR_CONFIGS, **(inductor_configs or {})}
    start = time.perf_counter()
    try:
        runner, free = None, _free_batch(module, inputs)
        if free:
            runner = _compiled_with_free_batch(module, inputs, max_batch, convolutions, configs)
            free = runner is not None
        if runner is None:
            with torch.no_grad():
                program = torch.export.export(module, tuple(inputs))
            runner = _compile(program, convolutions, configs)
    except Exception as error:  # export/inductor raise many types; say what failed
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise ConversionError(
            f"the imported graph could not be compiled for serving ({type(error).__name__}: "
            f"{first_line}); call the module itself, which runs eagerly") from error
    seconds = time.perf_counter() - start
    compiled_shapes = [(None if free else value.shape[0], *value.shape[1:]) if value.dim()
                       else () for value in inputs]
    return CompiledGraph(module, runner, compiled_shapes,
                         [value.dtype for value in inputs], inputs[0].device,
                         isinstance(result, tuple), seconds)
