"""pocketrec: recommend on the device from a distilled generative-recommender bundle.

    >>> import pocketrec
    >>> rec = pocketrec.Recommender.from_bundle("bundles/beauty-fp32")
    >>> for r in rec.recommend(["B004756YJA", "B0020YLEYK"], k=5):
    ...     print(r.item_id, r.metadata.get("title"), r.log_prob)

This package is the thin runtime that client apps embed. It depends on numpy and onnxruntime
only; the training side (`pocketrec.distill`) and the export side (`pocketrec.export`) are
installed with the `[distill]` and `[export]` extras and are never imported from here.
"""

from pocketrec._adapter import Adapter, FitSettings
from pocketrec._errors import (
    BundleError,
    ConfigError,
    IncompatibleRuntimeError,
    InvalidRequestError,
    PocketrecError,
    ProviderUnavailableError,
    RecommenderError,
    SignatureError,
    StoreError,
    UnknownItemError,
)
from pocketrec._install import install_bundle
from pocketrec._manifest import SCHEMA_VERSION, Manifest
from pocketrec._recommender import Recommendation, Recommender, UnknownItemWarning
from pocketrec._store import Event, EventStore
from pocketrec._version import __version__

__all__ = [
    "Adapter",
    "BundleError",
    "ConfigError",
    "Event",
    "EventStore",
    "FitSettings",
    "IncompatibleRuntimeError",
    "InvalidRequestError",
    "Manifest",
    "PocketrecError",
    "ProviderUnavailableError",
    "Recommendation",
    "Recommender",
    "RecommenderError",
    "SCHEMA_VERSION",
    "SignatureError",
    "StoreError",
    "UnknownItemError",
    "UnknownItemWarning",
    "__version__",
    "install_bundle",
]
