"""staged_folder: a folder is replaced whole or not at all, even across a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pocketrec.distill.runinfo import staged_folder


def _write(folder: Path, text: str) -> None:
    with staged_folder(folder) as tmp:
        (tmp / "file.txt").write_text(text)


def test_a_failure_leaves_the_previous_folder_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    _write(target, "v1")
    with pytest.raises(RuntimeError), staged_folder(target) as tmp:
        (tmp / "file.txt").write_text("half")
        raise RuntimeError("disk full")
    assert (target / "file.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_a_crash_between_the_two_renames_loses_nothing(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    _write(target, "v1")
    target.rename(tmp_path / "bundle.old")  # killed after moving the old version aside
    _write(target, "v2")  # the next run puts it back before it starts, then replaces it
    assert (target / "file.txt").read_text() == "v2"
    assert not (tmp_path / "bundle.old").exists()
    target.rename(tmp_path / "bundle.old")
    with pytest.raises(RuntimeError), staged_folder(target):
        raise RuntimeError("fails before the swap")
    assert (target / "file.txt").read_text() == "v2"  # restored, not deleted


def test_a_reader_puts_back_what_a_crash_left_aside_before_it_looks(tmp_path: Path) -> None:
    from pocketrec.distill.runinfo import recover_staged

    checkpoint = tmp_path / "checkpoint"
    _write(checkpoint, "epoch 7")
    checkpoint.rename(tmp_path / "checkpoint.old")  # killed between the two renames
    assert recover_staged(checkpoint)  # training resumes instead of starting over
    assert (checkpoint / "file.txt").read_text() == "epoch 7"
    assert not recover_staged(tmp_path / "never-written")


def test_trim_log_keeps_records_up_to_the_checkpoint_and_other_phases(tmp_path: Path) -> None:
    from pocketrec.distill.training import trim_log

    log = tmp_path / "log.jsonl"
    lines = [
        {"phase": "model", "epoch": 0},
        {"phase": "model", "epoch": 1},
        {"phase": "refit", "epoch": 0},
        {"phase": "refit", "epoch": 1},
        {"phase": "refit", "epoch": 2},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"phase": "refit", "ep')
    trim_log(log, 0, phase="refit")
    kept = [json.loads(x) for x in log.read_text().splitlines()]
    assert kept == lines[:3]  # the other phase untouched, the partial line dropped
    trim_log(log, 0)
    assert [json.loads(x) for x in log.read_text().splitlines()] == [lines[0], lines[2]]
    trim_log(tmp_path / "missing.jsonl", 3)  # nothing to trim
    assert not (tmp_path / "missing.jsonl").exists()


def test_the_command_names_torchrun_when_ranks_were_launched_by_it(monkeypatch) -> None:
    from pocketrec.distill import runinfo

    argv = ["/x/pocketrec/__main__.py", "distill", "ml-1m", "--out", "runs/a b"]
    monkeypatch.setattr(runinfo.sys, "argv", argv)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert runinfo.command_line() == "pocketrec distill ml-1m --out 'runs/a b'"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert runinfo.command_line() == (
        "torchrun --nproc_per_node 2 -m pocketrec distill ml-1m --out 'runs/a b'"
    )
    assert runinfo.machine_info()["world_size"] == 2
    monkeypatch.setenv("WORLD_SIZE", "8")  # two machines of four ranks
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert runinfo.command_line().startswith("torchrun --nnodes 2 --nproc_per_node 4 -m pocketrec")


def test_each_rank_resumes_its_own_random_stream_and_old_checkpoints_give_rank_0s(
    tmp_path: Path,
) -> None:
    import torch

    from pocketrec.distill.training import load_checkpoint, rng_state, save_checkpoint

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()  # the optimizer has state tensors beside the random states
    torch.manual_seed(1)
    rank0 = rng_state()
    torch.manual_seed(2)
    rank1 = rng_state()
    save_checkpoint(tmp_path / "ranks", model, optimizer, {"epoch": 0}, rng=[rank0, rank1])
    save_checkpoint(tmp_path / "single", model, optimizer, {"epoch": 0}, rng=[rank0])
    for folder, rank, expected in (
        ("ranks", 0, rank0),
        ("ranks", 1, rank1),
        ("single", 1, rank0),  # one process (or before ranks kept their own): rank 0's
    ):
        torch.manual_seed(99)
        load_checkpoint(tmp_path / folder, model, optimizer, rank=rank)
        assert torch.equal(torch.get_rng_state(), expected["torch_rng"]), (folder, rank)
    assert optimizer.state_dict()["state"][0]["step"] == 1
