"""Is a federated run's gain learned, or what its DP noise alone does? Score noise-only adapters.

    python benchmarks/federated_noise_control.py \
        benchmarks/results/federated_beauty_fedavg_dp.json \
        --json benchmarks/results/federated_beauty_noise_control.json

Reads a `pocketrec federated simulate` record (fedavg, device noise) and rebuilds its world (same
dataset, bundle, partition and held-out users). The shared adapter that run published is the
starting bias plus server_lr times the mean of each round's accepted uploads; the device noise
in it is N(0, server_lr^2 * sum_r (noise_multiplier * clip_norm)^2 / accepted_r) per
coordinate. This draws adapters of pure noise with exactly that spread (several seeds) and
scores them like the run scores its adapter: held-out validation and test NDCG@10 through the
SDK. A run whose gain is no larger than the noise-only adapters' learned nothing its noise did
not give.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from pocketrec._evaluate import evaluate_recommender
from pocketrec.distill.federated.config import load_world, subset_users
from pocketrec.distill.runinfo import provenance, utc_now, write_json


def noise_std(record: dict) -> float:
    """Per-coordinate std of the device noise a fedavg run's final adapter carries."""
    cfg = record["config"]
    if cfg["aggregator"] != "fedavg":
        raise SystemExit("the noise of a median or trimmed mean is not a mean's: fedavg only")
    per_upload = (cfg["noise_multiplier"] * cfg["clip_norm"]) ** 2
    accepted = [r["accepted"] for r in record["rounds"][1:] if r.get("published")]
    # the server applies each round's mean times server_lr (records before it existed: 1)
    return cfg.get("server_lr", 1.0) * math.sqrt(sum(per_upload / n for n in accepted))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("record", type=Path, help="a federated simulate metrics.json")
    parser.add_argument("--json", type=Path, required=True, help="record to write")
    parser.add_argument("--seeds", type=int, default=5, help="noise-only adapters to score")
    args = parser.parse_args(argv)
    started, t0 = utc_now(), time.perf_counter()
    run = json.loads(args.record.read_text())
    cfg = run["config"]
    world = load_world(
        cfg["dataset"],
        cfg["bundle"],
        cfg["data_root"],
        cfg["num_clients"],
        cfg["num_eval_users"],
        cfg["seed"],
        1,
    )
    held_out = subset_users(world.dataset, world.held_out)
    std = noise_std(run)
    shape = world.recommender.total_bias.shape
    draws = []
    for seed in range(args.seeds):
        bias = np.random.default_rng([seed, 7]).normal(0.0, std, size=shape).astype(np.float32)
        rec = world.with_shared(world.recommender.total_bias + bias, 1)
        draws.append(
            {
                "seed": seed,
                "valid": evaluate_recommender(rec, held_out, stage="valid"),
                "test": evaluate_recommender(rec, held_out, stage="test"),
            }
        )
        print(
            f"seed {seed}: valid {draws[-1]['valid']['ndcg@10']:.4f} "
            f"test {draws[-1]['test']['ndcg@10']:.4f}",
            file=sys.stderr,
        )
    start = world.recommender
    record = {
        "what": "noise-only control for a federated run: adapters of pure device noise with the "
        "run's final spread, scored on its held-out users",
        "kind": "federated_noise_control",
        "dataset": cfg["dataset"],
        "run": str(args.record),
        "run_config": cfg,
        "noise_std_per_coordinate": std,
        "start": {
            "valid": evaluate_recommender(start, held_out, stage="valid"),
            "test": evaluate_recommender(start, held_out, stage="test"),
        },
        "run_final": {
            "valid": run["rounds"][-1]["valid"],
            "test": run["final"].get("test_after"),
        },
        "noise_only": draws,
        **provenance(started, t0),
    }
    write_json(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
