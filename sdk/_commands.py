"""CLI commands that only need the SDK: `recommend`, `evaluate`, `demo` and `verify`.

`evaluate` also reads a dataset with `pocketrec.distill.data`, which needs numpy only, so both
work on the base install.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pocketrec._cli import emit_json

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rec = subparsers.add_parser(
        "recommend",
        help="recommend from a bundle for one history",
        description="Load a bundle (verifying its files) and print the top-k items for a "
        "history of item ids, oldest first.",
    )
    rec.add_argument("bundle", type=Path, help="bundle folder (with manifest.json)")
    rec.add_argument("--history", default="", help="comma-separated item ids, oldest first")
    rec.add_argument("--k", type=int, default=10, help="how many items (default 10)")
    rec.add_argument(
        "--keep-history", action="store_true", help="allow items already in the history"
    )
    rec.add_argument("--strict", action="store_true", help="fail on ids not in the catalogue")
    rec.add_argument(
        "--providers", default=None, help="comma-separated ONNX Runtime execution providers"
    )
    _add_trusted_key(rec)
    rec.add_argument("--json", nargs="?", const="-", metavar="FILE", help="print JSON")
    rec.set_defaults(handler=_recommend)

    ev = subparsers.add_parser(
        "evaluate",
        help="score a bundle on a dataset through the SDK",
        description="Recall/NDCG@5/10/20 of a bundle on the leave-one-out test (or validation) "
        "targets, computed through the SDK (ONNX Runtime + numpy beam search), not torch.",
    )
    ev.add_argument("bundle", type=Path, help="bundle folder")
    ev.add_argument("dataset", help="the dataset the bundle was trained on")
    ev.add_argument("--stage", choices=("test", "valid"), default="test")
    ev.add_argument("--beam-width", type=int, default=None, help="default: the bundle's")
    ev.add_argument("--batch-size", type=int, default=256, help="users per call")
    ev.add_argument("--limit", type=int, default=None, help="score only N users (evenly spaced)")
    ev.add_argument(
        "--exclude-history",
        action="store_true",
        help="leave each user's history window out of the ranking, as recommend does (not the "
        "project's protocol; HSTU's published MovieLens numbers are scored this way)",
    )
    ev.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    ev.add_argument("--providers", default=None, help="comma-separated execution providers")
    _add_trusted_key(ev)
    ev.add_argument("--data-root", type=Path, default=None, help="default: $POCKETREC_DATA")
    ev.add_argument("--json", nargs="?", const="-", metavar="FILE", help="print JSON")
    ev.set_defaults(handler=_evaluate)

    demo = subparsers.add_parser(
        "demo",
        help="try a bundle in a local web page",
        description="Serve a web page for trying a bundle by hand: search the catalogue, click "
        "items into a history, and watch the recommendations (with log-probabilities and "
        "latency) update, with or without on-device personalization. Serves this machine "
        "only unless --host says otherwise. Ctrl-C stops it.",
    )
    demo.add_argument("bundle", type=Path, help="bundle folder (with manifest.json)")
    demo.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only). Any other address "
        "exposes the demo, which has no authentication, to the network",
    )
    demo.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0: any free)")
    demo.add_argument("--open", action="store_true", help="open the page in the web browser")
    demo.add_argument(
        "--providers", default=None, help="comma-separated ONNX Runtime execution providers"
    )
    _add_trusted_key(demo)
    demo.set_defaults(handler=_demo)

    ver = subparsers.add_parser(
        "verify",
        help="check a bundle before shipping it: files, signature, tables, graphs",
        description="Open a bundle the way an app does: parse the manifest, check every file's "
        "size and sha256, check the signature against --trusted-key (repeatable; without it a "
        "signature is reported but not checked), check the tables and load the ONNX graphs. "
        "Exit code 0 when the bundle is usable, 2 with the reason when it is not.",
    )
    ver.add_argument("bundle", type=Path, help="bundle folder (with manifest.json)")
    _add_trusted_key(ver)
    ver.add_argument("--json", nargs="?", const="-", metavar="FILE", help="print JSON")
    ver.set_defaults(handler=_verify)


def _add_trusted_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trusted-key",
        type=Path,
        action="append",
        default=None,
        metavar="PUBLIC_PEM",
        help="accept the bundle only if this Ed25519 public key signed it (repeatable; "
        "`pocketrec keygen` makes a pair, `pocketrec sign` signs)",
    )


def _providers(value: str | None) -> list[str] | None:
    return [p.strip() for p in value.split(",") if p.strip()] if value else None


def _recommend(args: argparse.Namespace) -> int:
    from pocketrec._recommender import Recommender

    rec = Recommender.from_bundle(
        args.bundle, providers=_providers(args.providers), trusted_keys=args.trusted_key
    )
    history = [h.strip() for h in args.history.split(",") if h.strip()]
    t0 = time.perf_counter()
    found = rec.recommend(
        history,
        k=args.k,
        exclude_history=not args.keep_history,
        unknown="raise" if args.strict else "drop",
    )
    elapsed_ms = (time.perf_counter() - t0) * 1e3
    if args.json is not None:
        emit_json(
            {
                "bundle": rec.manifest.name,
                "history": history,
                "latency_ms": elapsed_ms,
                "recommendations": [
                    # metadata first: a catalogue key such as "item_id" cannot mask the result's
                    dict(r.metadata)
                    | {
                        "item_id": r.item_id,
                        "log_prob": r.log_prob,
                        "semantic_id": list(r.semantic_id),
                    }
                    for r in found
                ],
            },
            args.json,
        )
        return 0
    print(f"{rec.manifest.name}: {len(found)} recommendations in {elapsed_ms:.1f} ms")
    for rank, r in enumerate(found, 1):
        title = str(r.metadata.get("title", ""))[:70]
        print(f"{rank:>3}. {r.log_prob:8.3f}  {r.item_id:<12} {title}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pocketrec._evaluate import evaluate_recommender
    from pocketrec._recommender import Recommender
    from pocketrec.distill.data import load_dataset

    rec = Recommender.from_bundle(
        args.bundle,
        providers=_providers(args.providers),
        threads=args.threads,
        trusted_keys=args.trusted_key,
    )
    dataset = load_dataset(args.dataset, root=args.data_root)
    t0 = time.perf_counter()
    metrics = evaluate_recommender(
        rec,
        dataset,
        stage=args.stage,
        beam_width=args.beam_width,
        batch_size=args.batch_size,
        limit=args.limit,
        progress=sys.stderr.isatty(),
        exclude_history=args.exclude_history,
    )
    elapsed = time.perf_counter() - t0
    missing = len({str(i) for i in dataset.item_ids} - set(rec.item_ids))
    record = {
        "bundle": rec.manifest.name,
        "precision": rec.manifest.precision,
        "dataset": dataset.name,
        "stage": args.stage,
        "history_excluded": args.exclude_history,
        "metrics": metrics,
        "providers": list(rec.providers),
        "wall_time_s": round(elapsed, 1),
        "dataset_items_missing_from_bundle": missing,
    }
    if args.json is not None:
        emit_json(record, args.json)
    else:
        print(
            f"{rec.manifest.name} on {dataset.name} {args.stage}"
            f"{' (history window excluded)' if args.exclude_history else ''}: NDCG@10 "
            f"{metrics['ndcg@10']:.4f}, Recall@10 {metrics['recall@10']:.4f} "
            f"({int(metrics['num_users'])} users, {elapsed:.0f} s"
            f"{f'; {missing} dataset items not in the bundle count as misses' if missing else ''})"
        )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pocketrec._demo import serve
    from pocketrec._recommender import Recommender

    rec = Recommender.from_bundle(
        args.bundle, providers=_providers(args.providers), trusted_keys=args.trusted_key
    )
    return serve(rec, host=args.host, port=args.port, open_browser=args.open)


def _verify(args: argparse.Namespace) -> int:
    from pocketrec._bundle import open_bundle
    from pocketrec._errors import SignatureError
    from pocketrec._signing import read_signature

    bundle = open_bundle(args.bundle, trusted_keys=args.trusted_key)
    manifest = bundle.manifest
    signature, problem = None, None
    try:
        signature = read_signature(args.bundle)
    except SignatureError as e:  # with trusted keys open_bundle refused it already
        problem = str(e)
    num_bytes = sum(f.bytes for f in manifest.files.values())
    record = {
        "bundle": manifest.name,
        "version": manifest.version,
        "model": manifest.model_id,
        "precision": manifest.precision,
        "num_items": manifest.num_items,
        "files": len(manifest.files),
        "bytes": num_bytes,
        "providers": list(bundle.providers),
        "signed_by": None if signature is None else signature.key_id,
        "signature_checked": bundle.signed_by is not None,
        "signature_problem": problem,
    }
    if args.json is not None:
        emit_json(record, args.json)
        return 0
    if problem is not None:
        signed = f"signature.json is not usable, so apps that pin keys refuse it ({problem})"
    elif signature is None:
        signed = "unsigned"
    elif bundle.signed_by is not None:
        signed = f"signed by trusted key {bundle.signed_by}"
    else:
        signed = f"signed by key {signature.key_id} (not checked: pass --trusted-key)"
    print(
        f"{manifest.name} version {manifest.version} ({manifest.precision}, model "
        f"{manifest.model_id[:16]}): "
        f"{record['files']} files, {num_bytes / 1e6:.2f} MB, sha256 ok; {signed}; "
        f"{manifest.num_items} items; graphs load on {', '.join(bundle.providers)}"
    )
    return 0
