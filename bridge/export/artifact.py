"""Finishing an exported graph: metadata, the ONNX checker, and writing the file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import onnx

from bridge.errors import ExportError
from bridge.files import atomic_write, check_writable_path

PRODUCER_NAME = "bridge"
# Protobuf cannot serialize a message over 2 GiB: larger models keep tensors in a side file.
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**20


def bridge_version() -> str:
    from bridge import __version__

    return __version__


def set_metadata(model: onnx.ModelProto, metadata: dict[str, Any]) -> onnx.ModelProto:
    """Store producer, bridge version and ``metadata`` (JSON-encoded when not a string)."""
    model.producer_name = PRODUCER_NAME
    model.producer_version = bridge_version()
    entries = {"bridge.version": bridge_version(), **metadata}
    existing = {prop.key: prop for prop in model.metadata_props}
    for key, value in entries.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if key in existing:
            existing[key].value = text
        else:
            model.metadata_props.add(key=key, value=text)
    return model


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """Return the model's metadata properties as a dict of strings."""
    return {prop.key: prop.value for prop in model.metadata_props}


def check_and_save(model: onnx.ModelProto,
                   path: str | os.PathLike[str] | None) -> onnx.ModelProto:
    """Run ``onnx.checker.check_model(full_check=True)``; write to ``path`` when given.

    Models over 2 GiB are written with their tensors as external data next to ``path``
    (and checked from the file, the only way the checker accepts them).

    Raises
    ------
    ExportError
        When the checker rejects the graph, or a model over 2 GiB has no ``path``.
    """
    large = model.ByteSize() > EXTERNAL_DATA_THRESHOLD
    if large and path is None:
        raise ExportError(
            f"the exported model is {model.ByteSize() / 2**30:.1f} GiB, over protobuf's 2 GiB "
            "limit: give a path so its tensors can be written as external data"
        )
    try:
        if large and path is not None:
            _save_with_external_data(model, Path(path))
            return model
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"the exported graph fails onnx.checker: {error}") from error
    if path is not None:
        data = model.SerializeToString()
        atomic_write(path, lambda handle: handle.write(data))
    return model


def _save_with_external_data(model: onnx.ModelProto, target: Path) -> None:
    """Write ``target`` and its ``.data`` file in a staging folder beside it, check them
    there, then move both into place (the data first): a failed check or write leaves any
    earlier files untouched."""
    folder = check_writable_path(target)
    data_name = target.name + ".data"
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.tmp-", dir=folder) as staging:
        staged = Path(staging) / target.name
        onnx.save_model(model, str(staged), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data_name)
        onnx.checker.check_model(str(staged), full_check=True)
        os.replace(Path(staging) / data_name, target.with_name(data_name))
        os.replace(staged, target)
