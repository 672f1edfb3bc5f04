"""CLI commands of the export side: `export`."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a distilled student to a bundle",
        description="Export the student of a `pocketrec distill` run to ONNX, check the graphs "
        "against torch on real histories (identical top-10, logits within 1e-4), and write a "
        "bundle folder with manifest.json. A failed check leaves any previous bundle intact.",
    )
    p.add_argument("run_dir", type=Path, help="a `pocketrec distill` run folder")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument(
        "--seed", type=int, default=None, help="which student seed (default: best on validation)"
    )
    p.add_argument("--data-root", type=Path, default=None, help="default: $POCKETREC_DATA")
    p.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from pocketrec._cli import require_extra

    require_extra("torch", "export")
    require_extra("onnx", "export")
    from pocketrec.export.bundle import export_bundle

    out = export_bundle(args.run_dir, args.out, seed=args.seed, data_root=args.data_root)
    print(f"bundle written: {out}")
    return 0
