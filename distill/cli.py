"""Subcommands of the training side: `data`, `baseline` and `distill` (`sids` lives with its stage).

Argument definitions only import the standard library; each handler imports its stage when it
runs, so `pocketrec --help` stays fast and works without the `[distill]` extra.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketrec.distill.arguments import (
    add_data_root,
    emit_json,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seeds,
)
from pocketrec.distill.sids import cli as sids_cli

if TYPE_CHECKING:
    from pocketrec.distill.data import Dataset
    from pocketrec.distill.presets import DistillConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="inspect, list and download datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    stats = data_sub.add_parser(
        "stats",
        help="users, items, interactions and sequence lengths of a dataset",
        description="Load a dataset (name under $POCKETREC_DATA, or a folder) and print its "
        "statistics.",
    )
    stats.add_argument("dataset", help="ml-1m, beauty, sports, amazon2014_<category>, or a folder")
    add_data_root(stats)
    stats.add_argument(
        "--json", nargs="?", const="-", metavar="FILE", help="print JSON (or write it to FILE)"
    )
    stats.set_defaults(handler=_data_stats)

    listing = data_sub.add_parser("list", help="datasets found under the data root")
    add_data_root(listing)
    listing.add_argument("--json", nargs="?", const="-", metavar="FILE")
    listing.set_defaults(handler=_data_list)

    download = data_sub.add_parser(
        "download",
        help="download and verify a dataset's official files",
        description="Fetch the publisher's files (GroupLens ml-1m.zip; McAuley Amazon 2014 "
        "reviews_<Category>_5 + meta_<Category>) into a cache, resumably, verify checksums, and "
        "print the folder to use as POCKETREC_DATA.",
    )
    download.add_argument("dataset", help="ml-1m, or an Amazon 2014 category (beauty, sports, ...)")
    download.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="cache root (default: $POCKETREC_CACHE or ~/.cache/pocketrec)",
    )
    download.add_argument("--json", nargs="?", const="-", metavar="FILE")
    download.set_defaults(handler=_data_download)

    baseline = subparsers.add_parser(
        "baseline",
        help="train and score the SASRec baseline",
        description="Train SASRec with cross-entropy on a dataset under the leave-one-out, "
        "full-ranking protocol, for one or more seeds; writes models, item embeddings and "
        "metrics.json (mean ± std) to --out. Rerunning the same command resumes.",
    )
    baseline.add_argument(
        "dataset", help="ml-1m, beauty, sports, amazon2014_<category>, or a folder"
    )
    baseline.add_argument("--out", type=Path, required=True, help="run folder to write")
    baseline.add_argument(
        "--seeds", type=seeds, default=[0], help="comma-separated seeds (default 0)"
    )
    baseline.add_argument("--epochs", type=positive_int, default=None, help="maximum epochs")
    baseline.add_argument(
        "--loss",
        choices=("ce", "sampled"),
        default=None,
        help="full softmax cross-entropy, or sampled softmax",
    )
    baseline.add_argument(
        "--lr", type=positive_float, default=None, help="AdamW learning rate (preset default)"
    )
    baseline.add_argument(
        "--temperature",
        type=positive_float,
        default=None,
        help="score by cosine similarity divided by this (HSTU's SASRec: 0.05); default: "
        "dot product",
    )
    baseline.add_argument(
        "--max-len",
        type=positive_int,
        default=None,
        help="history window (default: 20 Amazon, 200 MovieLens)",
    )
    baseline.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after choosing the epoch on validation, retrain on train + validation items and "
        "also report that model's test score (default: the preset's choice); given to a "
        "finished run made without it, adds the refit and keeps the chosen model",
    )
    baseline.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    baseline.add_argument("--threads", type=positive_int, default=None, help="CPU threads")
    baseline.add_argument(
        "--reuse",
        type=Path,
        default=None,
        metavar="RECORD",
        help="an earlier run's metrics JSON with the same config: the seeds it scored are "
        "taken from it, not retrained (merge seeds run on different days or machines)",
    )
    add_data_root(baseline)
    baseline.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="also print the summary JSON (or write it to FILE)",
    )
    baseline.set_defaults(handler=_baseline)
    sids_cli.register(subparsers)
    register_distill(subparsers)


def register_distill(subparsers: argparse._SubParsersAction) -> None:
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


def distill_config(args: argparse.Namespace, dataset: Dataset) -> DistillConfig:
    """The config a parsed `pocketrec distill` command line runs.

    Args:
        args: `pocketrec distill` arguments, parsed.
        dataset: the loaded dataset (its history length picks the preset's shapes; its item
            text, the default semantic-ID source).
    """
    import dataclasses

    from pocketrec._errors import ConfigError
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
    if args.device_holdout:
        overrides["device_holdout"] = args.device_holdout
    if args.device_users:
        overrides["device_users"] = args.device_users
    shape = {"hidden": args.teacher_hidden, "dropout": args.teacher_dropout}
    shape = {name: value for name, value in shape.items() if value is not None}
    if (shape or args.teacher_weight_decay is not None) and args.teacher.startswith("hf:"):
        raise ConfigError(
            "--teacher-hidden, --teacher-dropout and --teacher-weight-decay shape the minilm "
            "teacher; an hf: teacher's size is its checkpoint's (drop them, or use "
            "--teacher minilm)",
            where="--teacher",
        )
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
    if train:
        overrides["student_train"] = dataclasses.replace(cfg.student_train, **train)
    return dataclasses.replace(cfg, **overrides)


def _distill(args: argparse.Namespace) -> int:
    from pocketrec._cli import require_extra

    require_extra("torch", "distill")
    from pocketrec.distill.data import load_dataset
    from pocketrec.distill.pipeline import distill, parse_teacher

    parse_teacher(args.teacher)  # a bad --teacher fails before the dataset is even read
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


def _data_stats(args: argparse.Namespace) -> int:
    from pocketrec.distill.data import load_dataset

    stats = load_dataset(args.dataset, root=args.data_root).stats()
    if args.json is not None:
        emit_json(stats, args.json)
        return 0
    length = stats["sequence_length"]
    print(
        f"{stats['name']}: {stats['users']:,} users, {stats['items']:,} items, "
        f"{stats['interactions']:,} interactions"
    )
    print(
        f"  sequence length min/mean/median/max: {length['min']} / {length['mean']} / "
        f"{length['median']} / {length['max']}"
    )
    print(f"  items with text: {stats['items_with_text']:,}; timestamps: {stats['has_timestamps']}")
    print(f"  protocol history length: {stats['default_history_len']}")
    return 0


def _data_list(args: argparse.Namespace) -> int:
    from pocketrec.distill.data import list_datasets

    names = list_datasets(args.data_root)
    if args.json is not None:
        emit_json({"datasets": names}, args.json)
    else:
        print("\n".join(names) if names else "no datasets found (set POCKETREC_DATA)")
    return 0


def _data_download(args: argparse.Namespace) -> int:
    from pocketrec.distill.data import default_cache_dir, download_dataset

    folder = download_dataset(args.dataset, args.cache or default_cache_dir())
    if args.json is not None:
        emit_json(
            {"dataset": args.dataset, "folder": folder, "data_root": folder.parent}, args.json
        )
    else:
        print(
            f"downloaded and verified: {folder}\nuse it with: export POCKETREC_DATA={folder.parent}"
        )
    return 0


def _baseline(args: argparse.Namespace) -> int:
    from pocketrec._cli import require_extra

    require_extra("torch", "distill")
    import dataclasses

    from pocketrec._errors import ConfigError
    from pocketrec.distill.baseline import train_baseline
    from pocketrec.distill.data import load_dataset
    from pocketrec.distill.sasrec import sasrec_preset

    dataset = load_dataset(args.dataset, root=args.data_root)  # fail fast on a missing dataset
    cfg = sasrec_preset(args.dataset, dataset.default_history_len)
    overrides: dict[str, Any] = {
        "seeds": args.seeds,
        "device": args.device,
        "threads": args.threads,
    }
    for name in ("loss", "max_len", "refit", "temperature", "lr"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.epochs is not None:
        overrides["max_epochs"] = args.epochs
    cfg = dataclasses.replace(cfg, **overrides)
    reuse = None
    if args.reuse is not None:
        try:
            reuse = json.loads(args.reuse.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read {args.reuse}: {err}", where="--reuse") from err
    out = train_baseline(cfg, args.out, data_root=args.data_root, dataset=dataset, reuse=reuse)
    summary = json.loads((out / "metrics.json").read_text())
    for key, how in (("test", "trained on train"), ("test_refit", "refit on train + valid")):
        if key in summary:
            test = summary[key]
            print(
                f"{summary['what']} ({how}): test NDCG@10 {test['ndcg@10']['mean']:.4f} ± "
                f"{test['ndcg@10']['std']:.4f}, Recall@10 {test['recall@10']['mean']:.4f} "
                f"over seeds {summary['seeds']}"
            )
    print(f"-> {out / 'metrics.json'}")
    if args.json is not None:
        emit_json(summary, args.json)
    return 0
