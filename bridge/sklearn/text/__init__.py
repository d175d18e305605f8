"""Text and dict inputs for ``from_sklearn``: CountVectorizer, TfidfVectorizer,
HashingVectorizer, DictVectorizer, FeatureHasher and MultiLabelBinarizer, alone or first in
a pipeline. Strings are analysed and hashed on the host (``encoders.py``); the counts'
weighting and everything after run as tensors (``boundary.py``)."""

from bridge.sklearn.text.boundary import (
    HOST_ENCODERS,
    HostEncoding,
    TermWeighting,
    TextInputSpec,
    artifact_feed,
    host_encoding,
)

__all__ = ["HOST_ENCODERS", "HostEncoding", "TermWeighting", "TextInputSpec", "artifact_feed",
           "host_encoding"]
