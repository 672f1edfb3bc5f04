"""Fixed-shape graphs: short batches are padded, long ones chunked, and only real rows return."""

from __future__ import annotations

from typing import Any

import numpy as np

from pocketrec._sessions import run_decoder, run_fixed, static_dim


class _Recording:
    """A stand-in session (isolates the padding logic from ONNX Runtime): echoes an input."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.calls: list[dict[str, Any]] = []

    def run(self, _names: object, feeds: dict[str, Any]) -> list[Any]:
        self.calls.append({k: np.array(v) for k, v in feeds.items()})
        return [feeds[self.output].astype(np.float32)]


def test_a_dynamic_batch_is_one_call() -> None:
    session = _Recording("x")
    x = np.arange(10).reshape(5, 2)
    np.testing.assert_array_equal(run_fixed(session, {"x": x}, None, ("x",)), x)
    assert len(session.calls) == 1


def test_a_fixed_batch_is_chunked_and_the_last_chunk_padded_with_its_last_row() -> None:
    session = _Recording("x")
    x = np.arange(20).reshape(10, 2)
    shared = np.array(7)
    out = run_fixed(session, {"x": x, "level": shared}, 4, ("x",))
    np.testing.assert_array_equal(out, x)  # exactly the rows asked for, in order
    assert [c["x"].shape[0] for c in session.calls] == [4, 4, 4]
    np.testing.assert_array_equal(session.calls[-1]["x"], x[[8, 9, 9, 9]])
    assert all(c["level"] == 7 for c in session.calls)  # unbatched inputs pass through


def test_the_decoder_is_chunked_over_users_and_beams() -> None:
    session = _Recording("prefix")
    users, beams, levels = 3, 5, 3
    prefix = np.arange(users * beams * levels).reshape(users, beams, levels)
    feeds = {
        "memory": np.zeros((users, 4, 8), np.float32),
        "memory_mask": np.ones((users, 4), bool),
        "prefix": prefix,
        "level": np.array(1),
    }
    out = run_decoder(session, feeds, users=2, beams=2)
    np.testing.assert_array_equal(out, prefix)
    # users in chunks of 2 (the last padded), beams in chunks of 2 (the last padded)
    assert len(session.calls) == 2 * 3
    assert {c["prefix"].shape for c in session.calls} == {(2, 2, levels)}


def test_static_dim_reads_fixed_and_symbolic_dimensions() -> None:
    assert static_dim(8) == 8
    assert static_dim("batch") is None
