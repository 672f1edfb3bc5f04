"""Running the bundle's ONNX sessions, whatever batch shapes their graphs were exported with.

Most bundles have dynamic batch dimensions and each call is one `session.run`. Graphs for NPUs
(`pocketrec.export.npu`) are exported with fixed users and beams; these helpers pad a short
batch with copies of its last row and chunk a long one, and return exactly the rows asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["run_decoder", "run_fixed", "static_dim"]


def _rows_of(array: NDArray[Any], size: int | None) -> list[tuple[int, int]]:
    """(start, stop) chunks of the first axis: one chunk, or `size`-row chunks."""
    n = len(array)
    if size is None:
        return [(0, n)]
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def run_fixed(
    session: Any, feeds: dict[str, NDArray[Any]], size: int | None, batched: tuple[str, ...]
) -> NDArray[np.float32]:
    """Run a session, padding/chunking the batched inputs when its graph has a fixed batch."""
    if size is None:
        out: NDArray[np.float32] = session.run(None, feeds)[0]
        return out
    first = feeds[batched[0]]
    outputs = []
    for start, stop in _rows_of(first, size):
        part = {k: (v[start:stop] if k in batched else v) for k, v in feeds.items()}
        if stop - start < size:
            pad = size - (stop - start)
            part = {
                k: (np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) if k in batched else v)
                for k, v in part.items()
            }
        chunk: NDArray[np.float32] = session.run(None, part)[0]
        outputs.append(chunk[: stop - start])
    return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)


def _pad(array: NDArray[Any], size: int | None, axis: int) -> NDArray[Any]:
    """`array` with its last entry along `axis` repeated up to `size` entries (None: as is)."""
    short = 0 if size is None else size - array.shape[axis]
    if short <= 0:
        return array
    last = np.take(array, [-1], axis=axis)
    return np.concatenate([array, np.repeat(last, short, axis=axis)], axis=axis)


def run_decoder(
    session: Any,
    feeds: dict[str, NDArray[Any]],
    users: int | None,
    beams: int | None,
) -> NDArray[np.float32]:
    """Run the decoder, padding/chunking users and beams when its graph has fixed shapes."""
    if users is None and beams is None:
        out: NDArray[np.float32] = session.run(None, feeds)[0]
        return out
    memory, mask, prefix = feeds["memory"], feeds["memory_mask"], feeds["prefix"]
    blocks = []
    for u0, u1 in _rows_of(prefix, users):
        row = []
        for w0, w1 in _rows_of(prefix[0], beams):
            part = {
                "memory": _pad(memory[u0:u1], users, 0),
                "memory_mask": _pad(mask[u0:u1], users, 0),
                "prefix": _pad(_pad(prefix[u0:u1, w0:w1], beams, 1), users, 0),
                "level": feeds["level"],
            }
            chunk: NDArray[np.float32] = session.run(None, part)[0]
            row.append(chunk[: u1 - u0, : w1 - w0])  # (users, beams, K)
        blocks.append(row[0] if len(row) == 1 else np.concatenate(row, axis=1))
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def static_dim(spec_dim: int | str) -> int | None:
    """A graph input's dimension when it is fixed (an int), None when it is symbolic."""
    return spec_dim if isinstance(spec_dim, int) else None
