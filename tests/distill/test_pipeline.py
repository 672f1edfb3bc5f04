"""`pocketrec distill` end to end on a small catalogue, and its refusals before training."""

from __future__ import annotations

import dataclasses
import json
import shlex
import types
from pathlib import Path

import numpy as np
import pytest

from pocketrec._cli import build_parser, main
from pocketrec._errors import ConfigError
from pocketrec.distill.errors import DataError
from pocketrec.distill.pipeline import distill
from pocketrec.distill.pipeline_cli import distill_config
from pocketrec.distill.presets import smoke
from tests.conftest import write_text

KINDS = ["lipstick", "shampoo", "nail polish", "face cream", "perfume", "brush"]
COLORS = ["red", "blue", "green", "black", "white"]


def _shop(folder: Path, num_users: int = 80) -> Path:
    """A generic-format catalogue with text: users walk through related items."""
    items = [
        (f"i{k}_{c}", f"{color} {kind}")
        for k, kind in enumerate(KINDS)
        for c, color in enumerate(COLORS)
    ]
    rng = np.random.default_rng(0)
    rows = ["user,item,timestamp"]
    for u in range(num_users):
        start = int(rng.integers(0, len(items)))
        for t in range(6):
            rows.append(f"u{u},{items[(start + t) % len(items)][0]},{t}")
    write_text(folder / "interactions.csv", "\n".join(rows) + "\n")
    write_text(
        folder / "items.jsonl",
        "\n".join(
            json.dumps({"item": i, "title": title, "categories": ["Beauty", title.split()[-1]]})
            for i, title in items
        ),
    )
    return folder


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _shop(tmp_path_factory.mktemp("data") / "shop")


def _tiny_cfg(shop: Path):

    cfg = smoke(str(shop), 20)
    sid = dataclasses.replace(
        cfg.sid, dataset=str(shop), num_levels=2, codebook_size=8, device="cpu"
    )
    return dataclasses.replace(
        cfg,
        sid=sid,
        device="cpu",
        threads=1,
        student=dataclasses.replace(cfg.student, num_levels=3, codebook_size=8),
        teacher_model=dataclasses.replace(cfg.teacher_model, num_levels=3, codebook_size=8),
        teacher_train=dataclasses.replace(cfg.teacher_train, max_epochs=3, eval_every=1),
        student_train=dataclasses.replace(cfg.student_train, max_epochs=3, eval_every=1),
    )


