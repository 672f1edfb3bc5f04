"""benchmarks/train_step_time.py: fp32 and bf16 steps of the preset's models, side by side."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from tests.benchmarks.scripts import load_script
from tests.distill.test_pipeline import _shop, _tiny_cfg


def test_times_both_precisions_for_each_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = _shop(tmp_path / "shop")
    bench = load_script("train_step_time")
    # The full preset's shapes need a real catalogue; the timing is the same on a tiny one.
    monkeypatch.setattr(bench, "preset", lambda name, dataset, history_len: _tiny_cfg(shop))
    out = tmp_path / "steps.json"
    argv = [str(shop), "--steps", "2", "--batch", "8", "--work", str(tmp_path / "w")]
    assert bench.main([*argv, "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(record["models"]) == {"student", "teacher"}
    for timing in record["models"].values():
        steps = timing["step_s_all"]
        assert [len(steps[p]) for p in ("fp32", "bf16")] == [2, 2]  # the warm-up step is left out
        median = {p: statistics.median(steps[p]) for p in ("fp32", "bf16")}
        assert timing["step_s"] == median
        assert timing["fp32_over_bf16"] == pytest.approx(median["fp32"] / median["bf16"], rel=1e-2)
    assert record["command"] and record["machine"]["torch_threads"] == 1
    assert isinstance(record["cpu_bf16_flags"], list)
    out.unlink()
    with pytest.raises(SystemExit):  # refused before any semantic IDs are built
        bench.main(
            [*argv, "--models", "oracle", "--work", str(tmp_path / "w2"), "--json", str(out)]
        )
    assert not (tmp_path / "w2").exists() and not out.exists()
