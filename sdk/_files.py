"""Durable file writes: atomic replacement, and flushing a file or a folder's entries to disk."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["fsync", "write_atomic"]


def fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to the disk (folders: POSIX only)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file of its own in the same folder, renamed over
    the target: a reader never sees half a file, two writers never share a temp file, and the
    temp file is removed on any error. The file gets the usual permissions (umask), not
    mkstemp's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(name, 0o666 & ~mask)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
