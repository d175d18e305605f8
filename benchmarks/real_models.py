"""Real architectures exported to ONNX and imported back: the original torch module, bridge
eager, bridge compiled (``torch.compile``, inductor), bridge served
(``bridge.onnx.compile_for_serving``, AOTInductor) and onnxruntime, one thread each.

Models are built from their code with random weights (torchvision ``weights=None``,
transformers from small configs): nothing is downloaded. torchvision and transformers are
optional; the models needing one that is absent are listed as skipped.
Run: ``python benchmarks/real_models.py [--models resnet18,lstm] [--no-compile | --served-only]
[--output benchmarks/results/real_models-cpu]``.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
import torch
from torch import nn

import bridge
from bridge.errors import ConversionError
from bridge.onnx.serving import compile_for_serving

_TORCHVISION_SCHEMAS = None  # the torch.library holding torchvision's op schemas, kept alive


def import_torchvision():
    """Import torchvision, or return None when it is not installed.

    A torchvision wheel built for another torch (the registry's CUDA build beside a CPU
    torch) fails to load its ``_C`` library and then to register ``torchvision::nms``'s
    fake kernel; its model builders need neither. Defining the two op schemas with
    ``torch.library`` first lets the import succeed; the detection ops stay unusable.
    """
    global _TORCHVISION_SCHEMAS
    try:
        import torchvision
        return torchvision
    except ImportError:
        return None
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _TORCHVISION_SCHEMAS = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        _TORCHVISION_SCHEMAS.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision
    return torchvision


def _transformers():
    import_torchvision()  # transformers imports torchvision when present: load it first
    try:
        import transformers
        return transformers
    except ImportError:
        return None


class _LastHidden(nn.Module):
    """A transformers model returning ``last_hidden_state`` only (one tensor out)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids).last_hidden_state


class Recurrent(nn.Module):
    """Two stacked recurrent layers (batch first) and a linear head on the last step."""

    def __init__(self, cell: str, features: int = 32, hidden: int = 64):
        super().__init__()
        self.recurrent = getattr(nn, cell)(features, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x):
        output, _ = self.recurrent(x)
        return self.head(output[:, -1])


def _vision(name: str, size: int = 64, **kwargs) -> Callable[[], tuple[nn.Module, torch.Tensor] | str]:
    def build():
        torchvision = import_torchvision()
        if torchvision is None:
            return "torchvision is not installed"
        module = getattr(torchvision.models, name)(weights=None, **kwargs)
        return module, torch.randn(1, 3, size, size)
    return build


def _small_vit():
    torchvision = import_torchvision()
    if torchvision is None:
        return "torchvision is not installed"
    from torchvision.models.vision_transformer import VisionTransformer
    module = VisionTransformer(image_size=64, patch_size=8, num_layers=4, num_heads=4,
                               hidden_dim=128, mlp_dim=256)
    return module, torch.randn(1, 3, 64, 64)


def _text(kind: str):
    def build():
        transformers = _transformers()
        if transformers is None:
            return "transformers is not installed"
        if kind == "bert":
            config = transformers.BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2,
                                              num_attention_heads=2, intermediate_size=256,
                                              max_position_embeddings=64)
            model = transformers.BertModel(config, add_pooling_layer=False)
        else:
            config = transformers.GPT2Config(vocab_size=1000, n_embd=128, n_layer=2, n_head=2,
                                              n_positions=64)
            model = transformers.GPT2Model(config)
        ids = torch.randint(0, 1000, (1, 32), generator=torch.Generator().manual_seed(0))
        return _LastHidden(model), ids
    return build


def _recurrent(cell: str):
    def build():
        return Recurrent(cell), torch.randn(1, 20, 32)
    return build


# name → builder; each builder returns (module, example input) or the reason it is skipped
MODELS: dict[str, Callable] = {
    "resnet18": _vision("resnet18"),
    "mobilenet_v3_small": _vision("mobilenet_v3_small"),
    "efficientnet_b0": _vision("efficientnet_b0"),
    "convnext_tiny": _vision("convnext_tiny"),
    "squeezenet1_1": _vision("squeezenet1_1"),
    "shufflenet_v2_x0_5": _vision("shufflenet_v2_x0_5"),
    "swin_t": _vision("swin_t"),
    "vit_small": _small_vit,
    "bert": _text("bert"),
    "gpt2": _text("gpt2"),
    "lstm": _recurrent("LSTM"),
    "gru": _recurrent("GRU"),
}
# (model, exporter) pairs measured; "torchscript" is torch.onnx.export(..., dynamo=False)
EXPORTS = [(name, "dynamo") for name in MODELS] + [
    (name, "torchscript") for name in ("resnet18", "swin_t", "bert", "lstm", "gru")]


