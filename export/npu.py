"""The Qualcomm NPU bundle: static shapes, QDQ calibrated on real histories, compiled for the HTP.

The Hexagon Tensor Processor (HTP) behind QNN runs only fully static, fully quantized graphs.
This module holds the NPU-specific steps, and `build_npu` runs them in order:

1. `static_rows`: the graphs are exported with fixed shapes: 1 history for the encoder and the
   decoder (an app recommends for one user at a time) and `beam_width + max(beam_width, window)`
   beams for the decoder, the most beams one user's search needs at any level when the history
   is excluded (the SDK widens the beam by up to `max(beam_width, window)` then); the SDK pads
   and chunks to these sizes (`pocketrec._sessions`).
2. `record_feeds`: the static fp32 graphs run the SDK's beam search on training windows of the
   dataset, and every encoder and decoder call's inputs are kept as calibration data, so the
   decoder is calibrated on the prefixes and levels beam search really feeds it.
3. `quantize_qdq` (in `pocketrec.export.quantize`): 16-bit activations, 8-bit weights. If
   the bundle falls short of its quality gate, the first fallback (`OUTPUT_TABLE`) swaps in a
   decoder that multiplies by every level's output table, a constant weight, instead of the
   level's table picked by index, an activation: the HTP's activation-by-activation MatMul
   is far less precise than the CPU EP's (it cost MovieLens-1M's bundle 3.5% of its NDCG@10),
   but the swap costs 1.6-1.9x the HTP cycles of a decode step, so it is used only when needed.
4. `check_placement`: the QDQ graph loads on QNN with CPU fallback disabled, and ONNX Runtime's
   own record of which provider took which node shows every node on QNN.
5. `compile_context`: the QDQ graph is compiled ahead of time into an EPContext model (the
   HTP binary embedded in a one-node ONNX file), which loads in milliseconds on the device.
6. `compare_compiled`: the compiled model must recommend exactly what the QDQ graph does on QNN.

On x86-64 Linux, `onnxruntime-qnn` runs all of this on its HTP simulator.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from pocketrec._bundle import QNN, _qnn_devices, open_bundle
from pocketrec._manifest import Manifest, read_manifest
from pocketrec._recommender import Recommender
from pocketrec.distill.protocol import Split
from pocketrec.export.bundle import ExportError, quantized_producer
from pocketrec.export.gate import CPU, GRAPHS, Job, copy_tables, derived, gate, groups_of, nodes_in
from pocketrec.export.graphs import export_graphs
from pocketrec.export.quantize import quantize_qdq

__all__ = [
    "build_npu",
    "calibration_histories",
    "check_placement",
    "compare_compiled",
    "compile_context",
    "qnn_options",
    "qnn_session",
    "record_feeds",
    "require_qnn",
    "static_rows",
]

Feeds = dict[str, np.ndarray]

# The gate's first fallback: the decoder exported with `every_level` (see the module docstring).
OUTPUT_TABLE = "decoder:output_table"


def require_qnn() -> None:
    """Fail early, with the install command, when the QNN execution provider is missing.

    Raises:
        ExportError: onnxruntime-qnn is not installed or offers no QNN device.
    """
    try:
        import onnxruntime_qnn  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError as e:
        raise ExportError(
            "--precision npu needs the QNN execution provider (package onnxruntime-qnn), "
            "which is not installed. Install it with: pip install 'pocketrec[npu]'"
        ) from e
    if not _qnn_devices():
        raise ExportError(
            "onnxruntime-qnn is installed but registers no QNN device with this onnxruntime "
            f"({ort.__version__}); reinstall both with: pip install -U 'pocketrec[npu]'"
        )


def static_rows(beam_width: int, window: int) -> tuple[int, int]:
    """(encoder batch, decoder beams) of the fixed-shape NPU graphs (see the module docstring)."""
    return 1, beam_width + max(beam_width, window)


def qnn_options(soc_model: str) -> dict[str, str]:
    """Provider options of the NPU bundle: the HTP backend of the given SoC."""
    return {"backend_type": "htp", "soc_model": soc_model}


def qnn_session(
    path: Path,
    options: dict[str, str],
    *,
    config: dict[str, str] | None = None,
) -> ort.InferenceSession:
    """A QNN-only session (CPU fallback disabled) for one graph, with extra session config."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    for key, value in (config or {}).items():
        so.add_session_config_entry(key, value)
    so.add_provider_for_devices(_qnn_devices(), options)
    return ort.InferenceSession(str(path), so)


def calibration_histories(split: Split, window: int, count: int) -> np.ndarray:
    """(count, window) training windows, PAD-left, from users evenly spaced in dataset order.

    Each is the input part of a real training example (the items before a user's last
    training item), so calibration sees the data distribution and never a test target.
    """
    windows = split.train_windows(window)[:, :-1]  # (num_users, window)
    windows = windows[(windows >= 0).any(axis=1)]
    pick = np.linspace(0, len(windows) - 1, min(count, len(windows))).round().astype(np.int64)
    return windows[pick].astype(np.int64)


