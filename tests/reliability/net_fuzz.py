"""The child process of ``test_net_fuzz.py``: loads corrupted checkpoint files into a net.

Run as ``python -m tests.reliability.net_fuzz PATH...``; it speaks the protocol of
``onnx_fuzz.main`` (``ready``, then ``start <i>`` and ``done <i> <outcome>`` per file), so that
``test_fuzz._watch`` pins a crash or a hang to the one file that caused it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

#: Which ``load_params`` argument reads a file, from the start of its name.
ARGUMENTS = {"params": "f_params", "optimizer": "f_optimizer", "history": "f_history"}


class MLP(torch.nn.Module):
    """The module the seed checkpoint was saved from (and every corrupted file is loaded into)."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))

    def forward(self, X):
        return self.layers(X)


def make_net():
    """A regressor over :class:`MLP` with Adam (whose state makes a richer optimizer file)."""
    from bridge import NeuralNetRegressor

    return NeuralNetRegressor(MLP, optimizer=torch.optim.Adam, max_epochs=2, batch_size=8,
                              train_split=None, verbose=0)


def outcome(net, path: str) -> dict:
    """Load one file; describe what happened (never raises).

    Accepted by the test: a clean load (a flipped bit in a weight: a ``.pt`` carries no
    checksum), or a :class:`bridge.errors.BridgeError` or builtin exception whose message
    names the file. Anything else is reported as ``other-error`` or ``names_file: false``.
    """
    from bridge.errors import BridgeError

    argument = ARGUMENTS[Path(path).name.split("-", 1)[0].split(".", 1)[0]]
    try:
        net.initialize()
        net.load_params(**{argument: path})
    except Exception as error:
        builtin = type(error).__module__ in ("builtins", "_pickle", "pickle", "json.decoder")
        result = "bridge-error" if isinstance(error, BridgeError) else ("builtin-error" if builtin else "other-error")
        return {"result": result, "type": type(error).__name__, "names_file": path in str(error),
                "message": str(error)[:300]}
    return {"result": "loaded"}


def main(paths: list[str]) -> None:
    import warnings

    warnings.simplefilter("ignore")
    net = make_net()  # import bridge and build the net before the first "start"
    print("ready", flush=True)
    for index, path in enumerate(paths):
        print(f"start {index}", flush=True)
        print(f"done {index} {json.dumps(outcome(net, path))}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
