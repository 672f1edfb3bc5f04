"""A tiny, fully deterministic distill run and its bundle, built by tests (no training).

The catalogue, semantic IDs and model weights are made from fixed rules and a fixed torch seed,
so the exported bundle gives the same recommendations on every machine; the golden files in
tests/*/golden/ pin them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

NUM_ITEMS = 40
CODEBOOK = 8


def make_tiny_run(root: Path) -> Path:
    """A dataset folder plus a run folder with semantic IDs and a randomly initialised student."""
    import torch
    from safetensors.torch import save_file

    from pocketrec.distill.genrec import GenRec, GenRecConfig
    from pocketrec.distill.runinfo import write_json
    from pocketrec.distill.sids.vocab import disambiguate, write_tokenizer

    data = root / "tiny_shop"
    data.mkdir(parents=True, exist_ok=True)
    rows = ["user,item,timestamp"]
    for u in range(30):
        for t in range(6):
            rows.append(f"u{u},item{(3 * u + 7 * t) % NUM_ITEMS},{t}")
    (data / "interactions.csv").write_text("\n".join(rows) + "\n")
    kinds = ["lipstick", "brush", "shampoo", "perfume"]
    (data / "items.jsonl").write_text(
        "\n".join(
            json.dumps(
                {
                    "item": f"item{i}",
                    "title": f"Item {i} {kinds[i % 4]}",
                    "brand": f"Brand{i % 5}",
                    "categories": ["Beauty", kinds[i % 4]],
                }
            )
            for i in range(NUM_ITEMS)
        )
        + "\n"
    )
    from pocketrec.distill.data import load_dataset

    dataset = load_dataset(str(data))
    run = root / "run"
    sid_dir = run / "sids"
    sid_dir.mkdir(parents=True, exist_ok=True)
    index = np.array([int(str(i)[4:]) for i in dataset.item_ids])
    codes = np.stack([index % CODEBOOK, (index // 3) % CODEBOOK], axis=1)
    sids = disambiguate(codes, CODEBOOK)
    np.save(sid_dir / "semantic_ids.npy", sids)
    write_json(sid_dir / "item_ids.json", [str(i) for i in dataset.item_ids])
    write_json(
        sid_dir / "config.json",
        {
            "config": {
                "method": "rule",
                "source": "test",
                "num_levels": 2,
                "codebook_size": CODEBOOK,
            }
        },
    )
    write_tokenizer(sid_dir / "tokenizer.json", 2, CODEBOOK)
    cfg = GenRecConfig(
        num_levels=3,
        codebook_size=CODEBOOK,
        max_len=5,
        hidden=16,
        num_layers=1,
        num_heads=2,
        dropout=0.0,
        num_items=NUM_ITEMS,
    )
    torch.manual_seed(1234)
    model = GenRec(cfg, torch.from_numpy(sids))
    with torch.no_grad():  # larger weights than the init, so scores are well separated
        for p in model.parameters():
            p.mul_(8.0)
    student = run / "student" / "seed_0"
    student.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, student / "model.safetensors"
    )
    from dataclasses import asdict

    write_json(student / "config.json", {"model": asdict(cfg)})
    write_json(student / "metrics.json", {"valid": {"ndcg@10": 0.0}})
    write_json(run / "config.json", {"config": {"dataset": str(data)}})
    return run


def make_tiny_bundle(root: Path) -> Path:
    from pocketrec.export.bundle import export_bundle

    return export_bundle(make_tiny_run(root), root / "bundle")


def drop_search_graph(bundle: Path, target: Path) -> Path:
    """A copy of `bundle` as exported before search graphs: no search.onnx, no manifest entry."""
    import shutil

    shutil.copytree(bundle, target)
    (target / "search.onnx").unlink()
    manifest = json.loads((target / "manifest.json").read_text())
    del manifest["search_graph"]
    del manifest["files"]["search.onnx"]
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return target


def drop_code_embeddings(bundle: Path, target: Path) -> Path:
    """A copy of `bundle` as exported before code embeddings: no table, no manifest entry."""
    import shutil

    shutil.copytree(bundle, target)
    (target / "code_embeddings.npy").unlink()
    manifest = json.loads((target / "manifest.json").read_text())
    del manifest["semantic_ids"]["code_embeddings"]
    del manifest["files"]["code_embeddings.npy"]
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return target
