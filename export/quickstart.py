"""The main job in one call: semantic IDs -> teacher -> distilled student -> every precision ->
SDK evaluation -> benchmarks on every device class here -> a report.

    run_quickstart(cfg, out_dir) -> summary

Stages and what each writes under `out_dir`:

| stage | folder | depends on |
|---|---|---|
| distill | `distill/` (semantic IDs, teacher, students, metrics.json) | dataset, preset |
| export | `bundles/<precision>/` | the distill run, precisions, quality users |
| evaluate | `eval/<precision>.json` (every test user, through the SDK) | the bundle |
| bench | `bench/<precision>-<device>.json` | the bundle, bench settings |
| report | `report.md`, `summary.json`, PNG plots | all of the above |

Each finished stage leaves `stage.json` with a fingerprint of its inputs. A rerun skips stages
whose fingerprint still matches and resumes the interrupted one (training resumes from its
last checkpoint). A stage whose inputs changed is refused unless `force=True`, which rebuilds
that stage and everything after it and nothing before it. A stage without `stage.json` never
counts as done, so a run killed by a full disk or Ctrl-C is redone, not trusted. A stage made
by another pocketrec version counts as changed: its code, not only its inputs, made the files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pocketrec._errors import ConfigError
from pocketrec._version import __version__
from pocketrec.distill.runinfo import command_line, git_commit, machine_info, utc_now, write_json

__all__ = ["QuickstartConfig", "available_devices", "run_quickstart"]

Log = Callable[[str], object]


def available_devices() -> list[str]:
    """Device classes `pocketrec bench` can measure on this machine."""
    import onnxruntime as ort

    devices = ["cpu"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        devices.append("cuda")
    from pocketrec.export.bundle import ExportError
    from pocketrec.export.npu import require_qnn

    try:
        require_qnn()
        devices.append("qnn-sim")
    except ExportError:  # no onnxruntime-qnn, or it offers no device: not measured here
        pass
    return devices


@dataclass
class QuickstartConfig:
    """What the quickstart runs; the defaults are the README's `make quickstart`."""

    dataset: str = "beauty"
    preset: str = "quick"  # distill preset: quick (minutes) or smoke (seconds, for CI)
    precisions: tuple[str, ...] | None = None  # None: fp32, int8, int4, and npu when available
    quality_users: int | None = 2000  # test users of each precision's quality gate
    max_fallback_rounds: int = 3  # node groups a quantized bundle may keep precise
    bench_repetitions: int = 300  # timed single calls per CPU/GPU bench
    simulator_repetitions: int = 10  # timed calls on the HTP simulator (seconds each)
    threads: int | None = None  # training threads (None: every core)
    data_root: Path | None = None
    distill_overrides: dict[str, Any] = field(default_factory=dict)  # tests shrink the preset

    def __post_init__(self) -> None:
        if self.preset not in ("quick", "smoke", "full"):
            raise ConfigError(
                f"preset must be quick, smoke or full, got {self.preset!r}", where="--preset"
            )


