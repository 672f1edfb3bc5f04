"""Subcommand `distill`: its arguments, and the config a parsed command line runs.

Argument definitions only import the standard library; the handler imports the pipeline when
it runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketrec._cli import emit_json
from pocketrec.distill.arguments import (
    add_data_root,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seeds,
)

if TYPE_CHECKING:
    from pocketrec.distill.data import Dataset
    from pocketrec.distill.presets import DistillConfig

__all__ = ["check_teacher_flags", "distill_config", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `distill` to the `pocketrec` command's subparsers."""
    p = subparsers.add_parser(
        "distill",
        help="train a teacher and distill it into a small generative student",
        description="Build (or take) semantic IDs, train the teacher, cache its per-level code "
        "distributions, and train the student with and without the teacher. Writes "
        "checkpoints (safetensors + config) and metrics.json to --out; rerunning the same "
        "command resumes. Runs unchanged under torchrun for data-parallel training.",
    )
    p.add_argument("dataset", help="ml-1m, beauty, sports, amazon2014_<category>, or a folder")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument(
        "--teacher",
        default="minilm",
        help="minilm (offline, default) or hf:PATH (a local Hugging Face causal LM)",
    )
    p.add_argument(
        "--teacher-quant",
        choices=("none", "nf4", "int8"),
        default="none",
        help="hf teachers: load the base in 4-bit (QLoRA) or 8-bit via bitsandbytes",
    )
    p.add_argument(
        "--teacher-members",
        type=positive_int,
        default=None,
        help="minilm: train this many teachers (consecutive seeds) and distill their average "
        "(preset default)",
    )
    p.add_argument(
        "--teacher-hidden",
        type=positive_int,
        default=None,
        metavar="D",
        help="minilm: each teacher's width instead of the preset's (a wider teacher is larger; "
        "it may need more dropout or weight decay to be stronger)",
    )
    p.add_argument(
        "--teacher-dropout",
        type=fraction,
        default=None,
        metavar="P",
        help="minilm: each teacher's dropout instead of the preset's",
    )
    p.add_argument(
        "--teacher-weight-decay",
        type=non_negative_float,
        default=None,
        metavar="W",
        help="minilm: each teacher's AdamW weight decay instead of the preset's (0)",
    )
    p.add_argument(
        "--kd-exclude-history",
        action="store_true",
        help="minilm: the teacher's distributions for the student leave out the items already "
        "in each history (for data where no user meets an item twice; `pocketrec data stats` "
        "shows repeat_share)",
    )
    p.add_argument(
        "--kd-weight",
        type=positive_float,
        default=None,
        metavar="W",
        help="weight of the distillation term in the distilled students' loss, beside the "
        "ground truth's (preset default: 1)",
    )
    p.add_argument(
        "--kd-temperature",
        type=positive_float,
        default=None,
        metavar="T",
        help="softmax temperature of the cached teacher distributions and of the student's in "
        "the distillation term (preset default: 1; above 1 softer)",
    )
    p.add_argument(
        "--preset",
        choices=("quick", "full", "smoke"),
        default="quick",
        help="quick: minutes on a CPU; full: the benchmark settings; smoke: seconds",
    )
    p.add_argument(
        "--sids",
        type=Path,
        default=None,
        help="use this semantic-ID folder instead of building one",
    )
    p.add_argument(
        "--sid-source",
        choices=("text", "cf", "both"),
        default=None,
        help="embeddings for new semantic IDs (default: text when items have it)",
    )
    p.add_argument("--seeds", type=seeds, default=None, help="student seeds (preset default)")
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        metavar="N",
        help="set the maximum epochs of the MiniLM teacher and every student to N instead of "
        "the preset's (early stopping still applies; an hf: teacher keeps its own settings)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default=None,
        help="bf16: train the MiniLM teacher and the students under bfloat16 autocast, 1.6x "
        "faster steps on a CPU with AVX-512 BF16; weights and evaluation stay float32 "
        "(default fp32)",
    )
    p.add_argument(
        "--ablation",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also train the student without the teacher (default: yes)",
    )
    p.add_argument(
        "--device-holdout",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="leave each user's last N training items out of training: the events a device "
        "collects after its bundle shipped, for measuring personalization (default 0)",
    )
    p.add_argument(
        "--device-users",
        type=fraction,
        default=0.0,
        metavar="FRACTION",
        help="leave this fraction of the evaluated users (a fixed draw) out of training "
        "entirely: users who keep their data on the device, for measuring personalization "
        "(default 0)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads")
    p.add_argument(
        "--force",
        action="store_true",
        help="delete a run folder made with another config and start over",
    )
    add_data_root(p)
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="also print metrics.json (or write it to FILE)",
    )
    p.set_defaults(handler=_distill)


