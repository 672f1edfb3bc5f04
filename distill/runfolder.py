"""A run folder's records: its `config.json`, the resume check, and the summary `metrics.json`.

`config.json` names what started the run and every invocation that resumed it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pocketrec._errors import ConfigError
from pocketrec.distill import dist
from pocketrec.distill.data import Dataset
from pocketrec.distill.metrics import summarize_seeds
from pocketrec.distill.presets import DistillConfig
from pocketrec.distill.protocol import Split
from pocketrec.distill.runinfo import (
    command_line,
    git_commit,
    machine_info,
    to_jsonable,
    utc_now,
    write_json,
)

__all__ = ["check_run_dir", "record_invocation", "write_summary"]


def _run_record(cfg: DistillConfig) -> dict[str, Any]:
    return {
        "config": asdict(cfg),
        "command": command_line(),
        "git_commit": git_commit(),
        "machine": machine_info(),
        "created": utc_now(),
    }


def record_invocation(cfg: DistillConfig, run_dir: Path) -> None:
    """Write or extend `run_dir/config.json` for this invocation.

    The first invocation writes the config, command, commit and machine that started the run;
    every later one that resumes it is appended under `resumed`, so the record names them all.

    Args:
        cfg: the config this invocation runs (equal to the folder's; see `check_run_dir`).
        run_dir: the run folder.
    """
    path = run_dir / "config.json"
    record = _run_record(cfg)
    if path.exists():
        resume = {k: record[k] for k in ("command", "git_commit", "machine", "created")}
        record = json.loads(path.read_text())
        record.setdefault("resumed", []).append(resume)
    write_json(path, record)


def _field_defaults(cls: type) -> dict[str, Any]:
    """The JSON form of a dataclass's field defaults (nested dataclasses as their defaults)."""
    defaults = {}
    for f in dataclasses.fields(cls):
        factory = f.default_factory
        value = f.default if factory is dataclasses.MISSING else factory()
        defaults[f.name] = to_jsonable(value)
    return defaults


def _fill_missing(config: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Add to `config`, at every depth, the keys of `defaults` it lacks."""
    for key, value in defaults.items():
        if key not in config:
            config[key] = value
        elif isinstance(value, dict) and isinstance(config[key], dict):
            _fill_missing(config[key], value)


def check_run_dir(cfg: DistillConfig, run_dir: Path, force: bool) -> None:
    """Refuse to mix two configs in one run folder (unless --force starts it over).

    Settings added after the folder was made count as their defaults; `threads` may differ.

    Args:
        cfg: the config this invocation would run.
        run_dir: the run folder (a missing one, or one without `config.json`, passes).
        force: delete a folder holding another config instead of refusing it.

    Raises:
        ConfigError: the folder holds a run with another config and `force` is not set.
    """
    path = run_dir / "config.json"
    if not path.exists():
        return
    # CPU threads change how fast a run goes, not what it computes: a run may resume with others.
    previous = json.loads(path.read_text())["config"]
    # A setting added after the folder was made is absent from it: the run had its default.
    _fill_missing(previous, _field_defaults(DistillConfig))
    current = json.loads(json.dumps(asdict(cfg)))
    previous.pop("threads", None)
    current.pop("threads", None)
    if previous == current:
        return
    if not force:
        changed = sorted(k for k in previous if previous.get(k) != current.get(k))
        raise ConfigError(
            f"{run_dir} holds a run with another config (changed: {', '.join(changed)}); use a "
            "new --out, or --force to delete it and start over",
            where="run folder",
        )
    dist.barrier()  # every rank has read the old config before it goes
    if dist.rank() == 0:
        shutil.rmtree(run_dir)


def _curves(folder: Path, runs: list[dict[str, Any]]) -> list[list[list[float]]]:
    """Each seed's validation curve, in the order of `runs`."""
    return [_curve(folder / f"seed_{r['seed']}") for r in runs]


def _curve(folder: Path) -> list[list[float]]:
    """[epoch, validation NDCG@10] of each validation run a model's log holds (1-based)."""
    log = folder / "log.jsonl"
    if not log.exists():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [[r["epoch"] + 1, r["valid_ndcg@10"]] for r in rows if "valid_ndcg@10" in r]


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ["recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20", "valid_item_rate"]
    if all("history_share@10" in r["test"] for r in runs):  # runs scored before it lack it
        keys.append("history_share@10")
    return {
        "test": summarize_seeds([{k: r["test"][k] for k in keys} for r in runs]),
        "valid": summarize_seeds([{k: r["valid"][k] for k in keys} for r in runs]),
        "parameters": runs[0]["parameters"],
        "train_time_s": summarize_seeds([{"t": r["train_time_s"]} for r in runs])["t"],
        "seeds": [r["seed"] for r in runs],
    }


def write_summary(
    cfg: DistillConfig,
    run_dir: Path,
    dataset: Dataset,
    split: Split,
    teacher: dict[str, Any],
    students: list[dict[str, Any]],
    ablations: list[dict[str, Any]],
    wall: float,
) -> None:
    """Write `metrics.json`: teacher, students (mean ± std over seeds), ablation, provenance.

    Args:
        cfg: the run's config.
        run_dir: the run folder; its `config.json` gives the start and every resume.
        dataset: the dataset the run trained on.
        split: its leave-one-out split (described in the record).
        teacher: the teacher's metrics (test, valid, parameters, training time).
        students, ablations: each seed's `train_genrec` metrics, distilled and without teacher.
        wall: this invocation's wall time in seconds.
    """
    student, teacher_n = _summary(students), teacher["test"]["ndcg@10"]
    started = json.loads((run_dir / "config.json").read_text())
    # Training time of every model, whichever invocation trained it: the whole run's cost
    # even when it was resumed (wall_time_s counts the last invocation only).
    train_time = (teacher.get("train_time_s") or 0.0) + sum(
        r["train_time_s"] for r in [*students, *ablations]
    )
    record: dict[str, Any] = {
        "what": f"distilled generative semantic-ID student on {dataset.name} ({cfg.preset})",
        "model": "pocketrec-distill",
        "dataset": dataset.name,
        "preset": cfg.preset,
        "split": split.describe(cfg.student.max_len),
        "teacher": {
            "kind": cfg.teacher,
            "test": teacher["test"],
            "valid": teacher["valid"],
            "parameters": teacher["parameters"],
            "parameters_trainable": teacher.get("parameters_trainable"),
            "features": teacher.get("features"),
            "train_time_s": teacher.get("train_time_s"),
            # each member's validation curve (one for a single teacher; none for hf:)
            "curves": [
                _curve(folder)
                for folder in (
                    [run_dir / "teacher" / f"member_{i}" for i in range(cfg.teacher_members)]
                    if cfg.teacher_members > 1
                    else [run_dir / "teacher"]
                )
                if (folder / "log.jsonl").exists()
            ],
        },
        "student": {**student, "curves": _curves(run_dir / "student", students)},
        "student_nokd": {
            **_summary(ablations),
            "curves": _curves(run_dir / "student_nokd", ablations),
        }
        if ablations
        else None,
        "retention_vs_teacher": student["test"]["ndcg@10"]["mean"] / teacher_n
        if teacher_n
        else None,
        "size_ratio_teacher_over_student": teacher["parameters"] / student["parameters"],
        "wall_time_s": round(wall, 1),
        "train_time_total_s": round(train_time, 1),
        "config": asdict(cfg),
        "command": command_line(),
        # the code that started the run (a resumed run may finish under a later commit)
        "git_commit": started.get("git_commit"),
        "git_commit_finished": git_commit(),
        "started": started.get("created"),
        "resumed": started.get("resumed", []),
        "machine": machine_info(),
        "finished": utc_now(),
    }
    write_json(run_dir / "metrics.json", record)
