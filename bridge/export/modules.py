"""Exporting a torch module with torch's ONNX exporter, with errors a user can act on."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence

import onnx
import torch
from torch import nn

from bridge.errors import ExportError

EXPORTERS = ("dynamo", "torchscript")
MINIMUM_DYNAMO_OPSET = 18


def export_module(
    module: nn.Module,
    sample: torch.Tensor,
    *,
    input_name: str = "X",
    output_names: Sequence[str],
    opset: int | None = None,
    exporter: str = "dynamo",
) -> onnx.ModelProto:
    """Export ``module`` called on one tensor with a dynamic batch (first) dimension.

    Parameters
    ----------
    module : nn.Module
        Taking one tensor, returning one tensor or a tuple matching ``output_names``.
    sample : torch.Tensor
        An example input (its batch size does not matter).
    input_name, output_names : str, sequence of str
        Names of the graph input and outputs.
    opset : int, optional
        The ai.onnx opset to target (default: the exporter's).
    exporter : {"dynamo", "torchscript"}
        ``"dynamo"`` (torch.export based, the default of torch's exporter) or the
        legacy TorchScript-based exporter.

    Raises
    ------
    ExportError
        When the forward cannot be traced (with the tracer's reason and what to do),
        or the opset is too old for an operator the module needs.
    """
    if exporter not in EXPORTERS:
        raise ExportError(f"exporter={exporter!r} is not known; valid: {', '.join(EXPORTERS)}")
    check_opset(opset)
    module = module.eval()
    if sample.shape[0] < 2:  # a batch of one would be specialised to a constant 1
        sample = torch.cat([sample, sample])
    # torch's exporter logs one warning per torchvision op when torchvision is absent
    registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    previous_level = registration_log.level
    registration_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                model = _export_dynamo(module, sample, input_name, list(output_names), opset)
            else:
                model = _export_torchscript(module, sample, input_name, list(output_names), opset)
    except ExportError:
        raise
    except Exception as error:
        raise ExportError(_explain(error, exporter, opset)) from error
    finally:
        registration_log.setLevel(previous_level)
    produced = default_opset(model)
    if opset is not None and produced != opset:  # torch's converter falls back silently
        raise ExportError(f"torch's {exporter} exporter produced opset {produced}, not the "
                          f"requested opset {opset}; pick an opset it can convert to")
    return model


def check_opset(opset: int | None) -> None:
    """Raise ExportError unless ``opset`` is None or an ai.onnx opset the installed onnx
    package knows."""
    newest = onnx.defs.onnx_opset_version()
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int)
                              or not 1 <= opset <= newest):
        raise ExportError(f"opset={opset!r} is not valid; expected an integer from 1 to {newest} "
                          f"(the newest ai.onnx opset onnx {onnx.__version__} knows)")


def default_opset(model: onnx.ModelProto) -> int | None:
    """The model's ai.onnx (default domain) opset version."""
    return next((entry.version for entry in model.opset_import
                 if entry.domain in ("", "ai.onnx")), None)


def _export_dynamo(module: nn.Module, sample: torch.Tensor, input_name: str,
                   output_names: list[str], opset: int | None) -> onnx.ModelProto:
    if opset is not None and opset < MINIMUM_DYNAMO_OPSET:
        raise ExportError(
            f"opset {opset} is too old for torch's dynamo exporter (it targets opset "
            f"{MINIMUM_DYNAMO_OPSET} or newer); pass opset >= {MINIMUM_DYNAMO_OPSET}, or "
            "exporter='torchscript' for older opsets"
        )
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(
        module, (sample,), dynamo=True, input_names=[input_name], output_names=output_names,
        dynamic_shapes=({0: batch},), opset_version=opset, verbose=False,
    )
    if program is None:  # torch returns None only when writing to a file, which we never ask
        raise ExportError("torch.onnx.export returned no program")
    program.optimize()
    return program.model_proto


def _export_torchscript(module: nn.Module, sample: torch.Tensor, input_name: str,
                        output_names: list[str], opset: int | None) -> onnx.ModelProto:
    buffer = io.BytesIO()
    torch.onnx.export(
        module, (sample,), buffer,  # type: ignore[arg-type]  # the legacy exporter takes files dynamo=False, input_names=[input_name],
        output_names=output_names, dynamic_axes={input_name: {0: "batch"}},
        opset_version=opset or 17,
    )
    return onnx.load_from_string(buffer.getvalue())


def _explain(error: Exception, exporter: str, opset: int | None) -> str:
    first_line = next((line for line in str(error).splitlines() if line.strip()), repr(error))
    text = str(error)
    if "opset" in text.lower() and opset is not None:
        return (f"the module uses an operator that opset {opset} does not have "
                f"({first_line}); export with a newer opset")
    return (
        f"torch's {exporter} ONNX exporter could not trace the module's forward: "
        f"{type(error).__name__}: {first_line}. The forward must be traceable: no Python "
        "control flow on tensor values, no .item()/.tolist()/numpy calls on tensors, "
        "inputs and outputs as tensors or tuples of tensors. Rewrite those parts with "
        "torch ops (torch.where, masking), or try exporter='torchscript'"
        if exporter == "dynamo" else
        f"torch's {exporter} ONNX exporter failed: {type(error).__name__}: {first_line}"
    )
