"""Training-side subcommands: `data` and `baseline`; `distill` and `sids` beside their stages.

Argument definitions only import the standard library; each handler imports its stage when it
runs, so `pocketrec --help` stays fast and works without the `[distill]` extra.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pocketrec._cli import emit_json
from pocketrec.distill import pipeline_cli
from pocketrec.distill.arguments import (
    add_data_root,
    positive_float,
    positive_int,
    seeds,
)
from pocketrec.distill.sids import cli as sids_cli


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
    pipeline_cli.register(subparsers)


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
    print(f"  repeat share (interactions with an item met before): {stats['repeat_share']:.2%}")
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
