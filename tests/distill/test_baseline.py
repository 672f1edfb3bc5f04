"""SASRec trains, scores with the shared protocol, resumes exactly, and refuses mixed runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from pocketrec._errors import ConfigError
from pocketrec.distill.baseline import train_baseline
from pocketrec.distill.data import build_dataset
from pocketrec.distill.sasrec import SASRecConfig, sasrec_amazon


def _cyclic(num_users: int = 120, num_items: int = 30, length: int = 12):
    """Every user walks the item cycle 0 -> 1 -> 2 ... from a random start: fully learnable."""
    rng = np.random.default_rng(0)
    starts = rng.integers(0, num_items, num_users)
    sequences = [[f"i{(s + t) % num_items}" for t in range(length)] for s in starts]
    return build_dataset(
        "cyclic", [f"u{u}" for u in range(num_users)], sequences, default_history_len=8
    )


def _cfg(**overrides: object) -> SASRecConfig:
    base = SASRecConfig(
        dataset="cyclic",
        max_len=8,
        hidden=32,
        num_layers=1,
        num_heads=1,
        dropout=0.1,
        batch_size=32,
        max_epochs=12,
        eval_every=2,
        patience=50,
        lr=5e-3,
        threads=1,
    )
    return dataclasses.replace(base, **overrides)


def test_learns_a_learnable_pattern(tmp_path: Path) -> None:
    out = train_baseline(_cfg(), tmp_path / "run", dataset=_cyclic())
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["test"]["ndcg@10"]["mean"] > 0.9  # random ranking would give ~0.1
    assert summary["split"]["users_evaluated"] == 120
    assert summary["command"] and summary["machine"]["cpu_count"]
    assert np.load(out / "seed_0" / "item_embeddings.npy").shape == (30, 32)


def test_sampled_softmax_learns_too(tmp_path: Path) -> None:
    out = train_baseline(_cfg(loss="sampled", num_negatives=8), tmp_path / "run", dataset=_cyclic())
    assert json.loads((out / "metrics.json").read_text())["test"]["ndcg@10"]["mean"] > 0.8


def test_cosine_scores_with_temperature_learn_too(tmp_path: Path) -> None:
    out = train_baseline(_cfg(temperature=0.1), tmp_path / "run", dataset=_cyclic())
    assert json.loads((out / "metrics.json").read_text())["test"]["ndcg@10"]["mean"] > 0.8


def test_a_run_made_before_a_setting_existed_still_resumes(tmp_path: Path) -> None:
    out = train_baseline(_cfg(max_epochs=2), tmp_path / "run", dataset=_cyclic())
    config = json.loads((out / "config.json").read_text())
    del config["temperature"]  # as written by an older version
    (out / "config.json").write_text(json.dumps(config))
    train_baseline(_cfg(max_epochs=2), out, dataset=_cyclic())  # no ConfigError


def test_resume_gives_the_same_model(tmp_path: Path, interrupt_training) -> None:
    full = train_baseline(_cfg(max_epochs=6), tmp_path / "full", dataset=_cyclic())

    # Interrupt the same run after its third epoch, as Ctrl-C would, then rerun it.
    with interrupt_training(3):
        train_baseline(_cfg(max_epochs=6), tmp_path / "resumed", dataset=_cyclic())
    assert (tmp_path / "resumed" / "seed_0" / "checkpoint_model").exists()
    resumed = train_baseline(_cfg(max_epochs=6), tmp_path / "resumed", dataset=_cyclic())
    a = json.loads((full / "seed_0" / "metrics.json").read_text())
    b = json.loads((resumed / "seed_0" / "metrics.json").read_text())
    assert a["test"] == b["test"] and a["best_epoch"] == b["best_epoch"]
    assert not (resumed / "seed_0" / "checkpoint_model").exists()


def test_out_dir_with_another_config_is_refused(tmp_path: Path) -> None:
    train_baseline(_cfg(max_epochs=2), tmp_path / "run", dataset=_cyclic())
    with pytest.raises(ConfigError, match="another config"):
        train_baseline(_cfg(max_epochs=2, hidden=16), tmp_path / "run", dataset=_cyclic())


def test_config_reports_every_problem() -> None:
    with pytest.raises(ConfigError) as e:
        SASRecConfig(hidden=30, num_heads=4, dropout=1.5, loss="bpr", seeds=[])
    text = str(e.value)
    for fragment in ("divisible", "dropout", "loss", "seeds"):
        assert fragment in text
    assert sasrec_amazon().max_len == 20


def test_seeds_from_an_earlier_record_are_merged_not_retrained(tmp_path: Path) -> None:
    first = train_baseline(_cfg(max_epochs=2, seeds=[0]), tmp_path / "a", dataset=_cyclic())
    record = json.loads((first / "metrics.json").read_text())
    out = train_baseline(
        _cfg(max_epochs=2, seeds=[0, 1]), tmp_path / "b", dataset=_cyclic(), reuse=record
    )
    merged = json.loads((out / "metrics.json").read_text())
    assert not (out / "seed_0").exists()  # taken from the record
    assert (out / "seed_1" / "metrics.json").exists()  # trained here
    assert merged["per_seed"][0] == record["per_seed"][0]
    assert merged["merged_from"][0]["seeds"] == [0]
    assert merged["merged_from"][0]["command"] == record["command"]
    with pytest.raises(ConfigError, match="hidden: 32 there, 16 here"):
        train_baseline(
            _cfg(max_epochs=2, hidden=16), tmp_path / "c", dataset=_cyclic(), reuse=record
        )


def test_a_run_without_refit_gains_it_without_retraining_selection(tmp_path: Path) -> None:
    out = train_baseline(_cfg(max_epochs=4, refit=False), tmp_path / "run", dataset=_cyclic())
    before = json.loads((out / "metrics.json").read_text())
    selection_epochs = (out / "seed_0" / "log.jsonl").read_text().count('"phase": "model"')

    train_baseline(_cfg(max_epochs=4, refit=True), out, dataset=_cyclic())
    after = json.loads((out / "metrics.json").read_text())
    log = (out / "seed_0" / "log.jsonl").read_text()
    assert log.count('"phase": "model"') == selection_epochs  # selection did not run again
    assert log.count('"phase": "refit"') == after["per_seed"][0]["best_epoch"] + 1
    assert after["test"] == before["test"] and after["valid"] == before["valid"]
    assert after["refit_added_to"]["command"] == before["command"]
    # The same scores a run made with refit from the start gets.
    fresh = train_baseline(_cfg(max_epochs=4, refit=True), tmp_path / "fresh", dataset=_cyclic())
    assert json.loads((fresh / "metrics.json").read_text())["test_refit"] == after["test_refit"]
    # A later command in the same folder keeps the note; merged into another record, too.
    train_baseline(_cfg(max_epochs=4, refit=True, seeds=[0]), out, dataset=_cyclic())
    again = json.loads((out / "metrics.json").read_text())
    assert again["refit_added_to"]["command"] == before["command"]
    merged = train_baseline(
        _cfg(max_epochs=4, refit=True, seeds=[0, 1]), tmp_path / "m", dataset=_cyclic(), reuse=after
    )
    provenance = json.loads((merged / "metrics.json").read_text())["merged_from"][0]
    assert provenance["refit_added_to"]["command"] == before["command"]
    # Turning it off again would drop scores the folder holds: refused like any other change.
    with pytest.raises(ConfigError, match="another config"):
        train_baseline(_cfg(max_epochs=4, refit=False), out, dataset=_cyclic())


def test_an_interrupted_refit_extension_still_names_the_run_it_extends(tmp_path: Path) -> None:
    out = train_baseline(_cfg(max_epochs=2, refit=False), tmp_path / "run", dataset=_cyclic())
    before = json.loads((out / "metrics.json").read_text())
    # An extension cut short has written its config (refit on) but no new summary.
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(config | {"refit": True}))
    train_baseline(_cfg(max_epochs=2, refit=True), out, dataset=_cyclic())
    after = json.loads((out / "metrics.json").read_text())
    assert after["refit_added_to"]["command"] == before["command"] and "test_refit" in after
