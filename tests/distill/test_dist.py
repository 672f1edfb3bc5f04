"""Data-parallel training on two CPU processes (gloo) matches one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import json, sys
from pathlib import Path
import numpy as np, torch
from pocketrec._prefix import PrefixIndex
from pocketrec.distill import dist
from pocketrec.distill.data import build_dataset
from pocketrec.distill.genrec import GenRec, GenRecConfig
from pocketrec.distill import genrec_train, protocol
from pocketrec.distill.genrec_train import TrainConfig, evaluate_genrec, train_genrec
from pocketrec.distill.protocol import leave_one_out
from pocketrec.distill.sids.vocab import disambiguate

dist.init()
torch.set_num_threads(1)
# batches of 8 users: the ranks share every evaluation (each scores every other batch)
genrec_train.target_ranks = lambda *a, **k: protocol.target_ranks(*a, **k, batch_size=8)
n, k = 30, 8
rng = np.random.default_rng(0)
seqs = [[f"i{(s + t) % n}" for t in range(7)] for s in rng.integers(0, n, 64)]
seqs[0] = [f"i{t}" for t in range(n)]
ds = build_dataset("walk", [f"u{u}" for u in range(64)], seqs, default_history_len=5)
codes = np.stack([np.arange(n) % k, np.arange(n) // k], 1)
sids = disambiguate(codes, k)
cfg = GenRecConfig(num_levels=3, codebook_size=k, max_len=5, hidden=16, num_layers=1,
                   num_heads=2, dropout=0.0, num_items=n)
torch.manual_seed(0)
model = GenRec(cfg, torch.from_numpy(sids))
train = TrainConfig(lr=5e-3, batch_size=16, max_epochs=4, eval_every=2, patience=10)
split, index = leave_one_out(ds), PrefixIndex(sids, k)
metrics = train_genrec(model, split, index, train, Path(sys.argv[1]))
shared = evaluate_genrec(model, split, index, "valid", beam_width=20, shared=True)
alone = evaluate_genrec(model, split, index, "valid", beam_width=20)
agree = dist.gather(shared == alone and shared["num_users"] == 64)
if dist.rank() == 0:
    w = model.code_emb.detach().sum().item()
    Path(sys.argv[2]).write_text(json.dumps({"test": metrics["test"], "weight_sum": w,
                                             "world": metrics["world_size"], "agree": agree}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            str(script),
            str(tmp_path / "b"),
            str(double),
        ],
        check=True,
        env=env,
        timeout=600,
    )
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
