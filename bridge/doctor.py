"""A training diagnosis tool: record every layer's activations, gradients and relative parameter
updates while a net trains on a small sample, then inspect or plot them.

:class:`NetDoctor` (also available as ``SkorchDoctor``) wraps a net; its ``fit`` trains the net
with forward hooks on every sub-module of every registered module and criterion and a callback
that copies gradients and measures each step's update. The hooks and the callback are removed
afterwards, so the net is left as it was, only trained.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bridge.callbacks.base import Callback
from bridge.errors import NotFittedError

__all__ = ["NetDoctor", "SkorchDoctor"]


def _as_numpy(value: torch.Tensor) -> np.ndarray:
    return value.detach().float().cpu().numpy().copy()


def _flatten_output(name: str, output: Any) -> list[tuple[str, np.ndarray]]:
    """``(key, array)`` pairs for a module's output: tensors as they are, tuples and dicts per element."""
    if isinstance(output, torch.Tensor):
        return [(name, _as_numpy(output))]
    if isinstance(output, tuple | list):
        return [(f"{name}[{i}]", _as_numpy(v)) for i, v in enumerate(output) if isinstance(v, torch.Tensor)]
    if isinstance(output, dict):
        return [(f'{name}["{k}"]', _as_numpy(v)) for k, v in output.items() if isinstance(v, torch.Tensor)]
    return []


def _pyplot() -> Any:
    try:
        import matplotlib  # noqa: F401 - imported first so that a missing package is named
    except ImportError as error:
        raise ImportError("NetDoctor's plots need matplotlib; install it with "
                          "'python -m pip install matplotlib'") from error
    import matplotlib.pyplot as plt

    return plt


class _Recorder(Callback):
    """Opens one record per training batch and measures each parameter's update."""

    def __init__(self, doctor: NetDoctor):
        self.doctor = doctor

    def on_batch_begin(self, net: Any, batch: Any = None, training: bool | None = None, **kwargs: Any) -> None:
        self.doctor._begin_batch(bool(training))

    def on_grad_computed(self, net: Any, named_parameters: Any, batch: Any = None, training: bool = True,
                         **kwargs: Any) -> None:
        self.doctor._record_gradients()

    def on_batch_end(self, net: Any, batch: Any = None, training: bool | None = None, **kwargs: Any) -> None:
        self.doctor._end_batch(bool(training))


