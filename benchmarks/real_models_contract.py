"""Imported real models behave like torch modules: each export of ``benchmarks/real_models.py``'s
architectures, imported with ``bridge.from_onnx``, is traced (``torch.jit.trace``), exported
(``torch.export``), scripted (``torch.jit.script``, reported only: scripting imported graphs
is not promised), saved and loaded with safetensors, deep-copied and pickled; each result must
equal the eager call, and copies must keep the input check (a wrong-rank input raises
``InvalidInputError``).

Models are built from their code with random weights (nothing is downloaded); those needing
an absent torchvision/transformers are listed as skipped. Run:
``python benchmarks/real_models_contract.py [--models resnet18,bert] [--output NAME]``
(writes ``benchmarks/results/NAME.md``).
"""

from __future__ import annotations

import argparse
import copy
import pickle
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

import bridge
from bridge.errors import InvalidInputError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_models import EXPORTS, MODELS, export, machine_description  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PROMISED = ("trace", "export", "safetensors", "deepcopy", "pickle")
CHECKS = PROMISED + ("script",)


def same(result, expected) -> bool:
    """Whether two outputs (tensors or tuples of them) are equal to float32 rounding."""
    if isinstance(expected, (tuple, list)):
        return len(result) == len(expected) and all(map(same, result, expected))
    return torch.allclose(result, expected, rtol=1e-5, atol=1e-5 * (1 + expected.abs().max()))


def keeps_its_check(module, x: torch.Tensor) -> bool:
    try:
        module(x.unsqueeze(0))
    except InvalidInputError:
        return True
    return False


def _safetensors(module, x):
    from safetensors.torch import load_file, save_file

    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/state.safetensors"
        save_file(module.state_dict(), path)
        copied = copy.deepcopy(module)
        for tensor in copied.state_dict().values():  # what loading must bring back
            if tensor.is_floating_point():
                tensor.zero_()
        copied.load_state_dict(load_file(path))
        return copied(x)


def check(module, x: torch.Tensor) -> dict[str, str]:
    """Each check's outcome: "ok", or what went wrong."""
    with torch.no_grad():
        expected = module(x)
        runs: dict[str, Callable[[], object]] = {
            "trace": lambda: torch.jit.trace(module, (x,), check_trace=False)(x),
            "export": lambda: torch.export.export(module, (x,)).module()(x),
            "safetensors": lambda: _safetensors(module, x),
            "deepcopy": lambda: copy.deepcopy(module),
            "pickle": lambda: pickle.loads(pickle.dumps(module)),
            "script": lambda: torch.jit.script(module)(x),
        }
        outcome = {}
        for name, run in runs.items():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = run()
                if name in ("deepcopy", "pickle"):
                    if not keeps_its_check(result, x):
                        outcome[name] = "lost its input check"
                        continue
                    result = result(x)
                outcome[name] = "ok" if same(result, expected) else "differs"
            except Exception as error:  # noqa: BLE001  (a failure is the result to report)
                outcome[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--exporters", default="dynamo,torchscript")
    parser.add_argument("--output", help="name under benchmarks/results/ for the .md")
    args = parser.parse_args(argv)
    wanted, exporters = args.models.split(","), args.exporters.split(",")
    lines = [f"# Imported real models as torch modules — {machine_description()}, "
             f"torch {torch.__version__}", "",
             "| model | exporter | " + " | ".join(CHECKS) + " |",
             "|---|---|" + "---|" * len(CHECKS)]
    failures = 0
    for name, exporter in EXPORTS:
        if name not in wanted or exporter not in exporters:
            continue
        built = MODELS[name]()
        if isinstance(built, str):
            lines.append(f"| {name} | {exporter} | skipped: {built} |")
            continue
        module, x = built
        torch.manual_seed(0)
        proto, how = export(module.eval(), x, exporter)
        outcome = check(bridge.from_onnx(proto), x)
        failures += sum(outcome[c] != "ok" for c in PROMISED)
        lines.append(f"| {name} | {how} | " + " | ".join(outcome[c] for c in CHECKS) + " |")
        print(lines[-1], flush=True)
    lines += ["", f"- promised checks ({', '.join(PROMISED)}) failing: {failures}"]
    text = "\n".join(lines)
    print(text)
    if args.output:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{args.output}.md").write_text(text + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
