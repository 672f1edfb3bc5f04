"""The one error hierarchy of pocketrec.

Every error pocketrec raises on purpose derives from `PocketrecError`, so an app can catch one
class. Messages say what was wrong, what was expected and how to fix it.

    PocketrecError
    ├── ConfigError            a config or option has a wrong value (training and export side)
    └── DataError              (pocketrec.distill.errors) dataset problems: missing, malformed,
                               failed checksum
"""

from __future__ import annotations

__all__ = ["ConfigError", "PocketrecError"]


class PocketrecError(Exception):
    """Base class of every error pocketrec raises on purpose."""


class ConfigError(PocketrecError, ValueError):
    """A configuration value is invalid; the message lists every problem found."""

    def __init__(self, problems: list[str] | str, *, where: str = "config") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {where}:\n{lines}")