def _fingerprint(inputs: dict[str, Any]) -> str:
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Stages:
    """Skip finished stages, refuse or rebuild stale ones, never trust half-written ones."""

    def __init__(self, force: bool, log: Log) -> None:
        self.force, self.log = force, log
        self.rebuilt = False  # once a stage is rebuilt, later ones are stale too

    def run(self, name: str, folder: Path, inputs: dict[str, Any], work: Callable[[], None]) -> str:
        marker = folder / "stage.json"
        fingerprint = _fingerprint(inputs)
        if marker.exists():
            done = json.loads(marker.read_text())
            version = done.get("pocketrec", "(not recorded)")  # older markers: other code
            if done["fingerprint"] == fingerprint and version == __version__ and not self.rebuilt:
                self.log(f"[{name}] done earlier, reused ({folder})")
                return fingerprint
            if not self.force:
                changed = sorted(
                    k for k in inputs if done.get("inputs", {}).get(k) != _jsonable(inputs[k])
                )
                if version != __version__:
                    changed.append(f"pocketrec {version} -> {__version__}")
                changed = changed or ["an earlier stage"]
                raise ConfigError(
                    f"{folder} holds {name} results made with other inputs (changed: "
                    f"{', '.join(changed)}); rerun with --force to rebuild it and the stages "
                    "after it, or choose another --out",
                    where="run folder",
                )
            self.log(f"[{name}] inputs changed: rebuilding {folder}")
            shutil.rmtree(folder)
            self.rebuilt = True
        elif folder.exists() and self.force and self.rebuilt:
            shutil.rmtree(folder)
        t0 = time.perf_counter()
        self.log(f"[{name}] running")
        folder.mkdir(parents=True, exist_ok=True)
        work()
        write_json(
            marker,
            {
                "stage": name,
                "fingerprint": fingerprint,
                "pocketrec": __version__,
                "inputs": _jsonable(inputs),
                "wall_time_s": round(time.perf_counter() - t0, 1),
                "finished": utc_now(),
            },
        )
        return fingerprint


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _distill_config(cfg: QuickstartConfig, dataset: Any) -> Any:
    from pocketrec.distill.presets import preset
    from pocketrec.distill.sids.stage import default_source

    distill_cfg = preset(cfg.preset, cfg.dataset, dataset.default_history_len)
    sid = dataclasses.replace(distill_cfg.sid, dataset=cfg.dataset, source=default_source(dataset))
    distill_cfg = dataclasses.replace(distill_cfg, sid=sid, threads=cfg.threads)
    return dataclasses.replace(distill_cfg, **cfg.distill_overrides)


