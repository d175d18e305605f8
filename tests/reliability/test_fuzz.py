"""Fuzz: a few hundred corrupted ONNX files, each must give a bridge error, never a crash or hang.

Seeds: small real graphs (a skl2onnx LogisticRegression and StandardScaler pipeline, a
TorchScript-exporter MLP). Each is truncated, bit-flipped and field-shuffled with a fixed seed;
a child process imports every file, and this test watches it:

- accepted: a :class:`bridge.errors.BridgeError` (for an unreadable file an
  ``InvalidModelError`` whose message names the path), or a clean import when the
  corruption happened to be harmless;
- failures: any other exception type, a child that dies (segfault, abort) or a file
  that takes longer than :data:`PER_FILE_S` seconds.
"""

from __future__ import annotations

import io
import json
import os
import queue
import random
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.reliability import onnx_fuzz

PER_FILE_S = 10.0
CASES_PER_KIND = 40  # per seed graph: 3 graphs x 3 kinds x 40 = 360 files
SEED = 20


def _seed_graphs() -> dict[str, bytes]:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.RandomState(0)
    X = rng.rand(30, 4).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(np.int64)
    graphs = {
        "logistic": to_onnx(LogisticRegression().fit(X, y), X[:1]).SerializeToString(),
        "scaler_logistic": to_onnx(make_pipeline(StandardScaler(), LogisticRegression())
                                   .fit(X, y), X[:1]).SerializeToString(),
    }
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    buffer = io.BytesIO()
    torch.onnx.export(mlp, (torch.randn(3, 4),), buffer, dynamo=False, opset_version=17,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    graphs["torch_mlp"] = buffer.getvalue()
    return graphs


def _corrupted_files(folder: Path) -> list[Path]:
    rng = random.Random(SEED)
    paths = []
    for name, data in _seed_graphs().items():
        for kind, mutate in onnx_fuzz.MUTATIONS.items():
            for number in range(CASES_PER_KIND):
                path = folder / f"{name}-{kind}-{number}.onnx"
                path.write_bytes(mutate(data, rng))
                paths.append(path)
    return paths


def _watch(paths: list[Path], child_module: str = "tests.reliability.onnx_fuzz") -> tuple[dict[int, dict], str]:
    """Run the child (``python -m child_module PATH...``, speaking the protocol of ``onnx_fuzz.main``)
    on ``paths``; return the outcomes seen and why it stopped early ('' if not)."""
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    child = subprocess.Popen(
        [sys.executable, "-m", child_module, *map(str, paths)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
        cwd=Path(__file__).resolve().parents[2])
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in child.stdout] + [lines.put(None)],
                     daemon=True).start()
    outcomes: dict[int, dict] = {}
    current, stopped = None, ""
    try:
        lines.get(timeout=120)  # "ready": importing torch and bridge, not bounded per file
        while True:
            try:
                line = lines.get(timeout=PER_FILE_S)
            except queue.Empty:
                stopped = f"hang: {paths[current] if current is not None else 'startup'}"
                break
            if line is None:
                if len(outcomes) < len(paths):
                    child.wait(timeout=30)
                    stopped = (f"child died (exit {child.returncode}) on {paths[current]}: "
                               f"{child.stderr.read()[-2000:]}")
                break
            word, index, *rest = line.split(" ", 2)
            current = int(index)
            if word == "done":
                outcomes[current] = json.loads(rest[0])
    finally:
        child.kill()
        child.wait()
    return outcomes, stopped


def test_corrupted_onnx_files_give_bridge_errors(tmp_path):
    paths = _corrupted_files(tmp_path)
    outcomes, stopped = _watch(paths)
    assert not stopped, stopped
    assert len(outcomes) == len(paths)
    bad = {paths[i].name: o for i, o in outcomes.items()
           if o["result"] == "other-error" or not o.get("names_file", True)}
    assert not bad, json.dumps(bad, indent=1)[:4000]
    refused = sum(o["result"] == "bridge-error" for o in outcomes.values())
    assert refused > len(paths) // 2  # the corruptions do bite: most files are refused


@pytest.mark.parametrize("kind", onnx_fuzz.KINDS)
def test_mutations_are_seeded(kind):
    data = _seed_graphs()["logistic"]
    mutate = onnx_fuzz.MUTATIONS[kind]
    first = [mutate(data, random.Random(3)) for _ in range(3)]
    again = [mutate(data, random.Random(3)) for _ in range(3)]
    assert first == again and any(m != data for m in first)
