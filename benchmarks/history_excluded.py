"""Score finished runs under HSTU's evaluation as well as this project's.

    python benchmarks/history_excluded.py runs/ml1m_s0 runs/ml1m_s1 runs/ml1m_s2 \
        --json benchmarks/results/baseline_sasrec_ml1m_history_excluded.json
    python benchmarks/history_excluded.py runs/ml1m_quick \
        --json benchmarks/results/distill_ml-1m_quick_history_excluded.json

HSTU's published MovieLens-1M numbers rank every item except the ones in the user's history
window (its evaluation passes the history as invalid ids); this project's protocol ranks every
item. This loads the saved models of finished runs and scores the test targets both ways, so
the published rows can be compared with like-for-like numbers:

- `pocketrec baseline` run folders (one or more, one seed each or several): each seed's chosen
  SASRec and, where present, its refit, through the same `evaluate`;
- one `pocketrec distill` run folder: the MiniLM teacher (ranked exactly, history items
  removed from its scores; an `hf:` teacher is not reloaded, and the record says so) and every
  seed of the student and of the student trained without the teacher
  (constrained beam search that bans history items as it searches, as the SDK's `recommend`
  does by default).

The plain scores must equal the ones the run recorded; the script stops if they do not. For
the distill run's models the record also gives `history_share@10`, the share of the plain
top-10 slots that repeat an item of the user's history window: on MovieLens-1M, where no user
rates a film twice, each such slot is lost to the plain protocol and freed by excluding the
history.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from pocketrec._prefix import PrefixIndex
from pocketrec.distill.baseline import _predictor
from pocketrec.distill.data import load_dataset
from pocketrec.distill.genrec import GenRecConfig
from pocketrec.distill.genrec_eval import evaluate_genrec
from pocketrec.distill.metrics import summarize_seeds
from pocketrec.distill.protocol import evaluate, leave_one_out
from pocketrec.distill.runinfo import provenance, utc_now, write_json
from pocketrec.distill.sasrec import SASRec, SASRecConfig
from pocketrec.distill.teacher import TeacherEnsemble, build_minilm_teacher
from pocketrec.export.bundle import Student, load_student

MODELS = {"test": "model.safetensors", "test_refit": "refit.safetensors"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs", nargs="+", type=Path, help="pocketrec baseline run folders, or one distill run"
    )
    parser.add_argument("--json", type=Path, required=True, help="record to write")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started, t0 = utc_now(), time.perf_counter()
    if any(_is_distill_run(run) for run in args.runs):
        if len(args.runs) != 1:
            raise SystemExit("give one distill run folder (it holds every seed), on its own")
        record = _score_distill_run(args.runs[0])
        write_json(args.json, {**record, **provenance(started, t0)})
        print(f"-> {args.json}")
        return 0

    configs = [json.loads((run / "config.json").read_text()) for run in args.runs]
    shared = [{k: v for k, v in c.items() if k not in ("seeds", "threads")} for c in configs]
    if any(c != shared[0] for c in shared):
        raise SystemExit("the run folders hold different configs; compare like with like")
    cfg = SASRecConfig(**configs[0])
    dataset = load_dataset(cfg.dataset)
    split = leave_one_out(dataset)

    per_seed: list[dict[str, Any]] = []
    for seed_dir in sorted(d for run in args.runs for d in run.glob("seed_*")):
        recorded = json.loads((seed_dir / "metrics.json").read_text())
        row: dict[str, Any] = {"seed": recorded["seed"], "folder": str(seed_dir)}
        for key, weights in MODELS.items():
            if not (seed_dir / weights).exists():
                continue
            model = SASRec(cfg, dataset.num_items)
            model.load_state_dict(load_file(seed_dir / weights))
            model.eval()
            predict = _predictor(model, torch.device("cpu"))
            plain = evaluate(predict, split, "test", max_len=cfg.max_len)
            _check_reproduced(seed_dir / weights, plain, recorded[key])
            row[key] = plain
            row[f"{key}_history_excluded"] = evaluate(
                predict, split, "test", max_len=cfg.max_len, exclude_history=True
            )
            print(
                f"seed {row['seed']} {key}: NDCG@10 {plain['ndcg@10']:.4f}, history excluded "
                f"{row[f'{key}_history_excluded']['ndcg@10']:.4f}",
                file=sys.stderr,
            )
        per_seed.append(row)

    keys = [k for k in per_seed[0] if k.startswith("test")]
    write_json(
        args.json,
        {
            "what": f"SASRec baseline on {dataset.name}, test scored with and without the "
            "user's history window in the ranking",
            "kind": "history_excluded",
            "runs_of": "baseline",
            "dataset": dataset.name,
            "runs": [str(r) for r in args.runs],
            "seeds": [r["seed"] for r in per_seed],
            "config": shared[0],  # seeds and threads differ per folder
            **{k: summarize_seeds([r[k] for r in per_seed]) for k in keys},
            "per_seed": per_seed,
            **provenance(started, t0),
        },
    )
    print(f"-> {args.json}")
    return 0


def _check_reproduced(what: Path, plain: dict[str, float], recorded: dict[str, float]) -> None:
    if abs(plain["ndcg@10"] - recorded["ndcg@10"]) > 1e-6:
        raise SystemExit(
            f"{what}: NDCG@10 {plain['ndcg@10']:.6f} here, {recorded['ndcg@10']:.6f} recorded; "
            "not the model that was scored"
        )


def _is_distill_run(run: Path) -> bool:
    path = run / "config.json"
    return path.exists() and "student" in json.loads(path.read_text()).get("config", {})


def _both_ways(score) -> dict[str, dict[str, float]]:
    """{"test": plain, "test_history_excluded": ...} from score(exclude_history)."""
    return {"test": score(False), "test_history_excluded": score(True)}


def _score_distill_run(run: Path) -> dict[str, Any]:
    """The teacher and every student seed of one finished distill run, scored both ways."""
    if not (run / "metrics.json").exists():
        raise SystemExit(f"{run}: the distill run has not finished (no metrics.json)")
    summary = json.loads((run / "metrics.json").read_text())
    cfg = summary["config"]
    beam = cfg["student_train"]["beam_width"]
    out: dict[str, Any] = {
        "what": f"pocketrec distill on {cfg['dataset']} ({cfg['preset']}), test scored with and "
        "without the user's history window in the ranking",
        "kind": "history_excluded",
        "runs_of": "distill",
        "dataset": summary["dataset"],
        "preset": cfg["preset"],
        "runs": [str(run)],
        # how the scored run itself was made (this record's own command is below)
        "run_command": summary["command"],
        "run_git_commit": summary["git_commit"],
        "config": cfg,
        "beam_width": beam,
    }
    base = Student.load(run)  # the dataset, split and semantic IDs the run used, read once
    split, index = base.split, PrefixIndex(base.sids, cfg["student"]["codebook_size"])
    for kind in ("student", "student_nokd"):
        per_seed = []
        for seed in summary[kind]["seeds"] if summary.get(kind) else []:
            model, _, _ = load_student(run, seed, kind=kind)
            row = _both_ways(
                lambda ex, m=model: evaluate_genrec(
                    m, split, index, "test", beam_width=beam, exclude_history=ex
                )
            )
            recorded = json.loads((run / kind / f"seed_{seed}" / "metrics.json").read_text())
            _check_reproduced(run / kind / f"seed_{seed}", row["test"], recorded["test"])
            print(
                f"{kind} seed {seed}: NDCG@10 {row['test']['ndcg@10']:.4f}, history excluded "
                f"{row['test_history_excluded']['ndcg@10']:.4f}; history items fill "
                f"{row['test']['history_share@10']:.1%} of the plain top 10",
                file=sys.stderr,
            )
            per_seed.append({"seed": seed, **row})
        if per_seed:
            out[kind] = {
                key: summarize_seeds([r[key] for r in per_seed])
                for key in ("test", "test_history_excluded")
            } | {"seeds": [r["seed"] for r in per_seed], "per_seed": per_seed}
    if cfg["teacher"] == "minilm":
        teacher = _load_minilm_teacher(run, cfg, base)
        out["teacher"] = _both_ways(
            lambda ex: evaluate_genrec(
                teacher, split, index, "test", beam_width=beam, exclude_history=ex
            )
        )
        recorded = json.loads((run / "teacher" / "metrics.json").read_text())
        _check_reproduced(run / "teacher", out["teacher"]["test"], recorded["test"])
    else:  # reloading an LM teacher needs its base model; its own metrics.json has its scores
        out["teacher_not_scored"] = f"{cfg['teacher']}: only MiniLM teachers are reloaded here"
        print(f"teacher not scored: {out['teacher_not_scored']}", file=sys.stderr)
    return out


def _load_minilm_teacher(run: Path, cfg: dict[str, Any], base: Student):
    """The run's MiniLM teacher: one model, or the mean of its members."""
    shape = GenRecConfig(**cfg["teacher_model"])
    members = []
    for i in range(cfg["teacher_members"]):
        folder = run / "teacher" if cfg["teacher_members"] == 1 else run / "teacher" / f"member_{i}"
        model, _ = build_minilm_teacher(
            shape,
            base.dataset,
            base.sids,
            split=base.split,
            seed=cfg["seeds"][0] + i,
            code_embeddings=cfg["teacher_codes"],
        )
        model.load_state_dict(load_file(folder / "model.safetensors"), strict=False)
        members.append(model.eval())
    return members[0] if len(members) == 1 else TeacherEnsemble(members).eval()


if __name__ == "__main__":
    raise SystemExit(main())
