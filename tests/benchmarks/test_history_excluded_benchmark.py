"""benchmarks/history_excluded.py: a finished baseline run scored both ways, checked against it."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from pocketrec.distill.baseline import train_baseline
from pocketrec.distill.sasrec import SASRecConfig
from tests.benchmarks.scripts import load_script


def _main():
    return load_script("history_excluded").main


def _catalogue(folder: Path) -> Path:
    """Users walk a 30-item cycle from random starts (no item twice per user)."""
    rng = np.random.default_rng(0)
    rows = ["user,item,timestamp"]
    for u in range(90):
        start = int(rng.integers(0, 30))
        rows += [f"u{u},i{(start + t) % 30},{t}" for t in range(10)]
    folder.mkdir()
    (folder / "interactions.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_scores_the_saved_models_both_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _catalogue(tmp_path / "cycle")
    cfg = SASRecConfig(
        dataset=str(data), max_len=8, hidden=16, num_layers=1, num_heads=1, dropout=0.1,
        batch_size=32, max_epochs=3, eval_every=1, lr=5e-3, threads=1, refit=True,
    )  # fmt: skip
    runs = [
        train_baseline(dataclasses.replace(cfg, seeds=[s]), tmp_path / f"run{s}") for s in (0, 1)
    ]
    out = tmp_path / "record.json"
    argv = ["history_excluded.py", *map(str, runs), "--json", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    assert _main()() == 0
    record = json.loads(out.read_text())
    assert record["seeds"] == [0, 1] and record["command"]
    for key in ("test", "test_refit"):
        made = [json.loads((r / "metrics.json").read_text())[key]["ndcg@10"]["mean"] for r in runs]
        assert record[key]["ndcg@10"]["values"] == pytest.approx(made)
        # Leaving out the history never ranks a target lower when no user repeats an item.
        for plain, excluded in zip(
            record[key]["ndcg@10"]["values"],
            record[f"{key}_history_excluded"]["ndcg@10"]["values"],
            strict=True,
        ):
            assert excluded >= plain
    # Weights that do not give the recorded score are refused.
    seed_metrics = runs[1] / "seed_1" / "metrics.json"
    tampered = json.loads(seed_metrics.read_text())
    tampered["test"]["ndcg@10"] += 0.01
    seed_metrics.write_text(json.dumps(tampered))
    with pytest.raises(SystemExit, match="not the model that was scored"):
        _main()()
    # Folders of different configs are not averaged together.
    other = train_baseline(dataclasses.replace(cfg, hidden=8, max_epochs=1), tmp_path / "other")
    monkeypatch.setattr(sys, "argv", [*argv[:2], str(other), "--json", str(out)])
    with pytest.raises(SystemExit, match="different configs"):
        _main()()


def test_scores_a_distill_run_both_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pocketrec.distill.pipeline import distill
    from tests.distill.test_pipeline import _shop, _tiny_cfg

    shop = _shop(tmp_path / "shop")
    cfg = dataclasses.replace(_tiny_cfg(shop), teacher_members=2, seeds=[0, 1])
    run = tmp_path / "run"
    out = tmp_path / "record.json"
    argv = ["history_excluded.py", str(run), "--json", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    (run / "student").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": {"student": {}}}))
    with pytest.raises(SystemExit, match="has not finished"):
        _main()()
    distill(cfg, run, force=True)
    assert _main()() == 0
    record = json.loads(out.read_text())
    made = json.loads((run / "metrics.json").read_text())
    assert record["runs_of"] == "distill" and record["preset"] == "smoke"
    assert record["run_command"] == made["command"]
    for kind in ("student", "student_nokd"):
        assert record[kind]["seeds"] == [0, 1]
        assert record[kind]["test"]["ndcg@10"] == made[kind]["test"]["ndcg@10"]
        assert record[kind]["test_history_excluded"]["valid_item_rate"]["mean"] == 1.0
    teacher = record["teacher"]
    assert teacher["test"]["ndcg@10"] == pytest.approx(made["teacher"]["test"]["ndcg@10"])
    # Exact ranking and no user revisits an item: leaving the history out only lifts targets.
    assert teacher["test_history_excluded"]["ndcg@10"] >= teacher["test"]["ndcg@10"]
    # The benchmark tables show the history-excluded rows under the run's own.
    table = (
        load_script("render")
        .distill_table([{**made, "_file": "distill.json"}, {**record, "_file": "excluded.json"}])
        .splitlines()
    )
    shown = [row for row in table if "history window excluded" in row]
    assert len(shown) == 3 and all("results/excluded.json" in row for row in shown)
    ndcg = record["student"]["test_history_excluded"]["ndcg@10"]
    assert f"{ndcg['mean']:.4f} ± {ndcg['std']:.4f}" in shown[1]
    # Rows are shown only beside the run whose models were scored.
    other = json.loads(json.dumps(made))
    other["student"]["test"]["ndcg@10"]["mean"] += 0.01
    with pytest.raises(SystemExit, match="rescore the run"):
        load_script("render").distill_table(
            [{**other, "_file": "distill.json"}, {**record, "_file": "excluded.json"}]
        )
    # A distill run is scored on its own, not averaged with other folders.
    monkeypatch.setattr(sys, "argv", [*argv[:2], str(tmp_path / "other"), "--json", str(out)])
    with pytest.raises(SystemExit, match="on its own"):
        _main()()
    # Weights that do not give the recorded score are refused.
    seed_metrics = run / "student_nokd" / "seed_1" / "metrics.json"
    tampered = json.loads(seed_metrics.read_text())
    tampered["test"]["ndcg@10"] += 0.01
    seed_metrics.write_text(json.dumps(tampered))
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match="not the model that was scored"):
        _main()()
