"""Which quantizer makes the better semantic IDs for recommendation? Train the same student on each.

    python benchmarks/sid_downstream.py beauty runs/sids_beauty_text runs/sids_beauty_text_rqvae \
        --out runs/sidcmp --json benchmarks/results/sids_downstream_beauty.json

For every semantic-ID folder (written by `pocketrec sids`), trains the edge-shaped student
(d=64, 2 layers, item-id input, no teacher) with one fixed budget and seed, and scores it under
the project protocol. The choice between quantizers is made on validation NDCG@10; test is
reported once, next to it. A finished run folder is reused, so the record can be rewritten
without training again.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

from pocketrec._prefix import PrefixIndex
from pocketrec.distill.data import load_dataset
from pocketrec.distill.genrec import GenRec, GenRecConfig
from pocketrec.distill.genrec_train import TrainConfig, train_genrec
from pocketrec.distill.protocol import leave_one_out
from pocketrec.distill.runinfo import provenance, utc_now, write_json
from pocketrec.distill.sids.stage import load_semantic_ids

STUDENT = {"hidden": 64, "num_layers": 2, "num_heads": 2, "dropout": 0.3}
TRAIN = {"max_epochs": 24, "eval_every": 4, "patience": 3}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("sid_dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="folder for the student runs")
    parser.add_argument("--json", type=Path, required=True, help="record to write")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset)
    split = leave_one_out(dataset)
    started, t0 = utc_now(), time.perf_counter()
    rows = []
    for sid_dir in args.sid_dirs:
        sids, item_ids, sid_config = load_semantic_ids(sid_dir)
        if list(item_ids) != list(dataset.item_ids):
            raise SystemExit(f"{sid_dir} holds semantic IDs of another catalogue")
        cfg = GenRecConfig(
            num_levels=sids.shape[1],
            codebook_size=sid_config["codebook_size"],
            max_len=dataset.default_history_len,
            num_items=dataset.num_items,
            **STUDENT,
        )
        model = GenRec(cfg, torch.from_numpy(sids))
        index = PrefixIndex(sids, cfg.codebook_size)
        train = TrainConfig(**TRAIN)
        metrics = train_genrec(model, split, index, train, args.out / sid_config["method"])
        rows.append(
            {
                "sids": str(sid_dir),
                "method": sid_config["method"],
                "source": sid_config["source"],
                "valid": metrics["valid"],
                "test": metrics["test"],
                "best_epoch": metrics["best_epoch"],
                "parameters": metrics["parameters"],
                "train_time_s": metrics["train_time_s"],
            }
        )
    chosen = max(rows, key=lambda r: r["valid"]["ndcg@10"])
    write_json(
        args.json,
        {
            "what": f"student trained on each quantizer's semantic IDs, {dataset.name}",
            "kind": "sid_downstream",
            "dataset": dataset.name,
            "student": STUDENT,
            "train": dataclasses.asdict(TrainConfig(**TRAIN)),
            "runs": rows,
            "chosen_on_validation": chosen["method"],
            **provenance(started, t0),
        },
    )
    for r in rows:
        print(
            f"{r['method']:>9}: valid NDCG@10 {r['valid']['ndcg@10']:.4f}, "
            f"test NDCG@10 {r['test']['ndcg@10']:.4f}"
        )
    print(f"chosen on validation: {chosen['method']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
