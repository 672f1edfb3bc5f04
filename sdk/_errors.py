"""The one error hierarchy of pocketrec.

Every error pocketrec raises on purpose derives from `PocketrecError`, so an app can catch one
class. Messages say what was wrong, what was expected and how to fix it.

    PocketrecError
    ├── ConfigError                 a config or option has a wrong value (training, export)
    ├── RecommenderError            the SDK
    │   ├── BundleError             missing, altered or unreadable bundle files
    │   │   ├── IncompatibleRuntimeError   onnxruntime older than the bundle needs
    │   │   └── SignatureError      unsigned, untrusted or altered signature (trusted_keys)
    │   ├── ProviderUnavailableError       an execution provider this machine lacks
    │   ├── InvalidRequestError     bad arguments: k, history types, beam width
    │   ├── StoreError              the event store's file cannot be opened or is not a store
    │   └── UnknownItemError        history items not in the bundle's catalogue
    └── DataError                   (pocketrec.distill.errors) datasets: missing, malformed,
                                    failed checksum
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "ConfigError",
    "IncompatibleRuntimeError",
    "InvalidRequestError",
    "PocketrecError",
    "ProviderUnavailableError",
    "RecommenderError",
    "SignatureError",
    "StoreError",
    "UnknownItemError",
]


class PocketrecError(Exception):
    """Base class of every error pocketrec raises on purpose."""


class ConfigError(PocketrecError, ValueError):
    """A configuration value is invalid; the message lists every problem found."""

    def __init__(self, problems: list[str] | str, *, where: str = "config") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {where}:\n{lines}")


class RecommenderError(PocketrecError):
    """Base class of the SDK's errors."""


class BundleError(RecommenderError):
    """The bundle cannot be used: a file is missing, altered, or the manifest is invalid."""


class IncompatibleRuntimeError(BundleError):
    """The installed onnxruntime is older than the version the bundle was built for."""


class SignatureError(BundleError):
    """The bundle is not signed by a key the app trusts, or changed after it was signed."""


class ProviderUnavailableError(RecommenderError):
    """An execution provider was requested that this onnxruntime build does not offer."""


class InvalidRequestError(RecommenderError, ValueError):
    """An argument of a request is out of range or of the wrong type."""


class StoreError(RecommenderError):
    """The event store's SQLite file cannot be opened, is not an event store, or is newer."""


class UnknownItemError(RecommenderError, KeyError):
    """History items are not in the bundle's catalogue (with `unknown="raise"`)."""

    def __init__(self, items: list[str], *, where: str = "") -> None:
        self.items = items
        self.where = where
        shown = ", ".join(repr(i) for i in items[:10]) + (" ..." if len(items) > 10 else "")
        super().__init__(
            f"{where + ': ' if where else ''}{len(items)} history items are not in the "
            f"catalogue: {shown}. Pass "
            "unknown='drop' to skip them, or export a bundle that includes them."
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