def run_quickstart(
    cfg: QuickstartConfig, out_dir: Path, *, force: bool = False, log: Log = print
) -> dict[str, Any]:
    """Run (or resume) every stage; returns the summary also written to `summary.json`.

    Raises:
        ConfigError: `out_dir` holds results of another config and `force` is False.
        DataError: the dataset is missing (the message says where it was looked for).
    """
    from pocketrec.distill.data import load_dataset
    from pocketrec.distill.pipeline import distill

    started, t0 = utc_now(), time.perf_counter()
    dataset = load_dataset(cfg.dataset, root=cfg.data_root)  # a missing dataset fails here
    devices = available_devices()
    precisions = cfg.precisions or (
        ("fp32", "int8", "int4", "npu") if "qnn-sim" in devices else ("fp32", "int8", "int4")
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    stages = _Stages(force, log)

    distill_cfg = _distill_config(cfg, dataset)
    run_dir = out_dir / "distill"

    def do_distill() -> None:
        distill(distill_cfg, run_dir, data_root=cfg.data_root, force=force)

    distill_fp = stages.run(
        "distill", run_dir, {"config": dataclasses.asdict(distill_cfg)}, do_distill
    )

    bundles = out_dir / "bundles"
    export_errors: dict[str, str] = {}

    def do_export() -> None:
        from pocketrec.export.bundle import ExportError
        from pocketrec.export.config import PrecisionConfig
        from pocketrec.export.precisions import export_precisions

        try:
            export_precisions(
                run_dir,
                bundles,
                PrecisionConfig(
                    precisions=precisions,
                    quality_users=cfg.quality_users,
                    max_fallback_rounds=cfg.max_fallback_rounds,
                    data_root=cfg.data_root,
                ),
                log=log,
            )
        except ExportError as e:  # a precision below its quality gate: reported, not fatal
            export_errors["failed"] = str(e)
            write_json(bundles / "export_errors.json", export_errors)

    export_fp = stages.run(
        "export",
        bundles,
        {"distill": distill_fp, "precisions": list(precisions), "quality_users": cfg.quality_users}
        # only when changed, so that folders made before the setting existed are still reused
        | (
            {"max_fallback_rounds": cfg.max_fallback_rounds} if cfg.max_fallback_rounds != 3 else {}
        ),
        do_export,
    )
    written = [p for p in precisions if (bundles / p / "manifest.json").exists()]
    if (bundles / "export_errors.json").exists():
        export_errors = json.loads((bundles / "export_errors.json").read_text())

    evals = out_dir / "eval"

    def do_eval() -> None:
        for precision in written:
            if precision == "npu":  # minutes per thousand users on the simulator: gate users only
                continue
            write_json(evals / f"{precision}.json", _evaluate(bundles / precision, dataset))

    stages.run("evaluate", evals, {"export": export_fp, "precisions": written}, do_eval)

    bench = out_dir / "bench"
    bench_plan = [(p, d) for p in written for d in devices if (d == "qnn-sim") == (p == "npu")]

    def do_bench() -> None:
        from pocketrec.export.bench import BenchConfig, bench_bundle

        for precision, device in bench_plan:
            simulated = device == "qnn-sim"
            log(f"[bench] {precision} on {device}")
            record = bench_bundle(
                BenchConfig(
                    bundle=str(bundles / precision),
                    device=device,
                    threads=1,
                    warmup=2 if simulated else 30,
                    repetitions=cfg.simulator_repetitions if simulated else cfg.bench_repetitions,
                    batch=8 if simulated else 64,
                )
            )
            write_json(bench / f"{precision}-{device}.json", record)

    stages.run(
        "bench",
        bench,
        {
            "export": export_fp,
            "plan": bench_plan,
            "repetitions": [cfg.bench_repetitions, cfg.simulator_repetitions],
        },
        do_bench,
    )

    from pocketrec.export.quickstart_report import write_quickstart_report

    summary = {
        "what": f"pocketrec quickstart on {dataset.name} ({cfg.preset} preset)",
        "kind": "quickstart",
        "dataset": dataset.name,
        "preset": cfg.preset,
        "precisions": list(precisions),
        "precisions_written": written,
        "export_errors": export_errors,
        "devices": devices,
        "distill": json.loads((run_dir / "metrics.json").read_text()),
        "bundles": {p: _bundle_summary(bundles / p) for p in written},
        "sdk_eval": {
            p: json.loads((evals / f"{p}.json").read_text())
            for p in written
            if (evals / f"{p}.json").exists()
        },
        "bench": {
            f"{p}-{d}": json.loads((bench / f"{p}-{d}.json").read_text()) for p, d in bench_plan
        },
        "stage_wall_time_s": {
            name: json.loads((folder / "stage.json").read_text())["wall_time_s"]
            for name, folder in (
                ("distill", run_dir),
                ("export", bundles),
                ("evaluate", evals),
                ("bench", bench),
            )
        },
        "config": _jsonable(dataclasses.asdict(cfg)),
        "command": command_line(),
        "git_commit": git_commit(),
        "machine": machine_info(),
        "started": started,
    }
    summary["wall_time_s"] = round(time.perf_counter() - t0, 1)
    summary["report"] = [str(p) for p in write_quickstart_report(summary, out_dir)]
    write_json(out_dir / "summary.json", summary)
    return summary


def _evaluate(bundle: Path, dataset: Any) -> dict[str, Any]:
    """Every test user, through the SDK on CPU: the number an app would get."""
    from pocketrec._evaluate import evaluate_recommender
    from pocketrec._recommender import Recommender

    rec = Recommender.from_bundle(bundle, providers=["CPUExecutionProvider"])
    t0 = time.perf_counter()
    metrics = evaluate_recommender(rec, dataset, stage="test", batch_size=256)
    return {
        "bundle": str(bundle),
        "precision": rec.manifest.precision,
        "metrics": metrics,
        "wall_time_s": round(time.perf_counter() - t0, 1),
    }


def _bundle_summary(folder: Path) -> dict[str, Any]:
    manifest = json.loads((folder / "manifest.json").read_text())
    files = {name: entry["bytes"] for name, entry in manifest.get("files", {}).items()}
    return {
        "precision": manifest.get("precision"),
        "bytes_total": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()),
        "files": files,
        "quality": manifest.get("quality", {}),
    }
