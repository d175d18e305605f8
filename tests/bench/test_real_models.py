"""benchmarks/real_models.py end to end on its cheapest export (no compile, one round)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "real_models.py"


@pytest.fixture(scope="module")
def real_models():
    spec = importlib.util.spec_from_file_location("real_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_models"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()  # main() runs on one thread
    yield module
    torch.set_num_threads(threads)
    sys.modules.pop("real_models", None)


def test_recurrent_exports_run_and_agree_with_onnxruntime(real_models, tmp_path):
    output = tmp_path / "report"
    rows = real_models.main(["--models", "lstm,gru", "--exporters", "torchscript",
                             "--no-compile", "--repeats", "1", "--output", str(output)])
    assert [(r.model, r.exporter, r.status) for r in rows] == [
        ("lstm", "torchscript", "ok"), ("gru", "torchscript", "ok")]
    for row in rows:
        assert row.eager_vs_onnxruntime < 1e-4 and row.torch_vs_onnxruntime < 1e-4
        assert row.eager_ms[0] > 0 and row.onnxruntime_ms[0] > 0 and not row.compiled_ms
    report = Path(str(output) + ".md").read_text()
    assert "| lstm | torchscript |" in report and "eager / torch" in report
    assert len(json.loads(Path(str(output) + ".json").read_text())) == 2


def test_unknown_model_is_refused_with_the_known_ones(real_models):
    with pytest.raises(SystemExit):
        real_models.main(["--models", "no_such_net", "--no-compile"])


def test_torchvision_is_none_or_importable(real_models):
    torchvision = real_models.import_torchvision()
    if torchvision is not None:
        assert hasattr(torchvision.models, "resnet18")
