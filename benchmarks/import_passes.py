"""The import-time fx passes (``bridge/onnx/fusion.py``) before and after, side by side:
each real model of ``real_models.py`` against its torch module, imported without and with
the passes, one thread, batch 1.

Times are the calling thread's CPU time (``time.thread_time``), so that on a machine shared
with other jobs the time this process waits for a core is not counted; the three callables
take turns round by round. Run: ``python benchmarks/import_passes.py [--models lstm,vit_small]
[--exporters dynamo,torchscript] [--repeats 15]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from real_models import EXPORTS, MODELS, export

from bridge.onnx.graph import load_model
from bridge.onnx.importer import _GraphBuilder, inline_functions


def imported(model, passes: bool) -> torch.fx.GraphModule:
    """``from_onnx(model)`` with the fusion passes on or off."""
    options = {"tree_strategy": "auto", "fuse_graph": passes}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = inline_functions(load_model(model))
        return _GraphBuilder.for_model(proto, False, options).build()


def cpu_timed(functions: dict[str, Callable[[], object]], repeats: int,
              budget: float = 0.03) -> dict[str, tuple[float, float]]:
    """Name → (best, median) thread CPU seconds per call over ``repeats`` rounds of about
    ``budget`` seconds each, the functions taking turns."""
    numbers = {}
    for name, function in functions.items():
        function()
        start = time.thread_time()
        function()
        numbers[name] = max(1, int(budget / max(time.thread_time() - start, 1e-6)))
    rounds: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.thread_time()
            for _ in range(numbers[name]):
                function()
            rounds[name].append((time.thread_time() - start) / numbers[name])
    return {name: (min(r), statistics.median(r)) for name, r in rounds.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--exporters", default="dynamo,torchscript")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    wanted, exporters = args.models.split(","), args.exporters.split(",")
    print("| model | exporter | fx nodes before / after | torch ms | before / torch "
          "| after / torch | max abs after - before |")
    print("|---|---|---|---|---|---|---|")
    for name, exporter in EXPORTS:
        if name in wanted and exporter in exporters:
            print(measure(name, exporter, args.repeats), flush=True)


def measure(name: str, exporter: str, repeats: int) -> str:
    """One export, imported without and with the passes, timed against its torch module;
    returns its markdown table row."""
    built = MODELS[name]()
    if isinstance(built, str):
        return f"| {name} | {exporter} | skipped: {built} |||||"
    torch.manual_seed(0)
    module, x = built
    module.eval()
    model, how = export(module, x, exporter)
    before, after = imported(model, False), imported(model, True)
    with torch.no_grad():
        difference = float((after(x) - before(x)).abs().max())
        times = cpu_timed({"torch": lambda: module(x), "before": lambda: before(x),
                           "after": lambda: after(x)}, repeats)
    reference = times["torch"][1]
    return (f"| {name} | {how} | {len(before.graph.nodes)} / {len(after.graph.nodes)} "
            f"| {1e3 * reference:.3f} | {times['before'][1] / reference:.2f} "
            f"| {times['after'][1] / reference:.2f} | {difference:.1e} |")

if __name__ == "__main__":
    main()
