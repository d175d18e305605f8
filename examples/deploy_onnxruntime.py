"""Deployment: train a net, export it to ONNX, serve predictions with onnxruntime only.

The serving half runs in a fresh Python process that imports numpy and onnxruntime and
nothing else (no torch, no bridge), as a production server would.
Run: ``python examples/deploy_onnxruntime.py [--smoke] [--output DIR]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

import bridge

SERVER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    rows = np.load(sys.argv[2])
    label, probabilities = session.run(None, {"X": rows})
    assert "torch" not in sys.modules and "bridge" not in sys.modules
    print(json.dumps({"labels": label.tolist(), "confidence": probabilities.max(1).tolist(),
                      "classes": json.loads(meta["bridge.classes"])}))
""")


def train(smoke: bool):
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    net = bridge.NeuralNetClassifier(
        nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
        criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-3,
        max_epochs=3 if smoke else 20, verbose=0,
    )
    pipeline = make_pipeline(StandardScaler(), net).fit(X, y)
    return pipeline, X


def main(smoke: bool = False, output: str | None = None) -> dict:
    import json

    torch.manual_seed(0)
    folder = Path(output or tempfile.mkdtemp())
    pipeline, X = train(smoke)
    path = folder / "digits.onnx"
    bridge.to_onnx(pipeline, path, X_sample=X[:2])  # scaler + net, one graph
    rows = folder / "rows.npy"
    np.save(rows, X[:8])
    served = subprocess.run([sys.executable, "-c", SERVER, str(path), str(rows)],
                            capture_output=True, text=True, check=True)
    answer = json.loads(served.stdout)
    expected = pipeline.predict(X[:8]).tolist()
    print(f"onnxruntime served {answer['labels']}; the pipeline predicts {expected}")
    if answer["labels"] != expected:
        raise SystemExit("the served model disagrees with the pipeline")
    return answer


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a short training run (for CI)")
    parser.add_argument("--output", help="folder for the .onnx file (default: a temp folder)")
    arguments = parser.parse_args()
    main(arguments.smoke, arguments.output)
