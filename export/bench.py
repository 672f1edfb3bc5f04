"""`pocketrec bench`: latency, throughput, memory and size of a bundle on one device.

Warm-up calls first, then timed repetitions of `recommend(k=10)` on histories of the model's
window length drawn from the catalogue (seeded). Per-stage times come from wrapping the ONNX
Runtime sessions, so "encode" and "decode level l" are time inside ONNX Runtime and the rest is
the SDK's own numpy work (prefix masks, log-softmax, ranking). Records follow the
`pocketrec-bench/1` schema, which the Android demo writes too.
"""

from __future__ import annotations

import platform
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from pocketrec._bundle import open_bundle
from pocketrec._errors import ProviderUnavailableError
from pocketrec._recommender import Recommender
from pocketrec.distill.runinfo import command_line, cpu_model, utc_now

__all__ = ["BenchConfig", "DEVICES", "bench_bundle", "percentiles"]

FORMAT = "pocketrec-bench/1"
DEVICES: dict[str, tuple[str, str]] = {
    # device -> (execution provider, the package that provides it)
    "cpu": ("CPUExecutionProvider", "onnxruntime"),
    "cuda": ("CUDAExecutionProvider", "onnxruntime-gpu"),
    "tensorrt": ("TensorrtExecutionProvider", "onnxruntime-gpu with TensorRT"),
}


@dataclass
class BenchConfig:
    """What to measure."""

    bundle: str
    device: str = "cpu"
    threads: int | None = 1
    batch: int = 64  # histories per call in the throughput measurement
    k: int = 10
    warmup: int = 30
    repetitions: int = 300
    history_len: int | None = None  # default: the model's window
    seed: int = 0


def percentiles(samples: Sequence[float] | np.ndarray) -> dict[str, float]:
    """p50/p90/p99/mean of millisecond samples (numpy's linear interpolation)."""
    a = np.asarray(samples, dtype=np.float64)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
    }


class _Timed:
    """A session wrapper that appends each run's duration (ms) to a list."""

    def __init__(self, session: Any, log: list[float]) -> None:
        self._session, self._log = session, log

    def run(self, names: Any, feeds: dict[str, Any]) -> Any:
        t0 = time.perf_counter_ns()
        out = self._session.run(names, feeds)
        self._log.append((time.perf_counter_ns() - t0) / 1e6)
        return out


def _providers_for(device: str, precision: str, intended: Sequence[str]) -> list[str]:
    if device not in DEVICES:
        raise ProviderUnavailableError(
            f"unknown device {device!r}; choose one of {', '.join([*DEVICES, 'qnn-sim'])}"
        )
    provider, package = DEVICES[device]
    if provider not in ort.get_available_providers():
        raise ProviderUnavailableError(
            f"device {device!r} needs {provider}, which this onnxruntime lacks (available: "
            f"{', '.join(ort.get_available_providers())}); it is provided by {package}"
        )
    if provider not in intended:
        raise ProviderUnavailableError(
            f"this {precision} bundle is built for {', '.join(intended)}, not {provider}; "
            "export the precision meant for that device (e.g. --precision npu for QNN)"
        )
    return [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]


def _sizes(folder: Path, manifest: Any) -> dict[str, int]:
    graphs = sum((folder / g.file).stat().st_size for g in (manifest.encoder, manifest.decoder))
    tables = sum(e.bytes for n, e in manifest.files.items() if not n.endswith(".onnx"))
    catalogue_weights = 0
    try:  # catalogue-sized tables inside the graphs (item-id embeddings), reported apart
        import onnx

        for g in (manifest.encoder, manifest.decoder):
            model = onnx.load(str(folder / g.file), load_external_data=False)
            for init in model.graph.initializer:
                if init.dims and init.dims[0] >= manifest.num_items:
                    catalogue_weights += len(init.raw_data) or 4 * int(np.prod(init.dims))
    except ImportError:
        pass
    return {
        "graphs": graphs,
        "graphs_without_catalogue_tables": graphs - catalogue_weights,
        "catalogue_tables_in_graphs": catalogue_weights,
        "tables": tables,
    }


