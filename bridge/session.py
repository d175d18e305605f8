"""``InferenceSession``: onnxruntime's Python session API, run by bridge's torch modules.

Code written against ``onnxruntime.InferenceSession`` switches by changing its import; the
graph then runs through :func:`bridge.from_onnx`, so ai.onnx.ml operators (trees, SVMs,
encoders) run on a CUDA device too, where onnxruntime's CUDA provider has no kernels.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import torch

from bridge.errors import ConversionError, DeviceError, DeviceWarning, InvalidInputError
from bridge.onnx.graph import load_model

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
PROVIDERS = (CUDA_PROVIDER, CPU_PROVIDER)
_UNSET_VERSION = 2**63 - 1
Provider = str | tuple[str, Mapping[str, Any]]  # a name, or (name, options)  # what onnxruntime reports as the version of a model without one

# onnxruntime's names for tensor element types, as NodeArg.type spells them.
_ELEMENT_NAMES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float", onnx.TensorProto.DOUBLE: "double",
    onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16",
    onnx.TensorProto.INT8: "int8", onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.UINT16: "uint16",
    onnx.TensorProto.UINT32: "uint32", onnx.TensorProto.UINT64: "uint64",
    onnx.TensorProto.BOOL: "bool", onnx.TensorProto.STRING: "string",
}


@dataclass(frozen=True)
class NodeArg:
    """A graph input or output as onnxruntime describes it.

    Attributes
    ----------
    name : str
        The ONNX value name (the key of ``run``'s feed, the name ``run`` selects).
    type : str
        ``"tensor(float)"``, ``"tensor(string)"``, ``"seq(map(int64,tensor(float)))"``, ...
    shape : list
        One entry per axis: an int for a fixed size, a str for a symbolic dimension, None for
        an unnamed free one; empty for non-tensors.
    """

    name: str
    type: str
    shape: list[int | str | None] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"


@dataclass(frozen=True)
class ModelMetadata:
    """The model's metadata, with onnxruntime's ``ModelMetadata`` attribute names."""

    producer_name: str
    graph_name: str
    domain: str
    description: str
    graph_description: str
    version: int
    custom_metadata_map: dict[str, str]


def type_string(value_type: onnx.TypeProto) -> str:
    """onnxruntime's spelling of an ONNX type: ``tensor(float)``, ``seq(map(string,tensor(float)))``."""
    kind = value_type.WhichOneof("value")
    if kind == "tensor_type":
        return f"tensor({_ELEMENT_NAMES.get(int(value_type.tensor_type.elem_type), 'undefined')})"
    if kind == "sequence_type":
        return f"seq({type_string(value_type.sequence_type.elem_type)})"
    if kind == "map_type":
        key = _ELEMENT_NAMES.get(int(value_type.map_type.key_type), "undefined")
        return f"map({key},{type_string(value_type.map_type.value_type)})"
    if kind == "optional_type":
        return f"optional({type_string(value_type.optional_type.elem_type)})"
    return "undefined"


def _shape(value_type: onnx.TypeProto) -> list[int | str | None]:
    if value_type.WhichOneof("value") != "tensor_type" or not value_type.tensor_type.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param")
            else None) for d in value_type.tensor_type.shape.dim]


def _node_args(values: Iterable[onnx.ValueInfoProto], skipped: set[str]) -> list[NodeArg]:
    return [NodeArg(v.name, type_string(v.type), _shape(v.type)) for v in values
            if v.name not in skipped]


