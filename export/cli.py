"""CLI commands of the export side: `export`, `bench`, `bench-report`, `quickstart`, and
`keygen` / `sign` for releasing bundles."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register"]


def _integer(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def _positive(text: str) -> int:
    return _integer(text, 1, "a positive integer")


def _non_negative(text: str) -> int:
    return _integer(text, 0, "an integer >= 0")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a distilled student to bundles (fp32, int8, int4, npu)",
        description="Export the student of a `pocketrec distill` run to ONNX, check the graphs "
        "against torch on real histories (identical top-10, logits within 1e-4), and write a "
        "bundle folder with manifest.json. Without --precision, --out is that fp32 bundle's "
        "folder. With --precision, --out is a root folder that gets one bundle per precision, "
        "OUT/<precision>/, each scored through the SDK on its own device against fp32 on the "
        "same test users and refused below its quality gate (int8 99.5%%, int4 99%%, npu 98%% "
        "of fp32's NDCG@10). A failed check leaves the previous bundle intact.",
    )
    p.add_argument("run_dir", type=Path, help="a `pocketrec distill` run folder")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="bundle folder (no --precision) or root of OUT/<precision>/ bundles",
    )
    p.add_argument(
        "--precision",
        default=None,
        metavar="LIST",
        help="comma-separated precisions among fp32,int8,int4,npu (npu needs "
        "pip install 'pocketrec[npu]')",
    )
    p.add_argument(
        "--quality-users",
        type=_positive,
        default=2000,
        metavar="N",
        help="evenly spaced test users of the quality gate (default 2000)",
    )
    p.add_argument(
        "--quality-full", action="store_true", help="score the quality gate on every test user"
    )
    p.add_argument(
        "--min-retention",
        default="",
        metavar="GATES",
        help="override quality gates as shares of fp32's NDCG@10, e.g. int8=0.99,npu=0.97 "
        "(small datasets: one test user can move NDCG@10 by a percent or more)",
    )
    p.add_argument(
        "--calibration-windows",
        type=_positive,
        default=256,
        metavar="N",
        help="training windows that calibrate the npu graphs (default 256)",
    )
    p.add_argument(
        "--max-fallback",
        type=int,
        default=3,
        metavar="N",
        help="node groups a quantized bundle may keep at higher precision to pass its quality "
        "gate, most sensitive first (default 3)",
    )
    p.add_argument(
        "--qnn-soc-model",
        default="60",
        metavar="ID",
        help="QNN SoC model the npu graphs are compiled for (default 60, the simulator's)",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="which student seed (default: best on validation)"
    )
    p.add_argument("--data-root", type=Path, default=None, help="default: $POCKETREC_DATA")
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="print (or write) each bundle's folder and measured quality as JSON",
    )
    p.set_defaults(handler=_export)

    b = subparsers.add_parser(
        "bench",
        help="measure a bundle's latency, throughput, memory and size on one device",
        description="Warm up, then time recommend(k) for single histories (p50/p90/p99, end to "
        "end and per stage) and recommend_batch for the throughput; record peak memory, the "
        "bundle's bytes, the machine and runtime versions as a pocketrec-bench/1 JSON record. "
        "On qnn-sim (the Qualcomm HTP simulator of onnxruntime-qnn) the record holds the "
        "simulator's HTP cycle counts instead of wall time.",
    )
    b.add_argument("bundle", type=Path, help="bundle folder (with manifest.json)")
    b.add_argument(
        "--device", choices=("cpu", "cuda", "qnn-sim"), default="cpu", help="default: cpu"
    )
    b.add_argument(
        "--threads",
        type=_positive,
        default=1,
        metavar="N",
        help="intra-op threads per session (default 1, a phone's single core)",
    )
    b.add_argument(
        "--batch", type=_positive, default=64, metavar="B", help="histories per throughput call"
    )
    b.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="W",
        help="also measure the throughput of W concurrent recommend_batch callers on one "
        "Recommender (a CPU server: one caller per core with --threads 1)",
    )
    b.add_argument(
        "--repetitions", type=_positive, default=300, metavar="R", help="timed single calls"
    )
    b.add_argument(
        "--warmup", type=_non_negative, default=30, metavar="W", help="untimed calls first"
    )
    b.add_argument("--k", type=_positive, default=10, help="items per recommendation")
    b.add_argument("--seed", type=int, default=0, help="seed of the sampled histories")
    b.add_argument("--json", type=Path, metavar="OUT", help="write the record here")
    b.set_defaults(handler=_bench)

    r = subparsers.add_parser(
        "bench-report",
        help="a device x precision table and plots from bench records",
        description="Read pocketrec-bench/1 records and write bench_table.md (latency per "
        "device and precision, size, quality at export), latency.png and quality_vs_size.png.",
    )
    r.add_argument("records", type=Path, nargs="+", metavar="BENCH_JSON", help="bench records")
    r.add_argument("--out", type=Path, required=True, help="folder for the table and plots")
    r.add_argument("--json", action="store_true", help="print the written paths as JSON")
    r.set_defaults(handler=_bench_report)

    q = subparsers.add_parser(
        "quickstart",
        help="the main job: semantic IDs, teacher, student, every precision, bench, report",
        description="Build semantic IDs, train the teacher and distill the student (--preset), "
        "export every precision this machine can produce, score each bundle through the SDK "
        "on every test user, benchmark it on every device class here, and write "
        "OUT/report.md with PNG plots and OUT/summary.json. A rerun reuses finished stages; "
        "a stage whose inputs changed is refused unless --force, which rebuilds it and the "
        "stages after it.",
    )
    q.add_argument("dataset", nargs="?", default="beauty", help="default: beauty")
    q.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="run folder")
    q.add_argument(
        "--preset",
        choices=("quick", "smoke", "full"),
        default="quick",
        help="distill preset: quick (minutes on 2 CPU cores), smoke (seconds), full",
    )
    q.add_argument(
        "--precision",
        default=None,
        metavar="LIST",
        help="precisions to export (default: fp32,int8,int4, plus npu with onnxruntime-qnn)",
    )
    q.add_argument(
        "--quality-users",
        type=_positive,
        default=2000,
        metavar="N",
        help="test users of each precision's quality gate (default 2000)",
    )
    q.add_argument(
        "--max-fallback",
        type=int,
        default=3,
        metavar="N",
        help="node groups a quantized bundle may keep at higher precision (default 3)",
    )
    q.add_argument("--threads", type=_positive, default=None, help="training threads")
    q.add_argument("--force", action="store_true", help="rebuild stages whose inputs changed")
    q.add_argument("--data-root", type=Path, default=None, help="default: $POCKETREC_DATA")
    q.add_argument("--json", type=Path, metavar="OUT", help="also copy summary.json here")
    q.set_defaults(handler=_quickstart)

    kg = subparsers.add_parser(
        "keygen",
        help="make an Ed25519 key pair for signing bundles",
        description="Write signing_key.pem (private, mode 600: keep it with whoever publishes "
        "bundles) and signing_key.pub.pem (public: ship it inside the app and pass it as "
        "trusted_keys / --trusted-key). Never overwrites existing keys. With --encrypt the "
        "private key is encrypted with the password in $POCKETREC_SIGNING_PASSWORD.",
    )
    kg.add_argument("--out", type=Path, required=True, help="folder for the two key files")
    kg.add_argument("--encrypt", action="store_true", help="encrypt the private key")
    kg.add_argument("--json", action="store_true", help="print the key id and paths as JSON")
    kg.set_defaults(handler=_keygen)

    sg = subparsers.add_parser(
        "sign",
        help="sign a bundle so apps that pin your public key accept it",
        description="Check every file of the bundle against its manifest, then write "
        "signature.json: an Ed25519 signature of manifest.json, which lists every file's "
        "sha256. Replaces an older signature. An encrypted key is unlocked with "
        "$POCKETREC_SIGNING_PASSWORD.",
    )
    sg.add_argument("bundles", type=Path, nargs="+", metavar="BUNDLE", help="bundle folders")
    sg.add_argument("--key", type=Path, required=True, help="private key (signing_key.pem)")
    sg.add_argument("--json", action="store_true", help="print the signature records as JSON")
    sg.set_defaults(handler=_sign)


def _export(args: argparse.Namespace) -> int:
    from pocketrec._cli import emit_json, require_extra

    require_extra("torch", "export")
    require_extra("onnx", "export")
    if args.precision is None:
        from pocketrec._errors import ConfigError
        from pocketrec.export.bundle import export_bundle

        defaults = {"quality_users": 2000, "quality_full": False, "min_retention": ""}
        defaults.update({"calibration_windows": 256, "qnn_soc_model": "60", "max_fallback": 3})
        ignored = [f"--{k.replace('_', '-')}" for k, v in defaults.items() if getattr(args, k) != v]
        if ignored:
            raise ConfigError(
                f"options that apply only with --precision were given: {', '.join(ignored)}; "
                "add --precision (e.g. fp32,int8,int4,npu) or leave them out",
                where="export options",
            )

        out = export_bundle(args.run_dir, args.out, seed=args.seed, data_root=args.data_root)
        if args.json is not None:
            emit_json({"fp32": {"bundle": str(out)}}, args.json)
        else:
            print(f"bundle written: {out}")
        return 0
    from pocketrec.export.config import PrecisionConfig, parse_precisions, parse_retention
    from pocketrec.export.precisions import export_precisions

    cfg = PrecisionConfig(
        precisions=parse_precisions(args.precision),
        quality_users=None if args.quality_full else args.quality_users,
        calibration_windows=args.calibration_windows,
        max_fallback_rounds=args.max_fallback,
        required_retention=parse_retention(args.min_retention),
        qnn_soc_model=args.qnn_soc_model,
        seed=args.seed,
        data_root=args.data_root,
    )
    written = export_precisions(
        args.run_dir, args.out, cfg, log=lambda line: print(line, file=sys.stderr, flush=True)
    )
    summary = {}
    for precision, folder in written.items():
        quality = json.loads((folder / "manifest.json").read_text())["quality"]
        summary[precision] = {"bundle": str(folder), "quality": quality}
        if args.json is None:
            print(
                f"{precision:>5}: {folder}  NDCG@10 {quality['metrics']['ndcg@10']:.4f} "
                f"({quality['ndcg@10_retention']:.2%} of fp32 on {quality['users']} test users)"
            )
    if args.json is not None:
        emit_json(summary, args.json)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from pocketrec.distill.runinfo import write_json
    from pocketrec.export.bench import BenchConfig, bench_bundle

    record = bench_bundle(
        BenchConfig(
            bundle=str(args.bundle),
            device=args.device,
            threads=args.threads,
            batch=args.batch,
            workers=args.workers,
            k=args.k,
            warmup=args.warmup,
            repetitions=args.repetitions,
            seed=args.seed,
        )
    )
    if args.json is not None:
        write_json(args.json, record)
    if record["timing"] == "htp_simulator_cycles":
        e2e = record["latency_cycles"]["end_to_end"]
        summary = f"p50 {e2e['p50'] / 1e6:.3f} / p90 {e2e['p90'] / 1e6:.3f} Mcycles (HTP simulator)"
    else:
        e2e = record["latency_ms"]["end_to_end"]
        summary = (
            f"p50 {e2e['p50']:.2f} / p90 {e2e['p90']:.2f} / p99 {e2e['p99']:.2f} ms, "
            f"{record['throughput_per_s']:.0f} recommendations/s at batch {args.batch}"
        )
        if record["concurrent_throughput"]:
            summary += (
                f", {record['concurrent_throughput']['throughput_per_s']:.0f}/s with "
                f"{args.workers} concurrent callers"
            )
    print(f"{record['bundle']['name']} on {args.device}: {summary}")
    return 0


def _bench_report(args: argparse.Namespace) -> int:
    from pocketrec._cli import emit_json, require_extra

    require_extra("matplotlib", "export")
    from pocketrec.export.report import load_records, write_report

    written = write_report(load_records(args.records), args.out)
    if args.json:
        emit_json([str(p) for p in written], "-")
    else:
        for path in written:
            print(f"written: {path}")
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from pocketrec._cli import require_extra

    require_extra("torch", "distill")
    require_extra("onnx", "export")
    require_extra("matplotlib", "export")
    from pocketrec.distill.runinfo import write_json
    from pocketrec.export.config import parse_precisions
    from pocketrec.export.quickstart import QuickstartConfig, run_quickstart
    from pocketrec.export.quickstart_report import summary_table

    cfg = QuickstartConfig(
        dataset=args.dataset,
        preset=args.preset,
        precisions=parse_precisions(args.precision) if args.precision else None,
        quality_users=args.quality_users,
        max_fallback_rounds=args.max_fallback,
        threads=args.threads,
        data_root=args.data_root,
    )
    summary = run_quickstart(
        cfg, args.out, force=args.force, log=lambda line: print(line, file=sys.stderr, flush=True)
    )
    print(summary_table(summary))
    print(f"report: {args.out / 'report.md'} ({summary['wall_time_s']:.0f} s)")
    if args.json is not None:
        write_json(args.json, summary)
    return 0


def _keygen(args: argparse.Namespace) -> int:
    import os

    from pocketrec._cli import emit_json, require_extra
    from pocketrec._errors import ConfigError

    require_extra("cryptography", "signing")
    from pocketrec.export.sign import PASSWORD_ENV, generate_key_pair

    password = os.environ.get(PASSWORD_ENV) if args.encrypt else None
    if args.encrypt and not password:
        raise ConfigError(
            f"--encrypt needs the password in ${PASSWORD_ENV}", where="keygen options"
        )
    private, public, kid = generate_key_pair(args.out, password=password)
    if args.json:
        emit_json({"key_id": kid, "private": str(private), "public": str(public)}, "-")
    else:
        print(
            f"key {kid}: private {private} (keep it secret), public {public} (ship it in the app)"
        )
    return 0


def _sign(args: argparse.Namespace) -> int:
    from pocketrec._cli import emit_json, require_extra

    require_extra("cryptography", "signing")
    from pocketrec.export.sign import sign_bundle

    records = {}
    for bundle in args.bundles:
        records[str(bundle)] = record = sign_bundle(bundle, args.key)
        if not args.json:
            print(f"{bundle}: signed by key {record['key_id']}")
    if args.json:
        emit_json(records, "-")
    return 0
