"""Which learning rate, width and regularisation should a `full` student or teacher train with?

    python benchmarks/student_lr_probe.py ml-1m --lrs 0.001,0.003 --epochs 6 --threads 2 \
        --json benchmarks/results/student_lr_probe_ml-1m.json

Trains the `full` preset's student shape for this dataset without a teacher (the ablation
student, which costs no teacher), or with `--model teacher` one MiniLM teacher member of the
preset's shape, once per learning rate, from the same seed and the same semantic IDs, for a
fixed number of epochs (no early stopping), and scores validation NDCG@10 as the preset does
(students every two epochs on a validation sample, teachers on every user) with the same
`evaluate_genrec` the pipeline uses. The model of the best validation epoch is then scored on
every user's validation item, plainly and with each user's history window left out of the
ranking (HSTU's evaluation, see `history_excluded.py`). The record keeps validation only: the
choice it informs must not see the test items.

`--hidden`, `--dropout` and `--weight-decay` replace the preset's width, dropout and AdamW
weight decay, for a model that overfits within its first epochs (Sports' teacher members peak
at epoch 1 or 2) or for a wider teacher. Semantic IDs are built as `pocketrec distill` builds
them, once per dataset in `runs/lr_probe_sids_<dataset>` so that every probe compares on the
same IDs (or taken from `--sids`). The models stay in `--work` (default
`runs/<model>_lr_probe_<dataset>_d<width>`, plus `_p<dropout>` and `_wd<decay>` when given);
rerunning resumes them, and a work folder refuses a rerun with other settings. The record
gives the model config as built and the training config every run shared (the learning rate
is per run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from pocketrec._prefix import PrefixIndex
from pocketrec.distill.arguments import fraction, non_negative_float, positive_int
from pocketrec.distill.data import load_dataset
from pocketrec.distill.genrec_eval import evaluate_genrec
from pocketrec.distill.genrec_train import train_genrec
from pocketrec.distill.kd import sid_hash
from pocketrec.distill.pipeline import build_student, build_teacher_member, prepare_sids
from pocketrec.distill.presets import preset
from pocketrec.distill.protocol import training_split
from pocketrec.distill.runinfo import provenance, utc_now, write_json
from pocketrec.distill.sids.stage import default_source, load_semantic_ids
from pocketrec.distill.training import set_threads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--model", choices=("student", "teacher"), default="student")
    parser.add_argument("--lrs", default="0.001,0.003", help="comma-separated learning rates")
    parser.add_argument("--epochs", type=positive_int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--hidden",
        type=positive_int,
        help="model width instead of the preset's (students and teachers)",
    )
    parser.add_argument("--dropout", type=fraction, help="dropout instead of the preset's")
    parser.add_argument(
        "--weight-decay",
        type=non_negative_float,
        help="AdamW weight decay instead of the preset's",
    )
    parser.add_argument(
        "--sids",
        type=Path,
        help="an existing semantic-ID folder (default: built once per dataset in "
        "runs/lr_probe_sids_<dataset>, shared by every probe)",
    )
    parser.add_argument("--work", type=Path, help="model folders (default runs/...)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--json", type=Path, required=True, help="record to write")
    args = parser.parse_args(argv)
    started, t0 = utc_now(), time.perf_counter()
    set_threads(args.threads)
    lrs = [float(v) for v in args.lrs.split(",")]
    dataset = load_dataset(args.dataset, root=args.data_root)
    cfg = preset("full", args.dataset, dataset.default_history_len)
    sid = dataclasses.replace(cfg.sid, dataset=args.dataset, source=default_source(dataset))
    cfg = dataclasses.replace(cfg, sid=sid)
    shape = {"hidden": args.hidden, "dropout": args.dropout}
    shape = {name: value for name, value in shape.items() if value is not None}
    cfg = dataclasses.replace(
        cfg,
        student=dataclasses.replace(cfg.student, **shape),
        teacher_model=dataclasses.replace(cfg.teacher_model, **shape),
    )
    width = (cfg.student if args.model == "student" else cfg.teacher_model).hidden
    # What every run of this probe trains with; only the learning rate differs between runs.
    common = dataclasses.replace(
        cfg.student_train if args.model == "student" else cfg.teacher_train,
        kd_weight=0.0,
        seed=args.seed,
        max_epochs=args.epochs,
        patience=args.epochs,  # every epoch runs: the curves are compared, not a stop
    )
    if args.weight_decay is not None:
        common = dataclasses.replace(common, weight_decay=args.weight_decay)
    name = f"{args.model}_lr_probe_{dataset.name}_d{width}"
    name += "" if args.dropout is None else f"_p{args.dropout:g}"
    name += "" if args.weight_decay is None else f"_wd{args.weight_decay:g}"
    work = args.work or Path("runs") / name
    split = training_split(dataset)
    if args.sids is not None:  # checked against the catalogue, then copied into the work folder
        cfg = dataclasses.replace(cfg, sids=str(args.sids))
        sid_dir = prepare_sids(cfg, dataset, split, work / "sids")
    else:  # one build per dataset: every probe compares on the same IDs
        sid_dir = prepare_sids(cfg, dataset, split, Path("runs") / f"lr_probe_sids_{dataset.name}")
    sids, _, _ = load_semantic_ids(sid_dir)
    index = PrefixIndex(sids, cfg.student.codebook_size)
    settings: dict[str, Any] = {}
    runs = []
    for lr in lrs:
        train = dataclasses.replace(common, lr=lr)
        if args.model == "student":
            model = build_student(cfg, dataset, sids, args.seed)
            built: dict[str, Any] = {}
        else:
            model, features = build_teacher_member(cfg, dataset, sids, split, args.seed)
            built = {"teacher_codes": cfg.teacher_codes, "features": features}
        if not settings:
            settings = {
                args.model: dataclasses.asdict(model.cfg) | built,  # the model as built
                f"{args.model}_train": {
                    k: v for k, v in dataclasses.asdict(common).items() if k != "lr"
                },
                "semantic_ids": sid_hash(sids),
            }
            _check_work(work, settings)
        out = work / f"lr_{lr:g}"
        metrics = train_genrec(model, split, index, train, out, desc=f"{args.model} lr={lr:g}")
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        runs.append(
            {
                "lr": lr,
                "curve": [
                    {"epoch": r["epoch"] + 1, "valid_ndcg@10": r["valid_ndcg@10"]}
                    for r in log
                    if "valid_ndcg@10" in r
                ],
                "valid": metrics["valid"],
                "valid_history_excluded": evaluate_genrec(
                    model,
                    split,
                    index,
                    "valid",
                    beam_width=train.beam_width,
                    exclude_history=True,
                ),
                "best_epoch": metrics["best_epoch"] + 1,
                "train_time_s": metrics["train_time_s"],
                "parameters": metrics["parameters"],
            }
        )
        print(
            f"lr={lr:g}: valid NDCG@10 {metrics['valid']['ndcg@10']:.4f}, history excluded "
            f"{runs[-1]['valid_history_excluded']['ndcg@10']:.4f} after {args.epochs} epochs"
        )
    write_json(
        args.json,
        {
            "what": f"{args.model} learning-rate probe on {dataset.name} (validation only)",
            "model": f"pocketrec-{args.model}-lr-probe",
            "dataset": dataset.name,
            **settings,
            "semantic_id_folder": str(sid_dir),
            "epochs": args.epochs,
            "seed": args.seed,
            "runs": runs,
            **provenance(started, t0),
        },
    )
    return 0


def _check_work(work: Path, settings: dict[str, Any]) -> None:
    """A work folder holds the models of one setting: rerunning it with others would report
    the old models under the new settings, so it is refused (use another --work)."""
    path = work / "probe.json"
    if path.exists():
        before = json.loads(path.read_text())
        if before != json.loads(json.dumps(settings)):
            changed = sorted(k for k in settings if before.get(k) != settings[k])
            raise SystemExit(
                f"{work} holds probe models trained with other settings (changed: "
                f"{', '.join(changed)}); use another --work, or delete it"
            )
        return
    write_json(path, settings)


if __name__ == "__main__":
    sys.exit(main())
