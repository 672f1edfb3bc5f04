"""The quickstart end to end at smoke scale: every stage, the report, reuse and refusals."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from pocketrec._errors import ConfigError
from pocketrec.distill.errors import DataError
from pocketrec.export.quickstart import QuickstartConfig, run_quickstart
from tests.distill.test_pipeline import _shop, _tiny_cfg


def _cfg(shop: Path, **overrides: object) -> QuickstartConfig:
    tiny = _tiny_cfg(shop)
    keep = ("sid", "student", "teacher_model", "teacher_train", "student_train", "kd_top_k")
    cfg = QuickstartConfig(
        dataset=str(shop),
        preset="smoke",
        precisions=("fp32", "int8"),
        quality_users=50,
        bench_repetitions=5,
        threads=1,
        distill_overrides={k: getattr(tiny, k) for k in keep} | {"device": "cpu"},
    )
    return dataclasses.replace(cfg, **overrides)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _shop(tmp_path_factory.mktemp("data") / "shop")


@pytest.fixture(scope="module")
def finished(shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quickstart") / "run"
    run_quickstart(_cfg(shop), out, log=lambda _: None)
    return out


def test_every_stage_runs_and_the_report_shows_the_measured_numbers(finished: Path) -> None:
    summary = json.loads((finished / "summary.json").read_text())
    assert summary["precisions_written"] == ["fp32", "int8"] or summary["export_errors"]
    for name in ("report.md", "quality.png", "latency.png", "quality_vs_size.png"):
        assert (finished / name).stat().st_size > 0, name
    report = (finished / "report.md").read_text()
    fp32 = json.loads((finished / "eval" / "fp32.json").read_text())["metrics"]
    assert f"| bundle fp32 (SDK, every test user) | {fp32['ndcg@10']:.4f} |" in report
    teacher = summary["distill"]["teacher"]["test"]["ndcg@10"]
    assert f"| teacher (torch) | {teacher:.4f} |" in report
    assert summary["bench"]["fp32-cpu"]["format"] == "pocketrec-bench/1"
    # The SDK's fp32 number is the torch student's (the export parity check's promise).
    torch_student = summary["distill"]["student"]["test"]["ndcg@10"]["mean"]
    assert fp32["ndcg@10"] == pytest.approx(torch_student, rel=0.005, abs=1e-4)


def test_a_rerun_reuses_every_finished_stage(shop: Path, finished: Path) -> None:
    lines: list[str] = []
    run_quickstart(_cfg(shop), finished, log=lines.append)
    assert sum("reused" in line for line in lines) == 4, lines


def test_changed_inputs_are_refused_then_rebuilt_from_that_stage_on(
    shop: Path, tmp_path: Path, finished: Path
) -> None:
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    with pytest.raises(ConfigError, match="changed: precisions"):
        run_quickstart(_cfg(shop, precisions=("fp32",)), out, log=lambda _: None)
    lines: list[str] = []
    run_quickstart(_cfg(shop, precisions=("fp32",)), out, force=True, log=lines.append)
    assert any("[distill] done earlier" in line for line in lines)  # upstream kept
    assert any("[export] inputs changed" in line for line in lines)
    assert not (out / "bundles" / "int8").exists()
    assert json.loads((out / "summary.json").read_text())["precisions_written"] == ["fp32"]


def test_a_stage_made_by_another_pocketrec_version_is_not_reused(
    shop: Path, tmp_path: Path, finished: Path
) -> None:
    import shutil

    from pocketrec._version import __version__

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    marker = out / "bundles" / "stage.json"
    done = json.loads(marker.read_text())
    assert done["pocketrec"] == __version__
    marker.write_text(json.dumps(done | {"pocketrec": "0.0.1"}))
    with pytest.raises(ConfigError, match=re.escape(f"changed: pocketrec 0.0.1 -> {__version__}")):
        run_quickstart(_cfg(shop), out, log=lambda _: None)
    lines: list[str] = []
    run_quickstart(_cfg(shop), out, force=True, log=lines.append)
    assert any("[distill] done earlier" in line for line in lines)  # its version still matches
    assert any("[export] inputs changed" in line for line in lines)
    assert json.loads(marker.read_text())["pocketrec"] == __version__
    unversioned = {k: v for k, v in json.loads(marker.read_text()).items() if k != "pocketrec"}
    marker.write_text(json.dumps(unversioned))  # written by code before versions were recorded
    with pytest.raises(ConfigError, match=re.escape("pocketrec (not recorded) -> ")):
        run_quickstart(_cfg(shop), out, log=lambda _: None)


def test_a_stage_that_did_not_finish_is_redone_not_trusted(
    shop: Path, tmp_path: Path, finished: Path
) -> None:
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    (out / "bench" / "stage.json").unlink()  # as if killed (or out of disk) while benchmarking
    lines: list[str] = []
    run_quickstart(_cfg(shop), out, log=lines.append)
    assert "[bench] running" in lines


def test_a_missing_dataset_fails_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="POCKETREC_DATA"):
        run_quickstart(
            QuickstartConfig(dataset="amazon2014_nothing", data_root=tmp_path),
            tmp_path / "run",
            log=lambda _: None,
        )
    assert not (tmp_path / "run").exists()
