"""Score a Dask DataFrame on a LocalCluster with a converted pipeline and with a trained net.

The model goes to each worker once, as bytes under one key of the graph, and is rebuilt there
(on the worker's GPU when it has one); ``model.predict(ddf)`` is lazy like any Dask call.

Run: ``python examples/dask_scoring.py`` (``--smoke`` for a fast run). Needs
``pip install onnxbridge[dask]``.
"""

from __future__ import annotations

import argparse

import dask.dataframe as dd
import numpy as np
import pandas as pd
import torch
from distributed import Client, LocalCluster
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import bridge
from bridge import NeuralNetClassifier
from bridge.dask import load_counts


def table(rows: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Two numeric columns and one text column; the label depends on all three."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"size": rng.normal(size=rows), "age": rng.normal(size=rows),
                          "city": rng.choice(["paris", "rome", "oslo", "lima"], rows)})
    label = ((frame["size"] + frame["age"] * (frame["city"] == "rome")) > 0.2).astype(int)
    return frame, label.to_numpy()


def main(smoke: bool = False, workers: int = 2) -> dict:
    frame, label = table(1_000 if smoke else 20_000)
    pipeline = make_pipeline(
        ColumnTransformer([("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                           ("numbers", StandardScaler(), ["size", "age"])]),
        RandomForestClassifier(10 if smoke else 100, max_depth=6 if smoke else 10, random_state=0),
    ).fit(frame, label)
    model = bridge.from_sklearn(pipeline)

    torch.manual_seed(0)
    numbers = frame[["size", "age"]].astype(np.float32)  # the net learns the column names
    net = NeuralNetClassifier(
        torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2)),
        criterion=torch.nn.CrossEntropyLoss, max_epochs=3 if smoke else 20, lr=0.1,
        batch_size=64, verbose=0,
    ).fit(numbers, label)

    scored, _ = table(4_000 if smoke else 1_000_000, seed=1)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        ddf = dd.from_pandas(scored, npartitions=8 if smoke else 40)
        labels = model.predict(ddf)  # lazy: a dask Series named "predict"
        probabilities = net.predict_proba(ddf[["size", "age"]].astype("float32"))
        labels, probabilities = client.compute([labels, probabilities], sync=True)
        loads = client.run(load_counts)
    agree = float(np.mean(labels.to_numpy() == pipeline.predict(scored)))
    in_memory = net.predict_proba(scored[["size", "age"]].astype(np.float32))
    net_gap = float(np.abs(probabilities.to_numpy() - in_memory).max())
    most_loads = max((count for counts in loads.values() for count in counts.values()), default=0)
    print(f"{len(labels):,} rows scored on {workers} worker processes; pipeline labels agree "
          f"with scikit-learn on {agree:.1%}; net probabilities within {net_gap:.1e} of the "
          f"in-memory call; each model was unpickled at most {most_loads}x per worker")
    return {"rows": len(labels), "agree": agree, "net_gap": net_gap, "most_loads": most_loads}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small data (for CI)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    arguments = parser.parse_args()
    main(arguments.smoke, arguments.workers)
