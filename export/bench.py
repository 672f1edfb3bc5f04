"""`pocketrec bench`: latency, throughput, memory and size of a bundle on one device.

Warm-up calls first, then timed repetitions of `recommend(k=10)` on histories of the model's
window length drawn from the catalogue (seeded), then rounds of `recommend_batch` for the
throughput. Per-stage times come from wrapping the ONNX Runtime sessions, so "encode" and
"decode level l" (or "search_graph", the whole search in one run, for bundles that have that
graph) are time inside ONNX Runtime and the rest is the SDK's own numpy work (prefix masks,
log-softmax, ranking, building results). Records follow the `pocketrec-bench/1` schema, which
the Android demo writes too.

On `qnn-sim` (the Qualcomm HTP simulator of onnxruntime-qnn on x86-64) wall time measures the
simulator, not a phone, so the record carries the simulator's own count of HTP cycles instead
(`"timing": "htp_simulator_cycles"`; `latency_ms` and `throughput_per_s` are null): see
`pocketrec.export.bench_qnn`.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import math
import os
import platform
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from pocketrec._bundle import QNN, available_providers, open_bundle
from pocketrec._errors import ProviderUnavailableError
from pocketrec._manifest import Manifest, read_manifest
from pocketrec._recommender import Recommender
from pocketrec.distill.runinfo import command_line, cpu_model, git_commit, utc_now

__all__ = ["DEVICES", "BenchConfig", "bench_bundle", "percentiles"]

FORMAT = "pocketrec-bench/1"
DEVICES: dict[str, tuple[str, str]] = {
    # device -> (execution provider, what provides it)
    "cpu": ("CPUExecutionProvider", "onnxruntime"),
    "cuda": ("CUDAExecutionProvider", "onnxruntime-gpu (pip install onnxruntime-gpu)"),
    "tensorrt": ("TensorrtExecutionProvider", "onnxruntime-gpu with TensorRT"),
    "qnn-sim": (QNN, "onnxruntime-qnn (pip install 'pocketrec[npu]')"),
}


@dataclass
class BenchConfig:
    """What to measure."""

    bundle: str
    device: str = "cpu"
    threads: int | None = 1
    batch: int = 64  # histories per call in the throughput measurement
    # Concurrent callers of recommend_batch on one Recommender for a second throughput figure.
    # On a CPU server, W callers with 1 intra-op thread each beat one caller with W threads:
    # the numpy search between model calls runs on the caller's thread, and ONNX Runtime's
    # thread pool adds a handoff to each of the many small model calls (measured on the Beauty
    # int8 bundle, 2 cores, batch 64: 1 caller x 2 threads 1,254/s, 2 callers x 1 thread
    # 3,049/s).
    workers: int = 1
    k: int = 10
    warmup: int = 30
    repetitions: int = 300
    history_len: int | None = None  # default: the model's window
    seed: int = 0


def percentiles(samples: Sequence[float] | np.ndarray) -> dict[str, float]:
    """p50/p90/p99/mean of samples (numpy's linear interpolation)."""
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


def _providers_for(device: str, manifest: Manifest) -> list[str]:
    if device not in DEVICES:
        raise ProviderUnavailableError(
            f"unknown device {device!r}; choose one of {', '.join(DEVICES)}"
        )
    provider, package = DEVICES[device]
    if device == "qnn-sim" and platform.machine().lower() not in ("x86_64", "amd64"):
        raise ProviderUnavailableError(
            "qnn-sim is the HTP simulator of onnxruntime-qnn on x86-64; on a phone, measure "
            "with the Android demo's benchmark"
        )
    available = available_providers()
    if provider not in available:
        raise ProviderUnavailableError(
            f"device {device!r} needs {provider}, which this machine lacks (available: "
            f"{', '.join(available)}); it is provided by {package}"
        )
    if provider not in manifest.execution_providers:
        raise ProviderUnavailableError(
            f"bundle {manifest.name!r} ({manifest.precision}) is built for "
            f"{', '.join(manifest.execution_providers)}, not {provider}; bench the precision "
            "built for that device (pocketrec export --precision npu for qnn-sim, fp32, int8 "
            "or int4 for cpu and cuda)"
        )
    return (
        [provider]
        if provider in ("CPUExecutionProvider", QNN)
        else [provider, "CPUExecutionProvider"]
    )


def _catalogue_bytes(path: Path, num_items: int) -> int:
    """Stored bytes of catalogue-sized initializers (item-id tables) inside one ONNX graph.

    Stored, not unpacked: an INT4 table holds two values a byte, which `to_array` would
    widen to one byte each.
    """
    import onnx
    from onnx import TensorProto, numpy_helper

    packed = {TensorProto.INT4: 4, TensorProto.UINT4: 4}  # bits per value
    model = onnx.load(str(path), load_external_data=False)
    total = 0
    for init in model.graph.initializer:
        if not init.dims or init.dims[0] < num_items:
            continue
        if init.data_type in packed:
            total += math.ceil(math.prod(init.dims) * packed[init.data_type] / 8)
        else:
            total += numpy_helper.to_array(init).nbytes
    return total


def _sizes(folder: Path, manifest: Manifest, provider: str) -> dict[str, int]:
    """Bytes of the bundle; the student's two graphs apart from the search graph.

    The search graph repeats the decoder's weights and adds the prefix trie, so it is counted
    in what the device loads ("graphs") and also reported on its own.
    """
    graphs = [manifest.encoder, manifest.decoder]
    student = sum((folder / g.file_for(provider)).stat().st_size for g in graphs)
    search = 0
    if manifest.search_graph is not None and provider != QNN:
        search = (folder / manifest.search_graph.file).stat().st_size
        graphs.append(manifest.search_graph)
    catalogue = [0] * len(graphs)
    # Measured on the portable graphs (a compiled EPContext one hides its weights); onnx, which
    # reads them, is in the [export] extra.
    with contextlib.suppress(ImportError):
        catalogue = [_catalogue_bytes(folder / g.file, manifest.num_items) for g in graphs]
    in_student = sum(catalogue[:2])
    return {
        "graphs": student + search,  # the graph files the device loads (compiled where used)
        "graphs_without_catalogue_tables": student + search - sum(catalogue),
        "catalogue_tables_in_graphs": sum(catalogue),
        # the student's own size, as a model: what grows with its layers, not the catalogue
        "student_graphs_without_catalogue_tables": student - in_student,
        "student_graphs": student,  # encoder and decoder
        "search_graph": search,  # 0 without one
        "tables": sum(e.bytes for n, e in manifest.files.items() if not n.endswith(".onnx")),
        "files_total": sum(e.bytes for e in manifest.files.values()),
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


def _concurrent_throughput(
    rec: Recommender, histories: list[list[str]], cfg: BenchConfig, reps: int
) -> dict[str, Any]:
    """recommend_batch from `cfg.workers` threads at once on one Recommender.

    Each thread makes `reps` calls after one untimed call; the figure is every
    recommendation made over the wall time from the common start to the last return.
    """
    start = threading.Barrier(cfg.workers + 1)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            rec.recommend_batch(histories, k=cfg.k)
            start.wait()
            for _ in range(reps):
                rec.recommend_batch(histories, k=cfg.k)
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)
            start.abort()

    threads = [threading.Thread(target=work) for _ in range(cfg.workers)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a worker failed: raised below
        start.wait()
    t0 = time.perf_counter_ns()
    for t in threads:
        t.join()
    wall_s = (time.perf_counter_ns() - t0) / 1e9
    if errors:
        raise errors[0]
    return {
        "workers": cfg.workers,
        "intra_op_threads": cfg.threads,
        "batch": cfg.batch,
        "calls_per_worker": reps,
        "throughput_per_s": cfg.workers * reps * len(histories) / wall_s,
    }


def _versions() -> dict[str, str]:
    found = {"onnxruntime": ort.__version__}
    for dist in ("onnxruntime-gpu", "onnxruntime-qnn"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[dist] = importlib.metadata.version(dist)
    return found


def _cores() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


def bench_bundle(cfg: BenchConfig) -> dict[str, Any]:
    """Measure one bundle on one device; returns a `pocketrec-bench/1` record.

    Raises:
        ProviderUnavailableError: unknown device, a device this machine lacks (naming the
            package that provides it), or a bundle built for another device class.
        BundleError: the bundle is missing, altered or does not load on the device.
    """
    folder = Path(cfg.bundle)
    manifest = read_manifest(folder)
    providers = _providers_for(cfg.device, manifest)
    bundle = open_bundle(folder, providers=providers, threads=cfg.threads)
    simulated = providers[0] == QNN
    if simulated:  # concurrent calls would interleave the simulator's per-execution cycles
        cfg = replace(cfg, workers=1)
    if simulated:
        # only the simulator needs this module (which needs this one's percentiles)
        from pocketrec.export.bench_qnn import profiled_sessions, simulator_fields

        with tempfile.TemporaryDirectory(prefix="pocketrec-bench-") as tmp:
            sessions, csv_paths = profiled_sessions(folder, manifest, Path(tmp))
            record, calls = _measure(cfg, bundle, sessions)
            del sessions  # QNN writes its profile when the session is released
            gc.collect()
            record.update(simulator_fields(cfg.batch, calls, csv_paths))
    else:
        record, _ = _measure(cfg, bundle, (bundle.encoder, bundle.decoder))
    record["bundle"]["bytes"] = _sizes(folder, manifest, providers[0])
    record["runtime"]["providers"] = providers
    return record


def _measure(
    cfg: BenchConfig, bundle: Any, sessions: tuple[Any, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wall-clock record, and the session-call boundaries of every request (for cycles)."""
    enc_log: list[float] = []
    dec_log: list[float] = []
    search_log: list[float] = []
    encoder, decoder = _Timed(sessions[0], enc_log), _Timed(sessions[1], dec_log)
    rec = Recommender(
        bundle,
        sessions=(encoder, decoder)
        if bundle.search is None
        else (encoder, decoder, _Timed(bundle.search, search_log)),  # one-user recommend
    )
    length = cfg.history_len or rec.window
    histories = _histories(rec, 64, length, cfg.seed)
    levels = bundle.manifest.semantic_ids.num_levels
    bounds: list[tuple[int, int]] = []  # (encoder calls, decoder calls) before each timed call

    def one(i: int) -> object:
        bounds.append((len(enc_log), len(dec_log)))
        return rec.recommend(histories[i % len(histories)], k=cfg.k)

    single = _timed_loop(one, cfg.warmup, cfg.repetitions)
    single_bounds = [*bounds[cfg.warmup :], (len(enc_log), len(dec_log))]
    (e0, d0), (e1, d1) = single_bounds[0], single_bounds[-1]
    enc, dec = np.asarray(enc_log[e0:e1]), np.asarray(dec_log[d0:d1])
    searched = None  # one search-graph run per timed request, when the bundle has the graph
    if len(search_log) == cfg.warmup + cfg.repetitions:
        searched = np.asarray(search_log[cfg.warmup :])
    # One encoder call and either one search-graph call or one decoder call per level for each
    # request (always so for dynamic graphs and for the NPU's fixed batches); otherwise only
    # end-to-end times are reported.
    per_level = len(enc) == cfg.repetitions and len(dec) == cfg.repetitions * levels
    inside = enc + dec.reshape(cfg.repetitions, levels).sum(axis=1) if per_level else None
    if searched is not None and len(enc) == cfg.repetitions and len(dec) == 0:
        inside = enc + searched
    batch_histories = _histories(rec, cfg.batch, length, cfg.seed + 1)
    batch_reps = max(3, min(30, cfg.repetitions // 10))
    batch_warmup = max(1, cfg.warmup // 10)
    bounds.clear()

    def batched_call(i: int) -> object:
        bounds.append((len(enc_log), len(dec_log)))
        return rec.recommend_batch(batch_histories, k=cfg.k)

    batched = _timed_loop(batched_call, batch_warmup, batch_reps)
    batch_bounds = [*bounds[batch_warmup:], (len(enc_log), len(dec_log))]
    concurrent = None
    if cfg.workers > 1:
        concurrent = _concurrent_throughput(
            Recommender(bundle, sessions=sessions), batch_histories, cfg, batch_reps
        )
    stages = {}
    if inside is not None:
        stages["encode"] = percentiles(enc)
        if per_level:
            by_level = dec.reshape(cfg.repetitions, levels)
            stages |= {f"decode_level_{lv}": percentiles(by_level[:, lv]) for lv in range(levels)}
        else:  # the search graph: every level's decoder and the search in one run
            stages["search_graph"] = percentiles(np.asarray(searched))
        # everything outside ONNX Runtime (the numpy search, when it runs, and the SDK's own work)
        stages["sdk_search_overhead"] = percentiles(np.asarray(single) - inside)
    manifest = bundle.manifest
    record = {
        "format": FORMAT,
        "what": f"recommend(k={cfg.k}) latency",
        "timing": "wall_clock",
        "bundle": {
            "name": manifest.name,
            "precision": manifest.precision,
            "path": str(bundle.folder),
            "quality": _quality_summary(manifest),
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
            "versions": _versions(),
            "threads": cfg.threads,
        },
        "settings": {
            "k": cfg.k,
            "beam_width": max(cfg.k, manifest.search["beam_width"]),
            "history_len": length,
            "batch": cfg.batch,
            "warmup": cfg.warmup,
            "repetitions": cfg.repetitions,
            "static_batch": manifest.static_batch,
        },
        "latency_ms": {"end_to_end": percentiles(single), "stages": stages},
        "time_in_onnxruntime_share": None
        if inside is None
        else float(inside.sum() / np.sum(single)),
        "throughput_per_s": float(cfg.batch * len(batched) / (np.sum(batched) / 1e3)),
        "batch_latency_ms": percentiles(batched),
        "concurrent_throughput": concurrent,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "config": asdict(cfg),
        "command": command_line(),
        "git_commit": git_commit(),
        # 1, 5 and 15 minute load averages as it ends (its own callers included): busy or quiet
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "created": utc_now(),
    }
    return record, {"single": single_bounds, "batch": batch_bounds, "levels": levels}


def _quality_summary(manifest: Manifest) -> dict[str, Any] | None:
    q = manifest.quality
    if not q.get("metrics"):
        return None
    return {
        "ndcg@10": q["metrics"].get("ndcg@10"),
        "recall@10": q["metrics"].get("recall@10"),
        "fp32_ndcg@10": q.get("fp32_metrics", {}).get("ndcg@10"),
        "ndcg@10_retention": q.get("ndcg@10_retention"),
        "users": q.get("users"),
    }
