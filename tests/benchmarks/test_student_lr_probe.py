"""benchmarks/student_lr_probe.py: one model per learning rate, validation only, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.scripts import load_script
from tests.distill.test_pipeline import _shop, _tiny_cfg


@pytest.mark.parametrize("model", ["student", "teacher"])
def test_trains_one_model_per_rate_and_keeps_validation_only(
    model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = _shop(tmp_path / "shop")
    probe = load_script("student_lr_probe")
    # The full preset's shapes need a real catalogue; the probe logic is the same on the
    # pipeline tests' tiny one.
    monkeypatch.setattr(probe, "preset", lambda name, dataset, history_len: _tiny_cfg(shop))
    monkeypatch.chdir(tmp_path)  # the shared semantic IDs go to runs/lr_probe_sids_<dataset>
    out, work = tmp_path / "probe.json", tmp_path / "work"
    argv = [str(shop), "--model", model, "--lrs", "0.01,0.001", "--epochs", "2", "--threads", "1"]
    argv += ["--work", str(work), "--json", str(out)]
    assert probe.main(argv) == 0
    record = json.loads(out.read_text())
    assert record["model"] == f"pocketrec-{model}-lr-probe" and f"{model}_train" in record
    assert [r["lr"] for r in record["runs"]] == [0.01, 0.001]
    # what every run trained with, not the preset's settings: no teacher, every epoch
    trained = record[f"{model}_train"]
    assert (trained["kd_weight"], trained["max_epochs"], trained["patience"]) == (0.0, 2, 2)
    assert "lr" not in trained
    if model == "student":  # the model as built: the student has item-id embeddings
        assert record["student"]["num_items"] > 0
    else:
        assert record["teacher"]["features"] and "teacher_codes" in record["teacher"]
    assert (tmp_path / "runs" / f"lr_probe_sids_{shop.name}" / "semantic_ids.npy").exists()
    for run in record["runs"]:
        # every epoch ran (no early stop); validation is scored as the preset says (here: each)
        logged = [json.loads(line) for line in (work / f"lr_{run['lr']:g}" / "log.jsonl").open()]
        assert [r["epoch"] for r in logged] == [0, 1]
        assert [c["epoch"] for c in run["curve"]] == [1, 2]
        assert 0.0 <= run["valid_history_excluded"]["ndcg@10"] <= 1.0
        assert run["valid"]["valid_item_rate"] == 1.0
    assert "test" not in json.dumps(record["runs"])  # the choice never sees the test items
    assert record["runs"][0]["curve"] != record["runs"][1]["curve"]
    assert record["command"] and record["git_commit"] is not None
    # A rerun finds both students trained and trains nothing.
    logs = {p: p.read_text() for p in work.rglob("log.jsonl")}
    assert probe.main(argv) == 0
    assert {p: p.read_text() for p in work.rglob("log.jsonl")} == logs


def test_dropout_and_weight_decay_replace_the_presets_and_name_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = _shop(tmp_path / "shop")
    probe = load_script("student_lr_probe")
    monkeypatch.setattr(probe, "preset", lambda name, dataset, history_len: _tiny_cfg(shop))
    monkeypatch.chdir(tmp_path)  # the default work folder is relative: runs/...
    out = tmp_path / "probe.json"
    argv = [str(shop), "--model", "teacher", "--lrs", "0.01", "--epochs", "1", "--threads", "1"]
    argv += ["--dropout", "0.5", "--weight-decay", "0.1", "--json", str(out)]
    assert probe.main(argv) == 0
    record = json.loads(out.read_text())
    assert record["teacher"]["dropout"] == 0.5
    assert record["teacher_train"]["weight_decay"] == 0.1
    width = record["teacher"]["hidden"]
    folder = tmp_path / "runs" / f"teacher_lr_probe_{shop.name}_d{width}_p0.5_wd0.1"
    assert (folder / "lr_0.01" / "metrics.json").exists()
    saved = json.loads((folder / "lr_0.01" / "metrics.json").read_text())
    assert saved["train_config"]["weight_decay"] == 0.1
    # The same folder with another setting would report the old model: refused.
    again = [*argv[:-4], "--weight-decay", "0.2", "--work", str(folder), "--json", str(out)]
    with pytest.raises(SystemExit, match="other settings"):
        probe.main(again)
    for bad in (["--dropout", "1.5"], ["--weight-decay", "-1"], ["--epochs", "0"]):
        with pytest.raises(SystemExit):
            probe.main([*argv, *bad])
