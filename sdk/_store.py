"""The on-device event store: a user's interactions in SQLite, kept only as long as allowed.

Standard-library `sqlite3`, in WAL mode with `synchronous=FULL`, so an event is on disk when
`add` returns and a killed process loses nothing it committed. Every write is one transaction.
Retention limits (age and count per user) are applied when the store opens and on every write,
and reads never return an event older than the age limit. `forget` removes a user's rows and
then rewrites the database file (`secure_delete`, checkpoint, VACUUM), so the deleted events are
not left in free pages or the write-ahead log. A personal adapter fitted from the user's events
can be kept in the same file (`save_adapter`), so `export` includes it and `forget` removes it.

Events are checked before anything is written: item, user and kind are non-empty strings and
`ts` is finite Unix seconds no more than a day ahead of the clock, because the count limit keeps
the newest events: one event stamped in milliseconds would otherwise sort as the newest forever
and push real events out.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pocketrec._adapter import Adapter
from pocketrec._checks import is_int, is_real
from pocketrec._errors import BundleError, InvalidRequestError, StoreError

__all__ = ["Event", "EventStore"]

_SCHEMA = 2  # 2: the adapters table (schema 1 files are upgraded when opened)
_TABLES = {"events", "meta", "sqlite_sequence", "adapters"}
_MAX_AHEAD_S = 86_400.0  # clock skew an event's time may have
_COLUMNS = ["id", "user", "item", "ts", "kind"]


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
        if retention_days is not None and not (
            is_real(retention_days) and math.isfinite(retention_days) and retention_days > 0
        ):
            raise InvalidRequestError(
                f"retention_days must be a positive number of days (or None to keep all), "
                f"got {retention_days!r}"
            )
        if max_events_per_user is not None and not (
            is_int(max_events_per_user) and max_events_per_user > 0
        ):
            raise InvalidRequestError(
                f"max_events_per_user must be a positive integer (or None), "
                f"got {max_events_per_user!r}"
            )
        self.path = Path(path)
        self.retention_days = None if retention_days is None else float(retention_days)
        self.max_events_per_user = None if max_events_per_user is None else int(max_events_per_user)
        self._lock = threading.Lock()
        self._closed = False
        if not self.path.parent.is_dir():
            raise StoreError(
                f"cannot create the event store {self.path}: folder {self.path.parent} does "
                "not exist; create it first or pass a path in an existing folder"
            )
        try:
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the event store {self.path}: {e}") from e
        try:
            self._open()
        except (sqlite3.DatabaseError, StoreError) as e:
            self._db.close()
            if isinstance(e, StoreError):
                raise
            if isinstance(e, sqlite3.OperationalError):  # locked, read-only, disk full: not damage
                raise StoreError(f"cannot open the event store {self.path}: {e}; {_fix(e)}") from e
            raise StoreError(
                f"{self.path} is not a pocketrec event store, or is damaged ({e}); move it "
                "aside (its events cannot be read) or pass another path"
            ) from e

    def _open(self) -> None:
        self._check_existing()  # before any write: a refused file is left exactly as it was
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "user TEXT NOT NULL, item TEXT NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS adapters (user TEXT PRIMARY KEY, data TEXT NOT NULL)"
            )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(_SCHEMA),))
            db.execute("CREATE INDEX IF NOT EXISTS events_user_ts ON events (user, ts, id)")
            for (user,) in db.execute("SELECT DISTINCT user FROM events").fetchall():
                self._apply_retention(db, user)

    def _check_existing(self) -> None:
        """Refuse a database that is not an event store, or one from a newer schema (reads)."""
        db = self._db
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return  # a new (or empty) file
        columns = [r[1] for r in db.execute("PRAGMA table_info(events)")]
        schema = None
        if "meta" in tables:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            schema = row[0] if row else None
        if not tables <= _TABLES or columns != _COLUMNS or not str(schema).isdigit():
            raise StoreError(
                f"{self.path} holds an SQLite database that is not a pocketrec event store "
                f"(tables {sorted(tables)}, events columns {columns}, schema {schema!r}); pass "
                "another path"
            )
        if int(str(schema)) > _SCHEMA:
            raise StoreError(
                f"{self.path} was written by a newer pocketrec (store schema {schema}, this "
                f"version reads {_SCHEMA}); upgrade pocketrec to read it"
            )

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """The connection, for one call at a time; SQLite's errors become `StoreError`s."""
        with self._lock:
            if self._closed:
                raise StoreError(f"the event store {self.path} is closed; open a new EventStore")
            try:
                yield self._db
            except sqlite3.Error as e:
                raise StoreError(f"event store {self.path}: {e}; {_fix(e)}") from e

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed whole, or rolled back whole."""
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite may have rolled back already (disk full, I/O)
                    db.execute("ROLLBACK")
                raise

    def add(
        self, item: str, *, user: str = "me", kind: str = "view", ts: float | None = None
    ) -> bool:
        """Record one event (committed to disk before returning).

        Returns False when the event is already past the retention limits (so not kept).
        """
        return (
            self.add_many(
                [Event(item=item, ts=time.time() if ts is None else ts, kind=kind)], user=user
            )
            == 1
        )

    def add_many(self, events: Iterable[Event], *, user: str = "me") -> int:
        """Record events in one transaction; all or none are written.

        Every event is checked first (see the module docstring); one bad event raises
        `InvalidRequestError` and nothing is written. Returns how many of the events are kept:
        ones already older than `retention_days`, or older than the user's newest
        `max_events_per_user`, are dropped at once.
        """
        _check_text("user", user)
        now = time.time()
        rows = []
        for n, e in enumerate(events):
            if not isinstance(e, Event):
                raise InvalidRequestError(
                    f"event {n} is a {type(e).__name__}; pass pocketrec.Event(item, ts, kind)"
                )
            _check_text(f"event {n}: item", e.item)
            _check_text(f"event {n}: kind", e.kind)
            rows.append((user, e.item, _check_ts(n, e.ts, now), e.kind))
        with self._transaction() as db:
            (last_id,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
            db.executemany("INSERT INTO events (user, item, ts, kind) VALUES (?, ?, ?, ?)", rows)
            self._apply_retention(db, user)
            # AUTOINCREMENT ids only grow, so the new rows are the ones above the old maximum
            (kept,) = db.execute(
                "SELECT COUNT(*) FROM events WHERE user = ? AND id > ?", (user, last_id)
            ).fetchone()
        return int(kept)

    def _cutoff(self) -> float:
        """Events older than this (Unix seconds) are past the age limit."""
        if self.retention_days is None:
            return -math.inf
        return time.time() - self.retention_days * 86_400

    def _apply_retention(self, db: sqlite3.Connection, user: str) -> None:
        if self.retention_days is not None:
            db.execute("DELETE FROM events WHERE user = ? AND ts < ?", (user, self._cutoff()))
        if self.max_events_per_user is not None:
            db.execute(
                "DELETE FROM events WHERE user = ? AND id NOT IN (SELECT id FROM events WHERE "
                "user = ? ORDER BY ts DESC, id DESC LIMIT ?)",
                (user, user, self.max_events_per_user),
            )

    def events(self, user: str = "me") -> list[Event]:
        """All of a user's events within the age limit, oldest first."""
        _check_text("user", user)
        with self._connection() as db:
            rows = db.execute(
                "SELECT item, ts, kind FROM events WHERE user = ? AND ts >= ? ORDER BY ts, id",
                (user, self._cutoff()),
            ).fetchall()
        return [Event(item=r[0], ts=r[1], kind=r[2]) for r in rows]

    def history(self, user: str = "me", *, limit: int | None = None) -> list[str]:
        """The user's item ids, oldest first (the most recent `limit` when given)."""
        if limit is not None and not (is_int(limit) and limit >= 0):
            raise InvalidRequestError(
                f"limit must be a non-negative integer or None, got {limit!r}"
            )
        items = [e.item for e in self.events(user)]
        return items if limit is None else items[len(items) - min(int(limit), len(items)) :]

    def users(self) -> list[str]:
        """Users with events within the age limit, or a saved adapter, sorted."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT user FROM events WHERE ts >= ? UNION SELECT user FROM adapters "
                "ORDER BY user",
                (self._cutoff(),),
            ).fetchall()
        return [r[0] for r in rows]

    def save_adapter(self, adapter: Adapter, *, user: str = "me") -> None:
        """Keep the user's personal adapter in the store (replacing the previous one).

        It is fitted from the user's events, so it lives with them: `export` includes it and
        `forget` deletes it. Written in one transaction, like an event.
        """
        _check_text("user", user)
        if not isinstance(adapter, Adapter):
            raise InvalidRequestError(
                f"save_adapter takes a pocketrec.Adapter, got {type(adapter).__name__}"
            )
        try:
            data = json.dumps(adapter.to_json(), allow_nan=False)
        except (TypeError, ValueError) as e:  # info holding NaN or objects JSON cannot hold
            raise InvalidRequestError(f"the adapter cannot be saved as JSON ({e})") from e
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO adapters VALUES (?, ?)", (user, data))

    def adapter(self, user: str = "me") -> Adapter | None:
        """The user's saved adapter, or None.

        Raises:
            BundleError: the saved adapter is unreadable (`forget` or `save_adapter` mends it).
        """
        _check_text("user", user)
        with self._connection() as db:
            row = db.execute("SELECT data FROM adapters WHERE user = ?", (user,)).fetchone()
        if row is None:
            return None
        try:
            obj = json.loads(row[0])
        except ValueError as e:
            raise BundleError(
                f"the saved adapter in {self.path} is unreadable ({e}); save it again"
            ) from e
        return Adapter.from_json(obj)

    def export(self, user: str = "me") -> dict[str, Any]:
        """Everything stored about a user, as plain JSON-able data (data portability)."""
        adapter = self.adapter(user)
        return {
            "user": user,
            "store": str(self.path),
            "schema": _SCHEMA,
            "events": [asdict(e) for e in self.events(user)],
            "adapter": None if adapter is None else adapter.to_json(),
        }

    def forget(self, user: str = "me") -> int:
        """Delete all of a user's events and adapter and scrub them from the file.

        Returns how many events were deleted.

        Raises:
            StoreError: another connection to the file is reading, so the deleted rows could
                not be scrubbed from the write-ahead log yet; they are deleted (no read
                returns them), and calling `forget` again once it is closed scrubs them.
        """
        _check_text("user", user)
        with self._transaction() as db:
            count = db.execute("DELETE FROM events WHERE user = ?", (user,)).rowcount
            db.execute("DELETE FROM adapters WHERE user = ?", (user,))
        with self._connection() as db:  # outside a transaction: rewrite the file, empty the WAL
            _checkpoint(db, self.path)
            db.execute("VACUUM")
            _checkpoint(db, self.path)
        return count

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _checkpoint(db: sqlite3.Connection, path: Path) -> None:
    """Copy the write-ahead log into the file and truncate it, or raise if a reader blocks it."""
    busy, log, copied = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy or log != copied:
        raise StoreError(
            f"event store {path}: another connection is reading the file, so deleted events "
            "are still in its write-ahead log; close that connection and call forget again"
        )


def _fix(e: sqlite3.Error) -> str:
    """How to get past an SQLite error, for the message."""
    text = str(e).lower()
    if "locked" in text or "busy" in text:
        return "another process or connection holds the file; close it, then retry"
    if "full" in text:
        return "the disk is full; free space, then retry (nothing was half-written)"
    if "malformed" in text or "not a database" in text:
        return "the file is damaged; move it aside (its events cannot be read) or pass another path"
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return "the file or its folder is not writable; fix the permissions or pass another path"
    return "retry; if it persists, report it with this message"


def _check_text(what: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"{what} must be a non-empty string, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate: SQLite cannot store it as text
        raise InvalidRequestError(
            f"{what} is not valid text ({e.reason} at position {e.start}); pass a str that "
            "encodes as UTF-8"
        ) from e


def _check_ts(n: int, ts: object, now: float) -> float:
    """`ts` as float seconds, or a clear error (nothing is written)."""
    if not is_real(ts) or not math.isfinite(float(ts)):  # type: ignore[arg-type]
        raise InvalidRequestError(
            f"event {n}: ts must be a finite number of Unix seconds, got {ts!r}"
        )
    t = float(ts)  # type: ignore[arg-type]
    if t > now + _MAX_AHEAD_S:
        hint = (
            f"; {t:.0f} looks like milliseconds: divide by 1000"
            if now * 100 < t < now * 10_000
            else "; check the device clock"
        )
        raise InvalidRequestError(
            f"event {n}: ts {t:.0f} is more than a day after now ({now:.0f}); ts is Unix "
            f"seconds{hint}"
        )
    return t
