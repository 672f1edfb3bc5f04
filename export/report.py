"""`pocketrec bench-report`: a device x precision table and plots from `pocketrec bench` records.

    write_report(records, out_dir) -> [written files]

- `bench_table.md`: one row per precision, one latency column per device (p50 / p90 of
  `recommend(k=10)`: milliseconds of wall time, or millions of HTP cycles on the simulator),
  with the bundle's size and its quality as recorded in the manifest at export.
- `latency.png`: p50 latency per precision, one panel per device (units differ by device).
- `quality_vs_size.png`: NDCG@10 of the quality probe against the bundle's bytes.

When several records share a device and precision, the most recent one is used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pocketrec._errors import PocketrecError

__all__ = ["load_records", "write_report"]

ORDER = ("fp32", "int8", "int4", "npu")


def _rank(precision: str) -> int:
    return ORDER.index(precision) if precision in ORDER else len(ORDER)


def load_records(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Read `pocketrec-bench/1` records.

    Raises:
        PocketrecError: a file is missing, not JSON, or not a bench record.
    """
    records = []
    for path in paths:
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise PocketrecError(f"cannot read bench record {path}: {e}") from e
        if not isinstance(record, dict) or record.get("format") != "pocketrec-bench/1":
            raise PocketrecError(
                f"{path} is not a pocketrec-bench/1 record (write one with pocketrec bench)"
            )
        records.append(record)
    if not records:
        raise PocketrecError("no bench records given")
    return records


def _device(record: dict[str, Any]) -> str:
    kind = str(record["device"]["kind"])
    threads = record.get("runtime", {}).get("threads")
    if record.get("timing") == "htp_simulator_cycles" or threads is None:
        return kind
    return f"{kind}, {threads} thread{'s' if threads != 1 else ''}"


def _latency(record: dict[str, Any]) -> tuple[float, float, str] | None:
    """(p50, p90, unit) of the end-to-end latency."""
    if record.get("timing") == "htp_simulator_cycles":
        e2e = record["latency_cycles"]["end_to_end"]
        return e2e["p50"] / 1e6, e2e["p90"] / 1e6, "Mcycles"
    if record.get("latency_ms"):
        e2e = record["latency_ms"]["end_to_end"]
        return e2e["p50"], e2e["p90"], "ms"
    return None


def _latest(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: str(r.get("created", ""))):
        chosen[(_device(r), str(r["bundle"]["precision"]))] = r
    return chosen


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def _table(cells: dict[tuple[str, str], dict[str, Any]]) -> str:
    devices = sorted({d for d, _ in cells})
    precisions = sorted({p for _, p in cells}, key=_rank)
    head = ["precision", *[f"{d} p50 / p90" for d in devices], "bundle bytes", "NDCG@10 (of fp32)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in precisions:
        row = [p]
        any_record: dict[str, Any] = {}
        for d in devices:
            r = cells.get((d, p))
            lat = _latency(r) if r else None
            row.append(f"{lat[0]:.3g} / {lat[1]:.3g} {lat[2]}" if lat else "–")
            any_record = any_record or (r or {})
        size = any_record.get("bundle", {}).get("bytes", {})
        row.append(
            f"{_mb(size.get('files_total', 0))} (graphs {_mb(size.get('graphs', 0))}, "
            f"tables {_mb(size.get('tables', 0))})"
            if size
            else "–"
        )
        q = any_record.get("bundle", {}).get("quality") or {}
        row.append(
            f"{q['ndcg@10']:.4f} ({q['ndcg@10_retention']:.1%})"
            if q.get("ndcg@10") is not None
            else "not recorded"
        )
        lines.append("| " + " | ".join(row) + " |")
    notes = [
        "",
        "Latency: `recommend(k=10)` for one history, end to end (ms of wall time), or HTP "
        "cycles counted by the QNN simulator for the graphs alone (Mcycles). Bytes: every file "
        "of the bundle; graphs as loaded by the device. NDCG@10: the bundle's quality probe at "
        "export, through the SDK on its own device, with the share of fp32's on the same users.",
    ]
    machines = sorted(
        {f"{r['device']['kind']}: {r['device']['cpu_model']}" for r in cells.values()}
    )
    notes.append("Machines: " + "; ".join(machines) + ".")
    return "\n".join(lines + notes) + "\n"


def _plots(cells: dict[tuple[str, str], dict[str, Any]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = sorted({d for d, _ in cells})
    fig, axes = plt.subplots(1, len(devices), figsize=(4 * len(devices), 3.5), squeeze=False)
    for ax, device in zip(axes[0], devices, strict=True):
        rows: list[tuple[str, tuple[float, float, str]]] = []
        for (d, p), r in cells.items():
            lat = _latency(r)
            if d == device and lat is not None:
                rows.append((p, lat))
        rows.sort(key=lambda t: _rank(t[0]))
        if not rows:
            ax.set_visible(False)
            continue
        names = [p for p, _ in rows]
        p50 = [lat[0] for _, lat in rows]
        spread = [lat[1] - lat[0] for _, lat in rows]
        ax.bar(names, p50, yerr=[[0] * len(p50), spread], capsize=4, color="#4c72b0")
        ax.set_title(device)
        ax.set_ylabel(f"p50 latency ({rows[0][1][2]}), bar to p90")
    fig.suptitle("recommend(k=10), one history")
    fig.tight_layout()
    latency = out_dir / "latency.png"
    fig.savefig(latency, dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    seen: set[str] = set()
    for (_, precision), r in sorted(cells.items()):
        q = r["bundle"].get("quality") or {}
        size = r["bundle"].get("bytes", {}).get("files_total")
        if precision in seen or q.get("ndcg@10") is None or not size:
            continue
        seen.add(precision)
        ax.scatter(size / 1e6, q["ndcg@10"], color="#dd8452")
        ax.annotate(
            precision, (size / 1e6, q["ndcg@10"]), textcoords="offset points", xytext=(5, 3)
        )
    ax.set_xlabel("bundle size (MB, all files)")
    ax.set_ylabel("NDCG@10 (quality probe)")
    ax.set_title("quality vs size")
    fig.tight_layout()
    quality = out_dir / "quality_vs_size.png"
    fig.savefig(quality, dpi=120)
    plt.close(fig)
    return [latency, quality]


def write_report(records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Write the table and the plots of `records` into `out_dir`; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = _latest(records)
    table = out_dir / "bench_table.md"
    tmp = table.with_suffix(".md.tmp")
    tmp.write_text(_table(cells))
    tmp.replace(table)
    return [table, *_plots(cells, out_dir)]
