"""Training and prediction overhead of bridge's NeuralNetClassifier against a hand-written PyTorch loop (and skorch).

Same MLP, same in-memory data (sklearn's digits tiled to ~36k rows, float32), batch 128, SGD.
Run: ``python benchmarks/train_overhead.py [--epochs 3] [--repeats 3] [--threads 1] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from sklearn.datasets import load_digits

from bridge import NeuralNetClassifier


class MLP(torch.nn.Module):
    """64 → 256 → 256 → 10 with ReLU; outputs logits."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.layers(X)


def load_data(tiles: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Digits (1797 rows) tiled ``tiles`` times: ~36k rows of 64 float32 features."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return np.tile(X, (tiles, 1)), np.tile(y.astype(np.int64), tiles)


def hand_loop(X: np.ndarray, y: np.ndarray, epochs: int, batch_size: int, lr: float, device: str) -> torch.nn.Module:
    """The reference: tensors on the device, randperm per epoch, loss summed on the device."""
    module = MLP().to(device)
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    criterion = torch.nn.CrossEntropyLoss()
    X_t, y_t = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    for _ in range(epochs):
        module.train()
        order = torch.randperm(len(X_t), device=device)
        total = torch.zeros((), device=device)
        for start in range(0, len(X_t), batch_size):
            index = order[start:start + batch_size]
            optimizer.zero_grad()
            loss = criterion(module(X_t[index]), y_t[index])
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(index)
        float(total)  # one sync per epoch, as a real loop would log
    return module


def bridge_net(epochs: int, batch_size: int, lr: float, device: str, split: bool) -> NeuralNetClassifier:
    extra = {} if split else {"train_split": None}
    return NeuralNetClassifier(MLP, criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.SGD, lr=lr,
                               max_epochs=epochs, batch_size=batch_size, iterator_train__shuffle=True,
                               verbose=0, device=device, **extra)


def skorch_net(epochs: int, batch_size: int, lr: float, device: str, split: bool):
    from skorch import NeuralNetClassifier as SkorchClassifier

    extra = {} if split else {"train_split": None}
    return SkorchClassifier(MLP, criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.SGD, lr=lr,
                            max_epochs=epochs, batch_size=batch_size, iterator_train__shuffle=True,
                            verbose=0, device=device, **extra)


def best_time(function: Callable[[], object], repeats: int, device: str) -> float:
    """The fastest of ``repeats`` runs, in seconds (CUDA synchronised)."""
    times = []
    for _ in range(repeats):
        torch.manual_seed(0)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved_best_times(runs: dict[str, Callable[[], object]], repeats: int, device: str) -> dict[str, float]:
    """Best time of each run, running them round-robin so that load changes hit all of them alike."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, function in runs.items():
            best[name] = min(best[name], best_time(function, 1, device))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 gives stable timings)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    X, y = load_data()
    lr, bs, ep, dev = 0.05, args.batch_size, args.epochs, args.device
    try:
        import skorch  # noqa: F401

        has_skorch = True
    except ImportError:
        has_skorch = False

    print(f"data: {X.shape[0]} rows x {X.shape[1]} features, batch {bs}, {ep} epochs, device {dev}, "
          f"threads {args.threads}, best of {args.repeats} (runs interleaved)")
    runs: dict[str, Callable[[], object]] = {"hand-written loop": lambda: hand_loop(X, y, ep, bs, lr, dev)}
    for split in (False, True):
        label = "default ValidSplit(5)" if split else "train_split=None"
        runs["bridge, " + label] = lambda split=split: bridge_net(ep, bs, lr, dev, split).fit(X, y)
        if has_skorch:
            runs["skorch, " + label] = lambda split=split: skorch_net(ep, bs, lr, dev, split).fit(X, y)
    timings = interleaved_best_times(runs, args.repeats, dev)
    hand = timings["hand-written loop"]
    for name, seconds in timings.items():
        note = ""
        if name.startswith("skorch"):
            ours = timings[name.replace("skorch", "bridge")]
            note = f"   (bridge is {seconds / ours:.1f}x faster)"
        print(f"{name:<34}{seconds:8.3f} s   {seconds / hand:.2f}x{note}")

    net = bridge_net(1, bs, lr, dev, split=False).fit(X, y)
    module = net.module_
    X_10k = X[:10_000]

    def bare_forward(rows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.softmax(module(torch.from_numpy(rows).to(dev)), dim=-1).cpu().numpy()

    np.testing.assert_allclose(net.predict_proba(X_10k), bare_forward(X_10k), rtol=1e-5, atol=1e-6)
    repeats = max(args.repeats, 5)
    bare = best_time(lambda: bare_forward(X_10k), repeats, dev)
    proba = best_time(lambda: net.predict_proba(X_10k), repeats, dev)
    print(f"{'bare forward, 10k rows':<34}{bare * 1e3:8.2f} ms  1.00x")
    print(f"{'bridge predict_proba, 10k rows':<34}{proba * 1e3:8.2f} ms  {proba / bare:.2f}x")
    one_bare = best_time(lambda: bare_forward(X[:1]), 50, dev)
    one = best_time(lambda: net.predict_proba(X[:1]), 50, dev)
    print(f"{'bare forward, 1 row':<34}{one_bare * 1e3:8.3f} ms  1.00x")
    print(f"{'bridge predict_proba, 1 row':<34}{one * 1e3:8.3f} ms  {one / one_bare:.2f}x")
    if has_skorch:
        sk = skorch_net(1, bs, lr, dev, split=False).fit(X, y)
        sk_proba = best_time(lambda: sk.predict_proba(X_10k), repeats, dev)
        print(f"{'skorch predict_proba, 10k rows':<34}{sk_proba * 1e3:8.2f} ms  {sk_proba / bare:.2f}x")


if __name__ == "__main__":
    main()