def check_teacher_flags(args: argparse.Namespace) -> None:
    """Refuse MiniLM-teacher shape flags given with an `hf:` teacher.

    Raises:
        ConfigError: `--teacher-hidden`, `--teacher-dropout` or `--teacher-weight-decay` with
            `--teacher hf:...`.
    """
    from pocketrec._errors import ConfigError

    flags = (args.teacher_hidden, args.teacher_dropout, args.teacher_weight_decay)
    if args.teacher.startswith("hf:") and any(flag is not None for flag in flags):
        raise ConfigError(
            "--teacher-hidden, --teacher-dropout and --teacher-weight-decay shape the minilm "
            "teacher; an hf: teacher's size is its checkpoint's (drop them, or use "
            "--teacher minilm)",
            where="--teacher",
        )


def distill_config(args: argparse.Namespace, dataset: Dataset) -> DistillConfig:
    """The config a parsed `pocketrec distill` command line runs.

    Args:
        args: `pocketrec distill` arguments, parsed.
        dataset: the loaded dataset (its history length picks the preset's shapes; its item
            text, the default semantic-ID source).
    """
    import dataclasses

    from pocketrec.distill.presets import preset
    from pocketrec.distill.sids.stage import default_source

    cfg = preset(args.preset, args.dataset, dataset.default_history_len)
    source = args.sid_source or default_source(dataset)
    overrides: dict[str, Any] = {
        "teacher": args.teacher,
        "teacher_quant": args.teacher_quant,
        "device": args.device,
        "threads": args.threads,
        "sids": str(args.sids) if args.sids else None,
        "sid": dataclasses.replace(
            cfg.sid, dataset=args.dataset, source=source, device=args.device
        ),
    }
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    if args.teacher_members is not None:
        overrides["teacher_members"] = args.teacher_members
    if args.ablation is not None:
        overrides["ablation"] = args.ablation
    if args.kd_exclude_history:
        overrides["kd_exclude_history"] = True
    if args.device_holdout:
        overrides["device_holdout"] = args.device_holdout
    if args.device_users:
        overrides["device_users"] = args.device_users
    check_teacher_flags(args)
    shape = {"hidden": args.teacher_hidden, "dropout": args.teacher_dropout}
    shape = {name: value for name, value in shape.items() if value is not None}
    if shape:
        overrides["teacher_model"] = dataclasses.replace(cfg.teacher_model, **shape)
    train: dict[str, Any] = {}
    if args.epochs is not None:
        train["max_epochs"] = args.epochs
    if args.precision is not None:
        train["precision"] = args.precision
    teacher_train = dict(train)
    if args.teacher_weight_decay is not None:
        teacher_train["weight_decay"] = args.teacher_weight_decay
    if teacher_train:
        overrides["teacher_train"] = dataclasses.replace(cfg.teacher_train, **teacher_train)
    student_train = dict(train)
    if args.kd_weight is not None:
        student_train["kd_weight"] = args.kd_weight
    if args.kd_temperature is not None:
        student_train["kd_temperature"] = args.kd_temperature
    if student_train:
        overrides["student_train"] = dataclasses.replace(cfg.student_train, **student_train)
    return dataclasses.replace(cfg, **overrides)


def _distill(args: argparse.Namespace) -> int:
    from pocketrec._cli import require_extra

    require_extra("torch", "distill")
    from pocketrec.distill.data import load_dataset
    from pocketrec.distill.pipeline import distill, parse_teacher

    parse_teacher(args.teacher)  # a bad --teacher fails before the dataset is even read
    check_teacher_flags(args)
    dataset = load_dataset(args.dataset, root=args.data_root)
    cfg = distill_config(args, dataset)
    out = distill(cfg, args.out, data_root=args.data_root, force=args.force)
    from pocketrec.distill import dist

    if dist.rank() != 0:
        return 0
    m = json.loads((out / "metrics.json").read_text())
    teacher = m["teacher"]
    print(
        f"teacher      NDCG@10 {teacher['test']['ndcg@10']:.4f}  ({teacher['parameters']:,} params)"
    )
    for name in ("student", "student_nokd"):
        if m.get(name):
            n = m[name]["test"]["ndcg@10"]
            print(
                f"{name:<13}NDCG@10 {n['mean']:.4f} ± {n['std']:.4f}  "
                f"({m[name]['parameters']:,} params) -> {out / 'metrics.json'}"
            )
    if args.json is not None:
        emit_json(m, args.json)
    return 0