class _Recorder:
    """A session wrapper that keeps a copy of every feed it runs."""

    def __init__(self, session: Any, log: list[Feeds]) -> None:
        self._session, self._log = session, log

    def run(self, names: Any, feeds: Feeds) -> Any:
        self._log.append({k: np.array(v) for k, v in feeds.items()})
        return self._session.run(names, feeds)


def _evenly(items: list[Feeds], count: int) -> list[Feeds]:
    if len(items) <= count:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(np.int64)]


def record_feeds(
    folder: Path, histories: np.ndarray, *, max_feeds: int = 256
) -> tuple[list[Feeds], list[Feeds]]:
    """Encoder and decoder inputs of the SDK's beam search over `histories`, on CPU.

    Args:
        folder: a bundle folder with the static fp32 graphs and a manifest describing them.
        histories: (N, window) catalogue rows, -1 = padding.
        max_feeds: at most this many feeds per graph, evenly spaced over the recorded calls
            (MinMax calibration keeps every intermediate tensor of every feed).

    Returns:
        (encoder feeds, decoder feeds), each of the graph's static shapes.
    """
    bundle = open_bundle(folder, providers=["CPUExecutionProvider"], verify=False)
    enc_log: list[Feeds] = []
    dec_log: list[Feeds] = []
    rec = Recommender(
        bundle, sessions=(_Recorder(bundle.encoder, enc_log), _Recorder(bundle.decoder, dec_log))
    )
    for start in range(0, len(histories), 64):
        rec.rank(histories[start : start + 64], k=bundle.manifest.search["top_k"])
    return _evenly(enc_log, max_feeds), _evenly(dec_log, max_feeds)


def check_placement(path: Path, options: dict[str, str]) -> dict[str, Any]:
    """Load a QDQ graph on QNN and check that the provider took every node.

    ONNX Runtime records which provider took which node of the graph it actually runs (after
    its own graph optimizations, so the count differs from the file's).

    Returns:
        {"nodes_in_file", "nodes_by_provider", "share_on_qnn"} for the manifest.

    Raises:
        ExportError: the graph does not load with CPU fallback disabled, or some node is
            assigned to another provider.
    """
    in_file = len(onnx.load(str(path), load_external_data=False).graph.node)
    try:
        session = qnn_session(
            path, options, config={"session.record_ep_graph_assignment_info": "1"}
        )
    except Exception as e:  # onnxruntime's own exception types
        raise ExportError(f"QNN could not take all of {path.name} (CPU fallback off): {e}") from e
    assigned: dict[str, int] = {}
    for subgraph in session.get_provider_graph_assignment_info():
        assigned[subgraph.ep_name] = assigned.get(subgraph.ep_name, 0) + len(subgraph.get_nodes())
    if set(assigned) != {QNN}:
        raise ExportError(
            f"{path.name}: nodes were assigned to {sorted(assigned)}, not only {QNN}; the NPU "
            "bundle must run entirely on the HTP"
        )
    return {
        "nodes_in_file": in_file,
        "nodes_by_provider": assigned,
        "share_on_qnn": assigned[QNN] / sum(assigned.values()),
    }


def compile_context(source: Path, target: Path, options: dict[str, str]) -> Path:
    """Compile a QDQ graph for the HTP into an EPContext model at `target` (binary embedded).

    Raises:
        ExportError: QNN failed to compile the graph.
    """
    target = target.resolve()
    target.unlink(missing_ok=True)  # the provider refuses to overwrite an existing context
    try:
        qnn_session(
            source,
            options,
            config={
                "ep.context_enable": "1",
                "ep.context_file_path": str(target),
                "ep.context_embed_mode": "1",
            },
        )
    except Exception as e:
        raise ExportError(f"QNN could not compile {source.name}: {e}") from e
    if not target.is_file():
        raise ExportError(f"QNN compiled {source.name} but wrote no context model at {target}")
    return target


def _uncompiled(folder: Path, options: dict[str, str]) -> Recommender:
    """The bundle at `folder` on QNN, but through its QDQ graphs instead of the compiled ones."""
    bundle = open_bundle(folder, providers=["CPUExecutionProvider"], verify=False)
    m = bundle.manifest
    sessions = (
        qnn_session(folder / m.encoder.file, options),
        qnn_session(folder / m.decoder.file, options),
    )
    return Recommender(bundle, sessions=sessions)


