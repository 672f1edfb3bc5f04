"""The quickstart's report: `report.md` with tables and PNG plots of quality, size and speed.

    write_quickstart_report(summary, out_dir) -> [written files]

Quality sits beside the published numbers of `pocketrec.distill.references`. Latency and size
come from the bench records (`pocketrec.export.report` draws those plots). Plots use
matplotlib: the one plotting library the export extra already installs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from pocketrec.distill.references import PUBLISHED
from pocketrec.export.report import write_report

__all__ = ["QualityRow", "quality_rows", "summary_table", "write_quickstart_report"]


class QualityRow(NamedTuple):
    """One row of the quality table."""

    name: str
    ndcg: float  # test NDCG@10
    recall: float | None  # test Recall@10
    source: str  # "this run" or "published (...)"
    precision: str | None = None  # the bundle's precision, for bundle rows


def quality_rows(summary: dict[str, Any]) -> list[QualityRow]:
    """Test NDCG@10 and Recall@10 of every model, ours first, then the published ones."""
    m = summary["distill"]
    rows = [
        QualityRow(
            "teacher (torch)",
            m["teacher"]["test"]["ndcg@10"],
            m["teacher"]["test"]["recall@10"],
            "this run",
        )
    ]
    for key, name in (
        ("student", "student, distilled (torch)"),
        ("student_nokd", "student, no teacher (torch)"),
    ):
        if m.get(key):
            test = m[key]["test"]
            rows.append(
                QualityRow(name, test["ndcg@10"]["mean"], test["recall@10"]["mean"], "this run")
            )
    for precision, record in summary.get("sdk_eval", {}).items():
        metrics = record["metrics"]
        rows.append(
            QualityRow(
                f"bundle {precision} (SDK, every test user)",
                metrics["ndcg@10"],
                metrics["recall@10"],
                "this run",
                precision,
            )
        )
    for precision, bundle in summary.get("bundles", {}).items():
        quality = bundle.get("quality") or {}
        if precision not in summary.get("sdk_eval", {}) and quality.get("metrics"):
            fp32 = quality.get("fp32_metrics", {}).get("ndcg@10")
            same_users = f"; fp32 {fp32:.4f} on them" if fp32 is not None else ""
            rows.append(
                QualityRow(
                    f"bundle {precision} (SDK, {quality['users']} gate users{same_users})",
                    quality["metrics"]["ndcg@10"],
                    quality["metrics"].get("recall@10"),
                    "this run",
                    precision,
                )
            )
    for name, values, source in PUBLISHED.get(summary["dataset"], []):
        if "ndcg@10" in values:
            rows.append(
                QualityRow(
                    name, values["ndcg@10"], values.get("recall@10"), f"published ({source})"
                )
            )
    return rows


def summary_table(summary: dict[str, Any]) -> str:
    """The markdown table the quickstart prints at the end."""
    lines = ["| model | test NDCG@10 | test Recall@10 | source |", "|---|---|---|---|"]
    for name, ndcg, recall, source, _ in quality_rows(summary):
        recall_text = f"{recall:.4f}" if recall is not None else "–"
        lines.append(f"| {name} | {ndcg:.4f} | {recall_text} | {source} |")
    return "\n".join(lines) + "\n"


def _size_table(summary: dict[str, Any]) -> str:
    m = summary["distill"]
    lines = ["| what | parameters | bytes on disk |", "|---|---|---|"]
    lines.append(f"| teacher | {m['teacher']['parameters']:,} | – |")
    lines.append(f"| student | {m['student']['parameters']:,} | – |")
    for precision, bundle in summary.get("bundles", {}).items():
        lines.append(f"| bundle {precision} (every file) | – | {bundle['bytes_total']:,} |")
    return "\n".join(lines) + "\n"


def _quality_plot(summary: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = quality_rows(summary)
    names = [r.name for r in rows]
    values = [r.ndcg for r in rows]
    colors = ["#4c72b0" if r.source == "this run" else "#bbbbbb" for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    ax.barh(names[::-1], values[::-1], color=colors[::-1])
    for y, v in enumerate(values[::-1]):
        ax.text(v, y, f" {v:.4f}", va="center", fontsize=8)
    ax.set_xlabel("test NDCG@10 (leave-one-out, full catalogue)")
    ax.set_title(f"{summary['dataset']}: this run (blue), published (grey)", fontsize=10)
    ax.set_xlim(0, max(values) * 1.2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_quickstart_report(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write `report.md` and its plots into `out_dir`; returns the files written."""
    bench_records = list(summary.get("bench", {}).values())
    written = write_report(bench_records, out_dir) if bench_records else []
    written.append(_quality_plot(summary, out_dir / "quality.png"))
    m = summary["distill"]
    student, plain = m["student"]["test"]["ndcg@10"]["mean"], None
    if m.get("student_nokd"):
        plain = m["student_nokd"]["test"]["ndcg@10"]["mean"]
    bench_table = (out_dir / "bench_table.md").read_text() if bench_records else "no bench run\n"
    errors = summary.get("export_errors") or {}
    lines = [
        f"# {summary['what']}",
        "",
        f"Machine: {summary['machine'].get('cpu_model', '')} "
        f"({summary['machine'].get('cpu_count')} cores). Stage times, each when it last ran: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in summary["stage_wall_time_s"].items())
        + f" (total {sum(summary['stage_wall_time_s'].values()):.0f} s); this call took "
        f"{summary['wall_time_s']:.0f} s.",
        "",
        f"Command: `{summary['command']}` (git {summary['git_commit'] or 'unknown'}).",
        "",
        "## Quality",
        "",
        "Test split, leave-one-out, ranked against the full catalogue; torch numbers are the "
        "distillation run's own evaluation, bundle numbers come through the SDK (numpy + "
        "onnxruntime), published numbers use the same protocol.",
        "",
        summary_table(summary),
        f"Distillation: the student keeps {student / m['teacher']['test']['ndcg@10']:.0%} of the "
        f"teacher's NDCG@10 at {m['size_ratio_teacher_over_student']:.1f}x fewer parameters"
        + (
            f"; without the teacher the same student reaches {plain:.4f} ({student - plain:+.4f})."
            if plain is not None
            else "."
        ),
        "",
        "![quality](quality.png)",
        "",
        "## Size",
        "",
        _size_table(summary),
        "## Speed",
        "",
        bench_table,
        *(
            ["![latency](latency.png)", "", "![quality vs size](quality_vs_size.png)", ""]
            if bench_records
            else []
        ),
    ]
    if errors:
        lines += ["## Precisions not produced", "", "```", errors.get("failed", ""), "```", ""]
    report = out_dir / "report.md"
    tmp = report.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(report)
    return [report, *written]
