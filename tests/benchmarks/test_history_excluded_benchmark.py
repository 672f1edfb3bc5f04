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
