"""scikit-learn → ONNX → torch (the sk2torch seed): convert a fitted pipeline, run it with torch
(on the GPU when there is one), save it as TorchScript, export the lowered ONNX graph and run
that in onnxruntime. The SVC gradient field of the seed is ``examples/svm_vector_field.py``.
Run: ``python examples/sklearn_to_torch.py [--smoke] [--output DIR]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from sklearn.datasets import make_classification
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import bridge


def main(smoke: bool = False, output: str | None = None) -> dict:
    folder = Path(output or tempfile.mkdtemp())
    X, y = make_classification(2_000 if smoke else 20_000, 20, n_informative=10, n_classes=3,
                               random_state=0)
    X = X.astype(np.float32)
    model = Pipeline([("center", StandardScaler(with_std=False)),
                      ("classify", SGDClassifier(loss="log_loss", random_state=0))]).fit(X, y)

    # 1. Convert: the estimator's own methods, numpy in → numpy out.
    torch_model = bridge.from_sklearn(model)
    agree = np.mean(torch_model.predict(X) == model.predict(X))
    print(f"labels agree with scikit-learn on {agree:.2%} of {len(X)} rows")

    # 2. Tensors in → tensors out, on the GPU when available.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_model.to(device)
    tensor = torch.from_numpy(X).to(device)
    with torch.inference_mode():
        torch_model.predict_proba(tensor)  # warm-up
        started = time.perf_counter()
        probabilities = torch_model.predict_proba(tensor)
        if device == "cuda":
            torch.cuda.synchronize()
        torch_seconds = time.perf_counter() - started
    started = time.perf_counter()
    reference = model.predict_proba(X)
    sklearn_seconds = time.perf_counter() - started
    difference = np.abs(probabilities.cpu().numpy() - reference).max()
    print(f"predict_proba on {device}: {torch_seconds * 1e3:.1f} ms (scikit-learn "
          f"{sklearn_seconds * 1e3:.1f} ms); max |Δ| {difference:.1e}")

    # 3. TorchScript: loadable where torch is installed, without bridge.
    graph_module = bridge.from_onnx(bridge.to_onnx(torch_model)).cpu()
    scripted_path = folder / "pipeline.pt"
    torch.jit.save(torch.jit.trace(graph_module, torch.from_numpy(X[:4])), str(scripted_path))
    loaded = torch.jit.load(str(scripted_path))
    label = loaded(torch.from_numpy(X[:5]))[0]
    print(f"TorchScript reload predicts {label.tolist()}; scikit-learn {model.predict(X[:5]).tolist()}")

    # 4. The lowered graph: standard ONNX operators only, for runtimes without ai.onnx.ml.
    lowered_path = folder / "pipeline-lowered.onnx"
    lowered = bridge.to_onnx(torch_model.cpu(), lowered_path, lowered=True)
    domains = {node.domain or "ai.onnx" for node in lowered.graph.node}
    # onnxruntime-gpu lists its CUDA provider even where CUDA cannot load: ask torch first
    providers = ["CPUExecutionProvider"]
    if torch.cuda.is_available() and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = onnxruntime.InferenceSession(str(lowered_path), providers=providers)
    outputs = session.run(None, {session.get_inputs()[0].name: X})
    served = dict(zip([o.name for o in session.get_outputs()], outputs))
    agree_lowered = np.mean(served["label"] == model.predict(X))
    print(f"lowered graph uses {sorted(domains)}; onnxruntime ({providers[0]}) labels agree "
          f"on {agree_lowered:.2%}")
    return {"agree": agree, "agree_lowered": agree_lowered, "difference": difference,
            "domains": domains}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="smaller data (for CI)")
    parser.add_argument("--output", help="folder for the .pt and .onnx files (default: temp)")
    arguments = parser.parse_args()
    main(arguments.smoke, arguments.output)
