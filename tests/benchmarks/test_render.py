"""benchmarks/README.md shows exactly what the JSON records in benchmarks/results/ hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_tables_match_the_records() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "render.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_record_that_changed_its_preset_says_how() -> None:
    from tests.benchmarks.scripts import load_script

    render = load_script("render")
    command = (
        "torchrun --nproc_per_node 2 -m pocketrec distill ml-1m --preset full --threads 1 "
        "--precision bf16 --epochs 12 --teacher-members 1 --no-ablation --out runs/x"
    )
    label = render._preset_label({"preset": "full", "command": command})
    assert label == "full (--precision bf16, --epochs 12, --teacher-members 1, --no-ablation)"
    plain = "pocketrec distill sports --preset full --threads 2 --out runs/sports_full"
    assert render._preset_label({"preset": "full", "command": plain}) == "full"
