"""Render the tables in benchmarks/README.md from the JSON records in benchmarks/results/.

    python benchmarks/render.py          # rewrite the tables in place
    python benchmarks/render.py --check  # exit 1 if README.md is out of date (run by the tests)

Each table sits between `<!-- table:NAME -->` and `<!-- /table:NAME -->` markers; the text
around them is written by hand. Published numbers come from `pocketrec.distill.references`.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pocketrec.distill.references import PUBLISHED

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"

DATASET_ORDER = ["beauty", "sports", "ml-1m"]


def _fmt(summary: dict[str, Any], key: str) -> str:
    entry = summary.get(key)
    if entry is None:
        return "–"
    if len(entry["values"]) > 1:
        return f"{entry['mean']:.4f} ± {entry['std']:.4f}"
    return f"{entry['mean']:.4f}"


def load_results() -> list[dict[str, Any]]:
    records = []
    for path in sorted(RESULTS.glob("*.json")):
        record = json.loads(path.read_text())
        record["_file"] = path.name
        records.append(record)
    return records


def baseline_table(records: list[dict[str, Any]]) -> str:
    rows = [
        "| dataset | model | Recall@10 | NDCG@10 | Recall@5 | NDCG@5 | seeds | history | record |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ours = [r for r in records if r.get("model") == "sasrec"]
    ours.sort(key=_dataset_rank)
    # The same models scored the way HSTU's evaluation does (benchmarks/history_excluded.py).
    excluded = {r["dataset"]: r for r in _history_excluded(records, "baseline")}
    for record in ours:
        variants = [
            (record, "test_refit", "refit on train + valid"),
            (record, "test", "train only"),
        ]
        if record["dataset"] in excluded:
            also = excluded[record["dataset"]]
            how = "history window excluded from the ranking, as HSTU evaluates"
            variants += [
                (also, "test_refit_history_excluded", f"refit on train + valid; {how}"),
                (also, "test_history_excluded", f"train only; {how}"),
            ]
        for source_record, key, how in variants:
            if key not in source_record:
                continue
            test = source_record[key]
            rows.append(
                f"| {record['dataset']} | **pocketrec SASRec ({record['config']['loss']}, {how})** "
                f"| {_fmt(test, 'recall@10')} | {_fmt(test, 'ndcg@10')} | {_fmt(test, 'recall@5')} "
                f"| {_fmt(test, 'ndcg@5')} | {len(source_record['seeds'])} | "
                f"{record['split']['history_len']} | "
                f"[{source_record['_file']}](results/{source_record['_file']}) |"
            )
        for name, values, source in PUBLISHED.get(record["dataset"], []):
            keys = ("recall@10", "ndcg@10", "recall@5", "ndcg@5")
            cells = " | ".join(f"{values[k]:.4f}" if k in values else "–" for k in keys)
            rows.append(
                f"| {record['dataset']} | {name} (published) | {cells} | – | – | {source} |"
            )
    return "\n".join(rows)


def _history_excluded(records: list[dict[str, Any]], runs_of: str) -> list[dict[str, Any]]:
    """Records of benchmarks/history_excluded.py for baseline or distill runs."""
    return [r for r in records if r.get("kind") == "history_excluded" and r["runs_of"] == runs_of]


def _dataset_rank(record: dict[str, Any]) -> int:
    name = record.get("dataset", "")
    return DATASET_ORDER.index(name) if name in DATASET_ORDER else len(DATASET_ORDER)


def sids_table(records: list[dict[str, Any]]) -> str:
    rows = [
        "| dataset | source | method | collisions before the collision level | codes used per "
        "level | perplexity per level | unique IDs | same leaf category, same level-1 code "
        "(random assignment) | end to end | record |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ours = [r for r in records if "unique_semantic_ids" in r]
    ours.sort(key=lambda r: (_dataset_rank(r), r["embedding"]["source"], r["method"]))
    for r in ours:
        levels = r["levels"]
        used = " / ".join(f"{lv['utilization']:.0%}" for lv in levels)
        perplexity = " / ".join(f"{lv['perplexity']:.0f}" for lv in levels)
        agreement = r.get("leaf_category_agreement")
        meaning = (
            f"{agreement['same_level1_code']:.3f} ({agreement['random_assignment']:.3f})"
            if agreement
            else "– (no categories)"
        )
        rows.append(
            f"| {r['dataset']} | {r['embedding']['source']} | {r['method']} | "
            f"{r['collision_rate']:.2%} | {used} | {perplexity} | "
            f"{r['unique_semantic_ids']:,} / {r['num_items']:,} | {meaning} | "
            f"{r.get('end_to_end_s', r['wall_time_s']):.0f} s | "
            f"[{r['_file']}](results/{r['_file']}) |"
        )
    return "\n".join(rows)


def sid_downstream_table(records: list[dict[str, Any]]) -> str:
    rows = [
        "| dataset | semantic IDs | student valid NDCG@10 | student test NDCG@10 | best epoch "
        "| chosen | record |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted((r for r in records if r.get("kind") == "sid_downstream"), key=_dataset_rank):
        for run in r["runs"]:
            chosen = "**yes**" if run["method"] == r["chosen_on_validation"] else ""
            rows.append(
                f"| {r['dataset']} | {run['source']}, {run['method']} | "
                f"{run['valid']['ndcg@10']:.4f} | {run['test']['ndcg@10']:.4f} | "
                f"{run['best_epoch']} | {chosen} | [{r['_file']}](results/{r['_file']}) |"
            )
    return "\n".join(rows)


def _cell(summary: dict[str, Any] | None, key: str) -> str:
    """A metric from a per-model block: a mean ± std summary or a plain number."""
    if not summary:
        return "–"
    value = summary.get(key)
    if isinstance(value, dict):
        return _fmt(summary, key)
    return "–" if value is None else f"{value:.4f}"


def _plain(record: dict[str, Any], kind: str) -> dict[str, Any]:
    """A distill record's plain test metrics of one model, as a seed summary or numbers."""
    test = record[kind]["test"]
    return {k: v["mean"] if isinstance(v, dict) else v for k, v in test.items()}


