"""Stage: distill a teacher into a small generative student.

    distill(cfg, run_dir) -> run_dir

Stages, each skipped when its output is already complete (an interrupted run resumes, a
training stage from its last checkpoint):

1. `sids/`: the semantic IDs (built, or copied from `--sids DIR` after checking they belong to
   this dataset).
2. `teacher/`: the teacher (MiniLM-feature GenRec, or an LM with LoRA), its metrics.
3. `teacher_cache/`: the teacher's per-level code distributions on every training position,
   with the fingerprint of the teacher weights they came from (a teacher trained again
   afterwards makes the cache refuse to load).
4. `student/seed_<s>/`: the distilled student, per seed; `student_nokd/seed_<s>/`: the same
   student trained without the teacher (the ablation).
5. `metrics.json`: teacher, student, student-without-distillation (mean ± std over seeds):
   R@5/10/20, N@5/10/20, valid-item rate, parameters, training time, and every model's
   validation curve ([epoch, NDCG@10] per validation run, from its log).

Every input is checked before training starts: the teacher form, the LM path, and that
semantic IDs, teacher, cache and students all refer to the same semantic-ID table.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pocketrec._errors import ConfigError
from pocketrec._prefix import PrefixIndex
from pocketrec.distill import dist
from pocketrec.distill.data import Dataset, load_dataset
from pocketrec.distill.errors import DataError
from pocketrec.distill.genrec import GenRec
from pocketrec.distill.genrec_eval import evaluate_genrec
from pocketrec.distill.genrec_train import train_genrec
from pocketrec.distill.kd import (
    cache_teacher_outputs,
    check_cache_settings,
    load_teacher_cache,
    sid_hash,
    teacher_fingerprint,
)
from pocketrec.distill.presets import DistillConfig
from pocketrec.distill.protocol import Split, training_split
from pocketrec.distill.runfolder import check_run_dir, record_invocation, write_summary
from pocketrec.distill.runinfo import (
    recover_staged,
    staged_folder,
    write_json,
)
from pocketrec.distill.sids.stage import build_semantic_ids, load_semantic_ids
from pocketrec.distill.teacher import (
    MINILM_PARAMETERS,
    ItemTeacher,
    TeacherEnsemble,
    TeacherSpec,
    build_minilm_teacher,
    parse_teacher,
)
from pocketrec.distill.training import pick_device, set_threads

__all__ = ["build_student", "build_teacher_member", "distill", "parse_teacher", "prepare_sids"]


# --- stages -------------------------------------------------------------------------------


def prepare_sids(cfg: DistillConfig, dataset: Dataset, split: Split, out: Path) -> Path:
    """The run's semantic IDs in `out`, built (or copied from --sids) in a staged folder.

    A folder is complete once it has config.json (written last); one left without it by a
    kill during an older, unstaged build is built again.
    """
    # Every rank checks (read-only, so all raise the same errors); rank 0 alone writes.
    complete = _sids_complete(out) or _sids_complete(out.with_name(out.name + ".old"))
    if not complete and cfg.sids is not None:
        source = Path(cfg.sids)
        if not (source / "semantic_ids.npy").exists():
            raise DataError(
                f"--sids {source}: no semantic_ids.npy; build one with `pocketrec sids`"
            )
        _, item_ids, _ = load_semantic_ids(source)
        if item_ids != [str(i) for i in dataset.item_ids]:
            raise DataError(
                f"--sids {source} was built for another catalogue ({len(item_ids)} items, "
                f"dataset {dataset.name!r} has {dataset.num_items}); build semantic IDs "
                "for it"
            )
    if dist.rank() == 0:
        recover_staged(out)
        if not _sids_complete(out):
            with staged_folder(out) as tmp:
                if cfg.sids is not None:
                    shutil.copytree(cfg.sids, tmp, dirs_exist_ok=True)
                else:
                    build_semantic_ids(cfg.sid, tmp, dataset=dataset, split=split)
    dist.barrier()
    return out


def _sids_complete(folder: Path) -> bool:
    return (folder / "semantic_ids.npy").exists() and (folder / "config.json").exists()


def _check_shapes(cfg: DistillConfig, sids: np.ndarray, sid_config: dict[str, Any]) -> None:
    """Semantic IDs, student and teacher must agree on levels and codebook size."""
    levels, size = sids.shape[1], int(sid_config["codebook_size"])
    for name, model in (("student", cfg.student), ("teacher", cfg.teacher_model)):
        if (model.num_levels, model.codebook_size) not in ((levels, size),):
            raise ConfigError(
                f"the {name} expects {model.num_levels} levels x {model.codebook_size} codes but "
                f"the semantic IDs have {levels} levels x {size}",
                where="distill config",
            )


def _train_teacher(cfg, spec, dataset, split, sids, index, run_dir, device):
    """Train (or reload) the teacher; returns (teacher fn for caching, metrics)."""
    out = run_dir / "teacher"
    if spec.kind == "minilm":
        model, metrics = _train_minilm_teacher(cfg, dataset, split, sids, index, out, device)

        def fn(inputs: torch.Tensor, targets: torch.Tensor):
            logits, _, valid = model(
                inputs.to(device), targets.to(device), exclude_history=cfg.kd_exclude_history
            )
            return logits.cpu(), valid.cpu()

        return fn, metrics
    from pocketrec.distill.teacher_hf import HFTeacher, HFTeacherConfig

    hf_cfg = HFTeacherConfig(path=spec.path, quant=cfg.teacher_quant, seed=cfg.seeds[0])
    teacher = HFTeacher(hf_cfg, dataset, sids, cfg.student.codebook_size, device)
    if (out / "lora" / "adapter_config.json").exists():
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file as load_st

        set_peft_model_state_dict(
            teacher.model, load_st(out / "lora" / "adapter_model.safetensors")
        )
        metrics = json.loads((out / "metrics.json").read_text())
    else:
        t0 = time.perf_counter()
        info = teacher.train(split, cfg.student.max_len)
        predict = teacher.predictor(index, beam_width=cfg.teacher_train.beam_width)
        from pocketrec.distill.protocol import evaluate

        total, trainable = teacher.num_parameters()
        metrics = {
            "train_time_s": round(time.perf_counter() - t0, 1),
            "train": info,
            "valid": evaluate(
                predict,
                split,
                "valid",
                max_len=cfg.student.max_len,
                limit=cfg.teacher_train.eval_limit,
            ),
            "test": evaluate(
                predict,
                split,
                "test",
                max_len=cfg.student.max_len,
                limit=cfg.teacher_train.eval_limit,
            ),
            "parameters": total,
            "parameters_trainable": trainable,
            "features": "lm",
        }
        if dist.rank() == 0:
            teacher.save(out)
            write_json(out / "metrics.json", metrics)
            write_json(
                out / "config.json",
                {"kind": "hf", "hf": asdict(hf_cfg), "sid_hash": sid_hash(sids)},
            )
    return teacher.teacher_fn, metrics


def _train_minilm_teacher(
    cfg: DistillConfig,
    dataset: Dataset,
    split: Split,
    sids: np.ndarray,
    index: PrefixIndex,
    out: Path,
    device: torch.device,
) -> tuple[ItemTeacher | TeacherEnsemble, dict[str, Any]]:
    """The MiniLM teacher: one `ItemTeacher`, or `teacher_members` of them averaged."""
    n = cfg.teacher_members
    members, runs = [], []
    for i in range(n):
        seed = cfg.seeds[0] + i
        model, features = build_teacher_member(cfg, dataset, sids, split, seed)
        model.to(device)
        runs.append(
            train_genrec(
                model,
                split,
                index,
                dataclasses.replace(cfg.teacher_train, seed=seed),
                out if n == 1 else out / f"member_{i}",
                desc="teacher" if n == 1 else f"teacher {i + 1}/{n}",
            )
        )
        model.eval()
        members.append(model)
    if n == 1:
        teacher: ItemTeacher | TeacherEnsemble = members[0]
        metrics = runs[0]
    else:
        teacher = TeacherEnsemble(members)
        metrics = {"members": runs}
        done = out / "metrics.json"
        previous = json.loads(done.read_text()) if done.exists() else {}
        # The members' metrics are rank 0's alone, so its answer holds for every rank.
        same_members = dist.gather(previous.get("members") == runs)[0]
        for stage in ("valid", "test"):
            if same_members and stage in previous:
                metrics[stage] = previous[stage]  # scored when a resumed run got here
                continue
            metrics[stage] = evaluate_genrec(
                teacher, split, index, stage, beam_width=cfg.teacher_train.beam_width, shared=True
            )
        if dist.rank() == 0:
            metrics["train_time_s"] = round(sum(r["train_time_s"] for r in runs), 1)
    if dist.rank() == 0:
        metrics.update(
            features=features,
            parameters_trainable=teacher.num_parameters(),
            parameters=teacher.num_parameters()
            + (MINILM_PARAMETERS if features == "minilm-text" else 0),
        )
        write_json(out / "metrics.json", metrics)
        write_json(
            out / "config.json",
            {
                "model": asdict(cfg.teacher_model),
                "kind": "minilm",
                "members": n,
                "code_embeddings": cfg.teacher_codes,
                "sid_hash": sid_hash(sids),
            },
        )
    return teacher, metrics


def build_teacher_member(
    cfg: DistillConfig, dataset: Dataset, sids: np.ndarray, split: Split, seed: int
) -> tuple[ItemTeacher, str]:
    """One MiniLM teacher of the config's shape, initialised from `seed`; and its feature kind."""
    return build_minilm_teacher(
        cfg.teacher_model, dataset, sids, split=split, seed=seed, code_embeddings=cfg.teacher_codes
    )


