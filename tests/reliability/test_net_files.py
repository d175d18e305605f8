"""Catalogue: checkpoint files the nets cannot read, and what an interrupted save leaves behind.

``load_params`` on an empty, cut-short or otherwise corrupted ``.pt``/``.safetensors`` file or
history JSON raises :class:`bridge.errors.ModelFileError` (a ``ValueError`` and an ``OSError``)
naming the file; a state dict that does not fit names the file and the part. A save killed
mid-write leaves the previous file loadable and a ``.tmp-*`` file, which the next save of the
same target removes; checkpoints never pick such files up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bridge import NeuralNetRegressor
from bridge.callbacks import Checkpoint
from bridge.errors import ModelFileError
from bridge.history import History

ROOT = Path(__file__).resolve().parents[2]


def make_net(width: int = 4) -> NeuralNetRegressor:
    return NeuralNetRegressor(torch.nn.Linear, module__in_features=width, module__out_features=1, max_epochs=2,
                              batch_size=16, train_split=None, verbose=0)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.RandomState(0)
    X = rng.rand(32, 4).astype(np.float32)
    torch.manual_seed(0)
    return make_net().fit(X, X.sum(axis=1))


@pytest.fixture
def saved(fitted, tmp_path):
    files = {"pt": tmp_path / "params.pt", "safetensors": tmp_path / "params.safetensors",
             "optimizer": tmp_path / "optimizer.pt", "history": tmp_path / "history.json"}
    fitted.save_params(f_params=files["pt"], f_optimizer=files["optimizer"], f_history=files["history"])
    fitted.save_params(f_params=files["safetensors"])
    return files


def load(path: Path, key: str = "f_params") -> None:
    make_net().initialize().load_params(**{key: path})


# ------------------------------------------------------------------ 6. unreadable files
@pytest.mark.parametrize("kind", ["pt", "safetensors", "optimizer"])
def test_an_empty_state_file_is_named(saved, kind):
    path = saved[kind]
    path.write_bytes(b"")
    with pytest.raises(ModelFileError, match="is empty") as caught:
        load(path, "f_optimizer" if kind == "optimizer" else "f_params")
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, OSError)


@pytest.mark.parametrize("kind", ["pt", "safetensors", "optimizer"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_a_cut_short_state_file_is_named(saved, kind, keep):
    path = saved[kind]
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(ModelFileError) as caught:
        load(path, "f_optimizer" if kind == "optimizer" else "f_params")
    assert str(path) in str(caught.value) and "cut short or corrupted" in str(caught.value)
    assert caught.value.__cause__ is not None  # torch's or safetensors' own words are kept


@pytest.mark.parametrize(("text", "words"), [
    ("", "it is empty"),
    ('[{"epoch": 1, "train_loss": 0.', "not valid JSON"),
    ('{"epoch": 1}', "expected a JSON list of one object per epoch, got dict"),
    ('[{"epoch": 1}, 3]', "epoch 1 is a int"),
    ('[{"epoch": 1, "batches": {"a": 1}}]', "'batches' of epoch 0"),
    (b"[\xff\xfe]", "not valid JSON"),
])
def test_a_corrupt_history_file_is_named(saved, text, words):
    path = saved["history"]
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ModelFileError, match=words) as caught:
        load(path, "f_history")
    assert str(path) in str(caught.value)
    with pytest.raises(ModelFileError, match=words):
        History.from_file(path)


def test_a_state_dict_of_another_module_names_the_file(saved, tmp_path):
    with pytest.raises(RuntimeError) as caught:
        make_net(width=6).initialize().load_params(f_params=saved["pt"])
    for words in (str(saved["pt"]), "does not fit module_", "size mismatch"):
        assert words in str(caught.value)


def test_a_checkpoint_with_a_corrupt_history_names_it(fitted, tmp_path):
    checkpoint = Checkpoint(dirname=str(tmp_path), monitor=None)
    checkpoint.initialize().save_model(fitted)
    history = tmp_path / "history.json"
    history.write_text("[{")
    with pytest.raises(ModelFileError, match="not valid JSON") as caught:
        make_net().load_params(checkpoint=checkpoint)
    assert str(history) in str(caught.value)


def test_missing_files_stay_builtin_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load(tmp_path / "nothing.pt")
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        load(tmp_path / "nothing.json", "f_history")


# ------------------------------------------------------------------ 7. interrupted saves
_WRITE_AND_HANG = """
import sys, time
from bridge.files import atomic_write

