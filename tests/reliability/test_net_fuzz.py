"""Fuzz: a few hundred corrupted checkpoint files, each must give an error naming it, never a crash or hang.

Seeds: the ``.pt`` and ``.safetensors`` parameters, the ``.pt`` optimizer state and the history
JSON of a small fitted net. Each is truncated and bit-flipped with a fixed seed (the mutations
of ``onnx_fuzz``); a child process (``net_fuzz``) loads every file with ``load_params`` and
``test_fuzz._watch`` watches it:

- accepted: a :class:`bridge.errors.BridgeError` or a builtin exception whose message names
  the file, or a clean load when the corruption happened to be harmless (a flipped bit in a
  weight or a history number: neither format carries a checksum);
- failures: any other exception type, a message without the file's path, a child that dies
  (segfault, abort) or a file that takes longer than ``PER_FILE_S`` seconds.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from tests.reliability import net_fuzz, onnx_fuzz
from tests.reliability.test_fuzz import _watch

CASES_PER_KIND = 40  # 4 seed files x 2 mutations x 40 = 320 files
SEED = 20
MUTATIONS = {"truncated": onnx_fuzz.truncate, "bit-flipped": onnx_fuzz.flip_bits}


def _seed_files(folder: Path) -> dict[str, bytes]:
    import torch

    rng = np.random.RandomState(0)
    X = rng.rand(32, 4).astype(np.float32)
    torch.manual_seed(0)
    net = net_fuzz.make_net().fit(X, X.sum(axis=1))
    names = {"params.pt": "f_params", "optimizer.pt": "f_optimizer", "history.json": "f_history"}
    for name, argument in names.items():
        net.save_params(**{argument: folder / name})
    net.save_params(f_params=folder / "params.safetensors")
    return {name: (folder / name).read_bytes() for name in [*names, "params.safetensors"]}


def _corrupted_files(folder: Path) -> list[Path]:
    rng = random.Random(SEED)
    paths = []
    for name, data in _seed_files(folder).items():
        stem, suffix = name.split(".")
        for kind, mutate in MUTATIONS.items():
            for number in range(CASES_PER_KIND):
                path = folder / f"{stem}-{kind}-{number}.{suffix}"
                path.write_bytes(mutate(data, rng))
                paths.append(path)
    return paths


def test_corrupted_checkpoint_files_give_errors_naming_them(tmp_path):
    paths = _corrupted_files(tmp_path)
    outcomes, stopped = _watch(paths, "tests.reliability.net_fuzz")
    assert not stopped, stopped
    assert len(outcomes) == len(paths)
    bad = {paths[i].name: o for i, o in outcomes.items()
           if o["result"] == "other-error" or not o.get("names_file", True)}
    assert not bad, json.dumps(bad, indent=1)[:4000]
    refused = [o for o in outcomes.values() if o["result"] != "loaded"]
    assert len(refused) > len(paths) // 2  # the corruptions do bite: most files are refused
    truncated = [o for p, o in zip(paths, outcomes.values()) if "truncated" in p.name]
    assert all(o["result"] != "loaded" for o in truncated)  # a file cut short never loads


@pytest.mark.parametrize("seed", [3, 4])
def test_the_corruptions_are_seeded(tmp_path, seed):
    data = _seed_files(tmp_path)["params.pt"]
    for mutate in MUTATIONS.values():
        assert mutate(data, random.Random(seed)) == mutate(data, random.Random(seed)) != data
