"""The quality gate of a quantized precision, and the fallback when it falls short.

A derived precision is quantized into its bundle folder, scored through the SDK on its own
provider against fp32 on the same test users, and accepted when it keeps the required share of
fp32's NDCG@10. Otherwise the node groups of the graphs (`pocketrec.export.quantize.node_groups`)
are ranked by how much keeping each one alone at higher precision restores agreement with fp32
on validation users, and the most helpful groups are kept precise one at a time until the gate
passes or `max_fallback_rounds` is reached. Validation users make those choices, so the test
users of the gate are only ever used to accept or refuse.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from pocketrec._bundle import QNN, Bundle
from pocketrec._manifest import Manifest
from pocketrec._prefix import PrefixIndex
from pocketrec._recommender import Recommender
from pocketrec.export.bundle import (
    MIN_ONNXRUNTIME_FOR,
    PROVIDERS,
    ExportError,
    Student,
    derive_manifest,
    probe_histories,
)
from pocketrec.export.config import PrecisionConfig
from pocketrec.export.quality import Probe, quality_record, rank_probe, top_k_agreement
from pocketrec.export.quantize import node_groups
from pocketrec.export.search_graph import write_search_graph

__all__ = [
    "CPU",
    "GRAPHS",
    "Job",
    "Quantizer",
    "copy_tables",
    "derived",
    "gate",
    "groups_of",
    "nodes_in",
    "on_cpu",
]

GRAPHS = ("encoder", "decoder")
# Precisions built with a search graph (dynamic shapes). Not int4: it is the size-first
# precision, the search graph repeats the decoder's weights (Beauty: +0.77 MB, measured before
# the bench counted INT4 tables as stored; its student graphs without catalogue tables are
# 0.94 MB), and at 1 thread its recommend p50 did not improve with it (0.65 ms without,
# 0.71 ms with, same session).
SEARCH_PRECISIONS = ("fp32", "int8")
CPU = "CPUExecutionProvider"
# (target folder, groups kept) -> writes both graphs; returns, per graph, the node names it
# kept precise: the gate records those, as only the quantizer knows which graph form it used.
Quantizer = Callable[[Path, Sequence[str]], dict[str, list[str]]]


@dataclass
class Job:
    """What every precision is built from and judged against."""

    student: Student
    cfg: PrecisionConfig
    fp32_dir: Path
    base: Manifest  # the fp32 manifest
    quality: Probe  # test users of the gate
    selection: Probe  # validation users for choices
    fp32_items: np.ndarray  # (N, 20) fp32's ranking of the quality probe
    fp32_selection_items: np.ndarray  # ... and of the selection probe


def _cpu_session(path: Path, threads: int | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), options, providers=[CPU])


def on_cpu(shapes: Bundle, folder: Path, threads: int | None = None) -> Recommender:
    """The graphs in `folder`, on CPU, with the tables and fixed shapes of bundle `shapes`."""
    encoder, decoder = (_cpu_session(folder / f"{g}.onnx", threads) for g in GRAPHS)
    return Recommender(shapes, sessions=(encoder, decoder))


def copy_tables(job: Job, folder: Path) -> None:
    """Copy the fp32 bundle's non-graph files (semantic IDs, tokenizer, catalogue)."""
    for name in job.base.files:
        if not name.endswith(".onnx"):
            shutil.copy(job.fp32_dir / name, folder / name)


def derived(job: Job, folder: Path, precision: str, **changes: Any) -> Manifest:
    """Write the manifest of a bundle derived from fp32 (name, precision, providers, hashes).

    fp32 and int8 get a search graph built on their own decoder and checked against
    the numpy search (`pocketrec.export.search_graph`); the NPU's fixed-shape graphs do not.

    Raises:
        ExportError: the search graph disagrees with the numpy search.
    """
    fields: dict[str, Any] = {
        "name": job.base.name.removesuffix("-fp32") + f"-{precision}",
        "precision": precision,
        "execution_providers": tuple(PROVIDERS[precision]),
        "min_onnxruntime": MIN_ONNXRUNTIME_FOR[precision],
        "quality": {},
        "search_graph": None,
    }
    if precision in SEARCH_PRECISIONS:
        student = job.student
        spec, check = write_search_graph(
            folder,
            PrefixIndex(student.sids, student.model.cfg.codebook_size),
            probe_histories(student.split, student.model.cfg.max_len),
        )
        producer = changes.get("producer", job.base.producer)
        fields |= {"search_graph": spec, "producer": {**producer, "search_graph_check": check}}
        changes = {k: v for k, v in changes.items() if k != "producer"}
    return derive_manifest(job.base, folder, **{**fields, **changes})


