"""Reporting: the terminal table, Markdown, JSON with the machine description, and the PNG plot."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from importlib import metadata

import torch

from bridge.bench.runner import BenchResult

JSON_SCHEMA_VERSION = 1


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


def rows(results: Sequence[BenchResult]) -> list[list[str]]:
    """Table rows: model, batch, backend, median, spread, transfer, rows/s, speed-up, parity.

    Skipped cells have no row (:func:`skipped_note` names them once); failed ones do."""
    baseline = {(r.model, r.batch_size): r.median_s for r in results
                if r.backend == "sklearn" and r.status == "ok"}
    table = []
    for r in results:
        if r.status == "skipped":
            continue
        if r.status != "ok":
            table.append([r.model, str(r.batch_size), r.backend, r.status, "", "", "", "",
                          r.reason])
            continue
        spread = f"{_seconds(r.p25_s)}–{_seconds(r.p75_s)}"
        transfer = (r.transfer_in_s or 0) + (r.transfer_out_s or 0)
        base = baseline.get((r.model, r.batch_size))
        speedup = f"{base / r.median_s:.2f}×" if base and r.median_s else "-"
        parity = ("✓ " if r.parity_ok else "✗ ") + r.parity if r.parity_ok is not None else "-"
        table.append([r.model, str(r.batch_size), r.backend, _seconds(r.median_s), spread,
                      _seconds(transfer) if transfer else "-", _rate(r.rows_per_s), speedup,
                      parity])
    return table


HEADERS = ["model", "batch", "backend", "median", "p25–p75", "transfer", "rows/s",
           "vs sklearn", "parity vs reference / reason"]


def _ratio(value: float) -> str:
    return f"{value:.1f}×" if value < 10 else f"{value:.0f}×"


def fastest(results: Sequence[BenchResult]) -> list[dict]:
    """Per model and batch size, the fastest backend whose output agrees with the reference,
    the runner-up and how many times faster the winner is (None without a runner-up)."""
    answers = []
    for key in dict.fromkeys((r.model, r.batch_size) for r in results):
        cells = sorted((r for r in results if (r.model, r.batch_size) == key
                        and r.status == "ok" and r.parity_ok is not False and r.median_s),
                       key=lambda r: r.median_s)
        if not cells:
            continue
        winner, second = cells[0], (cells[1] if len(cells) > 1 else None)
        answers.append({"model": key[0], "batch_size": key[1], "backend": winner.backend,
                        "median_s": winner.median_s,
                        "runner_up": second.backend if second else None,
                        "times_faster": second.median_s / winner.median_s if second else None})
    return answers


def summary_lines(results: Sequence[BenchResult]) -> list[str]:
    """One line per model: the fastest runtime at each batch size and by how much it beats
    the next one (backends whose output disagrees with the reference never win)."""
    lines = []
    answers = fastest(results)
    for model in dict.fromkeys(a["model"] for a in answers):
        parts = []
        for a in (a for a in answers if a["model"] == model):
            lead = (f" ({_ratio(a['times_faster'])} {a['runner_up']})"
                    if a["runner_up"] else " (alone)")
            parts.append(f"batch {a['batch_size']}: {a['backend']} {_seconds(a['median_s'])}{lead}")
        lines.append(f"{model} fastest: " + "; ".join(parts))
    return lines


SUMMARY_HEADING = "fastest agreeing runtime per batch size (× = its lead over the next one)"


def skipped_note(results: Sequence[BenchResult]) -> list[str]:
    """Each skipped backend once, with its reason(s) (the cells themselves stay in --json)."""
    reasons: dict[str, list[str]] = {}
    for r in results:
        if r.status == "skipped" and r.reason not in reasons.setdefault(r.backend, []):
            reasons[r.backend].append(r.reason)
    return [f"skipped {backend}: {'; '.join(why)}" for backend, why in reasons.items()]


def format_report(results: Sequence[BenchResult]) -> str:
    """What the terminal shows: the one-line answers, the table, then the skipped backends."""
    summary = summary_lines(results)
    head = [SUMMARY_HEADING] + [f"  {line}" for line in summary] + [""] if summary else []
    tail = skipped_note(results)
    return "\n".join(head + [format_table(results)] + ([""] + tail if tail else []))


def format_table(results: Sequence[BenchResult]) -> str:
    """A plain-text table for the terminal (measured and failed cells)."""
    table = [HEADERS] + rows(results)
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADERS))]
    lines = []
    for index, row in enumerate(table):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_markdown(results: Sequence[BenchResult]) -> str:
    """The report as GitHub-flavoured Markdown: the answers as a list, the table, the skips."""
    lines = [f"- {line}" for line in summary_lines(results)]
    lines += [""] if lines else []
    lines += ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in rows(results):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    skipped = skipped_note(results)
    return "\n".join(lines + ([""] + [f"*{line}*" for line in skipped] if skipped else []))


def machine() -> dict:
    """CPU, GPU and library versions of this machine."""
    versions = {}
    for package in ("onnxbridge", "torch", "numpy", "scikit-learn", "onnx", "skl2onnx",
                    "onnxruntime", "onnxruntime-gpu"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def to_json(results: Sequence[BenchResult], settings: dict) -> dict:
    """Every figure plus the settings and the machine, as a JSON-ready dict."""
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "settings": settings,
        "machine": machine(),
        "results": [r.to_dict() for r in results],
        "fastest": fastest(results),
    }


def write_json(path: str, results: Sequence[BenchResult], settings: dict) -> None:
    with open(path, "w") as handle:
        json.dump(to_json(results, settings), handle, indent=2)


def write_plot(path: str, results: Sequence[BenchResult]) -> None:
    """Time per batch size per backend, one panel per model, log-log (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.model for r in results))
    columns = min(3, len(models)) or 1
    lines = -(-len(models) // columns) or 1
    figure, axes = plt.subplots(lines, columns, figsize=(5 * columns, 3.8 * lines),
                                squeeze=False)
    for axis, model in zip(axes.flat, models):
        measured = [r for r in results if r.model == model and r.status == "ok"]
        for backend in dict.fromkeys(r.backend for r in measured):
            points = sorted((r.batch_size, r.median_s) for r in measured if r.backend == backend)
            axis.plot(*zip(*points), marker="o", label=backend)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_title(model)
        axis.set_xlabel("batch size (rows)")
        axis.set_ylabel("median time per batch (s)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(models):]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
