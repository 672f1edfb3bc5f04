"""What is the best a shared code bias can do? Fit it centrally on all clients' events.

    python benchmarks/federated_oracle.py runs/beauty_holdout3_bundle beauty --fresh 3 \
        --json benchmarks/results/federated_oracle_beauty_holdout3.json

An upper bound for `pocketrec federated simulate`, not a federated method: a server that could
see every client user's events fits one shared adapter bias on them directly (no clipping, no
noise, no sampling, every user at once), with the SDK's own teacher-forced logits
(`teacher_forced`) and fitting code (`fit_bias`). It uses the same world as the simulation
(dataset, leave-one-out split, the held-out users dealt by `partition_users` with the same
clients, evaluation users and seed), and scores the bundle with and without the bias on the
held-out users' validation and test items through the SDK.

The events fitted on are each client user's last `--fresh` training items, each seen with its
full history window: with a bundle trained with `pocketrec distill --device-holdout N`, the last
N are the events the model never learned from; with `--device-users F`, only the users the model
never trained on are used. Federated rounds on the same data cannot beat this bias by more than
noise; if it does not improve the held-out users, the rounds cannot either.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from pocketrec._adapter import FitSettings
from pocketrec._evaluate import evaluate_recommender
from pocketrec._personalize import fit_bias, teacher_forced
from pocketrec.distill.federated.config import load_world, subset_users
from pocketrec.distill.runinfo import provenance, utc_now, write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("dataset")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--fresh", type=int, default=3, help="last training items per user")
    parser.add_argument("--device-users", type=float, default=0.0, metavar="FRACTION")
    parser.add_argument(
        "--l2", default="1,10,100", help="l2 per 1,000 fitted events (swept; all reported)"
    )
    parser.add_argument("--clients", type=int, default=10, help="as the simulation's")
    parser.add_argument("--eval-users", type=int, default=2000, help="as the simulation's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=str, default=None)
    args = parser.parse_args(argv)
    started, t_start = utc_now(), time.perf_counter()

    world = load_world(
        args.dataset, str(args.bundle), args.data_root, args.clients, args.eval_users, args.seed, 1
    )
    rec = world.recommender
    held_out = subset_users(world.dataset, world.held_out)
    users = np.concatenate(world.clients)
    if args.device_users:
        users = np.intersect1d(users, world.split.device_users(args.device_users))
    lookup = {item: row for row, item in enumerate(rec.item_ids)}
    logits, targets, allowed = [], [], []
    for user in users.tolist():
        seq = world.split.train_sequence(user)
        rows = [lookup[str(world.dataset.item_ids[i])] for i in seq]
        if len(rows) < 2:
            continue
        lg, tg, al = teacher_forced(rec, rows, args.fresh)  # each with its full window
        logits.append(lg)
        targets.append(tg)
        allowed.append(al)
    lg, tg, al = np.concatenate(logits), np.concatenate(targets), np.concatenate(allowed)
    print(f"{len(tg):,} events from {len(users):,} client users", file=sys.stderr)

    before = {s: evaluate_recommender(rec, held_out, stage=s) for s in ("valid", "test")}
    sweep = []
    for l2 in (float(v) for v in args.l2.split(",")):
        settings = FitSettings(l2=l2 * len(tg) / 1000, steps=300, lr=0.05, min_events=1)
        bias = fit_bias(lg, tg, al, start=np.zeros(lg.shape[1:], np.float32), settings=settings)
        shared = world.with_shared(bias, 1)
        after = {s: evaluate_recommender(shared, held_out, stage=s) for s in ("valid", "test")}
        entry = {
            "l2_per_1000_events": l2,
            "bias_norm": float(np.linalg.norm(bias)),
            "bias_norm_per_level": [float(n) for n in np.linalg.norm(bias, axis=1)],
            "valid": after["valid"],
            "test": after["test"],
        }
        sweep.append(entry)
        print(
            f"l2={l2:g}: valid NDCG@10 {before['valid']['ndcg@10']:.4f} -> "
            f"{after['valid']['ndcg@10']:.4f}, test {before['test']['ndcg@10']:.4f} -> "
            f"{after['test']['ndcg@10']:.4f}",
            file=sys.stderr,
        )
    write_json(
        args.json,
        {
            "what": "upper bound for federated rounds: one shared code bias fitted centrally on "
            "every client user's last training events, scored on the held-out users",
            "kind": "federated_oracle",
            "dataset": world.dataset.name,
            "bundle": str(args.bundle),
            "bundle_name": rec.manifest.name,
            "fitted": {
                "events": len(tg),
                "client_users": len(users),
                "last_training_items_per_user": args.fresh,
                "device_users": args.device_users,
                "steps": 300,
                "lr": 0.05,
            },
            "held_out_users": len(world.held_out),
            "before": before,
            "sweep": sweep,
            **provenance(started, t_start),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
