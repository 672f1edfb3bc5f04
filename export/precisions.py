"""Stage: export a distill run at several precisions, each gated on quality against fp32.

    export_precisions(run_dir, out_root, cfg) -> {precision: bundle folder}

Every precision is a complete bundle in `out_root/<precision>/`, built from the fp32 export:

- fp32: the parity-checked export of `pocketrec.export.bundle`; for CPU and CUDA.
- int8: dynamic int8 with signed weights; for CPU and CUDA.
- int4: 4-bit weights (MatMulNBits); the block size and accuracy level are measured on
  validation users (agreement with fp32, CPU latency) and the choice is recorded; CPU and CUDA.
- npu: fixed shapes, QDQ calibrated on training windows, compiled for the Qualcomm HTP and
  verified there (`pocketrec.export.npu`); QNN only.

Each manifest records the bundle's quality on the quality probe, measured through the SDK on
the bundle's own provider, next to fp32 on the same users (`pocketrec.export.quality`), and how
it was quantized. A precision short of its gate is retried with node groups kept precise
(`pocketrec.export.gate`); if it still fails, that precision is reported as failed and its
previous bundle stays as it was, while the other precisions are written.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pocketrec._bundle import Bundle, open_bundle
from pocketrec._manifest import Manifest
from pocketrec._recommender import Recommender
from pocketrec.distill.runinfo import staged_folder
from pocketrec.export.bundle import (
    ExportError,
    Student,
    derive_manifest,
    quantized_producer,
    write_fp32,
)
from pocketrec.export.config import PRECISIONS, PrecisionConfig
from pocketrec.export.gate import (
    CPU,
    GRAPHS,
    Job,
    copy_tables,
    derived,
    gate,
    groups_of,
    nodes_in,
    on_cpu,
)
from pocketrec.export.npu import build_npu, require_qnn
from pocketrec.export.quality import (
    quality_probe,
    quality_record,
    rank_probe,
    selection_probe,
    top_k_agreement,
)
from pocketrec.export.quantize import quantize_int4, quantize_int8

__all__ = ["choose_int4", "export_precisions"]

INT4_BLOCK_SIZES = (32, 64, 128)
INT4_ACCURACY_LEVELS = (4, None)
# int4 candidates within this much top-10 agreement of the most accurate one count as equally
# accurate; the fastest of them is chosen.
INT4_AGREEMENT_SLACK = 0.005


def _int8(job: Job, folder: Path) -> Manifest:
    groups = groups_of(job.fp32_dir)

    def quantize(target: Path, kept: Sequence[str]) -> dict[str, list[str]]:
        wide = {g: nodes_in(groups, kept, g) for g in GRAPHS}
        for g in GRAPHS:
            quantize_int8(job.fp32_dir / f"{g}.onnx", target / f"{g}.onnx", exclude=wide[g])
        return wide

    copy_tables(job, folder)
    shapes = open_bundle(job.fp32_dir, providers=[CPU], verify=False)
    quality, kept = gate(
        job,
        "int8",
        folder,
        quantize,
        lambda _: derived(job, folder, "int8"),
        shapes=shapes,
        providers=[CPU],
    )
    method = {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "weights": "int8 signed (QInt8), per tensor; activations quantized at run time",
        "kept_in_float": kept,
    }
    return derived(
        job,
        folder,
        "int8",
        producer=quantized_producer(
            job.base.producer, export=job.cfg.to_json(), quantization=method
        ),
        quality=quality,
    )


def _latency_ms(rec: Recommender, histories: np.ndarray) -> list[float]:
    out = []
    for h in histories:
        t0 = time.perf_counter_ns()
        rec.rank(h[None], k=10)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def choose_int4(job: Job, shapes: Bundle) -> dict[str, Any]:
    """Measure every block size x accuracy level on validation users and pick one.

    Accuracy: top-10 agreement with fp32. Speed: single-history `rank` latency on one CPU
    thread, in interleaved rounds so that load from other processes hits every candidate
    alike. The fastest candidate within `INT4_AGREEMENT_SLACK` of the most accurate one wins
    (ties: the smaller block, which is the more accurate).
    """
    candidates = [(b, a) for b in INT4_BLOCK_SIZES for a in INT4_ACCURACY_LEVELS]
    timed = job.selection.histories[:: max(1, len(job.selection.histories) // 32)][:32]
    results: list[dict[str, Any]] = []
    samples: list[list[float]] = [[] for _ in candidates]
    with tempfile.TemporaryDirectory(prefix="pocketrec-int4-") as tmp:
        recs = []
        for block, level in candidates:
            folder = Path(tmp) / f"b{block}-a{level}"
            folder.mkdir()
            for g in GRAPHS:
                quantize_int4(
                    job.fp32_dir / f"{g}.onnx",
                    folder / f"{g}.onnx",
                    block_size=block,
                    accuracy_level=level,
                )
            rec = on_cpu(shapes, folder, threads=1)
            items = rank_probe(rec, job.selection)
            recs.append(rec)
            results.append(
                {
                    "block_size": block,
                    "accuracy_level": level,
                    "top10_agreement_with_fp32": top_k_agreement(items, job.fp32_selection_items),
                }
            )
        for _ in range(3):
            for i, rec in enumerate(recs):
                samples[i].extend(_latency_ms(rec, timed))
    for r, s in zip(results, samples, strict=True):
        r["rank_p50_ms"] = float(np.median(s))
    best = max(float(r["top10_agreement_with_fp32"]) for r in results)
    eligible = [r for r in results if r["top10_agreement_with_fp32"] >= best - INT4_AGREEMENT_SLACK]
    chosen = min(eligible, key=lambda r: (r["rank_p50_ms"], r["block_size"]))
    return {
        "chosen": {"block_size": chosen["block_size"], "accuracy_level": chosen["accuracy_level"]},
        "candidates": results,
        "rule": f"the fastest single-history rank (1 CPU thread, {len(timed)} validation "
        f"histories x 3 interleaved rounds) among candidates within {INT4_AGREEMENT_SLACK} "
        f"top-10 agreement with fp32 of the most accurate, on {job.selection.selection}",
    }


def _int4(job: Job, folder: Path) -> Manifest:
    shapes = open_bundle(job.fp32_dir, providers=[CPU], verify=False)
    choice = choose_int4(job, shapes)
    block, level = choice["chosen"]["block_size"], choice["chosen"]["accuracy_level"]
    groups = groups_of(job.fp32_dir)

    def quantize(target: Path, kept: Sequence[str]) -> dict[str, list[str]]:
        wide = {g: nodes_in(groups, kept, g) for g in GRAPHS}
        for g in GRAPHS:
            quantize_int4(
                job.fp32_dir / f"{g}.onnx",
                target / f"{g}.onnx",
                block_size=block,
                accuracy_level=level,
                exclude=wide[g],
            )
        return wide

    copy_tables(job, folder)
    quality, kept = gate(
        job,
        "int4",
        folder,
        quantize,
        lambda _: derived(job, folder, "int4"),
        shapes=shapes,
        providers=[CPU],
    )
    method = {
        "method": "onnxruntime MatMulNBitsQuantizer (MatMulNBits, GatherBlockQuantized)",
        "bits": 4,
        "symmetric": True,
        "block_size": block,
        "accuracy_level": level,
        "choice": choice,
        "kept_in_float": kept,
    }
    return derived(
        job,
        folder,
        "int4",
        producer=quantized_producer(
            job.base.producer, export=job.cfg.to_json(), quantization=method
        ),
        quality=quality,
    )


BUILDERS: dict[str, Callable[[Job, Path], Manifest]] = {
    "int8": _int8,
    "int4": _int4,
    "npu": build_npu,
}


def _fp32(student: Student, cfg: PrecisionConfig, folder: Path) -> Job:
    """Write the fp32 bundle into `folder`, rank both probes with it, record its quality."""
    window = student.model.cfg.max_len
    base = write_fp32(student, folder)
    rec = Recommender.from_bundle(folder, providers=[CPU])
    job = Job(
        student=student,
        cfg=cfg,
        fp32_dir=folder,
        base=base,
        quality=quality_probe(student.split, window, cfg.quality_users),
        selection=selection_probe(student.split, window, cfg.selection_users),
        fp32_items=np.empty(0),
        fp32_selection_items=np.empty(0),
    )
    job.fp32_items = rank_probe(rec, job.quality)
    job.fp32_selection_items = rank_probe(rec, job.selection)
    quality = quality_record(
        job.fp32_items,
        job.fp32_items,
        job.quality,
        window=window,
        providers=(CPU,),
        required_retention=None,
    )
    job.base = derive_manifest(
        base, folder, producer={**base.producer, "export": cfg.to_json()}, quality=quality
    )
    return job


def export_precisions(
    run_dir: Path,
    out_root: Path,
    cfg: PrecisionConfig,
    *,
    log: Callable[[str], object] = lambda _: None,
) -> dict[str, Path]:
    """Export the student of `run_dir` at every precision of `cfg` into `out_root/<precision>/`.

    fp32 is always built, since every other precision is derived from it and judged against
    it; it is kept only when asked for. `log` receives a line as each stage starts.

    Returns:
        {precision: bundle folder} of the precisions written.

    Raises:
        ExportError: npu without onnxruntime-qnn (nothing is written), or precisions that
            could not be produced or failed their quality gate (each is named; the others were
            written).
    """
    if "npu" in cfg.precisions:
        require_qnn()  # before minutes of work
    student = Student.load(run_dir, seed=cfg.seed, data_root=cfg.data_root)
    out_root.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix=".fp32-reference-", dir=out_root) as scratch:
        fp32_dir = out_root / "fp32" if "fp32" in cfg.precisions else Path(scratch) / "fp32"
        log(f"fp32: exporting and scoring {student.dataset.name} seed {student.seed}")
        with staged_folder(fp32_dir) as tmp:
            job = _fp32(student, cfg, tmp)
        job.fp32_dir = fp32_dir
        if "fp32" in cfg.precisions:
            written["fp32"] = fp32_dir
        for precision in (p for p in PRECISIONS if p in cfg.precisions and p != "fp32"):
            log(f"{precision}: quantizing and scoring against fp32 on {job.quality.selection}")
            try:
                with staged_folder(out_root / precision) as folder:
                    BUILDERS[precision](job, folder)
                written[precision] = out_root / precision
            except ExportError as e:
                failed[precision] = str(e)
    if failed:
        done = ", ".join(f"{p} -> {d}" for p, d in written.items()) or "none"
        raise ExportError(
            "\n".join(f"{p}: {msg}" for p, msg in failed.items()) + f"\n(written: {done})"
        )
    return written
