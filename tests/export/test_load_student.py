"""Loading the student of a distill run for export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pocketrec.export.bundle import ExportError, load_student


def test_a_student_from_another_version_gets_a_clear_error(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _, seed, _ = load_student(run)
    config = run / "student" / f"seed_{seed}" / "config.json"
    record = json.loads(config.read_text())
    record["model"]["text_dim"] = 0  # a setting this version of the student does not have
    config.write_text(json.dumps(record))
    with pytest.raises(ExportError, match=r"text_dim.*retrain it with `pocketrec distill`"):
        load_student(run)