def build_student(cfg: DistillConfig, dataset: Dataset, sids: np.ndarray, seed: int) -> GenRec:
    """The config's student for this catalogue and semantic-ID table, initialised from `seed`."""
    shape = dataclasses.replace(
        cfg.student, num_items=dataset.num_items if cfg.student_item_ids else 0
    )
    torch.manual_seed(seed)
    return GenRec(shape, torch.from_numpy(sids))


def distill(
    cfg: DistillConfig, run_dir: Path, *, data_root: Path | None = None, force: bool = False
) -> Path:
    """Run every stage; returns `run_dir` (see the module docstring for what it holds)."""
    spec = parse_teacher(cfg.teacher)  # before any work: a bad teacher fails here
    if spec.kind == "hf":  # its LoRA fine-tuning is not data-parallel: each rank would redo it
        dist.refuse_ranks("the hf: teacher")
    dist.init()
    try:
        return _stages(cfg, spec, run_dir, data_root, force)
    except BaseException:
        dist.abandon()  # a failed rank exits now: the launcher then stops the others
        raise


def _stages(
    cfg: DistillConfig, spec: TeacherSpec, run_dir: Path, data_root: Path | None, force: bool
) -> Path:
    set_threads(cfg.threads)
    if spec.kind == "hf" and cfg.teacher_quant not in ("none", "nf4", "int8"):
        raise ConfigError(
            f"--teacher-quant must be none, nf4 or int8, got {cfg.teacher_quant!r}",
            where="--teacher-quant",
        )
    dataset = load_dataset(cfg.dataset, root=data_root)
    check_run_dir(cfg, run_dir, force)
    kd_settings = {
        "top_k": cfg.kd_top_k,
        "temperature": cfg.student_train.kd_temperature,
        "exclude_history": cfg.kd_exclude_history,
    }
    if (run_dir / "teacher_cache" / "meta.json").exists():  # refused before the run records it
        check_cache_settings(run_dir / "teacher_cache", kd_settings)
    run_dir.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    if dist.rank() == 0:
        record_invocation(cfg, run_dir)
    t_start = time.perf_counter()
    split = training_split(
        dataset, device_holdout=cfg.device_holdout, device_users=cfg.device_users
    )
    sid_dir = prepare_sids(cfg, dataset, split, run_dir / "sids")
    sids, _, sid_config = load_semantic_ids(sid_dir)
    _check_shapes(cfg, sids, sid_config)
    fingerprint = sid_hash(sids)
    for stage in ("teacher", "teacher_cache"):
        recorded = run_dir / stage / ("config.json" if stage == "teacher" else "meta.json")
        if recorded.exists() and json.loads(recorded.read_text()).get("sid_hash") != fingerprint:
            raise DataError(
                f"{run_dir / stage} was made with other semantic IDs; delete it or use --force"
            )
    device = pick_device(cfg.device)
    index = PrefixIndex(sids, cfg.student.codebook_size)
    teacher_fn, teacher_metrics = _train_teacher(
        cfg, spec, dataset, split, sids, index, run_dir, device
    )
    teacher_weights = teacher_fingerprint(run_dir / "teacher")
    cache_dir = cache_teacher_outputs(
        teacher_fn,
        split,
        cfg.student.max_len,
        run_dir / "teacher_cache",
        index=index,
        semantic_ids=sids,
        top_k=cfg.kd_top_k,
        temperature=cfg.student_train.kd_temperature,
        meta={
            "teacher": spec.describe(),
            "sid_hash": fingerprint,
            "teacher_weights": teacher_weights,
            "exclude_history": cfg.kd_exclude_history,
        },
    )
    cache = load_teacher_cache(
        cache_dir,
        window=cfg.student.max_len,
        sid_fingerprint=fingerprint,
        teacher=teacher_weights,
    )
    students, ablations = [], []
    for seed in cfg.seeds:
        kd_cfg = dataclasses.replace(cfg.student_train, seed=seed)
        model = build_student(cfg, dataset, sids, seed).to(device)
        students.append(
            train_genrec(
                model,
                split,
                index,
                kd_cfg,
                run_dir / "student" / f"seed_{seed}",
                teacher_cache=cache,
                desc=f"student seed {seed}",
            )
        )
        _save_student_config(run_dir / "student" / f"seed_{seed}", model, fingerprint)
        if cfg.ablation:
            plain = dataclasses.replace(kd_cfg, kd_weight=0.0)
            model = build_student(cfg, dataset, sids, seed).to(device)
            out = run_dir / "student_nokd" / f"seed_{seed}"
            ablations.append(
                train_genrec(
                    model, split, index, plain, out, desc=f"student (no teacher) seed {seed}"
                )
            )
            _save_student_config(out, model, fingerprint)
    if dist.rank() == 0:
        write_summary(
            cfg,
            run_dir,
            dataset,
            split,
            teacher_metrics,
            students,
            ablations,
            time.perf_counter() - t_start,
        )
    dist.barrier()
    return run_dir


def _save_student_config(out: Path, model: GenRec, fingerprint: str) -> None:
    if dist.rank() == 0:
        write_json(out / "config.json", {"model": asdict(model.cfg), "sid_hash": fingerprint})
