"""Time the canonical text pipeline, TfidfVectorizer(ngram_range=(1, 2)) → LogisticRegression:
scikit-learn, bridge (and its host-side encoding alone), onnxruntime on the documents artifact.

Run from the repository root::

    python benchmarks/text.py            # prints a markdown table (ms per call)
    python benchmarks/text.py --quick    # fewer rounds

One thread everywhere; backends interleaved round by round; best and median of the rounds.
bridge's and onnxruntime's probabilities are checked against scikit-learn before timing.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime
import torch
from onnx import helper
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import bridge

WORDS = ("the quick brown fox jumps over lazy dog data model torch onnx graph tensor device "
         "café naïve résumé emoji🙂 e-mail don't 42 3.14").split()


def documents(rows: int, seed: int) -> list[str]:
    """Seeded documents of 0-30 words with punctuation and mixed case."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rows):
        words = rng.choice(WORDS, rng.integers(0, 31))
        out.append(" ".join(w.upper() if rng.random() < 0.1 else w + rng.choice(["", ",", "."])
                            for w in words))
    return out


def _session(graph) -> onnxruntime.InferenceSession:
    for node in graph.graph.node:  # a locale every Linux image has (default en_US.UTF-8)
        if node.op_type == "StringNormalizer":
            node.attribute.append(helper.make_attribute("locale", "C.UTF-8"))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(graph.SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 25")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = documents(3000, seed=0)
    target = np.array(["dog" in d.lower() for d in train])
    pipeline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression())
    pipeline.fit(train, target)
    model = bridge.from_sklearn(pipeline)
    session = _session(model.onnx_model["predict_proba"])
    rounds = 5 if args.quick else 25
    print(f"vocabulary: {len(pipeline[0].vocabulary_)} terms; ms per call, best / median of "
          f"{rounds} rounds, one thread\n")
    print("| rows | scikit-learn | bridge | bridge host encoding | onnxruntime (documents) |")
    print("|---|---|---|---|---|")
    for rows in (1, 100, 2000):
        batch = documents(rows, seed=rows)
        np.testing.assert_allclose(model.predict_proba(batch), pipeline.predict_proba(batch),
                                   atol=1e-5)
        feeds = {"X": np.array(batch, dtype=object).reshape(-1, 1)}
        np.testing.assert_allclose(session.run(None, feeds)[1], pipeline.predict_proba(batch),
                                   atol=1e-5)
        calls = {"sklearn": lambda b=batch: pipeline.predict_proba(b),
                 "bridge": lambda b=batch: model.predict_proba(b),
                 "host": lambda b=batch: model._input_spec.encoder.entries(b),
                 "onnxruntime": lambda f=feeds: session.run(None, f)}
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(rounds):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append((time.perf_counter() - start) * 1e3)
        cells = [f"{min(t):.3f} / {float(np.median(t)):.3f}" for t in times.values()]
        print(f"| {rows} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
