"""Stage: turn a trained student into a bundle.

    export_bundle(run_dir, out_dir) -> out_dir

(Quantized precisions are derived from this fp32 bundle: `pocketrec.export.precisions`.)

A bundle folder holds `manifest.json` (see `pocketrec._manifest`), `encoder.onnx`,
`decoder.onnx`, `search.onnx` (fp32 and int8: the decoder's levels and the constrained beam
search for one user in one graph, `pocketrec.export.search_graph`), `semantic_ids.npy`,
`tokenizer.json` and `catalog.json` (item ids, display metadata, training popularity for cold
start). No pickle anywhere.

The export is checked before it is kept: on a probe set of real histories the ONNX graphs must
reproduce the torch model's states and logits within tolerance and return exactly the same
top-10 items through the SDK's beam search; otherwise the export fails and the previous bundle
at `out_dir` is left untouched (the new one is built in a temporary folder and swapped in).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import load_file

from pocketrec._bundle import sha256_file
from pocketrec._errors import PocketrecError
from pocketrec._manifest import (
    SCHEMA_VERSION,
    SIGNATURE_FILE,
    FileEntry,
    Manifest,
    SemanticIdLayout,
)
from pocketrec._prefix import PrefixIndex
from pocketrec._search import beam_search
from pocketrec._version import __version__
from pocketrec.distill.data import Dataset, load_dataset
from pocketrec.distill.genrec import GenRec, GenRecConfig
from pocketrec.distill.protocol import Split, training_split
from pocketrec.distill.runinfo import command_line, git_commit, staged_folder, utc_now
from pocketrec.distill.sids.stage import load_semantic_ids
from pocketrec.distill.sids.vocab import SPECIAL_TOKENS
from pocketrec.export.graphs import export_graphs, torch_step
from pocketrec.export.search_graph import write_search_graph

__all__ = [
    "ExportError",
    "Student",
    "derive_manifest",
    "export_bundle",
    "load_student",
    "probe_histories",
    "write_fp32",
]

# Oldest onnxruntime the exported graphs are known to load in (opset 18 and its ops).
MIN_ONNXRUNTIME = "1.18"
# ... per precision: int4's GatherBlockQuantized arrived in 1.20; the NPU bundle needs the
# plugin QNN provider, which onnxruntime-qnn 2.7 supports from onnxruntime 1.24.2.
MIN_ONNXRUNTIME_FOR = {
    "fp32": MIN_ONNXRUNTIME,
    "int8": MIN_ONNXRUNTIME,
    "int4": "1.20",
    "npu": "1.24.2",
}
# Intended execution providers per precision, most preferred first. The NPU bundle names QNN
# alone: its quantized graph is never run on the CPU by default (the SDK refuses instead).
PROVIDERS = {
    "fp32": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "int8": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "int4": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "npu": ["QNNExecutionProvider"],
}


class ExportError(PocketrecError):
    """The export failed a check; the previous bundle (if any) is untouched."""


def load_student(
    run_dir: Path, seed: int | None = None, *, kind: str = "student"
) -> tuple[GenRec, int, dict[str, Any]]:
    """The student of a `pocketrec distill` run: by default the seed best on validation.

    Args:
        run_dir: the run folder.
        seed: which seed; None picks the best on validation.
        kind: "student" (distilled, the one bundles ship) or "student_nokd" (the ablation
            trained without the teacher).

    Returns:
        The model (eval mode), its seed, and the run's config.json.
    """
    if kind not in ("student", "student_nokd"):
        raise ValueError(f"kind must be 'student' or 'student_nokd', got {kind!r}")
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise ExportError(f"{run_dir} is not a `pocketrec distill` run folder (no config.json)")
    run = json.loads(config_path.read_text())
    seeds = sorted(
        int(p.name.split("_")[1])
        for p in (run_dir / kind).glob("seed_*")
        if (p / "model.safetensors").exists()
    )
    if not seeds:
        raise ExportError(f"{run_dir} has no trained {kind} yet; finish `pocketrec distill`")
    if seed is None:
        scores = {
            s: json.loads((run_dir / kind / f"seed_{s}" / "metrics.json").read_text())["valid"][
                "ndcg@10"
            ]
            for s in seeds
        }
        seed = max(seeds, key=lambda s: (scores[s], -s))
    elif seed not in seeds:
        raise ExportError(f"{run_dir} has no {kind} for seed {seed}; it has seeds {seeds}")
    folder = run_dir / kind / f"seed_{seed}"
    shape = json.loads((folder / "config.json").read_text())["model"]
    unknown = sorted(set(shape) - {f.name for f in dataclasses.fields(GenRecConfig)})
    if unknown:
        raise ExportError(
            f"{folder / 'config.json'} describes a student with settings this version of "
            f"pocketrec does not have ({', '.join(unknown)}); it was trained by another "
            "version: retrain it with `pocketrec distill` (delete the run's student folders), "
            "or export it with the version that trained it"
        )
    cfg = GenRecConfig(**shape)
    sids, _, _ = load_semantic_ids(run_dir / "sids")
    model = GenRec(cfg, torch.from_numpy(sids))
    model.load_state_dict(load_file(folder / "model.safetensors"), strict=False)
    return model.eval(), seed, run


def _catalog(dataset: Dataset, split: Split) -> dict[str, Any]:
    counts = np.zeros(dataset.num_items, dtype=np.int64)
    for user in range(dataset.num_users):
        np.add.at(counts, split.train_sequence(user), 1)
    items = []
    for i, item in enumerate(dataset.item_ids):
        entry: dict[str, Any] = {"id": str(item)}
        if dataset.item_text is not None:
            text = dataset.item_text[i]
            entry.update({k: v for k, v in text.to_json().items() if v not in ("", [], {}, None)})
        items.append(entry)
    return {
        "items": items,
        "popularity": counts.tolist(),
        "popularity_source": "training interactions of the distill run's split",
    }


def probe_histories(split: Split, window: int, size: int = 256) -> np.ndarray:
    hist, _ = split.histories("test", window)
    pick = np.linspace(0, len(hist) - 1, min(size, len(hist))).round().astype(np.int64)
    probe = hist[pick].astype(np.int64)
    probe[0, :-1] = -1  # a one-item history
    return probe


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |a - e| / max(1, |e|): absolute for small values, relative for large ones."""
    return float((np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))).max())