def export(module: nn.Module, x: torch.Tensor, exporter: str) -> tuple[onnx.ModelProto, str]:
    """Export with the first axis dynamic, as a served model would be; return the model
    and how: the exporter's name, with " (static batch)" where torch.export could not keep
    the batch free (it proved a guard on it) and the export was redone at fixed shapes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=1024)
            try:
                program = torch.onnx.export(module, (x,), dynamo=True, verbose=False,
                                            dynamic_shapes=({0: batch},))
                return program.model_proto, exporter
            except Exception:  # noqa: BLE001  (retried below at fixed shapes)
                program = torch.onnx.export(module, (x,), dynamo=True, verbose=False)
                return program.model_proto, exporter + " (static batch)"
        buffer = io.BytesIO()
        torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
        return onnx.load_from_string(buffer.getvalue()), exporter


def timed(functions: dict[str, Callable[[], object]], repeats: int,
          budget: float = 0.05) -> dict[str, tuple[float, float]]:
    """Name → (best, median) seconds per call over ``repeats`` rounds of about ``budget``
    seconds each; the functions take turns round by round, so a busy spell on a shared
    machine slows them all alike."""
    numbers = {}
    for name, function in functions.items():
        function()
        start = time.perf_counter()
        function()
        numbers[name] = max(1, int(budget / max(time.perf_counter() - start, 1e-7)))
    rounds: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            for _ in range(numbers[name]):
                function()
            rounds[name].append((time.perf_counter() - start) / numbers[name])
    return {name: (min(r), statistics.median(r)) for name, r in rounds.items()}


@dataclass
class Row:
    """One (model, exporter) measurement; times in milliseconds (best, median)."""

    model: str
    exporter: str
    status: str = "ok"
    onnx_nodes: int = 0
    fx_nodes: int = 0
    torch_ms: list[float] = field(default_factory=list)
    eager_ms: list[float] = field(default_factory=list)
    compiled_ms: list[float] = field(default_factory=list)
    frozen_ms: list[float] = field(default_factory=list)  # compiled with inductor freezing
    served_ms: list[float] = field(default_factory=list)  # bridge.onnx.compile_for_serving
    onnxruntime_ms: list[float] = field(default_factory=list)
    export_s: float = 0.0
    import_s: float = 0.0
    compile_s: float = 0.0
    frozen_compile_s: float = 0.0
    served_compile_s: float = 0.0
    served_batch: str = ""  # "free" or the batch size compile_for_serving fixed
    served_configs: dict = field(default_factory=dict)  # the inductor settings that compiled it
    output_scale: float = 0.0  # largest magnitude of onnxruntime's first output
    eager_vs_onnxruntime: float = 0.0  # max abs difference of the outputs
    compiled_vs_onnxruntime: float = 0.0
    frozen_vs_onnxruntime: float = 0.0
    served_vs_onnxruntime: float = 0.0
    torch_vs_onnxruntime: float = 0.0


def _first(result) -> np.ndarray:
    while isinstance(result, (tuple, list)):
        result = result[0]
    return result.detach().numpy() if isinstance(result, torch.Tensor) else np.asarray(result)


def measure(name: str, exporter: str, compile_model: bool, repeats: int,
            served_only: bool = False) -> Row:
    """Export one model, import it, and time the five ways of running it (``served_only``:
    leave out ``torch.compile``)."""
    import onnxruntime

    row = Row(name, exporter)
    built = MODELS[name]()
    if isinstance(built, str):
        row.status = f"skipped: {built}"
        return row
    torch.manual_seed(0)
    module, x = built
    module.eval()
    start = time.perf_counter()
    try:
        model, row.exporter = export(module, x, exporter)
    except Exception as error:  # noqa: BLE001  (an exporter failure is a result to report)
        row.status = f"export failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
        return row
    row.export_s = time.perf_counter() - start
    row.onnx_nodes = len(model.graph.node)
    start = time.perf_counter()
    imported = bridge.from_onnx(model)
    row.import_s = time.perf_counter() - start
    row.fx_nodes = len(imported.graph.nodes)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    with torch.no_grad():
        reference = session.run(None, feed)[0]
        row.output_scale = float(np.abs(reference).max())
        row.eager_vs_onnxruntime = float(np.abs(_first(imported(x)) - reference).max())
        row.torch_vs_onnxruntime = float(np.abs(_first(module(x)) - reference).max())
        functions = {"torch": lambda: module(x), "eager": lambda: imported(x),
                     "onnxruntime": lambda: session.run(None, feed)}
        if compile_model and not served_only:
            # every imported module runs through OnnxGraphModule.__call__, one code object
            # whose dynamo cache would otherwise fill up after a few models (then dynamo
            # silently runs the module eagerly)
            torch._dynamo.reset()
            compiled = torch.compile(imported)
            start = time.perf_counter()
            result = compiled(x)
            row.compile_s = time.perf_counter() - start
            row.compiled_vs_onnxruntime = float(np.abs(_first(result) - reference).max())
            functions["compiled"] = lambda: compiled(x)
            # freezing folds the weights into the graph and prepacks them for oneDNN; a
            # copy of the module, so dynamo compiles it anew under this configuration
            frozen = torch.compile(copy.deepcopy(imported))
            start = time.perf_counter()
            with torch._inductor.config.patch(freezing=True):
                result = frozen(x)
            row.frozen_compile_s = time.perf_counter() - start
            row.frozen_vs_onnxruntime = float(np.abs(_first(result) - reference).max())
            functions["frozen"] = lambda: frozen(x)
        if compile_model:
            try:
                served = compile_for_serving(imported, [x])
            except ConversionError as error:  # a result to report, as export failures are
                row.served_batch = f"failed: {str(error)[:100]}"
            else:
                row.served_compile_s = served.compile_seconds
                row.served_configs = served.inductor_configs
                shape = served.input_shapes[0]
                row.served_batch = "free" if shape and shape[0] is None else str(shape[0])
                result = served(x)
                row.served_vs_onnxruntime = float(np.abs(_first(result) - reference).max())
                functions["served"] = lambda: served(x)
        for key, (best, median) in timed(functions, repeats).items():
            setattr(row, f"{key}_ms", [1e3 * best, 1e3 * median])
    return row


def _ratio(a: list[float], b: list[float]) -> float | None:
    return a[1] / b[1] if a and b else None


def _shown(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _median(times: list[float]) -> float | None:
    return times[1] if times else None


def markdown(rows: list[Row], machine: str, command: str) -> str:
    """The results as a markdown report: one table row per export, then the medians."""
    lines = [
        "# Real models: torch, bridge eager, compiled, served, onnxruntime (CPU, one thread)", "",
        f"Command: `{command}`", "",
        f"Machine: {machine}. Versions: torch {torch.__version__}, onnx {onnx.__version__}, "
        f"onnxruntime {__import__('onnxruntime').__version__}, bridge {bridge.__version__}.", "",
        "Batch 1, one thread each (torch.set_num_threads(1), onnxruntime intra/inter-op 1). "
        "Times: ms per call, the median of rounds taken in turns; ratios divide medians. "
        "`compiled`: `torch.compile(imported)` (inductor defaults); `frozen`: the same with "
        "`torch._inductor.config.freezing=True`; `served`: "
        "`bridge.onnx.compile_for_serving(imported, [x])` (torch.export, convolutions "
        "rewritten, AOTInductor with freezing and C++ GEMM templates; its batch axis free, or fixed where the "
        "export could not keep it free: `(batch 1)`); compile s: the first call of "
        "`compiled` / `frozen`, then `compile_for_serving`. "
        "Parity: max abs difference of the first output against onnxruntime, divided by "
        "the largest magnitude of onnxruntime's output (random weights make some outputs "
        "tiny).", "",
        "| model | exporter | onnx / fx nodes | torch | bridge eager | compiled | frozen "
        "| served | onnxruntime | eager / torch | compiled / ort | frozen / ort | served / ort "
        "| compile s | parity eager / compiled / frozen / served |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.status != "ok":
            lines.append(f"| {r.model} | {r.exporter} | {r.status} |||||||||||||")
            continue
        compile_s = " / ".join(f"{seconds:.1f}" if times else "-" for seconds, times in (
            (r.compile_s, r.compiled_ms), (r.frozen_compile_s, r.frozen_ms),
            (r.served_compile_s, r.served_ms))) if r.compiled_ms or r.served_ms else ""
        scale = r.output_scale or 1.0
        parity = f"{r.eager_vs_onnxruntime / scale:.1e}"
        if r.compiled_ms or r.served_ms:
            parity += "".join(f" / {difference / scale:.1e}" if times else " / -"
                              for difference, times in (
                                  (r.compiled_vs_onnxruntime, r.compiled_ms),
                                  (r.frozen_vs_onnxruntime, r.frozen_ms),
                                  (r.served_vs_onnxruntime, r.served_ms)))
        served = _shown(_median(r.served_ms), 3)
        if r.served_batch.startswith("failed"):
            served = r.served_batch
        elif served and r.served_batch != "free":
            served += f" (batch {r.served_batch})"
        lines.append(
            f"| {r.model} | {r.exporter} | {r.onnx_nodes} / {r.fx_nodes} "
            f"| {_shown(_median(r.torch_ms), 3)} | {_shown(_median(r.eager_ms), 3)} "
            f"| {_shown(_median(r.compiled_ms), 3)} | {_shown(_median(r.frozen_ms), 3)} "
            f"| {served} | {_shown(_median(r.onnxruntime_ms), 3)} "
            f"| {_shown(_ratio(r.eager_ms, r.torch_ms))} "
            f"| {_shown(_ratio(r.compiled_ms, r.onnxruntime_ms))} "
            f"| {_shown(_ratio(r.frozen_ms, r.onnxruntime_ms))} "
            f"| {_shown(_ratio(r.served_ms, r.onnxruntime_ms))} | {compile_s} | {parity} |")
    ok = [r for r in rows if r.status == "ok"]
    summary = {
        "eager / torch": [_ratio(r.eager_ms, r.torch_ms) for r in ok],
        "eager / onnxruntime": [_ratio(r.eager_ms, r.onnxruntime_ms) for r in ok],
        "compiled / onnxruntime": [_ratio(r.compiled_ms, r.onnxruntime_ms) for r in ok],
        "frozen / onnxruntime": [_ratio(r.frozen_ms, r.onnxruntime_ms) for r in ok],
        "served / onnxruntime": [_ratio(r.served_ms, r.onnxruntime_ms) for r in ok],
        "torch / onnxruntime": [_ratio(r.torch_ms, r.onnxruntime_ms) for r in ok],
    }
    lines += ["", "| ratio (median time per call) | median over exports | max | exports |",
              "|---|---|---|---|"]
    for label, values in summary.items():
        values = [v for v in values if v is not None]
        if values:
            lines.append(f"| {label} | {statistics.median(values):.2f} | {max(values):.2f} "
                         f"| {len(values)} |")
    within = sum(1 for v in summary["eager / torch"] if v is not None and v <= 1.1)
    lines += ["", f"Eager within 1.1x the torch module: {within} of {len(ok)} exports."]
    served = [v for v in summary["served / onnxruntime"] if v is not None]
    if served:
        median = statistics.median(served)
        lines.append(f"Served within 2x onnxruntime: {sum(v <= 2 for v in served)} of "
                     f"{len(served)} exports; median {median:.2f}x, so the goal (median "
                     f"within 2x) is {'met' if median <= 2 else 'not met'}.")
    return "\n".join(lines) + "\n"


def machine_description() -> str:
    """CPU model and core count, as /proc/cpuinfo and os.cpu_count() tell."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated subset of: " + ", ".join(MODELS))
    parser.add_argument("--exporters", default="dynamo,torchscript")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip torch.compile and compile_for_serving")
    parser.add_argument("--served-only", action="store_true",
                        help="of the compiled paths, only compile_for_serving (faster)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--machine", default=None, help="machine description for the report")
    parser.add_argument("--output", default=None,
                        help="write OUTPUT.md and OUTPUT.json (e.g. benchmarks/results/real_models-cpu)")
    args = parser.parse_args(argv)
    unknown = set(args.models.split(",")) - set(MODELS)
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}; known: {', '.join(MODELS)}")
    torch.set_num_threads(1)
    torch._inductor.config.compile_threads = 1
    torch._inductor.config.fx_graph_cache = False  # compile times are cold ones
    wanted, exporters = args.models.split(","), args.exporters.split(",")
    rows = []
    for name, exporter in EXPORTS:
        if name not in wanted or exporter not in exporters:
            continue
        row = measure(name, exporter, not args.no_compile, args.repeats, args.served_only)
        rows.append(row)
        times = " ".join(f"{key} {_shown(_median(getattr(row, key + '_ms')), 3)}"
                         for key in ("torch", "eager", "compiled", "frozen", "served",
                                     "onnxruntime"))
        print(f"{name:20s} {exporter:11s} {row.status}: {times} ms", flush=True)
    command = shlex.join(["python", "benchmarks/real_models.py",
                          *(argv if argv is not None else sys.argv[1:])])
    report = markdown(rows, args.machine or machine_description(), command.strip())
    print(report)
    if args.output:
        with open(args.output + ".md", "w") as handle:
            handle.write(report)
        with open(args.output + ".json", "w") as handle:
            json.dump([asdict(r) for r in rows], handle, indent=1)
    return rows


if __name__ == "__main__":
    main()
