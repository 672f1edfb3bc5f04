"""The SDK's commands on bad numbers and bad output paths: exit code 2 and a message, no trace."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pocketrec._cli import emit_json, main


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--batch-size", "0"], "batch_size must be a positive integer, got 0"),
        (["--limit", "0"], "limit must be a positive integer, got 0"),
        (["--limit", "-1"], "limit must be a positive integer, got -1"),
        (["--beam-width", "0"], "beam_width must be a positive integer, got 0"),
    ],
)
def test_evaluate_refuses_numbers_out_of_range(
    tiny_bundle: Path, flags: list[str], match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    shop = tiny_bundle.parent / "tiny_shop"
    assert main(["evaluate", str(tiny_bundle), str(shop), *flags]) == 2
    assert match in capsys.readouterr().err


def test_json_to_a_folder_is_refused_and_leaves_nothing_behind(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for target in (str(out), "."):
        assert main(["recommend", str(tiny_bundle), "--history", "item3", "--json", target]) == 2
        assert "is a folder; name a file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    written = tmp_path / "recs.json"
    assert main(["recommend", str(tiny_bundle), "--history", "item3", "--json", str(written)]) == 0
    first = json.loads(written.read_text())["recommendations"][0]
    assert isinstance(first["log_prob"], float) and len(first["semantic_id"]) > 1


def test_a_catalogue_with_nan_is_a_bundle_error(bundle_copy: Path) -> None:
    from pocketrec import BundleError
    from pocketrec._bundle import open_bundle
    from pocketrec._manifest import read_manifest

    catalog = bundle_copy / read_manifest(bundle_copy).catalog
    catalog.write_text(catalog.read_text().replace('"popularity"', '"price": NaN, "popularity"', 1))
    # unverified, so the file hashes do not catch the edit first
    with pytest.raises(BundleError, match="holds NaN, which JSON does not allow"):
        open_bundle(bundle_copy, verify=False)


@dataclass
class _Record:
    where: Path
    score: np.float32


def test_every_subcommand_json_is_plain_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One `emit_json` serves the SDK, export and training commands: their records hold
    dataclasses, paths, numpy scalars and arrays, and numpy dict keys."""
    record = {
        "config": _Record(Path("runs/a"), np.float32(0.5)),
        "counts": {np.int64(3): np.arange(2), "n": (np.int32(1), 2.0)},
    }
    emit_json(record, str(tmp_path / "sub" / "r.json"))
    assert json.loads((tmp_path / "sub" / "r.json").read_text()) == {
        "config": {"where": "runs/a", "score": 0.5},
        "counts": {"3": [0, 1], "n": [1, 2.0]},
    }
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["r.json"]  # no temp file left
    for target in (None, "-"):  # `--json` with no file prints
        emit_json({"n": np.int64(2)}, target)
        assert json.loads(capsys.readouterr().out) == {"n": 2}
