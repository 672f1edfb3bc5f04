"""Errors of the training side, all under `pocketrec.PocketrecError`."""

from __future__ import annotations

from pathlib import Path

from pocketrec._errors import PocketrecError

__all__ = ["ChecksumError", "DataError", "DatasetNotFoundError", "MalformedDataError"]


class DataError(PocketrecError):
    """A dataset could not be found, downloaded or parsed."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """The dataset is not where pocketrec looked; the message says where and how to get it."""


class ChecksumError(DataError):
    """A downloaded or staged file does not have the bytes it should have."""


class MalformedDataError(DataError, ValueError):
    """A line of a data file could not be parsed.

    Attributes:
        path: the file.
        line: 1-based line number (0 when the problem is not tied to one line).
    """

    def __init__(self, path: str | Path, line: int, problem: str) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{self.path}:{line}" if line else str(self.path)
        super().__init__(f"{where}: {problem}")
