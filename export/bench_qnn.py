"""HTP cycle counts for `pocketrec bench --device qnn-sim`.

On the Qualcomm HTP simulator of onnxruntime-qnn, wall time measures the simulator, not a
phone, so the record reports the simulator's own count of HTP cycles. QNN writes them to a
profiling CSV ("Accelerator (execute) time (cycles)", one row per graph execution) when a
profiled session is released; the benchmark's per-request call boundaries attribute them to
requests. The cycles cover the graphs only: the SDK's numpy search runs on the phone's CPU.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from pocketrec._bundle import QNN, _qnn_devices
from pocketrec._manifest import Manifest
from pocketrec.export.bench import percentiles

__all__ = ["CYCLES_EVENT", "profiled_sessions", "read_cycles", "simulator_fields"]

CYCLES_EVENT = "Accelerator (execute) time (cycles)"


def read_cycles(path: Path) -> list[int]:
    """HTP cycles of every graph execution in a QNN profiling CSV, in execution order."""
    with open(path, newline="") as f:
        return [
            int(row["Time"])
            for row in csv.DictReader(f)
            if row.get("Event Identifier") == CYCLES_EVENT
            and row.get("Unit of Measurement") == "CYCLES"
        ]


def _profiled(path: Path, options: dict[str, str], csv_path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    profiled = {**options, "profiling_level": "detailed", "profiling_file_path": str(csv_path)}
    so.add_provider_for_devices(_qnn_devices(), profiled)
    return ort.InferenceSession(str(path), so)


def profiled_sessions(
    folder: Path, manifest: Manifest, tmp: Path
) -> tuple[tuple[Any, Any], tuple[Path, Path]]:
    """(encoder, decoder) sessions on the simulator that profile every execution, and the CSV
    files they write when released."""
    options = {"backend_type": "htp", **manifest.provider_options.get(QNN, {})}
    csv_paths = (tmp / "encoder.csv", tmp / "decoder.csv")
    sessions = (
        _profiled(folder / manifest.encoder.file_for(QNN), options, csv_paths[0]),
        _profiled(folder / manifest.decoder.file_for(QNN), options, csv_paths[1]),
    )
    return sessions, csv_paths


def simulator_fields(
    batch_size: int, calls: dict[str, Any], csv_paths: tuple[Path, Path]
) -> dict[str, Any]:
    """The simulator's record fields from the released sessions' profiles.

    Args:
        batch_size: histories per `recommend_batch` call.
        calls: `_measure`'s (encoder calls, decoder calls) before each request and after
            the last, for the single requests and the batches, and the number of levels.
        csv_paths: the encoder's and decoder's profiling CSVs.
    """
    enc, dec = (np.asarray(read_cycles(p), dtype=np.int64) for p in csv_paths)
    last = calls["batch"][-1]
    if (len(enc), len(dec)) != last:
        raise RuntimeError(
            f"the QNN profile has {len(enc)} encoder and {len(dec)} decoder executions for "
            f"{last[0]} and {last[1]} calls; cannot attribute cycles to requests"
        )

    def per_request(bounds: list[tuple[int, int]]) -> tuple[np.ndarray, list[np.ndarray]]:
        """(encoder cycles per request, decoder cycles of each call, per request)."""
        spans = list(itertools.pairwise(bounds))
        encode = np.asarray([enc[e0:e1].sum() for (e0, _), (e1, _) in spans], dtype=np.float64)
        return encode, [dec[d0:d1] for (_, d0), (_, d1) in spans]

    encode, dec_parts = per_request(calls["single"])
    single = encode + np.asarray([p.sum() for p in dec_parts], dtype=np.float64)
    stages = {"encode": percentiles(encode)}
    levels = calls["levels"]
    if all(len(p) == levels for p in dec_parts):
        by_level = np.stack(dec_parts)  # (repetitions, levels)
        stages.update({f"decode_level_{lv}": percentiles(by_level[:, lv]) for lv in range(levels)})
    batch_encode, batch_dec = per_request(calls["batch"])
    batch = batch_encode + np.asarray([p.sum() for p in batch_dec], dtype=np.float64)
    return {
        "timing": "htp_simulator_cycles",
        "latency_ms": None,
        "time_in_onnxruntime_share": None,
        "throughput_per_s": None,
        "batch_latency_ms": None,
        "latency_cycles": {"end_to_end": percentiles(single), "stages": stages},
        "batch_cycles": percentiles(batch),
        "cycles_per_recommendation_in_batch": float(np.median(batch) / batch_size),
        "cycles_note": "HTP cycles counted by the QNN simulator for the graphs only (the "
        "SDK's numpy beam search runs on the CPU and is not included)",
    }
