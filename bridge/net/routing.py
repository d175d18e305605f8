"""scikit-learn metadata routing for the nets: a net consumes the fit parameters it requested
(passed to the module's ``forward``) and routes the rest (``groups``) to its ``train_split``.

Without routing enabled (scikit-learn's default) nothing changes: every fit parameter reaches
``forward`` and ``train_split`` as before.
"""

from __future__ import annotations

from typing import Any

import sklearn
from sklearn.utils.metadata_routing import (
    MetadataRequest,
    MetadataRouter,
    MethodMapping,
    process_routing,
)

__all__ = ["RoutingMixin", "routing_enabled"]

_METHODS = ("fit", "partial_fit")


def routing_enabled() -> bool:
    """Whether scikit-learn's metadata routing is switched on (``sklearn.set_config``)."""
    return bool(sklearn.get_config().get("enable_metadata_routing", False))


class RoutingMixin:
    """``set_fit_request`` / ``set_partial_fit_request`` for any fit parameter, and the router."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # scikit-learn generates set_<method>_request from explicit signature parameters (e.g.
        # partial_fit's 'classes'); the nets accept any fit parameter, so theirs stay in charge.
        for method in _METHODS:
            name = f"set_{method}_request"
            if type(cls.__dict__.get(name)).__name__ == "RequestMethod":
                delattr(cls, name)

    def _set_request(self, method: str, requests: dict[str, Any]) -> Any:
        if not routing_enabled():
            raise RuntimeError(f"set_{method}_request is only available when metadata routing is enabled; "
                               "call sklearn.set_config(enable_metadata_routing=True) first")
        request = self.__dict__.get("_metadata_request")
        if request is None:
            request = MetadataRequest(owner=type(self).__name__)
        for name, alias in requests.items():
            getattr(request, method).add_request(param=name, alias=alias)
        self._metadata_request = request
        return self

    def set_fit_request(self, **requests: Any) -> Any:
        """Request fit parameters for the module's ``forward`` (``name=True``, ``False``, ``None`` or an alias).

        Returns
        -------
        self

        Raises
        ------
        RuntimeError
            When metadata routing is not enabled.
        """
        return self._set_request("fit", requests)

    def set_partial_fit_request(self, **requests: Any) -> Any:
        """Request partial_fit parameters for the module's ``forward``; as :meth:`set_fit_request`."""
        return self._set_request("partial_fit", requests)

    def get_metadata_routing(self) -> MetadataRouter:
        """This net's requests, and ``train_split`` (when it routes, e.g. ``groups``) as a child."""
        router = MetadataRouter(owner=type(self).__name__).add_self_request(self)
        split = getattr(self, "train_split", None)
        if split is not None and hasattr(split, "get_metadata_routing"):
            mapping = MethodMapping()
            for method in _METHODS:
                mapping.add(caller=method, callee="split")
            router.add(train_split=split, method_mapping=mapping)
        return router

    def _route_fit_params(self, method: str, fit_params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(params for train_split, params for forward)``; with routing, unrequested names raise TypeError."""
        if not routing_enabled():
            return fit_params, {k: v for k, v in fit_params.items() if k != "groups"}
        routed = process_routing(self, method, **fit_params)  # validates: unknown names raise TypeError
        routes_split = hasattr(getattr(self, "train_split", None), "get_metadata_routing")
        split_params = dict(routed.train_split.split) if routes_split else {}
        own = getattr(self._get_metadata_request(), method).requests
        forward_params = {}
        for name, alias in own.items():
            key = alias if isinstance(alias, str) else name
            if alias is not False and alias is not None and key in fit_params:
                forward_params[name] = fit_params[key]
        return split_params, forward_params