# Command-line settings that change what a preset trains; a record made with them names them.
OVERRIDES = (
    "--epochs",
    "--precision",
    "--teacher-members",
    "--teacher-hidden",
    "--teacher-dropout",
    "--teacher-weight-decay",
    "--kd-exclude-history",
    "--kd-weight",
    "--kd-temperature",
    "--seeds",
    "--no-ablation",
)


SWITCHES = ("--no-ablation", "--kd-exclude-history")  # overrides that take no value


def _preset_label(record: dict[str, Any]) -> str:
    """`full`, or `full (--epochs 12, ...)` for a record whose command changed the preset."""
    words = shlex.split(record.get("command", ""))
    changed = [
        " ".join(words[i : i + (1 if word in SWITCHES else 2)])
        for i, word in enumerate(words)
        if word in OVERRIDES
    ]
    return record["preset"] + (f" ({', '.join(changed)})" if changed else "")


def distill_table(records: list[dict[str, Any]]) -> str:
    rows = [
        "| dataset | preset | model | parameters | Recall@10 | NDCG@10 | Recall@5 | NDCG@5 | "
        "valid-item rate | seeds | record |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ours = [r for r in records if r.get("model") == "pocketrec-distill"]
    ours.sort(key=lambda r: (_dataset_rank(r), r["preset"], _preset_label(r)))
    # The same models scored the way HSTU's evaluation does (benchmarks/history_excluded.py).
    # Paired by dataset and preset label: two runs of one preset with other overrides
    # (`--epochs 12`, `--epochs 16`) each keep their own.
    excluded = {
        (r["dataset"], _preset_label({"command": r["run_command"], "preset": r["preset"]})): r
        for r in _history_excluded(records, "distill")
    }
    for r in ours:
        link = f"[{r['_file']}](results/{r['_file']})"
        label = _preset_label(r)
        nokd = r.get("student_nokd") or {}
        members = r["config"].get("teacher_members", 1)
        teacher = r["teacher"]["kind"] + (f", mean of {members}" if members > 1 else "")
        if r["teacher"].get("features") == "cooccurrence-svd":  # a catalogue without item text
            teacher += "; no item text: co-occurrence item features"
        models = [
            (f"teacher ({teacher})", r["teacher"], r["teacher"]["test"], "–", link),
            ("**student, distilled**", r["student"], r["student"]["test"], None, link),
            ("student, no teacher", nokd, nokd.get("test"), None, link),
        ]
        also = excluded.get((r["dataset"], label))
        if also and any(
            kind in also and abs(_plain(also, kind)["ndcg@10"] - _plain(r, kind)["ndcg@10"]) > 1e-6
            for kind in ("teacher", "student", "student_nokd")
        ):
            raise SystemExit(
                f"{also['_file']} scored models whose plain test scores differ from "
                f"{r['_file']}'s: rescore the run this record describes"
            )
        if also:
            how = "history window excluded from the ranking, as HSTU evaluates"
            models += [
                (
                    f"{name}; {how}",
                    block,
                    also[kind]["test_history_excluded"],
                    seeds if kind == "teacher" else str(len(also[kind]["seeds"])),
                    f"[{also['_file']}](results/{also['_file']})",
                )
                for (name, block, _, seeds, _), kind in zip(
                    models, ("teacher", "student", "student_nokd"), strict=True
                )
                if kind in also
            ]
        for name, block, test, seeds, source in models:
            if not block:
                continue
            rate = _cell(test, "valid_item_rate")
            seeds = seeds or str(len(block.get("seeds", [])))
            rows.append(
                f"| {r['dataset']} | {label} | {name} | {block['parameters']:,} | "
                f"{_cell(test, 'recall@10')} | {_cell(test, 'ndcg@10')} | "
                f"{_cell(test, 'recall@5')} | {_cell(test, 'ndcg@5')} | {rate} | {seeds} | "
                f"{source} |"
            )
        retention = r.get("retention_vs_teacher")
        if r.get("reused"):
            # Stages copied from another run folder: only the models' training time, those
            # stages' included, is the run's cost.
            cost = (
                f"{r['train_time_total_s'] / 60:.1f} min training, "
                f"{_stages(r['reused']['stages'])} from another run"
            )
        elif r.get("resumed"):
            # A resumed run's wall time is its last invocation's; its models' training time
            # is the whole run's cost.
            cost = (
                f"{r['train_time_total_s'] / 60:.1f} min training, in a run invoked "
                f"{len(r['resumed']) + 1} times"
            )
        else:
            cost = f"{r['wall_time_s'] / 60:.1f} min end to end"
        rows.append(
            f"| {r['dataset']} | {label} | student / teacher | "
            f"1 / {r['size_ratio_teacher_over_student']:.1f} | | "
            f"{'–' if retention is None else f'{retention:.1%}'} NDCG@10 kept | | | | | "
            f"{cost} |"
        )
        for name, values, source in PUBLISHED.get(r["dataset"], []):
            keys = ("recall@10", "ndcg@10", "recall@5", "ndcg@5")
            cells = " | ".join(f"{values[k]:.4f}" if k in values else "–" for k in keys)
            rows.append(f"| {r['dataset']} | | {name} (published) | | {cells} | | | {source} |")
    return "\n".join(rows)


def quickstart_table(records: list[dict[str, Any]]) -> str:
    from pocketrec.export.quickstart_report import quality_rows

    rows = [
        "| dataset | preset | model | test NDCG@10 | test Recall@10 | CPU p50, 1 thread | "
        "bundle bytes | record |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted((r for r in records if r.get("kind") == "quickstart"), key=_dataset_rank):
        link = f"[{r['_file']}](results/{r['_file']})"
        for name, ndcg, recall, source, precision in quality_rows(r):
            if source != "this run":
                continue
            bench = r["bench"].get(f"{precision}-cpu", {}) if precision else {}
            p50 = bench.get("latency_ms", {}).get("end_to_end", {}).get("p50")
            size = r["bundles"][precision]["bytes_total"] if precision else None
            rows.append(
                f"| {r['dataset']} | {r['preset']} | {name} | {ndcg:.4f} | "
                f"{'–' if recall is None else f'{recall:.4f}'} | "
                f"{'–' if p50 is None else f'{p50:.2f} ms'} | "
                f"{'–' if size is None else f'{size / 1e6:.2f} MB'} | {link} |"
            )
        total = sum(r["stage_wall_time_s"].values())
        stages = ", ".join(f"{k} {v / 60:.1f}" for k, v in r["stage_wall_time_s"].items())
        rows.append(
            f"| {r['dataset']} | {r['preset']} | end to end, "
            f"{r['machine'].get('cpu_count')} cores | {total / 60:.1f} min ({stages}) | | | | |"
        )
    return "\n".join(rows)


def bench_table(records: list[dict[str, Any]]) -> str:
    """`pocketrec bench` records: one row per bundle and device, wall-clock timing only."""
    rows = [
        "| dataset | precision | device | ORT threads | recommend p50 / p90 (k=10) | "
        "time inside ONNX Runtime | batch 64, 1 caller | batch 64, concurrent callers | "
        "student graphs w/o catalogue tables | search graph | record |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    bench = [
        r
        for r in records
        if r.get("format") == "pocketrec-bench/1" and r.get("timing") == "wall_clock"
    ]
    for r in sorted(bench, key=lambda r: (r["bundle"]["name"], r["device"]["kind"])):
        dataset = r["bundle"]["name"].split("-student")[0]
        e2e = r["latency_ms"]["end_to_end"]
        sizes = r["bundle"]["bytes"]
        # records before the per-graph split subtracted the search graph's tables as well
        own = sizes.get("student_graphs_without_catalogue_tables")
        if own is None:
            own = sizes["graphs_without_catalogue_tables"] - sizes.get("search_graph", 0)
        search = sizes.get("search_graph", 0)
        concurrent = r.get("concurrent_throughput")
        rows.append(
            f"| {dataset} | {r['bundle']['precision']} | {r['device']['kind']} "
            f"({r['device']['cores']} cores) | {r['runtime']['threads']} | "
            f"{e2e['p50']:.2f} / {e2e['p90']:.2f} ms | "
            f"{r['time_in_onnxruntime_share']:.0%} | {r['throughput_per_s']:,.0f}/s | "
            + (
                f"{concurrent['throughput_per_s']:,.0f}/s ({concurrent['workers']} callers x "
                f"{concurrent['intra_op_threads']} thread) | "
                if concurrent
                else "– | "
            )
            + f"{own / 1e6:.2f} MB | {f'{search / 1e6:.2f} MB' if search else '–'} | "
            f"[{r['_file']}](results/{r['_file']}) |"
        )
    return "\n".join(rows)


def _ci(interval: dict[str, float]) -> str:
    return f"{interval['diff']:+.4f} [{interval['lo']:+.4f}, {interval['hi']:+.4f}]"


def _stages(stages: list[str]) -> str:
    """Copied run-folder stages, seeds of one stage together: "teacher, student_nokd seeds 0, 1"."""
    seeds: dict[str, list[str]] = {}
    for stage in stages:
        name, _, seed = stage.partition("/seed_")
        seeds.setdefault(name, []).append(seed)
    return ", ".join(
        name
        if seeds[name] == [""]
        else f"{name} seed{'s' * (len(seeds[name]) > 1)} {', '.join(seeds[name])}"
        for name in seeds
    )


def personalize_table(records: list[dict[str, Any]]) -> str:
    rows = [
        "| dataset | adapter | events before test | users scored / all | shared NDCG@10 | "
        "adapted NDCG@10 | NDCG@10 difference [95% CI] | Recall@10 difference [95% CI] | "
        "verdict | fit p50 / p90, 1 thread | record |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    personalized = [r for r in records if r.get("kind") == "personalize"]
    # Records of one dataset and user set that scored different bundles: the rows name them.
    # Bundles are told apart by path; a bundle rebuilt at the same path must score the same
    # (the README says where one was).
    bundles: dict[tuple[str, str | None], set[str]] = {}
    for r in personalized:
        bundles.setdefault((r["dataset"], r.get("scored_users")), set()).add(r["bundle"])
    for r in sorted(personalized, key=_dataset_rank):
        link = f"[{r['_file']}](results/{r['_file']})"
        test = r["test"]
        if len(bundles[(r["dataset"], r.get("scored_users"))]) > 1:
            r = r | {"dataset": f"{r['dataset']} (bundle {r['bundle']})"}
        if r.get("scored_users", "every evaluated user") != "every evaluated user":
            r = r | {"dataset": f"{r['dataset']} (users not trained on)"}
        if r.get("ranking", "").startswith("every event the device holds"):
            r = r | {"dataset": f"{r['dataset']}, device's events left out of both rankings"}
        # Records made before state shifts existed fitted the free code bias.
        form = str(r.get("adapter_form", "free code bias")).split(":")[0]
        form += f", last {r['selection']['chosen']['max_events']} events"
        if r["selection"]["chosen"].get("holdout"):
            form += f", kept if it predicts the last {r['selection']['chosen']['holdout']} events"
        for g in test["groups"]:
            if "diff" not in g:
                rows.append(
                    f"| {r['dataset']} | {form} | {g['group']} | 0 / {g['users_total']:,} |"
                    + " |" * 6
                    + f" {link} |"
                )
                continue
            fit = g["fit_ms"]
            times = (
                f"{fit['p50']:.0f} / {fit['p90']:.0f} ms" if fit["fitted_users"] else "not fitted"
            )
            # Records that count them say how many users got a non-zero adapter.
            adapted = f" ({g['users_adapted']:,} adapted)" if "users_adapted" in g else ""
            rows.append(
                f"| {r['dataset']} | {form} | {g['group']} | {g['users_scored']:,} / "
                f"{g['users_total']:,}{adapted} | "
                f"{g['shared']['ndcg@10']:.4f} | {g['adapted']['ndcg@10']:.4f} | "
                f"{_ci(g['diff']['ndcg@10'])} | {_ci(g['diff']['recall@10'])} | {g['verdict']} | "
                f"{times} | {link} |"
            )
        pop, fit, chosen = test["population_diff"], test["fit_ms"], r["selection"]["chosen"]
        times = f"{fit['p50']:.0f} / {fit['p90']:.0f} ms" if fit["fitted_users"] else "–"
        rows.append(
            f"| {r['dataset']} | {form} | all (weighted by group size) | "
            f"{r['sampling']['test_users']:,} / {sum(r['groups']['users_total']):,} | | | "
            f"{_ci(pop['ndcg@10'])} | {_ci(pop['recall@10'])} | | {times} | "
            f"l2={chosen['l2']:g}, min_events={chosen['min_events']}, steps={chosen['steps']}, "
            f"lr={chosen['lr']:g} (chosen on validation) |"
        )
    return "\n".join(rows)


def _clean_twin(r: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run with the same aggregator and privacy settings and no attackers."""
    same = ("aggregator", "noise_multiplier", "clip_norm", "num_rounds", "seed", "bundle")
    for other in runs:
        cfg = other["config"]
        if cfg["malicious_fraction"] == 0 and all(cfg[k] == r["config"][k] for k in same):
            return other
    return None


def federated_table(records: list[dict[str, Any]]) -> str:
    rows = [
        "| dataset | aggregator | device noise × clip | attackers | rounds | held-out valid "
        "NDCG@10, round 0 → last (best) | vs clean twin | held-out test NDCG@10 before → after "
        "| epsilon, last round (local / central) | rejected uploads | upload bytes, max | record |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    runs = [r for r in records if str(r.get("what", "")).startswith("federated personalization")]
    order = {"fedavg": 0, "median": 1, "trimmed": 2}

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        c = r["config"]
        attack = "" if c["malicious_fraction"] == 0 else c["attack"]
        return (
            _dataset_rank({"dataset": c["dataset"]}),
            order.get(c["aggregator"], 9),
            c["noise_multiplier"],
            attack,
        )

    for r in sorted(runs, key=key):
        c, rounds, final = r["config"], r["rounds"], r["final"]
        valid = [x["valid"]["ndcg@10"] for x in rounds]
        attack = (
            "none"
            if c["malicious_fraction"] == 0
            else f"{c['malicious_fraction']:.0%} {c['attack']} ×{c['attack_scale']:g}"
        )
        twin = _clean_twin(r, runs) if c["malicious_fraction"] else None
        vs = "–"
        if twin is not None:
            clean = twin["rounds"][-1]["valid"]["ndcg@10"]
            vs = f"{valid[-1] / clean - 1:+.1%}"
        after = final.get("test_after")
        test = f"{final['test_before']['ndcg@10']:.4f} → " + (
            f"{after['ndcg@10']:.4f}" if after else "no new version"
        )
        eps = rounds[-1]["epsilon"]
        local = eps["local"] if isinstance(eps["local"], str) else f"{eps['local']:.3g}"
        central = (
            "–"
            if eps["central"] is None
            else (eps["central"] if isinstance(eps["central"], str) else f"{eps['central']:.3g}")
        )
        rejected: dict[str, int] = {}
        for x in rounds[1:]:
            for reason, n in x["rejected"].items():
                rejected[reason] = rejected.get(reason, 0) + n
        uploads = sum(x["uploads"] for x in rounds[1:])
        rej = ", ".join(f"{k} {v}" for k, v in sorted(rejected.items())) or "none"
        size = max(x["upload_bytes"]["per_upload_max"] for x in rounds[1:])
        rows.append(
            f"| {c['dataset']} | {c['aggregator']} | "
            f"{c['noise_multiplier']:g} × {c['clip_norm']:g} | {attack} | {c['num_rounds']} | "
            f"{valid[0]:.4f} → {valid[-1]:.4f} ({max(valid):.4f}) "
            f"| {vs} | {test} | {local} / {central} | {rej} of {uploads:,} | {size:,} "
            f"| [{r['_file']}](results/{r['_file']}) |"
        )
    return "\n".join(rows)


def noise_control_table(records: list[dict[str, Any]]) -> str:
    rows = [
        "| dataset | run | device noise in its adapter, std per coordinate | held-out valid "
        "NDCG@10: start / run / noise only | held-out test NDCG@10: start / run / noise only "
        "| record |",
        "|---|---|---|---|---|---|",
    ]
    controls = [r for r in records if r.get("kind") == "federated_noise_control"]
    for r in sorted(controls, key=_dataset_rank):
        cells = []
        for stage in ("valid", "test"):
            noise = np.array([d[stage]["ndcg@10"] for d in r["noise_only"]])
            run = r["run_final"][stage]
            after = "–" if run is None else f"{run['ndcg@10']:.4f}"
            cells.append(
                f"{r['start'][stage]['ndcg@10']:.4f} / {after} / "
                f"{noise.mean():.4f} ± {noise.std(ddof=1):.4f} ({len(noise)} draws)"
            )
        rows.append(
            f"| {r['dataset']} | {Path(r['run']).name} | {r['noise_std_per_coordinate']:.3f} | "
            f"{cells[0]} | {cells[1]} | [{r['_file']}](results/{r['_file']}) |"
        )
    return "\n".join(rows)


def lr_probe_table(records: list[dict[str, Any]]) -> str:
    rows = [
        "| dataset | model | width (parameters) | dropout / weight decay | learning rate | epochs "
        "| validation NDCG@10 every 2 epochs | best validation NDCG@10 (all users) | the same, "
        "history window excluded | training time | record |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    kinds = {"pocketrec-student-lr-probe": "student", "pocketrec-teacher-lr-probe": "teacher"}
    probes = [r for r in records if r.get("model") in kinds]
    probes.sort(
        key=lambda r: (
            _dataset_rank(r),
            kinds[r["model"]],
            r[kinds[r["model"]]]["hidden"],
            r[kinds[r["model"]]]["dropout"],
            r[f"{kinds[r['model']]}_train"]["weight_decay"],
            r["epochs"],
        )
    )
    for r in probes:
        kind = kinds[r["model"]]
        width = r[kind]["hidden"]
        regular = f"{r[kind]['dropout']:g} / {r[f'{kind}_train']['weight_decay']:g}"
        for run in r["runs"]:
            curve = " / ".join(f"{c['valid_ndcg@10']:.4f}" for c in run["curve"])
            size = f" ({run['parameters']:,})" if "parameters" in run else ""
            rows.append(
                f"| {r['dataset']} | {kind} | d={width}{size} | {regular} | {run['lr']:g} | "
                f"{r['epochs']} | "
                f"{curve} | "
                f"{run['valid']['ndcg@10']:.4f} (epoch {run['best_epoch']}) | "
                f"{run['valid_history_excluded']['ndcg@10']:.4f} | "
                f"{run['train_time_s'] / 60:.1f} min | [{r['_file']}](results/{r['_file']}) |"
            )
    return "\n".join(rows)


def step_time_table(records: list[dict[str, Any]]) -> str:
    rows = [
        "| dataset | model | width (trainable parameters) | users per step | threads "
        "| fp32 step | bf16 step | fp32 / bf16 | CPU bf16 flags | record |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    timed = sorted(
        (r for r in records if r.get("model") == "pocketrec-train-step-time"), key=_dataset_rank
    )
    for r in timed:
        flags = ", ".join(r["cpu_bf16_flags"]) or "none"
        for name, m in r["models"].items():
            rows.append(
                f"| {r['dataset']} | {name} | d={m['hidden']} ({m['parameters']:,}) | "
                f"{r['batch_users']} | {r['threads']} | {m['step_s']['fp32']:.3f} s | "
                f"{m['step_s']['bf16']:.3f} s | {m['step_s']['fp32'] / m['step_s']['bf16']:.2f}x | "
                f"{flags} | "
                f"[{r['_file']}](results/{r['_file']}) |"
            )
    return "\n".join(rows)


TABLES = {
    "baselines": baseline_table,
    "sids": sids_table,
    "sid_downstream": sid_downstream_table,
    "distill": distill_table,
    "lr_probe": lr_probe_table,
    "step_time": step_time_table,
    "quickstart": quickstart_table,
    "bench": bench_table,
    "personalize": personalize_table,
    "federated": federated_table,
    "federated_noise": noise_control_table,
}


def render(text: str, records: list[dict[str, Any]]) -> str:
    for name, build in TABLES.items():
        pattern = re.compile(rf"(<!-- table:{name} -->\n)(?:.*?\n)?(<!-- /table:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- table:{name} --> block")
        table = build(records)
        text = pattern.sub(lambda m, t=table: m.group(1) + t + "\n" + m.group(2), text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if README.md is stale")
    args = parser.parse_args()
    current = README.read_text()
    updated = render(current, load_results())
    if args.check:
        if updated != current:
            print("benchmarks/README.md is out of date: run python benchmarks/render.py")
            return 1
        return 0
    README.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
