"""The SQLite event store: durability across a killed process, retention, export, forget."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pocketrec import EventStore, InvalidRequestError
from pocketrec._store import Event

WRITER = r"""
import sys, time
from pocketrec._store import Event, EventStore
store = EventStore(sys.argv[1], retention_days=None, max_events_per_user=None)
for i in range(50):
    store.add(f"item{i}", ts=1000.0 + i)
    print(i, flush=True)
with store._transaction() as db:  # an open transaction the kill interrupts
    db.executemany("INSERT INTO events (user, item, ts, kind) VALUES (?, ?, ?, ?)",
                   [("me", f"uncommitted{i}", 5000.0 + i, "view") for i in range(10)])
    print("in-transaction", flush=True)
    time.sleep(60)
"""


def test_killed_writer_loses_nothing_committed(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    committed = -1
    for line in proc.stdout:
        if line.startswith("in-transaction"):
            break
        committed = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert committed == 49
    store = EventStore(db, retention_days=None, max_events_per_user=None)
    items = store.history()
    assert items == [f"item{i}" for i in range(50)]  # every committed event, in order
    assert not any(i.startswith("uncommitted") for i in items)  # the open one rolled back


def test_add_many_is_all_or_nothing(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.db")
    with pytest.raises(InvalidRequestError, match="non-empty string"):
        store.add_many([Event("a", time.time()), Event("", time.time())])
    assert store.history() == []


def test_retention_by_count_and_age(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.db", retention_days=30, max_events_per_user=3)
    now = time.time()
    store.add_many(
        [Event("old", now - 40 * 86_400)] + [Event(f"i{k}", now - k) for k in range(5, 0, -1)]
    )
    assert store.history() == ["i3", "i2", "i1"]
    with pytest.raises(InvalidRequestError):
        EventStore(tmp_path / "x.db", retention_days=0)


def test_export_and_users(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.db")
    store.add("a", ts=time.time() - 5, kind="purchase")
    store.add("b", user="other")
    data = store.export()
    assert data["user"] == "me" and [e["item"] for e in data["events"]] == ["a"]
    assert data["events"][0]["kind"] == "purchase"
    json.dumps(data)  # plain data
    assert store.users() == ["me", "other"]


def test_forget_removes_every_trace(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    store = EventStore(path)
    secret = "SECRET-ITEM-XYZ"
    store.add_many([Event(secret, time.time() - i) for i in range(200)])
    store.add("kept", user="other")
    assert store.forget() == 200
    assert store.history() == [] and store.history("other") == ["kept"]
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("e.db"))
    assert secret.encode() not in raw  # not in the file, free pages, or the WAL
    rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM events WHERE user='me'").fetchone()
    assert rows == (0,)
