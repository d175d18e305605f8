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
    """Table rows: model, batch, backend, median, spread, transfer, rows/s, speed-up, parity."""
    baseline = {(r.model, r.batch_size): r.median_s for r in results
                if r.backend == "sklearn" and r.status == "ok"}
    table = []
    for r in results:
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


def format_table(results: Sequence[BenchResult]) -> str:
    """A plain-text table for the terminal."""
    table = [HEADERS] + rows(results)
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADERS))]
    lines = []
    for index, row in enumerate(table):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_markdown(results: Sequence[BenchResult]) -> str:
    """The same table as GitHub-flavoured Markdown."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in rows(results):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


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
