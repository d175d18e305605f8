"""Finishing an exported graph: metadata, the ONNX checker, and writing the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx

from bridge.errors import ExportError
from bridge.utils import atomic_write, check_writable_path

PRODUCER_NAME = "bridge"
# Protobuf cannot serialize a message over 2 GiB: larger models keep tensors in a side file.
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**20


def bridge_version() -> str:
    from bridge import __version__

    return __version__


def set_metadata(model: onnx.ModelProto, metadata: dict) -> onnx.ModelProto:
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


def check_and_save(model: onnx.ModelProto, path: str | os.PathLike | None) -> onnx.ModelProto:
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
        if large:
            check_writable_path(path)
            target = Path(path)
            onnx.save_model(model, str(target), save_as_external_data=True,
                            all_tensors_to_one_file=True, location=target.name + ".data")
            onnx.checker.check_model(str(target), full_check=True)
            return model
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"the exported graph fails onnx.checker: {error}") from error
    if path is not None:
        data = model.SerializeToString()
        atomic_write(path, lambda handle: handle.write(data))
    return model