class NetDoctor:
    """Record activations, gradients and parameter updates of a net during training.

    Parameters
    ----------
    net : NeuralNet
        The net to diagnose (initialized by ``fit`` if it is not yet).
    match_fn : callable or None
        ``match_fn(name) -> bool`` keeps only the layers and parameters whose names it accepts.

    Attributes
    ----------
    activation_recs_ : dict
        ``{component: [ {layer: array}, ... one dict per training batch ]}``; a layer returning a
        tuple or dict is recorded per element (``'layer[0]'``, ``'layer["key"]'``).
    gradient_recs_ : dict
        ``{component: [ {parameter: gradient array}, ... ]}``.
    param_update_recs_ : dict
        ``{component: [ {parameter: |update| / |parameter|}, ... ]}`` (norms before the step).
    """

    def __init__(self, net: Any, match_fn: Callable[[str], bool] | None = None):
        self.net = net
        self.match_fn = match_fn

    # ---------------------------------------------------------------- recording
    def _components(self) -> dict[str, torch.nn.Module]:
        names = list(self.net.__dict__.get("_modules", ())) + list(self.net.__dict__.get("_criteria", ()))
        found = {name: getattr(self.net, name + "_", None) for name in names}
        return {name: value for name, value in found.items() if isinstance(value, torch.nn.Module)}

    def _keep(self, name: str) -> bool:
        return self.match_fn is None or bool(self.match_fn(name))

    def _params(self, component: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in component.named_parameters() if p.requires_grad and self._keep(n)]

    def _make_hook(self, component: str, layer: str) -> Callable:
        def hook(module: Any, inputs: Any, output: Any) -> None:
            if self._training_batch:
                record = self.activation_recs_[component][-1]
                for key, value in _flatten_output(layer, output):
                    if self._keep(key):
                        record[key] = value
        return hook

    def _begin_batch(self, training: bool) -> None:
        self._training_batch = training
        if not training:
            return
        for name, component in self._components().items():
            if self._layers[name]:
                self.activation_recs_[name].append({})
            params = self._params(component)
            if params:
                self.gradient_recs_[name].append({})
                self.param_update_recs_[name].append({})
                self._before[name] = {n: p.detach().clone() for n, p in params}

    def _record_gradients(self) -> None:
        for name, component in self._components().items():
            if self.gradient_recs_[name] and name in self._before:
                record = self.gradient_recs_[name][-1]
                for param_name, param in self._params(component):
                    if param.grad is not None:
                        record[param_name] = _as_numpy(param.grad)

    def _end_batch(self, training: bool) -> None:
        if not training:
            return
        self._training_batch = False
        for name, component in self._components().items():
            before = self._before.pop(name, None)
            if before is None:
                continue
            record = self.param_update_recs_[name][-1]
            for param_name, param in self._params(component):
                old = before[param_name]
                change = torch.linalg.vector_norm((param.detach() - old).float())
                scale = torch.linalg.vector_norm(old.float())
                record[param_name] = float(change / (scale + 1e-12))

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> NetDoctor:
        """Train the net for its ``max_epochs`` while recording; hooks are removed afterwards.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            When ``match_fn`` keeps no layer and no parameter (nothing would be recorded).
        """
        net = self.net
        if not net.initialized_:
            net.initialize()
        components = self._components()
        self.activation_recs_ = {name: [] for name in components}
        self.gradient_recs_ = {name: [] for name in components}
        self.param_update_recs_ = {name: [] for name in components}
        self._layers = {name: [(n, m) for n, m in c.named_modules() if n] for name, c in components.items()}
        self._before: dict[str, dict[str, torch.Tensor]] = {}
        self._training_batch = False
        if not any(self._keep(n) for layers in self._layers.values() for n, _ in layers) and not any(
                self._params(c) for c in components.values()):
            raise ValueError("match_fn keeps none of the net's layers and parameters, so nothing would be "
                             "recorded; see doctor.get_layer_names() and doctor.get_param_names() after a fit "
                             "without match_fn")
        handles = [module.register_forward_hook(self._make_hook(name, layer))
                   for name, layers in self._layers.items() for layer, module in layers]
        recorder = ("bridge_doctor", _Recorder(self))
        net.callbacks_.append(recorder)
        try:
            net.partial_fit(X, y, **fit_params)
        finally:
            net.callbacks_.remove(recorder)
            for handle in handles:
                handle.remove()
        self.fitted_ = True
        return self

    # ---------------------------------------------------------------- inspection
    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise NotFittedError(f"this {type(self).__name__} has recorded nothing yet; call fit(X, y) first")

    def get_layer_names(self) -> dict[str, list[str]]:
        """``{component: [recorded layer keys]}`` in the order the layers ran."""
        self._check_fitted()
        return {name: list(recs[0]) if recs else [] for name, recs in self.activation_recs_.items()}

    def get_param_names(self) -> dict[str, list[str]]:
        """``{component: [names of the trainable parameters recorded]}``."""
        self._check_fitted()
        return {name: [n for n, _ in self._params(c)] for name, c in self._components().items()}

    def predict(self, X: Any) -> np.ndarray:
        """The net's ``predict``."""
        return self.net.predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """The net's ``predict_proba``."""
        return self.net.predict_proba(X)

    def score(self, X: Any, y: Any = None, **kwargs: Any) -> float:
        """The net's ``score``."""
        return self.net.score(X, y, **kwargs)

    # ---------------------------------------------------------------- plots
    def _axes_grid(self, plt: Any, axes: Any, count: int, figsize: Any) -> Any:
        if axes is None:
            _, axes = plt.subplots(count, 1, figsize=figsize, squeeze=False)
        return axes

    def plot_loss(self, ax: Any = None, figsize: Any = None, **kwargs: Any) -> Any:
        """Train and validation loss per epoch on ``ax`` (a new figure when None); returns ``ax``."""
        self._check_fitted()
        plt = _pyplot()
        if ax is None:
            _, ax = plt.subplots(figsize=figsize)
        history = self.net.history
        for key in ("train_loss", "valid_loss"):
            rows = [(row["epoch"], row[key]) for row in history if key in row]
            if rows:
                epochs, values = zip(*rows)
                ax.plot(epochs, values, label=key, **kwargs)
        ax.set(xlabel="epoch", ylabel="loss")
        ax.legend()
        return ax

    def _histograms(self, recs: dict, step: int, match_fn: Any, axes: Any, figsize: Any, what: str,
                    hist_kwargs: dict) -> Any:
        plt = _pyplot()
        chosen = {}
        for name, batches in recs.items():
            values = {k: v for k, v in batches[step].items() if match_fn is None or match_fn(k)} if batches else {}
            if values:
                chosen[name] = values
        if not chosen:
            listing = "doctor.get_layer_names()" if what == "layer" else "doctor.get_param_names()"
            raise ValueError(f"match_fn matches no {what} of the net; {listing} lists them")
        axes = self._axes_grid(plt, axes, len(chosen), figsize)
        for ax, (name, values) in zip(np.asarray(axes).flat, chosen.items()):
            for key, value in values.items():
                ax.hist(value.ravel(), label=key, **hist_kwargs)
            ax.set_title(name)
            ax.legend()
        return axes

    def plot_activations(self, step: int = -1, match_fn: Any = None, axes: Any = None, histtype: str = "step",
                         lw: float = 2, bins: Any = None, density: bool = True, figsize: Any = None,
                         **kwargs: Any) -> Any:
        """Histograms of each layer's activations in training batch ``step``, one axis per component."""
        self._check_fitted()
        hist = dict(histtype=histtype, lw=lw, bins=10 if bins is None else bins, density=density, **kwargs)
        return self._histograms(self.activation_recs_, step, match_fn, axes, figsize, "layer", hist)

    def plot_gradients(self, step: int = -1, match_fn: Any = None, axes: Any = None, histtype: str = "step",
                       lw: float = 2, bins: Any = None, density: bool = True, figsize: Any = None,
                       **kwargs: Any) -> Any:
        """Histograms of each parameter's gradient in training batch ``step``, one axis per component."""
        self._check_fitted()
        hist = dict(histtype=histtype, lw=lw, bins=10 if bins is None else bins, density=density, **kwargs)
        return self._histograms(self.gradient_recs_, step, match_fn, axes, figsize, "parameter", hist)

    def plot_param_updates(self, match_fn: Any = None, axes: Any = None, figsize: Any = None,
                           **kwargs: Any) -> Any:
        """Relative update of each parameter per training batch (log scale), one axis per component."""
        self._check_fitted()
        plt = _pyplot()
        chosen = {}
        for name, batches in self.param_update_recs_.items():
            keys = [k for k in (batches[0] if batches else {}) if match_fn is None or match_fn(k)]
            if keys:
                chosen[name] = {k: [b[k] for b in batches] for k in keys}
        if not chosen:
            raise ValueError("match_fn matches no parameter of the net; doctor.get_param_names() lists them")
        axes = self._axes_grid(plt, axes, len(chosen), figsize)
        for ax, (name, series) in zip(np.asarray(axes).flat, chosen.items()):
            for key, values in series.items():
                ax.plot(values, label=key, **kwargs)
            ax.set(title=name, xlabel="training batch", ylabel="|update| / |parameter|", yscale="log")
            ax.legend()
        return axes

    def _over_time(self, recs: dict, key: str, component: str, what: str, ax: Any, lw: float, bins: Any,
                   interpolate: bool, figsize: Any, color: Any, **kwargs: Any) -> Any:
        plt = _pyplot()
        batches = recs.get(component, [])
        if not batches or key not in batches[0]:
            listing = "doctor.get_layer_names()" if what == "layer" else "doctor.get_param_names()"
            raise ValueError(f"{component!r} has no {what} named {key!r}; {listing} lists them")
        if ax is None:
            _, ax = plt.subplots(figsize=figsize)
        values = [batch[key].ravel() for batch in batches]
        edges = np.histogram_bin_edges(np.concatenate(values), bins=20 if bins is None else bins)
        centers = (edges[:-1] + edges[1:]) / 2
        for step, value in enumerate(values):  # one curve per step, stacked upwards
            counts, _ = np.histogram(value, bins=edges, density=True)
            counts = counts / (counts.max() or 1.0)
            x = np.linspace(centers[0], centers[-1], 10 * len(centers)) if interpolate else centers
            y = np.interp(x, centers, counts) if interpolate else counts
            ax.plot(x, y + step, lw=lw, color=color, **kwargs)
        ax.set(xlabel=key, ylabel="training batch")
        return ax

    def plot_activations_over_time(self, layer_name: str, module_name: str = "module", ax: Any = None,
                                   lw: float = 1, bins: Any = None, interpolate: bool = False,
                                   figsize: Any = None, color: Any = None, **kwargs: Any) -> Any:
        """The distribution of ``layer_name``'s activations, one curve per training batch."""
        self._check_fitted()
        return self._over_time(self.activation_recs_, layer_name, module_name, "layer", ax, lw, bins,
                               interpolate, figsize, color, **kwargs)

    def plot_gradient_over_time(self, param_name: str, module_name: str = "module", ax: Any = None,
                                lw: float = 1, bins: Any = None, interpolate: bool = False,
                                figsize: Any = None, color: Any = None, **kwargs: Any) -> Any:
        """The distribution of ``param_name``'s gradient, one curve per training batch."""
        self._check_fitted()
        return self._over_time(self.gradient_recs_, param_name, module_name, "parameter", ax, lw, bins,
                               interpolate, figsize, color, **kwargs)


#: skorch's name for the same tool.
SkorchDoctor = NetDoctor
