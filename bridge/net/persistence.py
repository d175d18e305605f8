"""Saving and loading nets: ``save_params``/``load_params``, pickling across devices, ``trim_for_prediction``.

Parameters go through ``torch.save`` + ``torch.load(weights_only=True)`` or safetensors (for
paths ending in ``.safetensors``); every file is written atomically.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from typing import Any

import torch

from bridge.errors import DeviceWarning, ModelFileError, NotFittedError, TrimmedNetError
from bridge.files import atomic_write, open_file_like
from bridge.history import History
from bridge.net.checks import raise_restated
from bridge.utils import get_map_location

__all__ = ["PersistenceMixin", "TrimmedNetError"]

_STATE_KEY = "__bridge_torch_state__"
_DEVICE_KEY = "__bridge_device__"
_COMPILED_KEY = "__bridge_compiled__"


def _is_safetensors(f: Any, use_safetensors: bool) -> bool:
    return use_safetensors or (isinstance(f, (str, os.PathLike)) and os.fspath(f).endswith(".safetensors"))


def _uncompiled(module: Any) -> Any:
    return getattr(module, "_orig_mod", module)


def _check_params_alias(f_params: Any, kwargs: dict[str, Any]) -> None:
    if f_params is not None and kwargs.get("f_module") is not None:
        raise TypeError("f_params and f_module name the same file (the module's parameters); pass only one")


def _name(source: Any) -> str:
    return repr(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else repr(source)


def _unreadable(source: Any, error: BaseException) -> str:
    """Why ``source`` could not be read, for a message that names it."""
    if isinstance(source, (str, os.PathLike)) and os.path.isfile(source) and os.path.getsize(source) == 0:
        return f"{_name(source)} is empty (0 bytes); it is not a file written by save_params"
    reason = str(error).split(". ")[0] or type(error).__name__
    return (f"{_name(source)} cannot be read as a state dict ({type(error).__name__}: {reason}); the file is "
            "cut short or corrupted, or was not written by save_params")


def _target_attribute(key: str) -> str:
    if not key.startswith("f_"):
        raise TypeError(f"file arguments must be named f_<part> (f_params, f_optimizer, f_criterion, f_history); got {key!r}")
    return "module_" if key in ("f_params", "f_module") else key[2:] + "_"


class PersistenceMixin:
    """save_params, load_params, pickling and trimming."""

    def _state_dict_of(self, attribute: str) -> dict[str, Any]:
        if not hasattr(self, attribute):
            raise NotFittedError(f"{type(self).__name__} has no {attribute!r} to save; initialize or fit it first")
        return _uncompiled(getattr(self, attribute)).state_dict()

    def save_params(self, f_params: Any = None, f_optimizer: Any = None, f_criterion: Any = None,
                    f_history: Any = None, use_safetensors: bool = False, **kwargs: Any) -> None:
        """Save the module's, optimizer's, criterion's state dicts and the history (each optional).

        Parameters
        ----------
        f_params, f_optimizer, f_criterion : path, file object or None
            Targets of the state dicts; paths ending in ``.safetensors`` use safetensors.
        f_history : path, file object or None
            Target of the history (JSON).
        use_safetensors : bool
            Save state dicts with safetensors whatever the file name.
        **kwargs
            ``f_<name>`` targets for further parts of the net (``net.<name>_``).

        Raises
        ------
        NotFittedError
            Before ``initialize``.
        ValueError
            For optimizer state with safetensors (it is not a flat tensor dict).
        """
        self.check_is_fitted()
        _check_params_alias(f_params, kwargs)
        targets = {"f_params": f_params, "f_optimizer": f_optimizer, "f_criterion": f_criterion, **kwargs}
        for key, target in targets.items():
            if target is None:
                continue
            attribute = _target_attribute(key)
            if attribute == "optimizer_" and getattr(self, "_trimmed", False):
                raise TrimmedNetError("the net was trimmed for prediction: it has no optimizer state to save")
            state = self._state_dict_of(attribute)
            if _is_safetensors(target, use_safetensors):
                if attribute.startswith("optimizer"):
                    raise ValueError(f"{key} cannot be saved with safetensors: optimizer state is not a flat dict of "
                                     "tensors; save it to a .pt file with use_safetensors=False")
                from safetensors.torch import save

                data = save({k: v.contiguous() for k, v in state.items()})
                atomic_write(target, lambda handle, data=data: handle.write(data))
            else:
                atomic_write(target, lambda handle, state=state: torch.save(state, handle))
        if f_history is not None:
            self.history.to_file(f_history)

    def _load_state(self, source: Any, use_safetensors: bool) -> dict[str, Any]:
        """The state dict in ``source``; a file that is empty, cut short or corrupted raises
        :class:`~bridge.errors.ModelFileError` naming it (missing files: ``FileNotFoundError``)."""
        try:
            return self._read_state(source, use_safetensors)
        except pickle.UnpicklingError:
            raise  # its message names the file (see _read_state)
        except OSError as error:
            if error.filename is not None:
                raise  # a missing file or folder, a permission: the OSError names the file
            raise ModelFileError(_unreadable(source, error)) from error  # e.g. a seek past the end
        except Exception as error:  # torch's zip reader, safetensors' Rust errors, EOFError, ...
            raise ModelFileError(_unreadable(source, error)) from error

    def _read_state(self, source: Any, use_safetensors: bool) -> dict[str, Any]:
        map_location = get_map_location(self.device)
        if _is_safetensors(source, use_safetensors):
            from safetensors.torch import load, load_file

            if isinstance(source, (str, os.PathLike)):
                return load_file(os.fspath(source), device=str(map_location))
            return {k: v.to(map_location) for k, v in load(source.read()).items()}
        extra = dict(self.torch_load_kwargs or {})
        extra.pop("weights_only", None)
        with open_file_like(source, "rb") as handle:
            try:
                state = torch.load(handle, map_location=map_location, weights_only=True, **extra)
            except pickle.UnpicklingError as error:  # torch's text suggests weights_only=False
                text = str(error)
                reason = text.split("WeightsUnpickler error:")[-1].strip().split("\n")[0]
                name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else source
                raise pickle.UnpicklingError(
                    f"{name!r} is not a file of tensors that save_params wrote, or holds "
                    f"objects other than tensors, which bridge never unpickles ({reason})"
                ) from error
        if not isinstance(state, dict):
            raise ModelFileError(f"{_name(source)} holds a {type(state).__name__}, not the state dict "
                                 "that save_params writes")
        return state

    def load_params(self, f_params: Any = None, f_optimizer: Any = None, f_criterion: Any = None,
                    f_history: Any = None, checkpoint: Any = None, use_safetensors: bool = False, **kwargs: Any) -> None:
        """Load what :meth:`save_params` (or a ``Checkpoint``, which initializes the net if needed) saved.

        Parameters
        ----------
        f_params, f_optimizer, f_criterion, f_history : path, file object or None
            Sources; paths ending in ``.safetensors`` are read with safetensors.
        checkpoint : Checkpoint or None
            Take the file names of the latest checkpoint (explicit ``f_*`` arguments win).
        use_safetensors : bool
            Read state dicts with safetensors whatever the file name.
        **kwargs
            ``f_<name>`` sources for further parts of the net.

        Raises
        ------
        NotFittedError
            When the net is not initialized and no ``checkpoint`` is given.
        TypeError
            When ``f_params`` and its alias ``f_module`` are both given.
        ModelFileError
            When a file is empty, cut short or corrupted (the message names it); a
            ``ValueError`` and an ``OSError``. A missing file raises ``FileNotFoundError``.
        RuntimeError
            When a state dict does not fit the part it is loaded into (names the file).
        """
        _check_params_alias(f_params, kwargs)
        sources = {"f_params": f_params, "f_optimizer": f_optimizer, "f_criterion": f_criterion,
                   "f_history": f_history, **kwargs}
        if checkpoint is not None and not self.initialized_:
            self.initialize()  # resuming from a checkpoint builds the parts that receive the state
        if checkpoint is not None:
            formatted = dict(checkpoint.get_formatted_files(self))
            formatted.setdefault("f_history", getattr(checkpoint, "f_history_", None))
            for key, value in formatted.items():
                if key != "f_pickle" and sources.get(key) is None:
                    sources[key] = value
        if not self.initialized_:
            raise NotFittedError(f"cannot load parameters into an uninitialized {type(self).__name__}; "
                                 "call net.initialize() first (or pass checkpoint=, which initializes)")
        history_source = sources.pop("f_history", None)
        if history_source is not None:
            self.history_ = History.from_file(history_source)
        for key, source in sources.items():
            if source is None:
                continue
            attribute = _target_attribute(key)
            if attribute == "optimizer_" and _is_safetensors(source, use_safetensors):
                raise ValueError("optimizer state cannot be loaded from safetensors; it is saved with torch.save")
            target = getattr(self, attribute, None)
            if target is None:
                raise NotFittedError(f"{type(self).__name__} has no {attribute!r} to load {key} into")
            state = self._load_state(source, use_safetensors)
            try:
                _uncompiled(target).load_state_dict(state)
            except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
                raise_restated(error, f"{key}={_name(source)} does not fit {attribute} "
                                      f"({type(_uncompiled(target)).__name__})")

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        compiled = [k for k, v in state.items() if isinstance(v, torch.nn.Module) and hasattr(v, "_orig_mod")]
        for key in compiled:  # compiled wrappers do not pickle; they are compiled again on loading
            state[key] = state[key]._orig_mod
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return {_STATE_KEY: buffer.getvalue(), _DEVICE_KEY: self.__dict__.get("device"), _COMPILED_KEY: compiled}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if _STATE_KEY not in state:  # a plain state dict (e.g. from copy with a custom reducer)
            self.__dict__.update(state)
            return
        device = state[_DEVICE_KEY]
        map_location = get_map_location(device)
        if device is not None and torch.device(device).type == "cuda" and map_location.type != "cuda":
            warnings.warn(f"this net was saved with device={device!r} but CUDA is not available here; "
                          "loading it on 'cpu' instead", DeviceWarning, stacklevel=2)
        else:
            map_location = None
        inner = torch.load(io.BytesIO(state[_STATE_KEY]), map_location=map_location, weights_only=False)
        if map_location is not None:
            inner["device"] = "cpu"
        self.__dict__.update(inner)
        compiled = state[_COMPILED_KEY]
        for key in (["module_"] if compiled is True else compiled or []):
            self.__dict__[key] = torch.compile(self.__dict__[key], **self.get_params_for("compile"))

    # ------------------------------------------------------------------ trimming
    def trim_for_prediction(self) -> None:
        """Drop what only training needs; the net can still predict (and be pickled, copied, cloned).

        Optimizers, criteria (``criterion_`` and any registered one), callbacks, the training
        iterator and the history are set to None or emptied; modules go to eval mode. The
        prediction nonlinearity is resolved first, so 'auto' keeps the criterion's choice.

        Raises
        ------
        NotFittedError
            Before ``initialize``.
        """
        self.check_is_fitted()
        if getattr(self, "_trimmed", False):
            return
        self._trimmed_nonlinearity = self._get_predict_nonlinearity()
        self._set_training(False)
        for kind in ("optimizer", "criterion"):
            for name, _ in list(self._components(kind)):
                self.__dict__[name + "_"] = None
        self.optimizer = None
        self.criterion = None
        self.callbacks = None
        self.callbacks_ = []
        self.iterator_train = None
        self.history_ = History()
        self._trimmed = True

    def _check_not_trimmed(self) -> None:
        if getattr(self, "_trimmed", False):
            raise TrimmedNetError(f"this {type(self).__name__} was trimmed for prediction and cannot be trained; "
                                  "train a fresh net (sklearn.base.clone(net)) instead")

