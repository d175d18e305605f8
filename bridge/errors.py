"""The one exception hierarchy of bridge.

Every error subclasses both :class:`BridgeError` and the builtin exception a user
would naturally catch (``ValueError``, ``NotImplementedError``, ...), so
``except ValueError`` keeps working in code that does not know about bridge.
Messages name the offending value and what would have been accepted.
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class BridgeError(Exception):
    """Base class of every exception raised on purpose by bridge."""


class UnsupportedOperatorError(BridgeError, NotImplementedError):
    """An ONNX operator (domain, type, opset) has no converter.

    Parameters
    ----------
    domain : str
        The operator's domain (``""`` is the default ONNX domain ``ai.onnx``).
    op_type : str
        The operator's type, e.g. ``"TreeEnsembleRegressor"``.
    opset : int or None
        The opset version the model imports for ``domain``.
    supported : sequence of int
        The ``since_version`` values bridge has converters for (empty when none).
    reason : str, optional
        Extra detail, e.g. an attribute value that is not supported.
    """

    def __init__(self, domain, op_type, opset, supported=(), reason=""):
        self.domain = domain
        self.op_type = op_type
        self.opset = opset
        self.supported = tuple(supported)
        shown_domain = domain or "ai.onnx"
        if self.supported:
            versions = ", ".join(str(v) for v in self.supported)
            tail = f"supported: {versions}"
        else:
            tail = "no converter is registered for this operator (see SUPPORTED.md)"
        message = f"{shown_domain}::{op_type} opset {opset} is not supported; {tail}"
        if reason:
            message = f"{shown_domain}::{op_type} (opset {opset}): {reason}"
        super().__init__(message)


class ConversionError(BridgeError, ValueError):
    """A model could not be converted (malformed graph, forbidden attribute mix, ...)."""


class InvalidModelError(ConversionError):
    """The input is not a readable ONNX model (bad bytes, truncated file, wrong type)."""


class ModelFileError(InvalidModelError, OSError):
    """A model file cannot be read: it is missing, a directory, unreadable, or the external
    data files it points to are missing. Both a ``ValueError`` and an ``OSError``."""


class InvalidInputError(BridgeError, ValueError):
    """Inputs do not fit what a graph declares (a missing, unknown or mis-typed input)."""


class UnsupportedEstimatorError(BridgeError, NotImplementedError):
    """A scikit-learn estimator has no conversion path to ONNX."""


class ExportError(BridgeError, ValueError):
    """An object could not be exported to ONNX."""


class NotFittedError(BridgeError, _SklearnNotFittedError):
    """An estimator or net was used before it was fitted.

    Subclasses scikit-learn's ``NotFittedError`` (itself a ``ValueError`` and
    ``AttributeError``), so sklearn's own ``except`` clauses catch it.
    """


class TrimmedNetError(BridgeError, RuntimeError):
    """A net trimmed for prediction was asked to train or save training state."""


class NetAttributeError(BridgeError, AttributeError):
    """A torch component (module, criterion, optimizer) was set on a net where it cannot be tracked.

    Nets register the components created in their ``initialize_*`` methods, so that they are
    moved to the device, trained, saved and re-created by ``set_params``; one set elsewhere
    (in ``__init__``, or without the trailing underscore of fitted state) would be missed.
    """


class ConfigurationError(BridgeError, ValueError):
    """A parameter value, or a combination of parameters, that cannot work (named in the message)."""


class BridgeWarning(UserWarning):
    """Base class of the warnings bridge issues on purpose."""


class DeviceWarning(BridgeWarning):
    """A requested device is not available and another one is used instead (e.g. loading on CPU)."""


class DeviceError(BridgeError, RuntimeError):
    """A requested device is not available (e.g. ``device='cuda'`` without CUDA)."""


class ChunkingError(BridgeError, ValueError):
    """A Dask collection is split in a way bridge cannot score (e.g. along columns)."""


class DistributedError(BridgeError, RuntimeError):
    """Data-parallel training failed across ranks (a rank died, a setting differs between ranks)."""