def check_parity(
    model: GenRec,
    folder: Path,
    probe: np.ndarray,
    index: PrefixIndex,
    *,
    atol: float = 1e-4,
    top_k: int = 10,
) -> dict[str, float]:
    """Compare ONNX with torch on `probe`; raises ExportError on any mismatch."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    enc = ort.InferenceSession(
        str(folder / "encoder.onnx"), options, providers=["CPUExecutionProvider"]
    )
    dec = ort.InferenceSession(
        str(folder / "decoder.onnx"), options, providers=["CPUExecutionProvider"]
    )
    rows = probe + 1
    codes = model.sid_table[torch.from_numpy(rows)].numpy()
    memory = enc.run(None, {"history_codes": codes, "history_rows": rows})[0]
    with torch.no_grad():
        expected = model.encode_codes(torch.from_numpy(codes), torch.from_numpy(rows)).numpy()
    state_err = _relative_error(memory, expected)
    mask = probe >= 0

    def onnx_step(
        states: tuple[np.ndarray, np.ndarray], prefix: np.ndarray, level: int
    ) -> np.ndarray:
        m, msk = states
        return dec.run(
            None,
            {
                "memory": m,
                "memory_mask": msk,
                "prefix": prefix,
                "level": np.asarray(level, dtype=np.int64),
            },
        )[0]

    k = model.cfg.codebook_size
    prefix = np.full((len(probe), 1, model.cfg.num_levels - 1), k, dtype=np.int64)  # one beam each
    logit_err = _relative_error(
        onnx_step((memory, mask), prefix, 0), torch_step(model)((expected, mask), prefix, 0)
    )
    ours = beam_search((memory, mask), onnx_step, index, beam_width=20, top_k=top_k)
    theirs = beam_search((expected, mask), torch_step(model), index, beam_width=20, top_k=top_k)
    same = float((ours.items == theirs.items).all(axis=1).mean())
    report = {
        "probe_users": float(len(probe)),
        "max_state_error": state_err,
        "max_logit_error": logit_err,
        "identical_top_k_share": same,
    }
    if state_err > atol or logit_err > atol or same < 1.0:
        raise ExportError(
            f"ONNX does not match torch on the probe set: max relative state error "
            f"{state_err:.2e}, logit error {logit_err:.2e} (tolerance {atol:.0e}), identical "
            f"top-{top_k} for "
            f"{same:.1%} of {len(probe)} histories; the bundle was not written"
        )
    return report


@dataclass(frozen=True)
class Student:
    """A trained student with the data it was trained on: what every precision is built from."""

    run_dir: Path
    model: GenRec
    seed: int
    run: dict[str, Any]
    dataset: Dataset
    split: Split
    sids: np.ndarray  # (num_items, num_levels) semantic IDs in catalogue order
    sid_config: dict[str, Any]

    @classmethod
    def load(
        cls,
        run_dir: Path,
        *,
        seed: int | None = None,
        data_root: Path | None = None,
        kind: str = "student",
    ) -> Student:
        """The student of a distill run (best seed on validation by default) and its dataset.

        `kind="student_nokd"` loads the ablation trained without the teacher instead.

        Raises:
            ExportError: no student, or semantic IDs of another dataset.
        """
        model, seed, run = load_student(run_dir, seed, kind=kind)
        dataset = load_dataset(run["config"]["dataset"], root=data_root)
        sids, item_ids, sid_config = load_semantic_ids(run_dir / "sids")
        if item_ids != [str(i) for i in dataset.item_ids]:
            raise ExportError(f"{run_dir}/sids does not describe dataset {dataset.name!r}")
        config = run["config"]
        split = training_split(
            dataset,
            device_holdout=config.get("device_holdout", 0),
            device_users=config.get("device_users", 0.0),
        )
        return cls(run_dir, model, seed, run, dataset, split, sids, sid_config)


def _file_entries(folder: Path) -> dict[str, FileEntry]:
    return {
        p.name: FileEntry(sha256=sha256_file(p), bytes=p.stat().st_size)
        for p in sorted(folder.iterdir())
        # Not the manifest itself, nor a signature of it (or one a crash left half-written).
        if p.is_file() and p.name != "manifest.json" and not p.name.startswith(SIGNATURE_FILE)
    }


def write_fp32(student: Student, folder: Path) -> Manifest:
    """Export the fp32 graphs into `folder`, check them against torch, write the manifest.

    Raises:
        ExportError: the ONNX graphs do not match torch.
    """
    model, dataset, split, sids = student.model, student.dataset, student.split, student.sids
    graphs = export_graphs(model, folder)
    probe = probe_histories(split, model.cfg.max_len)
    index = PrefixIndex(sids, model.cfg.codebook_size)
    parity = check_parity(model, folder, probe, index)
    search_graph, search_check = write_search_graph(folder, index, probe)
    np.save(folder / "semantic_ids.npy", sids.astype(np.int32))
    # The decoder's output table, for personal adapters fitted as a state shift (half
    # precision: it only spans the shift's directions, and halves what a phone downloads).
    table = model.code_emb.detach().float().cpu().numpy()  # (levels, K, hidden)
    np.save(folder / "code_embeddings.npy", table.astype(np.float16))
    shutil.copy(student.run_dir / "sids" / "tokenizer.json", folder / "tokenizer.json")
    (folder / "catalog.json").write_text(json.dumps(_catalog(dataset, split)))
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        name=f"{dataset.name}-student-seed{student.seed}-fp32",
        precision="fp32",
        execution_providers=tuple(PROVIDERS["fp32"]),
        provider_options={},
        min_onnxruntime=MIN_ONNXRUNTIME,
        max_len=model.cfg.max_len,
        hidden=model.cfg.hidden,
        semantic_ids=SemanticIdLayout(
            num_levels=model.cfg.num_levels,
            codebook_size=model.cfg.codebook_size,
            table="semantic_ids.npy",
            tokenizer="tokenizer.json",
            code_embeddings="code_embeddings.npy",
        ),
        encoder=graphs.encoder,
        decoder=graphs.decoder,
        search_graph=search_graph,
        catalog="catalog.json",
        num_items=dataset.num_items,
        special_tokens={tok: i for i, tok in enumerate(SPECIAL_TOKENS)},
        search={"beam_width": 20, "top_k": 10},
        files=_file_entries(folder),
        producer={
            "pocketrec": __version__,
            "torch": torch.__version__,
            "onnx_opset": 18,
            "run_dir": str(student.run_dir),
            "seed": student.seed,
            "dataset": dataset.name,
            "model": asdict(model.cfg),
            "sids": student.sid_config,
            "run_config": student.run["config"],
            "command": command_line(),
            "git_commit": git_commit(),
            "created": utc_now(),
            "parity": parity,
            "search_graph_check": search_check,
        },
    )
    manifest.write(folder)
    return manifest


def quantized_producer(base: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The `producer` of a bundle made from the fp32 one: its own time, fp32's checks apart.

    The parity and search-graph checks were made on the fp32 graphs; copied as they are they
    would read as this bundle's own (its own quality gate is in `quality`, and a search
    graph it gets is checked again). They are kept under `fp32_reference`.
    """
    own = {k: v for k, v in base.items() if k not in ("parity", "search_graph_check")}
    reference = {k: base[k] for k in ("parity", "search_graph_check", "created") if k in base}
    return own | {"created": utc_now(), "fp32_reference": reference} | extra


def derive_manifest(base: Manifest, folder: Path, **changes: Any) -> Manifest:
    """`base` with `changes`, and file entries re-hashed from `folder`; written there.

    Args:
        base: the manifest of the bundle `folder` was derived from (usually the fp32 one).
        folder: the new bundle's folder, with every file it needs in place.
        changes: Manifest fields to replace (precision, name, graphs, producer, quality ...).
    """
    manifest = replace(base, files=_file_entries(folder), **changes)
    manifest.write(folder)
    return manifest


def export_bundle(
    run_dir: Path, out_dir: Path, *, seed: int | None = None, data_root: Path | None = None
) -> Path:
    """Export the fp32 bundle of a distill run (other precisions: `pocketrec.export.precisions`).

    Raises:
        ExportError: no student, or the ONNX graphs do not match torch.
    """
    student = Student.load(run_dir, seed=seed, data_root=data_root)
    with staged_folder(out_dir) as tmp:
        write_fp32(student, tmp)
    return out_dir
