"""What does `--precision bf16` save per training step? fp32 and bf16 side by side.

    python benchmarks/train_step_time.py ml-1m --steps 12 --threads 1 \
        --json benchmarks/results/train_step_time_ml-1m.json

Builds the `full` preset's student and MiniLM teacher member for the dataset, and times the
training step `train_genrec` runs (`next_item_loss`, backward, AdamW step; a distilled
student's step adds the distillation term, not timed here) on the same random
batches of training windows, alternating fp32 and bf16 step by step so that whatever else the
machine is doing lands on both alike. The first step of each is a warm-up and is not counted.
The record gives the median step time of each precision and their ratio, and whether the CPU
has AVX-512 BF16 or AMX (without them torch emulates bfloat16, expected to be slower).
Semantic IDs are built as `pocketrec distill` builds them (or taken from `--sids`).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pocketrec._prefix import PrefixIndex
from pocketrec.distill.data import load_dataset
from pocketrec.distill.genrec_train import next_item_loss
from pocketrec.distill.pipeline import build_student, build_teacher_member, prepare_sids
from pocketrec.distill.presets import preset
from pocketrec.distill.protocol import PAD, training_split
from pocketrec.distill.runinfo import provenance, utc_now, write_json
from pocketrec.distill.sids.stage import default_source, load_semantic_ids
from pocketrec.distill.training import set_threads

PRECISIONS = ("fp32", "bf16")


def cpu_flags() -> list[str]:
    """The bfloat16-related flags of this CPU (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            return sorted({f for f in line.split(":", 1)[1].split() if "bf16" in f or "amx" in f})
    return []


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--models", default="student,teacher", help="comma-separated")
    parser.add_argument("--steps", type=_positive, default=12, help="timed steps per precision")
    parser.add_argument("--batch", type=_positive, default=64, help="users per step")
    parser.add_argument("--sids", type=Path, help="an existing semantic-ID folder")
    parser.add_argument("--work", type=Path, help="semantic-ID folder (default runs/...)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--json", type=Path, required=True, help="record to write")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    if unknown := sorted(set(names) - {"student", "teacher"}):
        parser.error(f"unknown model {', '.join(unknown)}; choose student, teacher")
    started, t0 = utc_now(), time.perf_counter()
    set_threads(args.threads)
    dataset = load_dataset(args.dataset, root=args.data_root)
    cfg = preset("full", args.dataset, dataset.default_history_len)
    sid = dataclasses.replace(cfg.sid, dataset=args.dataset, source=default_source(dataset))
    cfg = dataclasses.replace(cfg, sid=sid, sids=None if args.sids is None else str(args.sids))
    work = args.work or Path("runs") / f"train_step_time_{dataset.name}"
    split = training_split(dataset)
    sids, _, _ = load_semantic_ids(prepare_sids(cfg, dataset, split, work / "sids"))
    index = PrefixIndex(sids, cfg.student.codebook_size)
    rng = np.random.default_rng(args.seed)
    models = {}
    for name in names:
        if name == "student":
            model, shape = build_student(cfg, dataset, sids, args.seed), cfg.student
        else:
            model, _ = build_teacher_member(cfg, dataset, sids, split, args.seed)
            shape = cfg.teacher_model
        windows = split.train_windows(shape.max_len)
        lengths = (windows != PAD).sum(1)
        users = np.flatnonzero(lengths >= 2)
        train = cfg.student_train if name == "student" else cfg.teacher_train
        optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr)
        times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
        model.train()
        for _ in range(args.steps + 1):
            mine = rng.choice(users, size=min(args.batch, len(users)), replace=False)
            width = int(lengths[mine].max())
            batch = torch.from_numpy(windows[mine][:, -width:])
            for precision in PRECISIONS:
                t = time.perf_counter()
                loss = next_item_loss(model, batch, index, precision=precision)[0]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                times[precision].append(time.perf_counter() - t)
        median = {p: statistics.median(times[p][1:]) for p in PRECISIONS}
        models[name] = {
            "hidden": shape.hidden,
            "parameters": model.num_parameters(),
            "step_s": median,  # unrounded: a tiny model's steps take milliseconds
            "step_s_all": {p: times[p][1:] for p in PRECISIONS},
            "fp32_over_bf16": round(median["fp32"] / median["bf16"], 3),
        }
        print(
            f"{name}: fp32 {median['fp32']:.3f} s, bf16 {median['bf16']:.3f} s per step "
            f"({models[name]['fp32_over_bf16']:.2f}x)"
        )
    write_json(
        args.json,
        {
            "what": f"training step time, fp32 against bf16 autocast, on {dataset.name}",
            "model": "pocketrec-train-step-time",
            "dataset": dataset.name,
            "batch_users": args.batch,
            "steps": args.steps,
            "threads": args.threads,
            "cpu_bf16_flags": cpu_flags(),
            "models": models,
            **provenance(started, t0),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
