"""Subcommands `sids` and `sids-add`: build semantic IDs for a catalogue, or extend them."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pocketrec._cli import emit_json
from pocketrec.distill.arguments import add_data_root, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `sids` and `sids-add` to the `pocketrec` command's subparsers."""
    sids = subparsers.add_parser(
        "sids",
        help="build semantic IDs for a dataset's items",
        description="Embed items (text through MiniLM, collaborative co-occurrence SVD, or "
        "both), quantize them level by level, number the items that share a code, and write "
        "the semantic-ID table, codebooks, tokenizer.json and stats.json to --out.",
    )
    sids.add_argument("dataset", help="ml-1m, beauty, sports, amazon2014_<category>, or a folder")
    sids.add_argument("--out", type=Path, required=True, help="folder to write")
    sids.add_argument(
        "--source",
        choices=("text", "cf", "both"),
        default="text",
        help="item text, collaborative embeddings, or both (default text)",
    )
    sids.add_argument(
        "--cf-embeddings",
        type=Path,
        default=None,
        help="collaborative embeddings for --source cf/both: a `pocketrec baseline` run folder "
        "(SASRec item embeddings of its best seed) or an (items, dim) .npy; default: a PPMI-SVD "
        "matrix factorisation of the training sequences",
    )
    sids.add_argument(
        "--method",
        choices=("rqkmeans", "rqvae"),
        default=None,
        help="residual k-means or RQ-VAE (default: rqkmeans)",
    )
    sids.add_argument("--levels", type=positive_int, default=3, help="code levels (default 3)")
    sids.add_argument(
        "--codebook-size", type=positive_int, default=256, help="codes per level (default 256)"
    )
    sids.add_argument(
        "--encoder",
        default="minilm",
        help="text encoder: minilm (bundled, offline) or a local model folder",
    )
    sids.add_argument("--seed", type=int, default=0)
    sids.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    add_data_root(sids)
    sids.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="print stats.json (or write it to FILE)",
    )
    sids.set_defaults(handler=_sids)

    add = subparsers.add_parser(
        "sids-add",
        help="give semantic IDs to new items without retraining",
        description="Encode new items' text, take the nearest codes and the next free collision "
        "slot; old items keep their IDs. ITEMS is JSON lines with an 'item' id and text fields "
        "(title, brand, categories, price).",
    )
    add.add_argument("sid_dir", type=Path, help="a folder written by `pocketrec sids`")
    add.add_argument("--items", type=Path, required=True, help="JSON lines of new items")
    add.add_argument("--json", nargs="?", const="-", metavar="FILE")
    add.set_defaults(handler=_sids_add)


def _sids(args: argparse.Namespace) -> int:
    from pocketrec._cli import require_extra

    started = time.perf_counter()
    require_extra("torch", "distill")
    from pocketrec.distill.data import load_dataset
    from pocketrec.distill.sids.stage import SIDConfig, build_semantic_ids

    cfg = SIDConfig(
        dataset=args.dataset,
        source=args.source,
        num_levels=args.levels,
        codebook_size=args.codebook_size,
        encoder=args.encoder,
        cf_embeddings=None if args.cf_embeddings is None else str(args.cf_embeddings),
        seed=args.seed,
        device=args.device,
        **({"method": args.method} if args.method else {}),
    )
    dataset = load_dataset(args.dataset, root=args.data_root)
    out = build_semantic_ids(cfg, args.out, dataset=dataset)
    stats = json.loads((out / "stats.json").read_text())
    levels = ", ".join(f"{lv['utilization']:.0%}" for lv in stats["levels"])
    print(
        f"{stats['num_items']:,} items -> {stats['unique_semantic_ids']:,} unique semantic IDs; "
        f"collision rate {stats['collision_rate']:.2%} before the collision level; "
        f"codes used per level: {levels}; {stats['wall_time_s']} s -> {out}"
    )
    if args.json is not None:  # stats plus what made them: config, command, machine, commit
        record: dict[str, Any] = {
            "what": f"semantic IDs for {stats['dataset']} ({args.source}, {cfg.method})"
        }
        record |= stats | json.loads((out / "config.json").read_text())
        record["end_to_end_s"] = round(time.perf_counter() - started, 1)  # loading included
        emit_json(record, args.json)
    return 0


def _sids_add(args: argparse.Namespace) -> int:
    from pocketrec._cli import require_extra

    require_extra("torch", "distill")
    from pocketrec.distill.data._formats import read_generic_items
    from pocketrec.distill.sids.assign import assign_new_items

    items = read_generic_items(args.items)
    assigned = assign_new_items(args.sid_dir, items.items())
    if args.json is not None:
        emit_json([{"item": i, "semantic_id": s} for i, s in assigned], args.json)
    else:
        for item, sid in assigned:
            print(f"{item}\t{' '.join(map(str, sid))}")
    return 0
