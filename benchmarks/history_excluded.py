"""Score finished SASRec baseline runs under HSTU's evaluation as well as this project's.

    python benchmarks/history_excluded.py runs/ml1m_s0 runs/ml1m_s1 runs/ml1m_s2 \
        --json benchmarks/results/baseline_sasrec_ml1m_history_excluded.json

HSTU's published MovieLens-1M numbers rank every item except the ones in the user's history
window (its evaluation passes the history as invalid ids); this project's protocol ranks every
item. This loads each seed's saved models from `pocketrec baseline` run folders (the chosen
model and, where present, the refit) and scores the test targets both ways with the same
`evaluate`, so the published row can be compared with a like-for-like number. The plain scores
must equal the ones the run recorded; the script stops if they do not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from pocketrec.distill.baseline import _predictor
from pocketrec.distill.data import load_dataset
from pocketrec.distill.metrics import summarize_seeds
from pocketrec.distill.protocol import evaluate, leave_one_out
from pocketrec.distill.runinfo import provenance, utc_now, write_json
from pocketrec.distill.sasrec import SASRec, SASRecConfig

MODELS = {"test": "model.safetensors", "test_refit": "refit.safetensors"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="pocketrec baseline run folders")
    parser.add_argument("--json", type=Path, required=True, help="record to write")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started, t0 = utc_now(), time.perf_counter()

    configs = [json.loads((run / "config.json").read_text()) for run in args.runs]
    shared = [{k: v for k, v in c.items() if k not in ("seeds", "threads")} for c in configs]
    if any(c != shared[0] for c in shared):
        raise SystemExit("the run folders hold different configs; compare like with like")
    cfg = SASRecConfig(**configs[0])
    dataset = load_dataset(cfg.dataset)
    split = leave_one_out(dataset)

    per_seed: list[dict[str, Any]] = []
    for seed_dir in sorted(d for run in args.runs for d in run.glob("seed_*")):
        recorded = json.loads((seed_dir / "metrics.json").read_text())
        row: dict[str, Any] = {"seed": recorded["seed"], "folder": str(seed_dir)}
        for key, weights in MODELS.items():
            if not (seed_dir / weights).exists():
                continue
            model = SASRec(cfg, dataset.num_items)
            model.load_state_dict(load_file(seed_dir / weights))
            model.eval()
            predict = _predictor(model, torch.device("cpu"))
            plain = evaluate(predict, split, "test", max_len=cfg.max_len)
            if abs(plain["ndcg@10"] - recorded[key]["ndcg@10"]) > 1e-6:
                raise SystemExit(
                    f"{seed_dir / weights}: NDCG@10 {plain['ndcg@10']:.6f} here, "
                    f"{recorded[key]['ndcg@10']:.6f} recorded; not the model that was scored"
                )
            row[key] = plain
            row[f"{key}_history_excluded"] = evaluate(
                predict, split, "test", max_len=cfg.max_len, exclude_history=True
            )
            print(
                f"seed {row['seed']} {key}: NDCG@10 {plain['ndcg@10']:.4f}, history excluded "
                f"{row[f'{key}_history_excluded']['ndcg@10']:.4f}",
                file=sys.stderr,
            )
        per_seed.append(row)

    keys = [k for k in per_seed[0] if k.startswith("test")]
    write_json(
        args.json,
        {
            "what": f"SASRec baseline on {dataset.name}, test scored with and without the "
            "user's history window in the ranking",
            "kind": "history_excluded",
            "dataset": dataset.name,
            "runs": [str(r) for r in args.runs],
            "seeds": [r["seed"] for r in per_seed],
            "config": shared[0],  # seeds and threads differ per folder
            **{k: summarize_seeds([r[k] for r in per_seed]) for k in keys},
            "per_seed": per_seed,
            **provenance(started, t0),
        },
    )
    print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
