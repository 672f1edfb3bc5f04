"""Stage: turn a trained student into a bundle.

    export_bundle(run_dir, out_dir) -> out_dir

A bundle folder holds `manifest.json` (see `pocketrec._manifest`), `encoder.onnx`,
`decoder.onnx`, `semantic_ids.npy`, `tokenizer.json` and `catalog.json` (item ids, display
metadata, training popularity for cold start). No pickle anywhere.

The export is checked before it is kept: on a probe set of real histories the ONNX graphs must
reproduce the torch model's states and logits within tolerance and return exactly the same
top-10 items through the SDK's beam search; otherwise the export fails and the previous bundle
at `out_dir` is left untouched (the new one is built in a temporary folder and swapped in).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import load_file

from pocketrec._bundle import sha256_file
from pocketrec._errors import PocketrecError
from pocketrec._manifest import SCHEMA_VERSION, FileEntry, Manifest, SemanticIdLayout
from pocketrec._prefix import PrefixIndex
from pocketrec._search import beam_search
from pocketrec._version import __version__
from pocketrec.distill.data import Dataset, load_dataset
from pocketrec.distill.genrec import GenRec, GenRecConfig
from pocketrec.distill.protocol import Split, leave_one_out
from pocketrec.distill.runinfo import command_line, git_commit, utc_now
from pocketrec.distill.sids.stage import load_semantic_ids
from pocketrec.distill.sids.vocab import SPECIAL_TOKENS
from pocketrec.export.graphs import export_graphs, torch_step

__all__ = ["ExportError", "export_bundle", "load_student"]

# Oldest onnxruntime the exported graphs are known to load in (opset 18 and its ops).
MIN_ONNXRUNTIME = "1.18"
PROVIDERS = {
    "fp32": ["CUDAExecutionProvider", "CPUExecutionProvider"],
}


class ExportError(PocketrecError):
    """The export failed a check; the previous bundle (if any) is untouched."""


def load_student(run_dir: Path, seed: int | None = None) -> tuple[GenRec, int, dict[str, Any]]:
    """The student of a `pocketrec distill` run: by default the seed best on validation.

    Returns:
        The model (eval mode), its seed, and the run's config.json.
    """
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise ExportError(f"{run_dir} is not a `pocketrec distill` run folder (no config.json)")
    run = json.loads(config_path.read_text())
    seeds = sorted(
        int(p.name.split("_")[1])
        for p in (run_dir / "student").glob("seed_*")
        if (p / "model.safetensors").exists()
    )
    if not seeds:
        raise ExportError(f"{run_dir} has no trained student yet; finish `pocketrec distill`")
    if seed is None:
        scores = {
            s: json.loads((run_dir / "student" / f"seed_{s}" / "metrics.json").read_text())[
                "valid"
            ]["ndcg@10"]
            for s in seeds
        }
        seed = max(seeds, key=lambda s: (scores[s], -s))
    elif seed not in seeds:
        raise ExportError(f"{run_dir} has no student for seed {seed}; it has seeds {seeds}")
    folder = run_dir / "student" / f"seed_{seed}"
    cfg = GenRecConfig(**json.loads((folder / "config.json").read_text())["model"])
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
        "popularity_source": "training interactions (leave-one-out split)",
    }


def _probe(split: Split, window: int, size: int = 256) -> np.ndarray:
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
    prefix = np.full((len(probe), model.cfg.num_levels - 1), k, dtype=np.int64)
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


def export_bundle(
    run_dir: Path, out_dir: Path, *, seed: int | None = None, data_root: Path | None = None
) -> Path:
    """Export the fp32 bundle of a distill run (quantized precisions: `pocketrec.export.quantize`).

    Raises:
        ExportError: no student, or the ONNX graphs do not match torch.
    """
    model, seed, run = load_student(run_dir, seed)
    dataset = load_dataset(run["config"]["dataset"], root=data_root)
    split = leave_one_out(dataset)
    sids, item_ids, sid_config = load_semantic_ids(run_dir / "sids")
    if item_ids != [str(i) for i in dataset.item_ids]:
        raise ExportError(f"{run_dir}/sids does not describe dataset {dataset.name!r}")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        graphs = export_graphs(model, tmp)
        parity = check_parity(
            model, tmp, _probe(split, model.cfg.max_len), PrefixIndex(sids, model.cfg.codebook_size)
        )
        np.save(tmp / "semantic_ids.npy", sids.astype(np.int32))
        shutil.copy(run_dir / "sids" / "tokenizer.json", tmp / "tokenizer.json")
        (tmp / "catalog.json").write_text(json.dumps(_catalog(dataset, split)))
        files = {
            p.name: FileEntry(sha256=sha256_file(p), bytes=p.stat().st_size)
            for p in sorted(tmp.iterdir())
            if p.is_file()
        }
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            name=f"{dataset.name}-student-seed{seed}-fp32",
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
            ),
            encoder=graphs.encoder,
            decoder=graphs.decoder,
            catalog="catalog.json",
            num_items=dataset.num_items,
            special_tokens={tok: i for i, tok in enumerate(SPECIAL_TOKENS)},
            search={"beam_width": 20, "top_k": 10},
            files=files,
            producer={
                "pocketrec": __version__,
                "torch": torch.__version__,
                "onnx_opset": 18,
                "run_dir": str(run_dir),
                "seed": seed,
                "dataset": dataset.name,
                "model": asdict(model.cfg),
                "sids": sid_config,
                "run_config": run["config"],
                "command": command_line(),
                "git_commit": git_commit(),
                "created": utc_now(),
                "parity": parity,
            },
        )
        manifest.write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out_dir.with_name(out_dir.name + ".old")
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir
