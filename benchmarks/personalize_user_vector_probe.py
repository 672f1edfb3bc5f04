"""Does a student trained with per-user state vectors let a device-fitted vector help?

    python benchmarks/personalize_user_vector_probe.py runs/ml1m_users50 ml-1m \
        --device-users 0.5 --json benchmarks/results/personalize_probe_user_vector_ml1m.json

The SDK's state-shift adapter (`FitSettings(form="shift")`) adds a vector u to the state the
code head's output table reads: logits_l = (z + u) . E_l^T + b_l. Fitted on a user's own
events against a student that never saw such a vector, it moved no group beyond noise. This
probe asks whether a student trained to use one does better, the way matrix factorisation
learns a user factor beside the item factors:

1. Co-training: the run's student is trained on for `--epochs` more epochs on its training
   users with one vector u per user added to z (u starts at zero; its prior is the SDK's,
   `l2 / 2 * |u|^2` per user; each row is left without u with probability `--drop`, so the
   student still serves users it has no vector for).
2. Training users (what co-trained vectors add, for this set-up): the validation item ranked
   with each user's co-trained u against u = 0, on the same co-trained student.
3. Users the run never trained on (`--device-users`): u fitted on the user's own events with
   the student frozen (the SDK's shift fit: Adam, `--steps`, `--lr`, the same `l2`), on the
   most recent `--max-events` next-item targets of one row of the latest window + 1 events
   (so the earliest targets read a shorter history than the SDK gives them), and the
   validation and test items ranked with u against u = 0. The device holds every event
   before the item ranked; the ranking leaves out the model's window with
   `--exclude-history`.

Settings are fixed before the run (the co-training prior is the device fit's), so the test
rows are not chosen on test. Groups, metric code and CIs are `personalize.py`'s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

# The history-length groups of the personalization benchmark, so both report the same groups,
# and the per-user NDCG@10 of the fine-tuning probe (run as a script, its own folder,
# benchmarks/, is first on sys.path).
from personalize import bucket_labels, bucket_of
from personalize_finetune_probe import ndcg10
from tqdm.auto import tqdm

from pocketrec._prefix import PrefixIndex
from pocketrec.distill.data import load_dataset
from pocketrec.distill.genrec_eval import make_predictor
from pocketrec.distill.genrec_train import next_item_loss
from pocketrec.distill.kd import valid_children
from pocketrec.distill.metrics import metrics_from_ranks, ranks_from_topk
from pocketrec.distill.protocol import PAD, leave_one_out, training_split
from pocketrec.distill.runinfo import provenance, utc_now, write_json
from pocketrec.distill.sids.stage import load_semantic_ids
from pocketrec.export.bundle import load_student


class StateShift:
    """Adds `self.value` ((B, 1, D) or None) to the output of the code head's last LayerNorm."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.value: torch.Tensor | None = None
        self.captured: list[torch.Tensor] | None = None
        model.head_out_ln.register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if self.captured is not None:
            self.captured.append(output)
        return output if self.value is None else output + self.value


def paired(before: list, after: list, rng: np.random.Generator, bootstrap: int) -> dict:
    """Mean paired NDCG@10 difference with a bootstrap 95% CI."""
    diff = ndcg10(np.array(after)) - ndcg10(np.array(before))
    draws = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(bootstrap)]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return {
        "users": len(diff),
        "shared_ndcg@10": float(metrics_from_ranks(np.array(before), (10,))["ndcg@10"]),
        "adapted_ndcg@10": float(metrics_from_ranks(np.array(after), (10,))["ndcg@10"]),
        "diff": {"diff": float(diff.mean()), "lo": float(lo), "hi": float(hi)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a `pocketrec distill --device-users` run")
    parser.add_argument("dataset")
    parser.add_argument("--device-users", type=float, required=True, metavar="FRACTION")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model-lr", type=float, default=3e-4)
    parser.add_argument("--vector-lr", type=float, default=1e-2)
    parser.add_argument("--l2", type=float, default=10.0, help="the prior on u, as FitSettings.l2")
    parser.add_argument("--drop", type=float, default=0.5, help="share of rows trained without u")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.1, help="the device fit's Adam step")
    parser.add_argument("--max-events", type=int, default=100)
    parser.add_argument("--edges", default="50,100,200,500")
    parser.add_argument("--per-group", type=int, default=200)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--exclude-history", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=None)
    args = parser.parse_args(argv)
    started, t_start = utc_now(), time.perf_counter()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    model, seed, _ = load_student(args.run_dir)
    shift = StateShift(model)
    sids, _, _ = load_semantic_ids(args.run_dir / "sids")
    index = PrefixIndex(sids, model.cfg.codebook_size)
    dataset = load_dataset(args.dataset, root=args.data_root)
    split = training_split(dataset, device_users=args.device_users)
    device_users = leave_one_out(dataset).device_users(args.device_users)
    window, dim = model.cfg.max_len, model.cfg.hidden
    rng = np.random.default_rng(args.seed)

    # 1. Co-training.
    vectors = torch.nn.Parameter(torch.zeros(dataset.num_users, dim))
    windows = split.train_windows(window)
    lengths = (windows != PAD).sum(1)
    trainable = np.flatnonzero(lengths >= 2)
    optimizer = torch.optim.Adam(
        [
            {"params": list(model.parameters()), "lr": args.model_lr},
            {"params": [vectors], "lr": args.vector_lr},
        ]
    )
    history = []
    for epoch in tqdm(range(args.epochs), desc="co-training", unit="epoch"):
        model.train()
        order = rng.permutation(trainable)
        total = 0.0
        for s in range(0, len(order), args.batch_size):
            users = order[s : s + args.batch_size]
            width = int(lengths[users].max())
            batch = torch.from_numpy(windows[users][:, -width:]).long()
            keep = torch.from_numpy(rng.random(len(users)) >= args.drop).float()[:, None, None]
            u = vectors[torch.from_numpy(users)][:, None, :]  # (b, 1, D)
            shift.value = u * keep
            loss, _, target_codes, _ = next_item_loss(model, batch, index, precision="bf16")
            prior = 0.5 * args.l2 * ((u * keep) ** 2).sum() / len(target_codes)
            optimizer.zero_grad(set_to_none=True)
            (loss + prior).backward()
            optimizer.step()
            total += loss.item()
        shift.value = None
        history.append({"epoch": epoch, "loss": total / max(1, -(-len(order) // args.batch_size))})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    predict = make_predictor(
        model, index, beam_width=20, top_k=20, exclude_history=args.exclude_history
    )
    edges = tuple(int(e) for e in args.edges.split(","))
    labels = bucket_labels(edges)

    def rank(user: int, end: int, u: torch.Tensor | None) -> int:
        events = dataset.items[dataset.offsets[user] : end]
        hist = np.full((1, window), -1, np.int32)
        recent = events[-window:]
        hist[0, window - len(recent) :] = recent
        shift.value = u
        try:
            return int(ranks_from_topk(predict(hist), np.array([dataset.items[end]]))[0])
        finally:
            shift.value = None

    def sample(users: np.ndarray) -> dict[str, np.ndarray]:
        groups = bucket_of(dataset.lengths()[users] - 1, edges)
        out = {}
        for g, label in enumerate(labels):
            members = users[groups == g]
            take = min(args.per_group, len(members))
            out[label] = np.sort(np.random.default_rng(args.seed).choice(members, take, False))
        return out

    # 2. Training users: co-trained u against u = 0 on the validation item.
    trained_users = np.setdiff1d(leave_one_out(dataset).eval_users, device_users)
    upper = {}
    for label, users in sample(trained_users).items():
        before, after = [], []
        for user in tqdm(users.tolist(), desc=f"trained {label}", leave=False):
            end = dataset.offsets[user + 1] - 2
            before.append(rank(user, end, None))
            after.append(rank(user, end, vectors[user].detach()[None, None]))
        upper[label] = paired(before, after, rng, args.bootstrap)
        print(f"trained {label:>8} {upper[label]}", file=sys.stderr)

    # 3. Users never trained on: u fitted on the device's events, the student frozen.
    def fit(user: int, end: int) -> tuple[torch.Tensor, float]:
        events = dataset.items[dataset.offsets[user] : end].astype(np.int64)
        row = np.full((1, window + 1), PAD, np.int64)
        recent = events[-(window + 1) :]
        row[0, window + 1 - len(recent) :] = recent
        batch = torch.from_numpy(row)
        t0 = time.perf_counter()
        shift.captured = []
        with torch.no_grad():
            _, codes, valid = model(batch[:, :-1], batch[:, 1:])  # codes (M, levels)
        states = torch.stack([z[valid] for z in shift.captured], 1)  # (M, levels, D)
        shift.captured = None
        states, codes = states[-args.max_events :], codes[-args.max_events :]
        allowed = valid_children(index, codes)
        table = model.code_emb.detach()  # (levels, K, D)
        base = torch.einsum("mld,lkd->mlk", states, table) + model.code_bias.detach()
        base = base.masked_fill(~allowed, float("-inf"))
        u = torch.zeros(dim, requires_grad=True)
        opt = torch.optim.Adam([u], lr=args.lr)
        for _ in range(args.steps):
            logits = base + torch.einsum("lkd,d->lk", table, u)
            logp = torch.log_softmax(logits, -1).gather(-1, codes[..., None]).sum()
            loss = -logp + 0.5 * args.l2 * (u**2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return u.detach()[None, None], time.perf_counter() - t0

    device_rows: dict[str, dict] = {"valid": {}, "test": {}}
    fit_s = []
    for label, users in sample(device_users).items():
        ranks: dict[str, tuple[list, list]] = {"valid": ([], []), "test": ([], [])}
        for user in tqdm(users.tolist(), desc=f"device {label}", leave=False):
            for stage, back in (("valid", 2), ("test", 1)):
                end = dataset.offsets[user + 1] - back
                u, seconds = fit(user, end)
                fit_s.append(seconds)
                ranks[stage][0].append(rank(user, end, None))
                ranks[stage][1].append(rank(user, end, u))
        for stage in ("valid", "test"):
            device_rows[stage][label] = paired(*ranks[stage], rng, args.bootstrap)
            print(f"device {stage} {label:>8} {device_rows[stage][label]}", file=sys.stderr)

    write_json(
        args.json,
        {
            "what": "probe: a student co-trained with per-user state vectors; device-fitted "
            "vectors for users the model never trained on, validation and test items",
            "kind": "personalize_probe_user_vector",
            "dataset": dataset.name,
            "run": str(args.run_dir),
            "student_seed": seed,
            "device_users": args.device_users,
            "settings": {
                key: getattr(args, key)
                for key in (
                    "epochs",
                    "model_lr",
                    "vector_lr",
                    "l2",
                    "drop",
                    "batch_size",
                    "steps",
                    "lr",
                    "max_events",
                    "per_group",
                    "exclude_history",
                )
            }
            | {"co_training_loss": "constrained code cross-entropy, bf16 autocast, no KD"},
            "co_training": history,
            "ci": f"bootstrap of the mean paired difference, {args.bootstrap} resamples, 95%",
            "trained_users_valid": upper,
            "untrained_users": device_rows,
            "device_fit_s_p50": float(np.median(fit_s)),
            "threads": 1,
            **provenance(started, t_start),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
