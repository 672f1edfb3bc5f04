"""Data-parallel training on two CPU processes (gloo) matches one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import hashlib, json, os, sys
from pathlib import Path
import numpy as np, torch
from pocketrec._prefix import PrefixIndex
from pocketrec.distill import dist
from pocketrec.distill.data import build_dataset
from pocketrec.distill.genrec import GenRec, GenRecConfig
from pocketrec.distill import genrec_eval, protocol
from pocketrec.distill.genrec_eval import evaluate_genrec
from pocketrec.distill.genrec_train import TrainConfig, train_genrec
from pocketrec.distill.protocol import leave_one_out
from pocketrec.distill.sids.vocab import disambiguate

dist.init()
torch.set_num_threads(1)
if os.environ.get("INTERRUPT_AT"):  # Ctrl-C every rank after that many epochs, once saved
    from pocketrec.distill.training import EarlyStopping
    calls = {"n": 0}
    def should_stop(self):
        calls["n"] += 1
        if calls["n"] == int(os.environ["INTERRUPT_AT"]):
            dist.barrier()  # rank 0 has written the checkpoint
            raise KeyboardInterrupt
        return False
    EarlyStopping.should_stop = property(should_stop)
# batches of 8 users: the ranks share every evaluation (each scores every other batch)
genrec_eval.target_ranks = lambda *a, **k: protocol.target_ranks(*a, **k, batch_size=8)
n, k = 30, 8
rng = np.random.default_rng(0)
seqs = [[f"i{(s + t) % n}" for t in range(7)] for s in rng.integers(0, n, 64)]
seqs[0] = [f"i{t}" for t in range(n)]
ds = build_dataset("walk", [f"u{u}" for u in range(64)], seqs, default_history_len=5)
codes = np.stack([np.arange(n) % k, np.arange(n) // k], 1)
sids = disambiguate(codes, k)
cfg = GenRecConfig(num_levels=3, codebook_size=k, max_len=5, hidden=16, num_layers=1,
                   num_heads=2, dropout=float(os.environ.get("DROPOUT", "0")), num_items=n)
torch.manual_seed(0)
model = GenRec(cfg, torch.from_numpy(sids))
batch = int(os.environ.get("BATCH", "16"))
train = TrainConfig(lr=5e-3, batch_size=batch, max_epochs=4, eval_every=2, patience=10)
split, index = leave_one_out(ds), PrefixIndex(sids, k)
metrics = train_genrec(model, split, index, train, Path(sys.argv[1]))
shared = evaluate_genrec(model, split, index, "valid", beam_width=20, shared=True)
alone = evaluate_genrec(model, split, index, "valid", beam_width=20)
agree = dist.gather(shared == alone and shared["num_users"] == 64)
if dist.rank() == 0:
    w = model.code_emb.detach().sum().item()
    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values()))
    Path(sys.argv[2]).write_text(json.dumps({"test": metrics["test"], "weight_sum": w,
                                             "world": metrics["world_size"], "agree": agree,
                                             "weights": digest.hexdigest()}))
"""


def _torchrun(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`torchrun --nproc_per_node 2 ARGS` on gloo; past 600 s its whole process group is
    killed, the ranks with it (a plain timeout would kill torchrun alone and orphan them)."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        # the rendezvous binds a free port itself (no port picked, then lost), on loopback
        "--standalone", "--local-addr", "127.0.0.1", *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    ) as proc:  # fmt: skip
        try:
            out, err = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def _ranks(script: Path, out: Path, record: Path, **env: str) -> int:
    """Run the training script on two gloo ranks; returns torchrun's exit code.

    A failed run prints the end of its output, which pytest shows beside the failing assert.
    """
    done = _torchrun(str(script), str(out), str(record), **env)
    if done.returncode:
        print(f"torchrun exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}")
    return done.returncode


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = tmp_path / "single.json"
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "a"), str(single)],
        check=True,
        env=env,
        timeout=600,
    )
    double = tmp_path / "double.json"
    assert _ranks(script, tmp_path / "b", double) == 0
    a, b = json.loads(single.read_text()), json.loads(double.read_text())
    assert (a["world"], b["world"]) == (1, 2)
    # Split between the ranks, an evaluation gives every rank what one caller scoring every
    # user gets, to the last digit.
    assert a["agree"] == [True] and b["agree"] == [True, True]
    # Same batches, gradients averaged as if one process saw the whole batch: equal up to
    # floating-point summation order.
    assert b["weight_sum"] == pytest.approx(a["weight_sum"], rel=1e-3, abs=1e-4)
    for key in ("ndcg@10", "recall@10"):
        assert b["test"][key] == pytest.approx(a["test"][key], abs=0.02)


@pytest.mark.slow
def test_two_ranks_resume_exactly_with_their_own_dropout_streams(tmp_path: Path) -> None:
    """Each rank draws its own dropout masks; a resumed run restores each rank's stream.

    Batches of 15 split 8 / 7, so the two ranks' streams differ after the first step.
    """
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    whole, resumed = tmp_path / "whole.json", tmp_path / "resumed.json"
    assert _ranks(script, tmp_path / "a", whole, DROPOUT="0.3", BATCH="15") == 0
    assert _ranks(script, tmp_path / "b", resumed, DROPOUT="0.3", BATCH="15", INTERRUPT_AT="2") != 0
    assert not resumed.exists() and (tmp_path / "b" / "checkpoint").exists()
    assert _ranks(script, tmp_path / "b", resumed, DROPOUT="0.3", BATCH="15") == 0
    a, b = json.loads(whole.read_text()), json.loads(resumed.read_text())
    assert a["weights"] == b["weights"] and a["test"] == b["test"]


FAILING_RANK = r"""
import sys, time
from pathlib import Path
from pocketrec._errors import PocketrecError
from pocketrec.distill import dist
from pocketrec.distill.pipeline import distill
from pocketrec.distill.presets import smoke

if sys.argv[2] == "uncaught":
    dist.init()
    if dist.rank() == 1:
        raise RuntimeError("rank 1 failed")
else:  # as `pocketrec distill` reports it: the error becomes exit code 2
    cfg = smoke("no-such-dataset")
    if int(__import__("os").environ["RANK"]) == 1:
        try:
            distill(cfg, Path(sys.argv[1]) / "run", data_root=Path(sys.argv[1]) / "nowhere")
        except PocketrecError as e:
            print("rank 1 failed:", e)
            sys.exit(2)
    dist.init()
time.sleep(300)  # rank 0 is busy long after rank 1 failed
(Path(sys.argv[1]) / "rank0_finished").write_text("")
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["uncaught", "reported"])
def test_a_failed_rank_exits_at_once_and_the_launcher_stops_the_others(
    tmp_path: Path, how: str
) -> None:
    """A rank that fails does not wait in the exit barrier for rank 0: it exits, torchrun
    sees the failure and stops rank 0, which never finishes its work."""
    script = tmp_path / "fail.py"
    script.write_text(FAILING_RANK)
    done = _torchrun(str(script), str(tmp_path), how)
    assert done.returncode != 0
    assert "rank 1 failed" in done.stdout + done.stderr
    assert not (tmp_path / "rank0_finished").exists()
