"""pocketrec: recommend on the device from a distilled generative-recommender bundle.

This package is the thin runtime that client apps embed. It depends on numpy and onnxruntime
only; the training side (`pocketrec.distill`) and the export side (`pocketrec.export`) are
installed with the `[distill]` and `[export]` extras and are never imported from here.
"""

from pocketrec._errors import ConfigError, PocketrecError
from pocketrec._version import __version__

__all__ = ["ConfigError", "PocketrecError", "__version__"]