def groups_of(folder: Path) -> dict[str, list[str]]:
    """The node groups of a bundle folder's two graphs."""
    groups: dict[str, list[str]] = {}
    for g in GRAPHS:
        groups.update(node_groups(onnx.load(str(folder / f"{g}.onnx")), g))
    return groups


def nodes_in(groups: dict[str, list[str]], kept: Sequence[str], graph: str) -> list[str]:
    """Node names of `graph` in the kept groups (names that are not groups have none)."""
    return [n for g in kept if g.startswith(f"{graph}:") for n in groups.get(g, ())]


def _sensitivity(
    job: Job, shapes: Bundle, groups: Sequence[str], quantize: Quantizer
) -> list[dict[str, Any]]:
    """Top-10 agreement with fp32 on validation users when one group alone stays precise."""
    found = []
    with tempfile.TemporaryDirectory(prefix="pocketrec-groups-") as tmp:
        for group in groups:
            folder = Path(tmp) / group.replace(":", "-")
            folder.mkdir()
            quantize(folder, [group])
            items = rank_probe(on_cpu(shapes, folder), job.selection)
            found.append(
                {"group": group, "agreement": top_k_agreement(items, job.fp32_selection_items)}
            )
    return sorted(found, key=lambda s: -float(s["agreement"]))


def gate(
    job: Job,
    precision: str,
    folder: Path,
    quantize: Quantizer,
    finish: Callable[[Sequence[str]], object],
    *,
    shapes: Bundle,
    providers: list[str],
    first: Sequence[str] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Quantize into `folder` until the quality gate passes, keeping groups precise as needed.

    Args:
        quantize: writes both graphs into a folder, keeping the given groups precise, and
            returns the node names it kept precise per graph (recorded as they are).
        finish: completes the bundle in `folder` after each quantization (the manifest; for
            the NPU also compiling and verifying), given the groups kept.
        shapes: an opened bundle of the unquantized graphs this precision starts from; its
            graphs define the node groups, its shapes the batching of CPU probes.
        providers: where the gate scores the bundle (the precision's own device).
        first: fallbacks kept before the measured order of node groups, in this order (the
            NPU's constant output table); names `quantize` understands that are not node
            groups.

    Returns:
        (the manifest's quality entry, what was kept precise and why).

    Raises:
        ExportError: still short of the gate after `max_fallback_rounds` groups.
    """
    required = job.cfg.retention_for(precision)
    groups = groups_of(shapes.folder)
    attempts: list[dict[str, Any]] = []
    kept: list[str] = []
    order: list[dict[str, Any]] | None = None
    while True:
        wide = quantize(folder, kept)
        finish(kept)
        rec = Recommender.from_bundle(folder, providers=providers)
        simulated = QNN in providers  # small batches: a moving bar on the slow simulator
        items = rank_probe(
            rec,
            job.quality,
            batch_size=16 if simulated else 256,
            desc=f"{precision}: scoring {len(job.quality.targets)} users",
        )
        quality = quality_record(
            items,
            job.fp32_items,
            job.quality,
            window=rec.window,
            providers=tuple(providers),  # as requested: sessions always list CPU as well
            required_retention=required,
        )
        retention = quality["ndcg@10_retention"]
        attempts.append({"kept": list(kept), "ndcg@10_retention": retention})
        if quality["passed"]:
            break
        remaining: list[str] = []
        if len(kept) < min(job.cfg.max_fallback_rounds, len(groups) - 1 + len(first)):
            remaining = [f for f in first if f not in kept]
            if not remaining:
                if order is None:
                    order = _sensitivity(job, shapes, list(groups), quantize)
                remaining = [s["group"] for s in order if s["group"] not in kept]
        if not remaining:
            tried = "; ".join(
                f"{', '.join(a['kept']) or 'nothing'} kept: {a['ndcg@10_retention']:.2%}"
                for a in attempts
            )
            raise ExportError(
                f"{precision} keeps {retention:.2%} of fp32's NDCG@10 "
                f"({quality['metrics']['ndcg@10']:.4f} vs {quality['fp32_metrics']['ndcg@10']:.4f}"
                f" on {quality['user_selection']}), below the required {required:.1%}, even "
                f"with node groups kept at higher precision ({tried}); the {precision} bundle "
                "was not written"
            )
        kept.append(remaining[0])
    return quality, {
        "groups": kept,
        "nodes": wide,
        "attempts": attempts,
        "sensitivity": order,
        "sensitivity_measure": "top-10 agreement with fp32 on "
        f"{job.selection.selection} when only that group stays precise",
    }
