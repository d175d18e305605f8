"""Element types: ONNX ``TensorProto`` data types ↔ torch dtypes ↔ numpy dtypes, keyed by name."""

from __future__ import annotations

import numpy as np
import onnx
import torch

from bridge.errors import ConversionError

_DataType = onnx.TensorProto.DataType

# ONNX element type → torch dtype. Types torch lacks (strings, most float8/int4 flavours)
# are absent on purpose: asking for them raises a ConversionError naming the type.
ONNX_TO_TORCH: dict[int, torch.dtype] = {
    _DataType.Value("FLOAT"): torch.float32,
    _DataType.Value("DOUBLE"): torch.float64,
    _DataType.Value("FLOAT16"): torch.float16,
    _DataType.Value("BFLOAT16"): torch.bfloat16,
    _DataType.Value("INT8"): torch.int8,
    _DataType.Value("INT16"): torch.int16,
    _DataType.Value("INT32"): torch.int32,
    _DataType.Value("INT64"): torch.int64,
    _DataType.Value("UINT8"): torch.uint8,
    _DataType.Value("UINT16"): torch.uint16,
    _DataType.Value("UINT32"): torch.uint32,
    _DataType.Value("UINT64"): torch.uint64,
    _DataType.Value("BOOL"): torch.bool,
    _DataType.Value("COMPLEX64"): torch.complex64,
    _DataType.Value("COMPLEX128"): torch.complex128,
}
for _name, _attr in (
    ("FLOAT8E4M3FN", "float8_e4m3fn"),
    ("FLOAT8E4M3FNUZ", "float8_e4m3fnuz"),
    ("FLOAT8E5M2", "float8_e5m2"),
    ("FLOAT8E5M2FNUZ", "float8_e5m2fnuz"),
):
    if hasattr(torch, _attr) and _name in _DataType.keys():
        ONNX_TO_TORCH[_DataType.Value(_name)] = getattr(torch, _attr)

TORCH_TO_ONNX: dict[torch.dtype, int] = {v: k for k, v in ONNX_TO_TORCH.items()}

STRING = _DataType.Value("STRING")


def onnx_type_name(elem_type: int) -> str:
    """Return the ``TensorProto`` name of an element type (``1`` → ``"FLOAT"``)."""
    try:
        return _DataType.Name(elem_type)
    except ValueError:
        return f"<unknown element type {elem_type}>"


def torch_dtype(elem_type: int) -> torch.dtype:
    """Return the torch dtype for an ONNX element type.

    Raises
    ------
    ConversionError
        When torch has no dtype for ``elem_type`` (e.g. ``STRING``).
    """
    try:
        return ONNX_TO_TORCH[elem_type]
    except KeyError:
        supported = sorted(onnx_type_name(t) for t in ONNX_TO_TORCH)
        raise ConversionError(
            f"ONNX element type {onnx_type_name(elem_type)} has no torch dtype; "
            f"supported: {', '.join(supported)}"
        ) from None


def onnx_elem_type(dtype: torch.dtype) -> int:
    """Return the ONNX element type for a torch dtype."""
    try:
        return TORCH_TO_ONNX[dtype]
    except KeyError:
        raise ConversionError(f"torch dtype {dtype} has no ONNX element type") from None


# numpy has no bfloat16/float8; onnx reads them as ml_dtypes arrays (numpy kind "V"),
# which cross into torch as their raw bits.
_BIT_VIEWS: dict[str, tuple[type, str]] = {
    "bfloat16": (np.uint16, "bfloat16"),
    "float8_e4m3fn": (np.uint8, "float8_e4m3fn"),
    "float8_e4m3fnuz": (np.uint8, "float8_e4m3fnuz"),
    "float8_e5m2": (np.uint8, "float8_e5m2"),
    "float8_e5m2fnuz": (np.uint8, "float8_e5m2fnuz"),
}


def numpy_to_torch(array: np.ndarray) -> torch.Tensor:
    """Copy a numpy array (any numeric/bool dtype, any layout) into a torch tensor.

    ml_dtypes arrays (bfloat16, float8 flavours) are carried bit for bit.
    """
    array = np.asarray(array)
    view = _BIT_VIEWS.get(array.dtype.name)
    if view is not None and hasattr(torch, view[1]):
        bits = np.array(array, order="C").view(view[0])
        return torch.from_numpy(bits).view(getattr(torch, view[1]))
    if array.dtype.kind in "OUS":
        raise ConversionError(
            f"cannot turn a numpy array of dtype {array.dtype} into a torch tensor; "
            "string data is carried as int64 indices into a vocabulary"
        )
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    return torch.from_numpy(np.array(array, order="C"))  # a C-ordered copy; 0-d stays 0-d


def torch_to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """Copy a tensor to numpy; bfloat16/float8 come back as ml_dtypes arrays, bit for bit."""
    tensor = tensor.detach().cpu()
    for name, (bits, torch_name) in _BIT_VIEWS.items():
        if tensor.dtype == getattr(torch, torch_name, None):
            import ml_dtypes

            raw = tensor.view(torch.uint16 if bits is np.uint16 else torch.uint8).numpy()
            return raw.view(getattr(ml_dtypes, name))
    return tensor.numpy()
