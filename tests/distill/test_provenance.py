"""The provenance block every benchmark record carries."""

from __future__ import annotations

import os
import time

import pytest

from pocketrec.distill.runinfo import provenance, utc_now


def test_provenance_names_command_commit_machine_and_time() -> None:
    created = utc_now()
    record = provenance(created, time.perf_counter() - 1.5)
    assert set(record) == {"command", "git_commit", "machine", "created", "wall_time_s"}
    assert record["created"] == created and record["wall_time_s"] >= 1.5
    assert record["machine"]["cpu_count"] >= 1 and record["command"]
    if hasattr(os, "getloadavg"):  # timings from a busy machine can be told apart
        assert len(record["machine"]["load_average"]) == 3


def test_a_record_names_the_commit_its_run_began_with(monkeypatch: pytest.MonkeyPatch) -> None:
    from pocketrec.distill import runinfo

    began = runinfo.commit_at_start()
    record = provenance(utc_now(), time.perf_counter())
    assert record["git_commit"] == began and "git_commit_finished" not in record
    monkeypatch.setattr(runinfo, "git_commit", lambda: "0123abcd")  # a commit landed meanwhile
    record = runinfo.provenance(utc_now(), time.perf_counter())
    assert record["git_commit"] == began and record["git_commit_finished"] == "0123abcd"