def _inferred_outputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph outputs as onnxruntime reports them: where ONNX shape inference gives an
    output another shape than the graph declares, the inferred one (skl2onnx declares, for
    one, PLSRegression's predictions as wide as its input)."""
    declared = list(model.graph.output)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for output in probe.graph.output:
        if output.type.HasField("tensor_type"):
            output.type.tensor_type.ClearField("shape")
    try:
        inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(probe).graph.output}
    except Exception:  # noqa: BLE001  (inference is a refinement; the declared types stand)
        return declared
    outputs = []
    for value in declared:
        found = inferred.get(value.name)
        if (found is not None and value.type.HasField("tensor_type")
                and found.type.tensor_type.HasField("shape")
                and _conflicts(_shape(value.type), _shape(found.type))):
            value = found
            for dim in value.type.tensor_type.shape.dim:  # sizes inference only named
                if dim.HasField("dim_param") and dim.dim_param.startswith("unk__"):
                    dim.ClearField("dim_param")
        outputs.append(value)
    return outputs


def _conflicts(declared: list[int | str | None], inferred: list[int | str | None]) -> bool:
    """Whether two shapes disagree on the rank or on a size both know."""
    if not declared:
        return False
    return len(declared) != len(inferred) or any(
        isinstance(a, int) and isinstance(b, int) and a and b and a != b
        for a, b in zip(declared, inferred))


def _device_for(providers: Sequence[Provider] | None,
                provider_options: Sequence[Mapping[str, Any]] | None,
                ) -> tuple[torch.device, list[str], dict[str, dict[str, str]]]:
    """The torch device the providers ask for, the providers in effect and their options.

    Providers are tried in order, as onnxruntime does; one that cannot run here is skipped
    with a warning naming it, and CPU is the last resort.
    """
    if providers is None:
        providers = [CPU_PROVIDER]
    if isinstance(providers, str):
        raise TypeError(f"providers must be a list of provider names; got the string "
                        f"{providers!r} (write providers=[{providers!r}])")
    providers = list(providers)
    if provider_options is not None and len(provider_options) != len(providers):
        raise ValueError(f"provider_options has {len(provider_options)} entries for "
                         f"{len(providers)} providers; give one dict per provider")
    skipped = []
    for position, entry in enumerate(providers):
        name, options = (entry if isinstance(entry, (tuple, list)) else (entry, {}))
        if not isinstance(name, str) or not isinstance(options, Mapping):
            raise TypeError(f"providers[{position}] must be a name or a (name, options dict) "
                            f"pair; got {entry!r}")
        options = {**options, **(provider_options[position] if provider_options else {})}
        if name == CPU_PROVIDER:
            device, chosen = torch.device("cpu"), [CPU_PROVIDER]
            break
        if name == CUDA_PROVIDER and torch.cuda.is_available():
            device, chosen = _cuda_device(options), [CUDA_PROVIDER, CPU_PROVIDER]
            break
        skipped.append(name)
    else:
        device, chosen, options = torch.device("cpu"), [CPU_PROVIDER], {}
    if skipped:
        why = "" if torch.cuda.is_available() else " (torch sees no CUDA device)"
        warnings.warn(f"bridge.InferenceSession cannot run {skipped} here{why}; bridge runs "
                      f"{PROVIDERS} and uses {chosen[0]}", DeviceWarning, stacklevel=3)
    shown = {chosen[0]: {str(k): str(v) for k, v in options.items()}}
    if chosen[0] == CUDA_PROVIDER:
        shown[CPU_PROVIDER] = {}
    return device, chosen, shown


def _cuda_device(options: Mapping[str, Any]) -> torch.device:
    raw = options.get("device_id", 0)
    try:
        index = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"CUDAExecutionProvider option device_id={raw!r} is not an integer") from None
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        raise DeviceError(f"CUDAExecutionProvider option device_id={index} names no device; "
                          f"this machine has {count} CUDA device(s): 0..{count - 1}")
    return torch.device("cuda", index)


