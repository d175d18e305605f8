"""skl2onnx converters for estimators skl2onnx lacks, registered through skl2onnx's own API.

Each family module exposes ``register()``, which registers its converter only when
skl2onnx has no working one (so a future skl2onnx fix takes over by itself).
"""

from __future__ import annotations

import importlib
import importlib.util

# The family modules, in registration order; tests/sklearn/test_converters.py checks that
# every module in this folder is listed.
CONVERTER_MODULES = (
    "dummy",
    "stacking",
    "kernel_approximation",
    "target",
    "voting",
    "hist_gradient_boosting",
    "threshold",
    "kernel_samplers",
    "kernel_ridge",
    "nearest_centroid",
    "covariance",
    "isotonic",
    "missing_indicator",
    "splines",
    "projections",
    "clustering",
    "delegating",
    "semi_supervised",
    "gaussian_scores",  # after projections: extends its FactorAnalysis converter
    "methods",
    "searches",
    "outlier_scores",
    "discriminant",
    "radius_neighbors",
    "linear_transforms",
    "sparse_coding",
    "locally_linear",
    "text",
    "target_encoder",
    "chains",
    "output_code",
    "kernel_density",
    "dense_outputs",
    "sequential_selection",
    "gaussian_process",
    "isomap",
    "nmf",
    "lda",
    "scalers",
    "quantile",
)

_registered: dict[str, object] | None = None


def register_missing_converters() -> dict[str, object]:
    """Register every custom converter once; return what each family's ``register()`` said.

    Returns
    -------
    dict
        Family module name → the value its ``register()`` returned (True/False or the
        names it registered). A family whose module is not installed yet is absent.
    """
    global _registered
    if _registered is not None:
        return _registered
    results = {}
    for name in CONVERTER_MODULES:
        qualified = f"{__name__}.{name}"
        if importlib.util.find_spec(qualified) is None:
            continue  # hist_gradient_boosting is written separately and may not exist yet
        module = importlib.import_module(qualified)
        results[name] = module.register()
    _registered = results
    return results
