"""Golden traces: what the SDK saw and returned, so another runtime can replay and compare.

A trace records, for each request, every model call (inputs and outputs) and the final
recommendations. A runtime that reimplements the decoding logic (the JVM core of the Android
demo) replays the recorded model outputs through its own manifest handling, prefix index and
beam search, and must return the same items with the same log-probabilities.

Format (JSON, gzip-compressed when the name ends in .gz), arrays as
`{"dtype", "shape", "b64"}` little-endian base64:

    {"format": "pocketrec-trace/1", "bundle": {...manifest fields...},
     "semantic_ids": array, "item_ids": [...], "popularity": array,
     "cases": [{"history": [...], "options": {...},
                "calls": [{"graph": "encoder"|"decoder", "inputs": {...}, "output": array}],
                "result": [{"item_id", "log_prob", "semantic_id"}] | null,
                "error": {"type", "message"} | null}]}
"""

from __future__ import annotations

import base64
import gzip
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pocketrec._errors import RecommenderError
from pocketrec._recommender import Recommender, UnknownItemWarning

__all__ = ["FORMAT", "decode_array", "encode_array", "record_trace", "write_trace"]

FORMAT = "pocketrec-trace/1"


def encode_array(array: NDArray[Any]) -> dict[str, Any]:
    a = np.ascontiguousarray(array)
    dtype = {"b": "bool", "i": f"int{8 * a.itemsize}", "f": f"float{8 * a.itemsize}"}[a.dtype.kind]
    data = a.astype(a.dtype.newbyteorder("<")).tobytes()
    return {"dtype": dtype, "shape": list(a.shape), "b64": base64.b64encode(data).decode()}


def decode_array(obj: dict[str, Any]) -> NDArray[Any]:
    raw = base64.b64decode(obj["b64"])
    dtype = np.dtype(obj["dtype"]).newbyteorder("<")
    return np.frombuffer(raw, dtype=dtype).reshape(obj["shape"]).astype(dtype.newbyteorder("="))


class _Recording:
    """Wraps a session's run() to log inputs and the first output."""

    def __init__(self, session: Any, graph: str, log: list[dict[str, Any]]) -> None:
        self._session, self._graph, self._log = session, graph, log

    def run(self, names: Any, feeds: dict[str, NDArray[Any]]) -> list[NDArray[Any]]:
        out: list[NDArray[Any]] = self._session.run(names, feeds)
        self._log.append(
            {
                "graph": self._graph,
                "inputs": {k: encode_array(np.asarray(v)) for k, v in feeds.items()},
                "output": encode_array(out[0]),
            }
        )
        return out


def record_trace(rec: Recommender, cases: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Run each case ({"history": [...], "options": {...}}) through `rec`, recording calls."""
    bundle = rec._bundle
    manifest = rec.manifest
    out_cases = []
    for case in cases:
        log: list[dict[str, Any]] = []
        sessions = (
            _Recording(bundle.encoder, "encoder", log),
            _Recording(bundle.decoder, "decoder", log),
        )
        recording = Recommender(bundle, sessions=sessions)
        result: list[dict[str, Any]] | None = None
        error = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnknownItemWarning)
                found = recording.recommend(case["history"], **case.get("options", {}))
            result = [
                {"item_id": r.item_id, "log_prob": r.log_prob, "semantic_id": list(r.semantic_id)}
                for r in found
            ]
        except RecommenderError as e:
            error = {"type": type(e).__name__, "message": str(e)}
        out_cases.append(
            {
                "history": list(case["history"]),
                "options": case.get("options", {}),
                "calls": log,
                "result": result,
                "error": error,
            }
        )
    return {
        "format": FORMAT,
        "bundle": {
            "name": manifest.name,
            "precision": manifest.precision,
            "max_len": manifest.max_len,
            "num_levels": manifest.semantic_ids.num_levels,
            "codebook_size": manifest.semantic_ids.codebook_size,
            "search": manifest.search,
            "static_batch": manifest.static_batch,  # beams per decoder call of fixed-shape graphs
        },
        "semantic_ids": encode_array(bundle.semantic_ids.astype(np.int32)),
        "item_ids": list(bundle.item_ids),
        "popularity": encode_array(bundle.popularity.astype(np.float64)),
        "cases": out_cases,
    }


def write_trace(trace: dict[str, Any], path: Path) -> Path:
    data = json.dumps(trace, separators=(",", ":")).encode()
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