class InferenceSession:
    """An ONNX model run by torch behind onnxruntime's ``InferenceSession`` API.

    ``onnxruntime.InferenceSession(...)`` → ``bridge.InferenceSession(...)`` (``from bridge
    import InferenceSession`` in place of ``from onnxruntime import InferenceSession``): the
    calls stay the same, the graph runs as the ``torch.fx.GraphModule`` of
    :func:`bridge.from_onnx` (kept as :attr:`module`). Only the session is bridge's;
    ``onnxruntime.SessionOptions`` and friends stay onnxruntime's.

    Parameters
    ----------
    path_or_bytes : str, PathLike, bytes or onnx.ModelProto
        The model.
    sess_options : onnxruntime.SessionOptions, optional
        Kept (``get_session_options``) but not read: torch decides threads and fusions
        (``torch.set_num_threads`` sets the former).
    providers : list, optional
        Provider names or ``(name, options)`` pairs, tried in order:
        ``"CUDAExecutionProvider"`` runs on CUDA (option ``device_id`` picks the device),
        ``"CPUExecutionProvider"`` on CPU. Others, and CUDA without a CUDA device, are
        skipped with a warning, as onnxruntime does; default CPU.
    provider_options : list of dict, optional
        Options per entry of ``providers`` (onnxruntime's second form).

    Raises
    ------
    InvalidModelError
        The file is missing or not an ONNX model (the message names the path).
    UnsupportedOperatorError, ConversionError
        The graph holds an operator bridge does not convert.
    DeviceError
        ``device_id`` names no CUDA device.
    """

    def __init__(self, path_or_bytes: str | os.PathLike[str] | bytes | onnx.ModelProto,
                 sess_options: Any = None, providers: Sequence[Provider] | None = None,
                 provider_options: Sequence[Mapping[str, Any]] | None = None) -> None:
        from bridge.onnx.importer import import_proto

        self._proto = load_model(path_or_bytes)
        graph = self._proto.graph
        initializers = {t.name for t in graph.initializer}
        self._inputs = _node_args(graph.input, initializers)
        self._outputs = _node_args(_inferred_outputs(self._proto), set())
        self._output_types = {v.name: v.type for v in graph.output}
        self._sess_options = sess_options
        source = (repr(str(path_or_bytes)) if isinstance(path_or_bytes, (str, os.PathLike))
                  else None)  # a file's path names it in errors
        self.module = import_proto(_importable(self._proto), source).eval()
        # the module's edges, as plain typed attributes (nn.Module's __getattr__ is untyped)
        self._output_names: list[str] = list(self.module.__dict__["output_names"])
        self._input_vocabularies: dict[str, list[Any]] = self.module.__dict__["input_vocabularies"]
        self._output_vocabularies: dict[str, list[Any]] = self.module.__dict__[
            "output_vocabularies"]
        self._device = torch.device("cpu")
        self.set_providers(providers, provider_options)

    @property
    def onnx_model(self) -> onnx.ModelProto:
        """The model as it was read (before bridge's import-time rewrites)."""
        return self._proto

    # -- onnxruntime's introspection ---------------------------------------------------
    def get_inputs(self) -> list[NodeArg]:
        """The inputs a feed must hold (initializers excluded), in graph order."""
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        """The graph outputs, in graph order."""
        return list(self._outputs)

    def get_overridable_initializers(self) -> list[NodeArg]:
        """Always empty: bridge folds initializers into the module."""
        return []

    def get_modelmeta(self) -> ModelMetadata:
        """Producer, graph name, domain, doc strings, model version (``2**63 - 1`` when the
        file sets none, as onnxruntime reports it) and metadata_props."""
        proto = self._proto
        return ModelMetadata(
            producer_name=proto.producer_name, graph_name=proto.graph.name, domain=proto.domain,
            description=proto.doc_string, graph_description=proto.graph.doc_string,
            version=proto.model_version if proto.HasField("model_version") else _UNSET_VERSION,
            custom_metadata_map={p.key: p.value for p in proto.metadata_props})

    def get_providers(self) -> list[str]:
        """The providers in effect: ``["CUDAExecutionProvider", "CPUExecutionProvider"]`` or
        ``["CPUExecutionProvider"]``."""
        return list(self._providers)

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        """Provider name → its options (values as strings, as onnxruntime reports them)."""
        return {name: dict(options) for name, options in self._provider_options.items()}

    def get_session_options(self) -> Any:
        """The ``sess_options`` given at construction (None when none were)."""
        return self._sess_options

    def set_providers(self, providers: Sequence[Provider] | None = None,
                      provider_options: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Move the session to the device ``providers`` ask for (see the class docstring)."""
        device, self._providers, self._provider_options = _device_for(providers,
                                                                      provider_options)
        self.module.to(device)
        self._device = device

    # -- running -------------------------------------------------------------------
    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any],
            run_options: Any = None) -> list[Any]:
        """Run the graph on numpy inputs and return the requested outputs.

        Parameters
        ----------
        output_names : list of str or None
            The outputs to return, in this order; None (or empty) for all of them.
        input_feed : dict
            Input name → numpy array of the input's element type (strings as ``str`` or
            object arrays for ``tensor(string)`` inputs).
        run_options : onnxruntime.RunOptions, optional
            Accepted and ignored.

        Returns
        -------
        list
            One entry per output: a numpy array for tensors (strings as object arrays,
            decoded through the graph's vocabularies), a list of ``{label: probability}``
            dicts for ``seq(map(...))`` outputs (scikit-learn's ZipMap), a list of arrays
            for other sequences.

        Raises
        ------
        InvalidInputError
            An input is missing, unknown, of the wrong element type, rank or fixed size,
            or an output name is unknown; the message names it.
        """
        names = self._requested(output_names)
        arguments = self._arguments(input_feed)
        with torch.no_grad():  # not inference_mode: modules may cache tensors between calls
            result = self.module(*arguments)
        results = result if isinstance(result, tuple) else (result,)
        position = {name: index for index, name in enumerate(self._output_names)}
        return [self._decode(name, results[position[name]]) for name in names]

    def _requested(self, output_names: Sequence[str] | None) -> list[str]:
        known = [o.name for o in self._outputs]
        if not output_names:
            return known
        if isinstance(output_names, str):
            raise InvalidInputError(f"output_names must be a list of names; got the string "
                                    f"{output_names!r} (write [{output_names!r}])")
        unknown = [n for n in output_names if n not in known]
        if unknown:
            raise InvalidInputError(f"unknown output name(s) {unknown}; the graph's outputs: {known}")
        return list(output_names)

    def _arguments(self, feed: Mapping[str, Any]) -> list[torch.Tensor]:
        if not isinstance(feed, Mapping):
            raise InvalidInputError(f"input_feed must be a dict name → array; got "
                                    f"{type(feed).__name__}")
        expected = [i.name for i in self._inputs]
        missing = [n for n in expected if n not in feed]
        extra = [n for n in feed if n not in expected]
        if missing or extra:
            parts = ([f"missing input(s) {missing}"] if missing else []) + (
                [f"unknown input(s) {extra}"] if extra else [])
            raise InvalidInputError(f"{'; '.join(parts)}; the graph takes {expected}, the feed "
                                    f"holds {list(feed)}")
        vocabularies = self._input_vocabularies
        return [self._tensor(arg, feed[arg.name], vocabularies.get(arg.name))
                for arg in self._inputs]

    def _tensor(self, arg: NodeArg, value: Any, vocabulary: list[Any] | None) -> torch.Tensor:
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
        element = arg.type[len("tensor("):-1] if arg.type.startswith("tensor(") else None
        if element == "string":
            if array.dtype.kind not in "OUS":
                raise InvalidInputError(f"input {arg.name!r} is {arg.type}; got a {array.dtype} "
                                        "array (give str or object arrays)")
            index = {label: i for i, label in enumerate(vocabulary or ())}
            flat = [index.get(v.decode() if isinstance(v, bytes) else v, -1) for v in array.flat]
            array = np.asarray(flat, dtype=np.int64).reshape(array.shape)
        elif element in _NUMPY_TYPES and array.dtype != _NUMPY_TYPES[element]:
            raise InvalidInputError(
                f"input {arg.name!r} is {arg.type} (numpy {_NUMPY_TYPES[element].name}); got "
                f"tensor({_ONNX_NAMES.get(array.dtype, array.dtype.name)}) ({array.dtype.name}); "
                f"cast it with .astype(numpy.{_NUMPY_TYPES[element].name})")
        _check_shape(arg, array.shape)
        return torch.from_numpy(np.ascontiguousarray(array)).to(self._device)

    def _decode(self, name: str, value: Any) -> Any:
        value_type = self._output_types[name]
        kind = value_type.WhichOneof("value")
        labels = self._output_vocabularies.get(name)
        if kind == "sequence_type" and value_type.sequence_type.elem_type.HasField("map_type"):
            return _zipped(value, labels, name)
        if isinstance(value, (list, tuple)):
            return [v.detach().cpu().numpy() for v in value]
        array = value.detach().cpu().numpy()
        elem = value_type.tensor_type.elem_type if kind == "tensor_type" else 0
        if elem == onnx.TensorProto.STRING:
            return _strings(array, labels, name)
        target = onnx.helper.tensor_dtype_to_np_dtype(elem) if elem in _ELEMENT_NAMES else None
        return array if target is None or array.dtype == target else array.astype(target)


_NUMPY_TYPES = {name: np.dtype(onnx.helper.tensor_dtype_to_np_dtype(code))
                for code, name in _ELEMENT_NAMES.items() if name not in ("string", "bfloat16")}
_ONNX_NAMES = {dtype: name for name, dtype in _NUMPY_TYPES.items()}


def _importable(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model``, or a copy whose string-class lookups (skl2onnx's ArrayFeatureExtractor over
    a string initializer) are LabelEncoders, which define the vocabulary bridge needs."""
    strings = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.STRING}
    if not any(n.op_type == "ArrayFeatureExtractor" and n.input[0] in strings
               for n in model.graph.node):
        return model
    from bridge.sklearn.rewrites import encode_string_class_lookups

    copied = onnx.ModelProto()
    copied.CopyFrom(model)
    encode_string_class_lookups(copied)
    return copied


def _check_shape(arg: NodeArg, shape: tuple[int, ...]) -> None:
    if not arg.type.startswith("tensor(") or not arg.shape:
        return
    if len(shape) != len(arg.shape):
        raise InvalidInputError(f"input {arg.name!r} has rank {len(arg.shape)} (shape "
                                f"{arg.shape}); got an array of shape {shape}")
    wrong = [axis for axis, (want, got) in enumerate(zip(arg.shape, shape))
             if isinstance(want, int) and want != got]
    if wrong:
        raise InvalidInputError(f"input {arg.name!r} has shape {arg.shape}; got {shape} "
                                f"(axis {', '.join(map(str, wrong))} differs)")


def _labels(labels: list[Any] | None, name: str) -> np.ndarray:
    if labels is None:
        raise ConversionError(f"output {name!r} holds strings or map keys, but the graph "
                              "records no vocabulary for it")
    return np.asarray(labels, dtype=object)


def _strings(indices: np.ndarray, labels: list[Any] | None, name: str) -> np.ndarray:
    table = _labels(labels, name)
    outside = (indices < 0) | (indices >= len(table))
    if outside.any():
        raise ConversionError(f"output {name!r} holds index {int(indices[outside][0])}, outside "
                              f"its vocabulary of {len(table)} labels")
    strings: np.ndarray = table[indices]
    return strings


def _zipped(probabilities: torch.Tensor, labels: list[Any] | None,
            name: str) -> list[dict[str | int, float]]:
    """ZipMap's output as onnxruntime returns it: one ``{label: probability}`` per row."""
    keys = [k if isinstance(k, str) else int(k) for k in _labels(labels, name)]
    rows = probabilities.detach().cpu().reshape(len(probabilities), -1).tolist()
    return [dict(zip(keys, row)) for row in rows]
