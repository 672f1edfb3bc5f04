"""How much can any per-user adaptation of the student gain? Fine-tune parts of it per user.

    python benchmarks/personalize_finetune_probe.py runs/beauty_users50 beauty \
        --device-users 0.5 --json benchmarks/results/personalize_probe_beauty.json

An upper-bound probe for on-device personalization, not an SDK feature: for each sampled user
whom the run never trained on (`pocketrec distill --device-users`), a copy of the torch
student's chosen parameters is fine-tuned with Adam on that user's own events (the most recent
`--max-events` before the validation item, teacher-forced, the training loss), and the
validation item is ranked by constrained beam search before and after (the project's metric
code). The parameters are then restored for the next user. Parameter sets:

- bias: the per-level code bias (what the SDK's adapter changes, here by gradient descent);
- out_ln: the code head's last LayerNorm (gain and shift of the state the output table reads);
  out_ln_shift / out_ln_gain: only its shift, or only its gain (a shift is a code bias in the
  span of the output table);
- head: every code-head layer after the attention (projection, LayerNorm, MLP, last LayerNorm).

If even the whole head, fitted on a user's own unseen events, does not move NDCG@10 beyond
noise, no small adapter on the device will. Groups are by events before the test item, as in
`personalize.py`; each group reports the mean paired difference with a bootstrap 95% CI.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

# The history-length groups of the personalization benchmark, so both report the same groups
# (run as a script, its own folder, benchmarks/, is first on sys.path).
from personalize import bucket_labels, bucket_of

from pocketrec._prefix import PrefixIndex
from pocketrec.distill.data import load_dataset
from pocketrec.distill.genrec import code_loss
from pocketrec.distill.genrec_eval import make_predictor
from pocketrec.distill.metrics import metrics_from_ranks, ranks_from_topk
from pocketrec.distill.protocol import leave_one_out
from pocketrec.distill.runinfo import provenance, utc_now, write_json
from pocketrec.distill.sids.stage import load_semantic_ids
from pocketrec.export.bundle import load_student

PARAMETER_SETS = {
    "bias": ("code_bias",),
    "out_ln": ("head_out_ln.",),
    "out_ln_shift": ("head_out_ln.bias",),
    "out_ln_gain": ("head_out_ln.weight",),
    "head": ("head_proj.", "head_ln.", "head_mlp.", "head_out_ln."),
}


def windows_of(seq: np.ndarray, window: int) -> np.ndarray:
    """(N, window + 1) PAD-left chunks covering every next-item pair of `seq` once."""
    out = []
    for end in range(len(seq), 1, -window):
        start = max(0, end - window - 1)
        row = np.full(window + 1, -1, np.int64)
        row[window + 1 - (end - start) :] = seq[start:end]
        out.append(row)
    return np.stack(out)


def ndcg10(ranks: np.ndarray) -> np.ndarray:
    """Per-user NDCG@10 from 0-based ranks (the project's metric code, one user at a time)."""
    return np.array(
        [metrics_from_ranks(ranks[i : i + 1], (10,))["ndcg@10"] for i in range(len(ranks))]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a `pocketrec distill --device-users` run")
    parser.add_argument("dataset")
    parser.add_argument("--device-users", type=float, required=True, metavar="FRACTION")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--sets", default="bias,out_ln,head", help="parameter sets to probe")
    parser.add_argument("--lr", default="bias=1e-2,out_ln=1e-2,head=1e-4")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--max-events", type=int, default=50)
    parser.add_argument("--edges", default="5,10,20,50")
    parser.add_argument("--groups", default="11-20,21-50,>50", help="groups to probe")
    parser.add_argument("--per-group", type=int, default=1000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--exclude-history",
        action="store_true",
        help="never rank an item of the history window (the SDK's default, and HSTU's protocol)",
    )
    parser.add_argument(
        "--stage",
        choices=("valid", "test"),
        default="valid",
        help="the item ranked: validation (default) or, to check a finding, the test item",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=None)
    args = parser.parse_args(argv)
    started, t_start = utc_now(), time.perf_counter()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    model, seed, _ = load_student(args.run_dir)
    model.eval()
    sids, _, _ = load_semantic_ids(args.run_dir / "sids")
    predict = make_predictor(
        model,
        PrefixIndex(sids, model.cfg.codebook_size),
        beam_width=20,
        top_k=20,
        exclude_history=args.exclude_history,
    )
    dataset = load_dataset(args.dataset, root=args.data_root)
    split = leave_one_out(dataset)
    users = split.device_users(args.device_users)
    edges = tuple(int(e) for e in args.edges.split(","))
    labels = bucket_labels(edges)
    groups = bucket_of(dataset.lengths()[users] - 1, edges)
    lrs = dict(item.split("=") for item in args.lr.split(","))
    window = model.cfg.max_len
    valid = args.stage == "valid"
    rng = np.random.default_rng(args.seed)

    results: dict[str, list] = {}
    for name in args.sets.split(","):
        prefixes = PARAMETER_SETS[name]
        params = [p for n, p in model.named_parameters() if n.startswith(prefixes)]
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        start = [p.detach().clone() for p in params]
        results[name] = []
        for label in args.groups.split(","):
            members = users[groups == labels.index(label)]
            picked = np.sort(
                np.random.default_rng(args.seed).choice(
                    members, size=min(args.per_group, len(members)), replace=False
                )
            )
            before, after, fit_s = [], [], []
            for user in picked.tolist():
                # The target is the validation item (or, with --stage test, the test item, the
                # device then holding the validation item too).
                lo, end = dataset.offsets[user], dataset.offsets[user + 1] - (2 if valid else 1)
                events = dataset.items[lo:end].astype(np.int64)
                hist = np.full((1, window), -1, np.int32)
                recent = events[-window:]
                hist[0, window - len(recent) :] = recent
                target = np.array([dataset.items[end]], np.int64)
                before.append(ranks_from_topk(predict(hist), target)[0])
                batch = torch.from_numpy(windows_of(events[-args.max_events :], window))
                optimizer = torch.optim.Adam(params, lr=float(lrs[name]))
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    logits, codes, _ = model(batch[:, :-1], batch[:, 1:])
                    optimizer.zero_grad()
                    code_loss(logits, codes).backward()
                    optimizer.step()
                fit_s.append(time.perf_counter() - t0)
                after.append(ranks_from_topk(predict(hist), target)[0])
                with torch.no_grad():
                    for p, p0 in zip(params, start, strict=True):
                        p.copy_(p0)
            diff = ndcg10(np.array(after)) - ndcg10(np.array(before))
            draws = [
                diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(args.bootstrap)
            ]
            lo_ci, hi_ci = np.percentile(draws, [2.5, 97.5])
            entry = {
                "group": label,
                "users": len(picked),
                "shared_ndcg@10": float(metrics_from_ranks(np.array(before), (10,))["ndcg@10"]),
                "adapted_ndcg@10": float(metrics_from_ranks(np.array(after), (10,))["ndcg@10"]),
                "diff": {"diff": float(diff.mean()), "lo": float(lo_ci), "hi": float(hi_ci)},
                "parameters": int(sum(p.numel() for p in params)),
                "fit_s_p50": float(np.median(fit_s)),
            }
            results[name].append(entry)
            print(
                f"{name:6} {label:>6} n={len(picked)} shared {entry['shared_ndcg@10']:.4f} "
                f"adapted {entry['adapted_ndcg@10']:.4f} diff {diff.mean():+.4f} "
                f"[{lo_ci:+.4f}, {hi_ci:+.4f}]",
                file=sys.stderr,
            )
    write_json(
        args.json,
        {
            "what": "upper-bound probe: per-user fine-tuning of student parameters on the "
            f"user's own events, users the model never trained on, {args.stage} item",
            "kind": "personalize_probe",
            "dataset": dataset.name,
            "run": str(args.run_dir),
            "student_seed": seed,
            "device_users": args.device_users,
            "stage": args.stage,
            "settings": {
                "steps": args.steps,
                "lr": lrs,
                "max_events": args.max_events,
                "optimizer": "Adam, no weight decay, no dropout",
                "beam_width": 20,
                "exclude_history": args.exclude_history,
            },
            "ci": f"bootstrap of the mean paired difference, {args.bootstrap} resamples, 95%",
            "results": results,
            "threads": 1,
            **provenance(started, t_start),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
