"""bridge's exception classes under the names skorch code catches (``from skorch.exceptions import ...``).

Each name is bridge's own class from :mod:`bridge.errors`; the aliases only let code written
for skorch keep its ``except`` clauses after changing its imports.
"""

from __future__ import annotations

from bridge.errors import (
    BridgeError,
    BridgeWarning,
    DeviceWarning,
    NetAttributeError,
    NotFittedError,
    TrimmedNetError,
)

__all__ = [
    "DeviceWarning",
    "NotInitializedError",
    "SkorchAttributeError",
    "SkorchException",
    "SkorchTrainingImpossibleError",
    "SkorchWarning",
]

#: The base of every error bridge raises on purpose.
SkorchException = BridgeError
#: A net used before ``initialize``/``fit`` (also a scikit-learn ``NotFittedError``).
NotInitializedError = NotFittedError
#: A torch component set on a net outside an ``initialize_*`` method or without a trailing ``_``.
SkorchAttributeError = NetAttributeError
#: Training asked of a net trimmed for prediction.
SkorchTrainingImpossibleError = TrimmedNetError
#: The base of bridge's warnings.
SkorchWarning = BridgeWarning
