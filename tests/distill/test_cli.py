"""The real `pocketrec` console script: help, JSON output, and errors with hints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pocketrec._cli import build_parser, main


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("pocketrec")
    cmd = [exe] if exe else [sys.executable, "-m", "pocketrec"]
    return subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def _all_commands() -> list[list[str]]:
    commands = []
    sub = next(a for a in build_parser()._actions if a.choices)  # the subcommand action
    for name, parser in sub.choices.items():
        commands.append([name])
        nested = [a for a in parser._actions if isinstance(a.choices, dict)]
        for action in nested:
            commands.extend([name, child] for child in action.choices)
    return commands


@pytest.mark.parametrize("command", _all_commands(), ids=" ".join)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([*command, "--help"])
    assert e.value.code == 0
    assert "usage: pocketrec" in capsys.readouterr().out


def test_every_command_but_the_interactive_demo_prints_json() -> None:
    sub = next(a for a in build_parser()._actions if a.choices)
    leaves = {}
    for name, parser in sub.choices.items():
        nested = [a for a in parser._actions if isinstance(a.choices, dict)]
        for action in nested:
            leaves |= {f"{name} {child}": p for child, p in action.choices.items()}
        if not nested:
            leaves[name] = parser
    without = sorted(
        name
        for name, parser in leaves.items()
        if not any("--json" in a.option_strings for a in parser._actions)
    )
    assert without == ["demo"]


@pytest.mark.data
def test_data_stats_json_from_the_console_script(data_root: Path) -> None:
    out = _run("data", "stats", "beauty", "--json", env={"POCKETREC_DATA": str(data_root)})
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert (stats["users"], stats["items"], stats["interactions"]) == (22_363, 12_101, 198_502)
    assert stats["repeat_share"] == 0.0  # no Beauty user reviews an item twice


def test_repeat_share_counts_items_met_again() -> None:
    from pocketrec.distill.data import build_dataset

    ds = build_dataset("walk", ["a", "b"], [["x", "y", "x", "x"], ["y", "z"]])
    assert ds.stats()["repeat_share"] == round(2 / 6, 6)


@pytest.mark.data
def test_data_stats_json_file(data_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "stats.json"
    assert (
        main(["data", "stats", "ml-1m", "--data-root", str(data_root), "--json", str(target)]) == 0
    )
    stats = json.loads(target.read_text())
    assert (stats["users"], stats["items"], stats["interactions"]) == (6_040, 3_416, 999_611)


def test_missing_dataset_is_a_clean_error(tmp_path: Path) -> None:
    out = _run("data", "stats", "beauty", env={"POCKETREC_DATA": str(tmp_path)})
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "pocketrec data download beauty" in out.stderr and "POCKETREC_DATA" in out.stderr


def test_unknown_flag_suggests_the_close_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["data", "stats", "beauty", "--jsn"])
    assert e.value.code == 2
    assert "did you mean --json" in capsys.readouterr().err


def test_unknown_command_suggests_the_close_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["baseilne", "beauty"])
    assert "did you mean 'baseline'" in capsys.readouterr().err


def test_bad_option_type_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["baseline", "beauty", "--out", "x", "--epochs", "-3"])
    assert e.value.code == 2
    assert "positive integer" in capsys.readouterr().err


def test_baseline_temperature_and_lr_reach_the_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import pocketrec.distill.baseline

    seen = {}

    def capture(cfg, out, **kwargs):  # type: ignore[no-untyped-def]
        seen.update(temperature=cfg.temperature, lr=cfg.lr)
        raise SystemExit(0)

    monkeypatch.setattr(pocketrec.distill.baseline, "train_baseline", capture)
    args = ["baseline", "ml-1m", "--out", str(tmp_path)]
    with pytest.raises(SystemExit):
        main([*args, "--temperature", "0.05", "--lr", "0.003"])
    assert seen == {"temperature": 0.05, "lr": 0.003}
    for flag in ("--temperature", "--lr"):
        with pytest.raises(SystemExit) as e:
            main([*args, flag, "0"])
        assert e.value.code == 2 and "positive number" in capsys.readouterr().err
