"""``distributed=True`` under a real ``torchrun --nproc_per_node=2`` (gloo, CPU): identical
parameters and histories on both ranks, half the rows each, the single-process result with
shuffling off and a matching batch size, one checkpoint writer; a dead rank is named."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="this torch build has no torch.distributed")

SCRIPT = Path(__file__).with_name("ddp_script.py")
ROOT = Path(__file__).resolve().parents[2]
#: Seconds a whole launch may take before the test fails (two processes import torch).
LAUNCH_TIMEOUT = 240


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)
    return env


def _report(folder: Path, rank: int) -> dict:
    return json.loads((folder / f"report-rank{rank}.json").read_text())


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """One torchrun launch running the regression, classification, Dataset and 101-row cases."""
    out = tmp_path_factory.mktemp("ddp")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--standalone", str(SCRIPT), str(out), "regression,classification,dataset,uneven"]
    done = subprocess.run(command, env=_environment(), capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.mark.parametrize("case", ["regression", "classification", "dataset"])
def test_both_ranks_agree_and_match_one_process(launched, case):
    folder = launched / case
    first, second = _report(folder, 0), _report(folder, 1)
    assert (first["world"], second["world"]) == (2, 2)
    assert first["history"] == second["history"]  # every value, durations included
    n_rows = 96 if case == "classification" else 120  # classification: 24 rows validate
    epochs = len(first["history"])
    assert epochs == 4
    for report in (first, second):  # each rank saw half the rows of every epoch
        assert len(report["rows"]) == epochs * n_rows // 2
    assert set(first["rows"]).isdisjoint(second["rows"])
    assert len(set(first["rows"]) | set(second["rows"])) == n_rows
    params = [torch.load(folder / f"params-rank{r}.pt") for r in (0, 1)]
    single = torch.load(folder / "params-single.pt")
    for name, value in params[0].items():
        assert torch.equal(value, params[1][name]), name
        torch.testing.assert_close(value, single[name], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(first["history"][-1]["train_loss"],
                               first["single_history"][-1]["train_loss"], rtol=1e-5)
    assert first["predictions"] == second["predictions"]
    assert all(not key.startswith("module.") for key in first["state_keys"])
    assert (folder / "saves-rank0.txt").read_text().split()  # rank 0 checkpointed ...
    assert not (folder / "saves-rank1.txt").exists()  # ... and rank 1 never did
    saved = torch.load(folder / "checkpoint" / "params.pt", weights_only=True)  # save_params
    assert sorted(saved) == sorted(first["state_keys"])  # plain names, no "module." prefix


def test_rows_that_do_not_divide_are_padded(launched):
    """101 rows on 2 ranks: each rank trains on 51 rows per epoch (row 0 of the order twice)."""
    first, second = _report(launched / "uneven", 0), _report(launched / "uneven", 1)
    assert first["history"] == second["history"]
    assert len(first["rows"]) == len(second["rows"]) == 4 * 51
    assert set(first["rows"]) | set(second["rows"]) == set(range(101))


def test_without_a_launcher_it_trains_as_one_process(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "regression"],
                          env=_environment(), capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = _report(tmp_path / "regression", 0)
    assert report["world"] == 1 and len(report["rows"]) == 4 * 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_rank_that_dies_is_named_by_the_others(tmp_path):
    """Rank 1 exits in epoch 2; rank 0 stops with a DistributedError naming it, within the
    stated timeout (torchrun itself would also stop rank 0 and name rank 1 as the root cause;
    this start without its agent shows bridge's own detection)."""
    shared = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2",
                  BRIDGE_DDP_TIMEOUT="20")
    started = time.monotonic()
    ranks = [subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path), "die"],
                              env=_environment(RANK=str(r), LOCAL_RANK=str(r), **shared),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for r in (0, 1)]
    try:
        outputs = [process.communicate(timeout=LAUNCH_TIMEOUT) for process in ranks]
    finally:
        for process in ranks:
            if process.poll() is None:
                process.kill()
    assert ranks[1].returncode == 3
    assert ranks[0].returncode != 0
    assert "DistributedError: rank(s) [1] stopped during epoch 2" in outputs[0][1], (
        outputs[0][1][-3000:])
    assert time.monotonic() - started < LAUNCH_TIMEOUT