def writer(handle):
    handle.write(b"half a file")
    handle.flush()
    print("writing", flush=True)
    time.sleep(120)

atomic_write(sys.argv[1], writer)
"""


def _kill_mid_write(target: Path) -> list[Path]:
    """Start a child that writes ``target`` atomically, kill it mid-write; the temp files it left."""
    child = subprocess.Popen([sys.executable, "-c", _WRITE_AND_HANG, str(target)], stdout=subprocess.PIPE,
                             text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        assert child.stdout.readline().strip() == "writing"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return sorted(target.parent.glob(f".tmp-{target.name}-*"))


def _predictions(net) -> np.ndarray:
    return net.predict_proba(np.eye(4, dtype=np.float32))


def test_a_save_killed_mid_write_leaves_the_previous_file_and_the_next_save_cleans_up(fitted, saved):
    target = saved["pt"]
    leftovers = _kill_mid_write(target)
    assert len(leftovers) == 1  # the stale temp file of the killed write
    restored = make_net().initialize()
    restored.load_params(f_params=target)  # the previous file is intact
    np.testing.assert_array_equal(_predictions(restored), _predictions(fitted))
    other = saved["safetensors"]
    fitted.save_params(f_params=other)  # a save of another target leaves it alone
    assert leftovers[0].exists()
    fitted.save_params(f_params=target)  # the next save of the same target removes it
    assert not leftovers[0].exists()
    assert sorted(p.name for p in target.parent.iterdir() if p.name.startswith(".")) == []


@pytest.mark.skipif(sys.platform == "win32", reason="the writer's lock is POSIX flock")
def test_a_temp_file_that_a_live_writer_holds_is_kept(fitted, saved):
    import fcntl

    target = saved["pt"]
    live = target.parent / f".tmp-{target.name}-abcd1234"
    with open(live, "wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # as atomic_write holds it while writing
        fitted.save_params(f_params=target)
        assert live.exists()
    fitted.save_params(f_params=target)  # its writer gone: removed
    assert not live.exists()


def test_checkpoints_clean_up_and_never_pick_up_staged_or_temp_files(fitted, tmp_path):
    checkpoint = Checkpoint(dirname=str(tmp_path), monitor=None)
    checkpoint.initialize().save_model(fitted)
    params = tmp_path / "params.pt"
    junk = b"not a state dict"  # loading any of these would fail loudly
    staged = tmp_path / ".params.pt.0123456789ab.partial"
    staged.write_bytes(junk)
    temp_of_staged = tmp_path / ".tmp-.params.pt.0123456789ab.partial-zz99aa11"
    temp_of_staged.write_bytes(junk)
    temp = tmp_path / ".tmp-params.pt-q1w2e3r4"
    temp.write_bytes(junk)
    unrelated = tmp_path / ".params.pt.backup"
    unrelated.write_bytes(junk)
    restored = make_net()
    restored.load_params(checkpoint=checkpoint)  # the real files, not the leftovers
    np.testing.assert_array_equal(_predictions(restored), _predictions(fitted))
    checkpoint.save_model(fitted)
    assert not staged.exists() and not temp_of_staged.exists() and not temp.exists()
    assert unrelated.exists() and params.exists()
    assert json.loads((tmp_path / "history.json").read_text())  # the checkpoint itself is whole