def compare_compiled(
    folder: Path, options: dict[str, str], histories: Sequence[np.ndarray] | np.ndarray
) -> dict[str, Any]:
    """Check that the compiled models recommend exactly what the QDQ graphs do, both on QNN.

    Returns:
        {"histories": N, "identical_top_k_share": 1.0} for the manifest.

    Raises:
        ExportError: any history gets a different top-k list.
    """
    histories = np.asarray(histories)
    compiled = Recommender.from_bundle(folder, providers=[QNN])
    k = compiled.manifest.search["top_k"]
    ours = compiled.rank(histories, k=k).items
    theirs = _uncompiled(folder, options).rank(histories, k=k).items
    same = float((ours == theirs).all(axis=1).mean())
    if same < 1.0:
        raise ExportError(
            f"the compiled NPU graphs recommend differently from their QDQ source on "
            f"{1 - same:.1%} of {len(histories)} probe histories; the bundle was not written"
        )
    return {"histories": len(histories), "identical_top_k_share": same}


def build_npu(job: Job, folder: Path) -> Manifest:
    """Build the NPU bundle into `folder` (the steps of the module docstring), gated on quality.

    Raises:
        ExportError: QNN is missing, a graph does not run entirely on the HTP, the compiled
            model disagrees with its source, or the bundle fails its quality gate.
    """
    require_qnn()
    model, cfg = job.student.model, job.cfg
    window = model.cfg.max_len
    rows = static_rows(job.base.search["beam_width"], window)
    options = qnn_options(cfg.qnn_soc_model)
    calibration = calibration_histories(job.student.split, window, cfg.calibration_windows)
    with tempfile.TemporaryDirectory(prefix="pocketrec-npu-") as tmp:
        source, constant_table = Path(tmp) / "picked", Path(tmp) / "every_level"
        source.mkdir()
        constant_table.mkdir()
        graphs = export_graphs(model, source, static_rows=rows)
        export_graphs(model, constant_table, static_rows=rows, every_level=True)  # same I/O
        static = {"encoder": graphs.encoder, "decoder": graphs.decoder, "static_batch": rows[1]}
        copy_tables(job, source)
        derived(job, source, "npu", execution_providers=(CPU,), **static)
        shapes = open_bundle(source, providers=[CPU], verify=False)
        encoder_feeds, decoder_feeds = record_feeds(source, calibration)
        feeds = {"encoder": encoder_feeds, "decoder": decoder_feeds}
        groups = {False: groups_of(source), True: groups_of(constant_table)}
        checks: dict[str, Any] = {}

        def quantize(target: Path, kept: Sequence[str]) -> dict[str, list[str]]:
            swap = OUTPUT_TABLE in kept
            # Group names are shared by the two forms; node names of the output head are not.
            wide = {g: nodes_in(groups[swap], kept, g) for g in GRAPHS}
            for g in GRAPHS:
                graph = (constant_table if swap else source) / f"{g}.onnx"
                quantize_qdq(graph, target / f"{g}.onnx", feeds[g], wide=wide[g])
            return wide

        def finish(kept: Sequence[str]) -> None:
            checks["placement"] = {
                g: check_placement(folder / f"{g}.onnx", options) for g in GRAPHS
            }
            for g in GRAPHS:
                compile_context(folder / f"{g}.onnx", folder / f"{g}.qnn.onnx", options)
            derived(
                job,
                folder,
                "npu",
                encoder=replace(graphs.encoder, compiled={QNN: "encoder.qnn.onnx"}),
                decoder=replace(graphs.decoder, compiled={QNN: "decoder.qnn.onnx"}),
                static_batch=rows[1],
                provider_options={QNN: options},
            )
            checks["compiled_vs_qdq"] = compare_compiled(
                folder, options, job.selection.histories[:64]
            )

        copy_tables(job, folder)
        quality, kept = gate(
            job,
            "npu",
            folder,
            quantize,
            finish,
            shapes=shapes,
            providers=[QNN],
            first=[OUTPUT_TABLE],
        )
    method = {
        "method": "onnxruntime.quantization get_qnn_qdq_config + quantize (static QDQ)",
        "activations": "uint16, per tensor, MinMax calibration",
        # A Gather's output shares its table's quantization, so lookup tables take the 16-bit
        # activation type; MatMul weights are 8-bit.
        "weights": "uint8 per tensor (MatMul); uint16 (lookup tables)",
        "calibration": {
            "histories": len(calibration),
            "source": "training windows (the items before each user's last training item), "
            "users evenly spaced in dataset order",
            "encoder_feeds": len(encoder_feeds),
            "decoder_feeds": len(decoder_feeds),
        },
        "static_rows": {"encoder": rows[0], "decoder": rows[1]},
        "soc_model": cfg.qnn_soc_model,
        "compiled": "EPContext, binary embedded (ep.context_embed_mode=1)",
        "kept_16bit_weights": kept,
        "decoder_output_table": "every level's table, a constant weight (gate fallback)"
        if OUTPUT_TABLE in kept["groups"]
        else "the level's table, picked by index",
        **checks,
    }
    manifest = read_manifest(folder)
    return derived(
        job,
        folder,
        "npu",
        encoder=manifest.encoder,
        decoder=manifest.decoder,
        static_batch=rows[1],
        provider_options={QNN: options},
        producer=quantized_producer(job.base.producer, export=cfg.to_json(), quantization=method),
        quality=quality,
    )
