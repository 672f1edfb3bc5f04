"""The on-device event store: a user's interactions in SQLite, kept only as long as allowed.

Standard-library `sqlite3`, in WAL mode with `synchronous=FULL`, so an event is on disk when
`add` returns and a killed process loses nothing it committed. Every write is one transaction.
Retention limits (age and count per user) are applied on every write. `forget` removes a
user's rows and then rewrites the database file (`secure_delete`, checkpoint, VACUUM), so the
deleted events are not left in free pages or the write-ahead log.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pocketrec._errors import InvalidRequestError

__all__ = ["Event", "EventStore"]

_SCHEMA = 1


@dataclass(frozen=True)
class Event:
    """One interaction: which item, when (Unix seconds), and what kind (view, purchase, ...)."""

    item: str
    ts: float
    kind: str = "view"


class EventStore:
    """A user's events on the device.

    Args:
        path: the SQLite file (created if missing).
        retention_days: events older than this are deleted on the next write (None: keep).
        max_events_per_user: only the most recent this-many events per user are kept.

    Safe to share between threads: one connection, serialised by a lock.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        retention_days: float | None = 365.0,
        max_events_per_user: int | None = 10_000,
    ) -> None:
        if retention_days is not None and retention_days <= 0:
            raise InvalidRequestError("retention_days must be positive (or None to keep all)")
        if max_events_per_user is not None and max_events_per_user <= 0:
            raise InvalidRequestError("max_events_per_user must be positive (or None)")
        self.path = Path(path)
        self.retention_days = retention_days
        self.max_events_per_user = max_events_per_user
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "user TEXT NOT NULL, item TEXT NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS events_user_ts ON events (user, ts, id)")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(_SCHEMA),))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def add(
        self, item: str, *, user: str = "me", kind: str = "view", ts: float | None = None
    ) -> None:
        """Record one event (committed to disk before returning)."""
        self.add_many(
            [Event(item=item, ts=time.time() if ts is None else ts, kind=kind)], user=user
        )

    def add_many(self, events: Iterable[Event], *, user: str = "me") -> int:
        """Record events in one transaction; all or none are stored. Returns how many."""
        rows = []
        for e in events:
            if not isinstance(e.item, str) or not e.item:
                raise InvalidRequestError(f"event item must be a non-empty string, got {e.item!r}")
            rows.append((user, e.item, float(e.ts), e.kind))
        with self._transaction() as db:
            db.executemany("INSERT INTO events (user, item, ts, kind) VALUES (?, ?, ?, ?)", rows)
            self._apply_retention(db, user)
        return len(rows)

    def _apply_retention(self, db: sqlite3.Connection, user: str) -> None:
        if self.retention_days is not None:
            cutoff = time.time() - self.retention_days * 86_400
            db.execute("DELETE FROM events WHERE user = ? AND ts < ?", (user, cutoff))
        if self.max_events_per_user is not None:
            db.execute(
                "DELETE FROM events WHERE user = ? AND id NOT IN (SELECT id FROM events WHERE "
                "user = ? ORDER BY ts DESC, id DESC LIMIT ?)",
                (user, user, self.max_events_per_user),
            )

    def events(self, user: str = "me") -> list[Event]:
        """All of a user's events, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT item, ts, kind FROM events WHERE user = ? ORDER BY ts, id", (user,)
            ).fetchall()
        return [Event(item=r[0], ts=r[1], kind=r[2]) for r in rows]

    def history(self, user: str = "me", *, limit: int | None = None) -> list[str]:
        """The user's item ids, oldest first (the most recent `limit` when given)."""
        items = [e.item for e in self.events(user)]
        return items[-limit:] if limit else items

    def users(self) -> list[str]:
        with self._lock:
            return [
                r[0] for r in self._db.execute("SELECT DISTINCT user FROM events ORDER BY user")
            ]

    def export(self, user: str = "me") -> dict[str, Any]:
        """Everything stored about a user, as plain JSON-able data (data portability)."""
        return {
            "user": user,
            "store": str(self.path),
            "schema": _SCHEMA,
            "events": [asdict(e) for e in self.events(user)],
        }

    def forget(self, user: str = "me") -> int:
        """Delete all of a user's events and scrub them from the file; returns how many."""
        with self._transaction() as db:
            count = db.execute("DELETE FROM events WHERE user = ?", (user,)).rowcount
        with self._lock:  # outside a transaction: rewrite the file and empty the WAL
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return count

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