def _histories(rec: Recommender, n: int, length: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    ids = rec.item_ids
    return [[ids[i] for i in rng.choice(len(ids), length, replace=False)] for _ in range(n)]


def _timed_loop(fn: Callable[[int], object], warmup: int, reps: int) -> list[float]:
    for i in range(warmup):
        fn(i)
    out = []
    for i in range(reps):
        t0 = time.perf_counter_ns()
        fn(i)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def bench_bundle(cfg: BenchConfig) -> dict[str, Any]:
    """Measure one bundle on one device; returns a `pocketrec-bench/1` record."""
    folder = Path(cfg.bundle)
    probe = open_bundle(folder, providers=["CPUExecutionProvider"], threads=1)
    providers = _providers_for(
        cfg.device, probe.manifest.precision, probe.manifest.execution_providers
    )
    bundle = open_bundle(folder, providers=providers, threads=cfg.threads)
    enc_log: list[float] = []
    dec_log: list[float] = []
    rec = Recommender(
        bundle, sessions=(_Timed(bundle.encoder, enc_log), _Timed(bundle.decoder, dec_log))
    )
    length = cfg.history_len or rec.window
    histories = _histories(rec, 64, length, cfg.seed)
    levels = bundle.manifest.semantic_ids.num_levels

    def one(i: int) -> object:
        return rec.recommend(histories[i % len(histories)], k=cfg.k)

    enc_log.clear()
    dec_log.clear()
    single = _timed_loop(one, cfg.warmup, cfg.repetitions)
    enc = enc_log[-cfg.repetitions :]
    dec = np.asarray(dec_log[-cfg.repetitions * levels :]).reshape(cfg.repetitions, levels)
    inside = np.asarray(enc) + dec.sum(axis=1)
    batch_histories = _histories(rec, cfg.batch, length, cfg.seed + 1)
    batch_reps = max(3, min(30, cfg.repetitions // 10))
    batched = _timed_loop(
        lambda i: rec.recommend_batch(batch_histories, k=cfg.k),
        max(1, cfg.warmup // 10),
        batch_reps,
    )
    stages = {"encode": percentiles(enc)}
    stages.update({f"decode_level_{lv}": percentiles(dec[:, lv]) for lv in range(levels)})
    stages["sdk_search_overhead"] = percentiles(np.asarray(single) - inside)
    return {
        "format": FORMAT,
        "what": f"recommend(k={cfg.k}) latency",
        "bundle": {
            "name": bundle.manifest.name,
            "precision": bundle.manifest.precision,
            "bytes": _sizes(folder, bundle.manifest),
            "path": str(folder),
        },
        "device": {
            "kind": cfg.device,
            "cpu_model": cpu_model(),
            "machine": platform.machine(),
            "cores": _cores(),
            "os": platform.platform(),
        },
        "runtime": {
            "onnxruntime": ort.__version__,
            "providers": list(rec.providers),
            "threads": cfg.threads,
        },
        "settings": {
            "k": cfg.k,
            "beam_width": max(cfg.k, bundle.manifest.search["beam_width"]),
            "history_len": length,
            "batch": cfg.batch,
            "warmup": cfg.warmup,
            "repetitions": cfg.repetitions,
        },
        "latency_ms": {"end_to_end": percentiles(single), "stages": stages},
        "time_in_onnxruntime_share": float(inside.sum() / np.sum(single)),
        "throughput_per_s": float(cfg.batch * len(batched) / (np.sum(batched) / 1e3)),
        "batch_latency_ms": percentiles(batched),
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "config": asdict(cfg),
        "command": command_line(),
        "created": utc_now(),
    }


def _cores() -> int:
    import os

    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