def test_distill_writes_every_artifact_and_resumes(shop: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = _tiny_cfg(shop)
    distill(cfg, run)
    m = json.loads((run / "metrics.json").read_text())
    for part in ("teacher", "student", "student_nokd"):
        assert (
            0.0
            <= (
                m[part]["test"]["ndcg@10"]
                if part == "teacher"
                else m[part]["test"]["ndcg@10"]["mean"]
            )
            <= 1.0
        )
    assert m["student"]["test"]["valid_item_rate"]["mean"] == 1.0
    assert 0.0 <= m["student"]["test"]["history_share@10"]["mean"] <= 1.0
    assert m["teacher"]["features"] == "minilm-text"
    assert m["teacher"]["parameters"] > 10 * m["student"]["parameters"]
    assert m["size_ratio_teacher_over_student"] > 10
    # Every model's validation curve, one point per epoch (eval_every=1), as its log has it.
    logged = [json.loads(line) for line in (run / "teacher" / "log.jsonl").open()]
    assert m["teacher"]["curves"] == [[[r["epoch"] + 1, r["valid_ndcg@10"]] for r in logged]]
    for part in ("student", "student_nokd"):
        assert [[epoch for epoch, _ in c] for c in m[part]["curves"]] == [[1, 2, 3]], part
    started = json.loads((run / "config.json").read_text())
    assert m["git_commit"] == started["git_commit"] and "git_commit_finished" in m
    for f in (
        "sids/semantic_ids.npy",
        "sids/tokenizer.json",
        "teacher/model.safetensors",
        "teacher_cache/logp.npy",
        "student/seed_0/model.safetensors",
        "student/seed_0/config.json",
        "student_nokd/seed_0/model.safetensors",
    ):
        assert (run / f).exists(), f
    # A rerun finds every stage done and trains nothing.
    logs = {p: p.read_text() for p in run.rglob("log.jsonl")}
    distill(cfg, run)
    assert {p: p.read_text() for p in run.rglob("log.jsonl")} == logs
    # The record still names what started the run, and lists the invocation that resumed it.
    again = json.loads((run / "config.json").read_text())
    assert again["created"] == started["created"] and again["command"] == started["command"]
    assert [r["git_commit"] for r in again["resumed"]] == [started["git_commit"]]
    m = json.loads((run / "metrics.json").read_text())
    assert m["started"] == started["created"] and len(m["resumed"]) == 1
    models = [m["student"], m["student_nokd"]]
    total = m["teacher"]["train_time_s"] + sum(b["train_time_s"]["mean"] for b in models)
    assert m["train_time_total_s"] == pytest.approx(total, abs=0.2)
    # The same folder with another config is refused; --force starts over.

    distill(dataclasses.replace(cfg, threads=2), run)  # other CPU threads: the same run
    assert {p: p.read_text() for p in run.rglob("log.jsonl")} == logs
    other = dataclasses.replace(cfg, kd_top_k=4)
    with pytest.raises(ConfigError, match="another config"):
        distill(other, run)
    distill(other, run, force=True)
    assert json.loads((run / "teacher_cache" / "meta.json").read_text())["top_k"] == 4
    assert "resumed" not in json.loads((run / "config.json").read_text())  # a new run


def test_a_teacher_ensemble_trains_each_member_and_is_scored_as_one(
    shop: Path, tmp_path: Path
) -> None:

    cfg = dataclasses.replace(_tiny_cfg(shop), teacher_members=2, ablation=False)
    run = tmp_path / "run"
    distill(cfg, run)
    teacher = json.loads((run / "metrics.json").read_text())["teacher"]
    members = json.loads((run / "teacher" / "metrics.json").read_text())["members"]
    assert [m["seed"] for m in members] == [0, 1]
    for i in range(2):
        assert (run / "teacher" / f"member_{i}" / "model.safetensors").exists()
    assert teacher["parameters_trainable"] == sum(m["parameters"] for m in members)
    assert teacher["test"]["valid_item_rate"] == 1.0
    assert 0.0 <= teacher["test"]["ndcg@10"] <= 1.0
    assert json.loads((run / "teacher" / "config.json").read_text())["members"] == 2
    # A resumed run reuses the ensemble's scores instead of ranking every user again.
    import pocketrec.distill.genrec_train as genrec_train
    import pocketrec.distill.pipeline as pipeline

    calls = []
    real = pipeline.evaluate_genrec
    with pytest.MonkeyPatch.context() as m:
        for module in (pipeline, genrec_train):  # the ensemble's scoring, and every training loop
            m.setattr(module, "evaluate_genrec", lambda *a, **k: calls.append(a) or real(*a, **k))
        distill(cfg, run)
    assert calls == []
    assert json.loads((run / "metrics.json").read_text())["teacher"] == teacher


def test_a_cache_of_other_teacher_weights_is_refused(shop: Path, tmp_path: Path) -> None:
    """A teacher trained again by hand after its outputs were cached does not teach from them."""

    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    cfg = dataclasses.replace(_tiny_cfg(shop), ablation=False)
    distill(cfg, run)
    meta = json.loads((run / "teacher_cache" / "meta.json").read_text())
    assert len(meta["teacher_weights"]) == 16
    distill(cfg, run)  # the same teacher: resumes
    weights = load_file(run / "teacher" / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1.0
    save_file(weights, run / "teacher" / "model.safetensors")
    with pytest.raises(DataError, match="other teacher weights.*--force"):
        distill(cfg, run)
    # A cache written before the fingerprint was recorded is taken as it is.
    from pocketrec.distill.kd import load_teacher_cache

    meta.pop("teacher_weights")
    (run / "teacher_cache" / "meta.json").write_text(json.dumps(meta))
    cache = load_teacher_cache(
        run / "teacher_cache",
        window=cfg.student.max_len,
        sid_fingerprint=meta["sid_hash"],
        teacher="0123456789abcdef",
    )
    assert cache["meta"]["positions"] == meta["positions"]


def test_device_holdout_keeps_the_last_events_out_of_training(shop: Path, tmp_path: Path) -> None:

    from pocketrec.distill.data import load_dataset
    from pocketrec.distill.protocol import leave_one_out

    cfg = dataclasses.replace(_tiny_cfg(shop), device_holdout=2, ablation=False)
    run = tmp_path / "run"
    distill(cfg, run)
    m = json.loads((run / "metrics.json").read_text())
    split = leave_one_out(load_dataset(str(shop)))
    # Every shop user has 6 events: 4 train normally, 2 with the last 2 held out on the device.
    assert m["split"]["train_interactions"] == split.train_lengths().sum() - 2 * len(
        split.eval_users
    )
    assert m["config"]["device_holdout"] == 2 and m["student_nokd"] is None
    cached = np.load(run / "teacher_cache" / "logp.npy", mmap_mode="r")
    assert len(cached) < split.train_lengths().sum()  # no teacher outputs on held-out events


def test_kd_exclude_history_changes_only_the_cached_teacher_outputs(
    shop: Path, tmp_path: Path
) -> None:
    """`--kd-exclude-history`: same teacher, other cached distributions, recorded as such."""
    cfg = dataclasses.replace(_tiny_cfg(shop), ablation=False)
    distill(cfg, tmp_path / "plain")
    distill(dataclasses.replace(cfg, kd_exclude_history=True), tmp_path / "nohist")
    for name in ("plain", "nohist"):
        meta = json.loads((tmp_path / name / "teacher_cache" / "meta.json").read_text())
        assert meta["exclude_history"] == (name == "nohist")
    teachers = [
        json.loads((tmp_path / n / "metrics.json").read_text())["teacher"]
        for n in ("plain", "nohist")
    ]
    assert teachers[0]["test"] == teachers[1]["test"]
    plain, nohist = (
        np.load(tmp_path / n / "teacher_cache" / "logp.npy") for n in ("plain", "nohist")
    )
    assert plain.shape == nohist.shape and not np.array_equal(plain, nohist)


def test_a_cache_made_with_other_distillation_settings_is_refused(
    shop: Path, tmp_path: Path
) -> None:
    """A run folder whose teacher cache came from another temperature or history rule (copied
    stages, an edited config) stops before training on distributions it did not ask for."""
    cfg = dataclasses.replace(_tiny_cfg(shop), ablation=False)
    run = tmp_path / "run"
    distill(cfg, run)
    (run / "config.json").unlink()  # as a folder assembled from another run's stages
    (run / "metrics.json").unlink()
    hotter = dataclasses.replace(
        cfg, student_train=dataclasses.replace(cfg.student_train, kd_temperature=2.0)
    )
    with pytest.raises(DataError, match=r"temperature=1\.0, but this run asks for temperature=2"):
        distill(hotter, run)
    meta_path = run / "teacher_cache" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("exclude_history")  # a cache from before the history rule was recorded: plain
    meta_path.write_text(json.dumps(meta))
    assert not (run / "config.json").exists()  # a refused run records nothing
    with pytest.raises(DataError, match="exclude_history=False.*delete the cache folder"):
        distill(dataclasses.replace(cfg, kd_exclude_history=True), run)
    cached = (run / "teacher_cache" / "logp.npy").stat().st_mtime_ns
    distill(cfg, run)  # the settings it was made with: reused, not recomputed
    assert (run / "teacher_cache" / "logp.npy").stat().st_mtime_ns == cached


def test_kd_exclude_history_flag_reaches_the_config_and_refuses_an_hf_teacher() -> None:
    catalogue = types.SimpleNamespace(default_history_len=20, item_text=None)
    args = build_parser().parse_args(["distill", "sports", "--kd-exclude-history", "--out", "run"])
    assert distill_config(args, catalogue).kd_exclude_history
    hf = "distill sports --teacher hf:/models/lm --kd-exclude-history --out run"
    with pytest.raises(ConfigError, match="kd_exclude_history needs an item-level teacher"):
        distill_config(build_parser().parse_args(hf.split()), catalogue)


def test_device_users_stay_out_of_training(shop: Path, tmp_path: Path) -> None:

    from pocketrec.distill.data import load_dataset
    from pocketrec.distill.protocol import leave_one_out

    cfg = dataclasses.replace(_tiny_cfg(shop), device_users=0.5, ablation=False)
    run = tmp_path / "run"
    distill(cfg, run)
    m = json.loads((run / "metrics.json").read_text())
    split = leave_one_out(load_dataset(str(shop)))
    kept = np.setdiff1d(np.arange(len(split.train_ends)), split.device_users(0.5))
    assert m["split"]["train_interactions"] == split.train_lengths()[kept].sum()
    assert m["config"]["device_users"] == 0.5
    assert m["student"]["test"]["valid_item_rate"]["mean"] == 1.0  # device users are still scored


def test_every_stage_reads_the_same_training_split(shop: Path, tmp_path: Path) -> None:
    """Collaborative IDs and the exported bundle see only the events the model trained on."""

    from pocketrec.export.bundle import Student, _catalog

    cfg = _tiny_cfg(shop)
    cfg = dataclasses.replace(
        cfg,
        sid=dataclasses.replace(cfg.sid, source="cf", cf_dim=8),
        device_holdout=1,
        device_users=0.5,
        ablation=False,
        seeds=[0],
    )
    run = tmp_path / "run"
    distill(cfg, run)
    trained = json.loads((run / "metrics.json").read_text())["split"]["train_interactions"]
    sids = json.loads((run / "sids" / "stats.json").read_text())["embedding"]
    assert sids["cf_training_interactions"] == trained
    student = Student.load(run)
    assert student.split.train_lengths().sum() == trained
    assert sum(_catalog(student.dataset, student.split)["popularity"]) == trained


def test_bad_teacher_is_refused_before_training(
    shop: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["distill", str(shop), "--out", str(tmp_path / "r"), "--teacher", "gpt5"])
    assert code == 2 and "unknown teacher 'gpt5'" in capsys.readouterr().err
    code = main(["distill", str(shop), "--out", str(tmp_path / "r"), "--teacher", f"hf:{tmp_path}"])
    assert code == 2 and "no config.json" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing started


def test_one_process_stages_refuse_torchrun_before_any_work(
    shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lm = tmp_path / "lm"
    write_text(lm / "config.json", json.dumps({"architectures": ["Qwen2ForCausalLM"]}))
    write_text(lm / "tokenizer.json", "{}")
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; no process group is joined
    code = main(["distill", str(shop), "--out", str(tmp_path / "r"), "--teacher", f"hf:{lm}"])
    err = capsys.readouterr().err
    assert code == 2 and "the hf: teacher runs in one process" in err and "torchrun" in err
    code = main(["baseline", str(shop), "--out", str(tmp_path / "b")])
    assert code == 2 and "the SASRec baseline runs in one process" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "b").exists()


def test_semantic_ids_of_another_catalogue_are_refused(shop: Path, tmp_path: Path) -> None:

    from pocketrec.distill.sids.stage import SIDConfig, build_semantic_ids

    other = _shop(tmp_path / "other", num_users=10)
    (tmp_path / "other" / "items.jsonl").write_text(
        (tmp_path / "other" / "items.jsonl").read_text().replace('"i0_0"', '"zz"')
    )
    rows = (other / "interactions.csv").read_text().replace("i0_0", "zz")
    (other / "interactions.csv").write_text(rows)
    sid_dir = build_semantic_ids(
        SIDConfig(dataset=str(other), num_levels=2, codebook_size=8, device="cpu"),
        tmp_path / "sids",
    )
    cfg = dataclasses.replace(_tiny_cfg(shop), sids=str(sid_dir))
    with pytest.raises(DataError, match="another catalogue"):
        distill(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "teacher").exists()


def test_student_shape_must_match_the_semantic_ids(shop: Path, tmp_path: Path) -> None:

    cfg = _tiny_cfg(shop)
    cfg = dataclasses.replace(cfg, student=dataclasses.replace(cfg.student, num_levels=4))
    with pytest.raises(ConfigError, match="student expects 4 levels"):
        distill(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "teacher").exists()


def test_every_distill_record_was_made_with_its_presets_current_settings() -> None:
    """Rerunning a record's command trains the same models: presets change only where no
    committed record used them (MovieLens-1M `full` trains at 3e-3; its `quick` record and
    every Amazon record keep 1e-3). A record's command is parsed as the CLI parses it, so its
    overrides (`--epochs`, `--precision`, ...) count; a setting added after a record was made
    must keep, at its default, what the record ran."""
    from pocketrec.distill.genrec_train import TrainConfig
    from pocketrec.distill.presets import preset

    train_defaults = dataclasses.asdict(TrainConfig())
    records = sorted((Path(__file__).parents[2] / "benchmarks" / "results").glob("distill_*.json"))
    checked = 0
    for path in records:
        record = json.loads(path.read_text())
        if record.get("model") != "pocketrec-distill":
            continue
        made = record["config"]
        history = 200 if made["dataset"] == "ml-1m" else 20
        words = shlex.split(record["command"])
        if "distill" in words:  # torchrun ... -m pocketrec distill ... or pocketrec distill ...
            args = build_parser().parse_args(words[words.index("distill") :])
            catalogue = types.SimpleNamespace(default_history_len=history, item_text=None)
            now = dataclasses.asdict(distill_config(args, catalogue))
        else:  # quickstart runs a preset as it is
            now = dataclasses.asdict(preset(made["preset"], made["dataset"], history))
        for key in ("student", "teacher_model", "student_train", "teacher_train"):
            recorded = dict(made[key])
            if key.endswith("_train"):
                for name, value in train_defaults.items():
                    recorded.setdefault(name, value)
            assert now[key] == recorded, f"{path.name}: the preset's {key} changed"
        assert now["teacher_members"] == made["teacher_members"], path.name
        checked += 1
    assert checked >= 4
    assert preset("full", "ml-1m", 200).student_train.lr == 3e-3


def test_distill_epochs_and_precision_reach_both_models() -> None:
    command = "distill ml-1m --preset full --epochs 5 --precision bf16 --out run"
    args = build_parser().parse_args(command.split())
    cfg = distill_config(args, types.SimpleNamespace(default_history_len=200, item_text=None))
    for train in (cfg.teacher_train, cfg.student_train):
        assert (train.max_epochs, train.precision) == (5, "bf16")
    assert cfg.student_train.eval_limit == 6000  # the rest of the preset stays


def test_kd_flags_reach_the_distilled_students_alone() -> None:
    catalogue = types.SimpleNamespace(default_history_len=200, item_text=None)
    command = "distill ml-1m --preset full --epochs 16 --kd-weight 2 --kd-temperature 1.5 --out r"
    cfg = distill_config(build_parser().parse_args(command.split()), catalogue)
    plain = "distill ml-1m --preset full --epochs 16 --out r"
    base = distill_config(build_parser().parse_args(plain.split()), catalogue)
    assert cfg.student_train == dataclasses.replace(
        base.student_train, kd_weight=2.0, kd_temperature=1.5
    )
    assert cfg.student_train.max_epochs == 16  # beside --epochs, not instead of it
    assert (cfg.teacher_train, cfg.teacher_model) == (base.teacher_train, base.teacher_model)
    for flags in ("--kd-weight 0", "--kd-temperature -1", "--kd-temperature inf"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(f"distill ml-1m --out r {flags}".split())


def test_teacher_shape_flags_reach_the_teacher_alone() -> None:
    command = "distill sports --preset full --teacher-hidden 256 --teacher-dropout 0.5 "
    command += "--teacher-weight-decay 0.1 --out run"
    args = build_parser().parse_args(command.split())
    catalogue = types.SimpleNamespace(default_history_len=20, item_text=None)
    cfg = distill_config(args, catalogue)
    plain = "distill sports --preset full --out run"
    base = distill_config(build_parser().parse_args(shlex.split(plain)), catalogue)
    assert (cfg.teacher_model.hidden, cfg.teacher_model.dropout) == (256, 0.5)
    assert cfg.teacher_train.weight_decay == 0.1
    assert cfg.teacher_train == dataclasses.replace(base.teacher_train, weight_decay=0.1)
    # the student, its training and the rest of the teacher's shape stay the preset's
    assert (cfg.student, cfg.student_train) == (base.student, base.student_train)
    assert cfg.teacher_model == dataclasses.replace(base.teacher_model, hidden=256, dropout=0.5)


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--teacher-hidden 0", "expected a positive integer"),
        ("--teacher-dropout 1", "expected a fraction"),
        ("--teacher-weight-decay -1", "expected a number >= 0"),
        ("--teacher-weight-decay nan", "expected a number >= 0"),
    ],
)
def test_teacher_shape_flags_refuse_bad_values(
    flags: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(f"distill sports --out run {flags}".split())
    assert message in capsys.readouterr().err


def test_teacher_shape_flags_refuse_an_hf_teacher() -> None:
    command = "distill sports --teacher hf:/models/lm --teacher-hidden 256 --out run"
    args = build_parser().parse_args(shlex.split(command))
    catalogue = types.SimpleNamespace(default_history_len=20, item_text=None)
    with pytest.raises(ConfigError, match="hf: teacher's size is its checkpoint's"):
        distill_config(args, catalogue)


def test_a_run_folder_from_before_the_precision_setting_resumes(shop: Path, tmp_path: Path) -> None:
    """Folders written before `precision` existed hold no such key; they ran float32."""
    run = tmp_path / "run"
    cfg = _tiny_cfg(shop)
    distill(cfg, run)
    path = run / "config.json"
    record = json.loads(path.read_text())
    for train in ("teacher_train", "student_train"):
        del record["config"][train]["precision"]
    path.write_text(json.dumps(record))
    distill(cfg, run)  # resumes: nothing to train
    bf16 = dataclasses.replace(
        cfg, student_train=dataclasses.replace(cfg.student_train, precision="bf16")
    )
    with pytest.raises(ConfigError, match="changed: student_train"):
        distill(bf16, run)


def test_semantic_ids_left_half_written_are_built_again(shop: Path, tmp_path: Path) -> None:
    """A kill during an older, unstaged build left semantic_ids.npy without config.json."""
    from pocketrec.distill.data import load_dataset
    from pocketrec.distill.pipeline import prepare_sids
    from pocketrec.distill.protocol import training_split
    from pocketrec.distill.sids.stage import load_semantic_ids

    cfg = _tiny_cfg(shop)
    dataset = load_dataset(str(shop))
    split, out = training_split(dataset), tmp_path / "sids"
    prepare_sids(cfg, dataset, split, out)
    built = load_semantic_ids(out)[0]
    (out / "config.json").unlink()
    (out / "codebooks.npy").unlink()
    prepare_sids(cfg, dataset, split, out)
    np.testing.assert_array_equal(load_semantic_ids(out)[0], built)
    assert (out / "codebooks.npy").exists()
    assert not out.with_name("sids.tmp").exists() and not out.with_name("sids.old").exists()


@pytest.mark.slow
def test_two_ranks_run_every_stage_and_copy_the_semantic_ids_once(
    shop: Path, tmp_path: Path
) -> None:
    """`torchrun ... pocketrec distill --sids DIR`: rank 0 alone writes shared folders."""
    import os
    import pickle
    import subprocess
    import sys

    alone = tmp_path / "alone"
    distill(dataclasses.replace(_tiny_cfg(shop), ablation=False), alone)
    cfg = dataclasses.replace(
        _tiny_cfg(shop), sids=str(alone / "sids"), teacher_members=2, ablation=False
    )
    (tmp_path / "cfg.pkl").write_bytes(pickle.dumps(cfg))  # a test's own object, read back below
    script = tmp_path / "run.py"
    script.write_text(
        "import pickle, sys\n"
        "from pathlib import Path\n"
        "from pocketrec.distill.pipeline import distill\n"
        "distill(pickle.loads(Path(sys.argv[1]).read_bytes()), Path(sys.argv[2]))\n"
    )
    run = tmp_path / "ranks"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--standalone", "--local-addr", "127.0.0.1",
        str(script), str(tmp_path / "cfg.pkl"), str(run),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    stale = run / "teacher_cache" / "part5"  # left by a killed run with more ranks
    stale.mkdir(parents=True)
    for name in ("logp", "codes", "coords"):
        np.save(stale / f"{name}.npy", np.zeros((3, 2), np.int64))
    for _ in range(2):  # the second invocation resumes a finished run: nothing is trained
        subprocess.run(command, check=True, env=env, timeout=600, cwd=Path.cwd())
    seed = json.loads((run / "student" / "seed_0" / "metrics.json").read_text())
    assert seed["world_size"] == 2 and seed["test"]["valid_item_rate"] == 1.0
    assert json.loads((run / "metrics.json").read_text())["teacher"]["valid"]["ndcg@10"] >= 0
    assert len(json.loads((run / "config.json").read_text())["resumed"]) == 1
    for name in ("semantic_ids.npy", "tokenizer.json", "config.json"):
        assert (run / "sids" / name).read_bytes() == (alone / "sids" / name).read_bytes()
    assert [p for p in run.rglob("*") if p.suffix in (".tmp", ".old")] == []
    meta = json.loads((run / "teacher_cache" / "meta.json").read_text())
    assert meta["positions"] == len(np.load(run / "teacher_cache" / "logp.npy"))
    assert not stale.exists()
    alone_meta = json.loads((alone / "teacher_cache" / "meta.json").read_text())
    assert meta["positions"] == alone_meta["positions"]
