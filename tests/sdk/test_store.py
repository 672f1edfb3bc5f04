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

from pocketrec import EventStore, InvalidRequestError, StoreError
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


def test_bad_events_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.db", max_events_per_user=3)
    now = time.time()
    store.add_many([Event(f"s{k}", now - 10 + k) for k in range(3)])
    # milliseconds would sort as the newest event forever and push real ones out
    with pytest.raises(InvalidRequestError, match="looks like milliseconds: divide by 1000"):
        store.add("ms", ts=now * 1000)
    with pytest.raises(InvalidRequestError, match="check the device clock"):
        store.add("future", ts=now + 3 * 86_400)
    for ts in (float("nan"), float("inf"), "yesterday", None, True):
        with pytest.raises(InvalidRequestError, match="finite number of Unix seconds"):
            store.add_many([Event("x", ts)])  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="kind must be a non-empty string"):
        store.add_many([Event("x", now, None)])  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="user must be a non-empty string"):
        store.add("x", user=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="pocketrec.Event"):
        store.add_many([("x", now)])  # type: ignore[list-item]
    assert store.history() == ["s0", "s1", "s2"]  # nothing lost, nothing half-written


def test_add_reports_what_retention_keeps(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.db", retention_days=30, max_events_per_user=2)
    now = time.time()
    assert store.add("expired", ts=now - 40 * 86_400) is False
    assert store.add("a", ts=now - 5) is True
    assert store.add_many([Event("b", now - 4), Event("c", now - 3), Event("d", now - 9)]) == 2
    assert store.history() == ["b", "c"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"retention_days": float("nan")}, "retention_days must be a positive number"),
        ({"retention_days": "30"}, "retention_days must be a positive number"),
        ({"max_events_per_user": 2.5}, "max_events_per_user must be a positive integer"),
        ({"max_events_per_user": True}, "max_events_per_user must be a positive integer"),
    ],
)
def test_settings_are_checked(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        EventStore(tmp_path / "e.db", **kwargs)


def test_reads_honour_the_age_limit_without_a_write(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    now = time.time()
    with EventStore(path, retention_days=None) as store:
        store.add_many([Event("old", now - 40 * 86_400), Event("new", now - 1)])
        store.add("elsewhere-old", user="other", ts=now - 50 * 86_400)
    with EventStore(path, retention_days=30) as store:  # opening applies the limits
        assert store.history() == ["new"] and store.users() == ["me"]
    store = EventStore(path, retention_days=None)
    store.add("aging", ts=now - 29 * 86_400)
    store.retention_days = 28.0  # a long-running process: time passes the limit
    assert store.history() == ["new"]
    assert [e["item"] for e in store.export()["events"]] == ["new"]
    assert store.history(limit=0) == [] and store.history(limit=5) == ["new"]
    with pytest.raises(InvalidRequestError, match="non-negative integer"):
        store.history(limit=-1)


def test_files_that_are_not_stores_are_refused_untouched(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not a pocketrec event store, or is damaged"):
        EventStore(junk)
    assert junk.read_bytes() == b"not a database at all" * 100
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE events (when_ TEXT, what TEXT)")
    con.commit()
    con.close()
    before = other.read_bytes()
    with pytest.raises(StoreError, match="not a pocketrec event store"):
        EventStore(other)
    assert other.read_bytes() == before  # the refused file was not changed, not even its mode
    newer = tmp_path / "newer.db"
    EventStore(newer).close()
    con = sqlite3.connect(newer)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer pocketrec .*upgrade"):
        EventStore(newer)
    with pytest.raises(StoreError, match="does not exist"):
        EventStore(tmp_path / "missing" / "e.db")


def test_forget_refuses_to_report_a_scrub_another_reader_blocked(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    store = EventStore(path)
    secret = "SECRET-ITEM-XYZ"
    store.add_many([Event(secret, time.time() - i) for i in range(200)])
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM events").fetchone()  # holds a read snapshot
    with pytest.raises(StoreError, match="another connection is reading .*call forget again"):
        store.forget()
    assert store.history() == []  # deleted already: no read returns them
    reader.execute("COMMIT")
    reader.close()
    assert store.forget() == 0  # now scrubbed
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("e.db"))
    assert secret.encode() not in raw


def test_a_locked_store_is_reported_as_locked_not_damaged(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    EventStore(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    with pytest.raises(StoreError, match="another process or connection holds the file") as err:
        EventStore(path)  # waits SQLite's 5 s busy timeout first
    assert "damaged" not in str(err.value) and "move it aside" not in str(err.value)
    other.execute("ROLLBACK")
    other.close()
    assert EventStore(path).history() == []


def test_a_closed_store_and_text_sqlite_cannot_store_raise_pocketrec_errors(
    tmp_path: Path,
) -> None:
    store = EventStore(tmp_path / "e.db")
    with pytest.raises(InvalidRequestError, match="item is not valid text"):
        store.add("\ud800")  # a lone surrogate
    store.close()
    store.close()  # twice is fine
    for call in (store.history, store.users, lambda: store.add("a"), store.forget):
        with pytest.raises(StoreError, match="is closed; open a new EventStore"):
            call()


def test_users_lists_only_users_with_events_within_the_age_limit(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "e.db", retention_days=None)
    now = time.time()
    store.add("aging", user="old", ts=now - 29 * 86_400)
    store.add("fresh", user="new", ts=now - 1)
    store.retention_days = 28.0  # a long-running process: time passes the limit
    assert store.users() == ["new"]


def test_the_personal_adapter_lives_and_dies_with_the_users_events(tmp_path: Path) -> None:
    import numpy as np

    from pocketrec import Adapter

    path = tmp_path / "e.db"
    store = EventStore(path)
    store.add("a")
    assert store.adapter() is None and store.export()["adapter"] is None
    marker = 1234.5678  # a value whose float32 bytes can be looked for in the file
    adapter = Adapter(bundle="beauty", bias=np.full((2, 4), marker, np.float32))
    store.save_adapter(adapter)
    store.save_adapter(adapter, user="other")
    restored = store.adapter()
    assert restored is not None and np.array_equal(restored.bias, adapter.bias)
    assert store.export()["adapter"] == adapter.to_json()
    json.dumps(store.export())
    with pytest.raises(InvalidRequestError, match="pocketrec.Adapter"):
        store.save_adapter(adapter.bias)  # type: ignore[arg-type]
    store.forget()
    assert store.adapter() is None and store.adapter("other") is not None
    assert store.users() == ["other"]
    store.forget("other")
    store.close()
    import base64

    encoded = base64.b64encode(np.full(8, marker, "<f4").tobytes())[:16]
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("e.db"))
    assert encoded not in raw  # scrubbed like the events


def test_a_schema_1_store_is_upgraded_and_keeps_its_events(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    con.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, "
        "item TEXT NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL)"
    )
    con.execute("INSERT INTO meta VALUES ('schema', '1')")
    con.execute(
        "INSERT INTO events (user, item, ts, kind) VALUES ('me', 'a', ?, 'view')", (time.time(),)
    )
    con.commit()
    con.close()
    with EventStore(path) as store:
        assert store.history() == ["a"] and store.adapter() is None
    schema = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    assert schema == ("2",)
