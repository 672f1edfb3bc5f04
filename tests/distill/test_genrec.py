"""The generative model: training pass vs. the beam-search step, constraints, KD, learning."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pocketrec._errors import ConfigError
from pocketrec._prefix import PrefixIndex
from pocketrec.distill.data import build_dataset
from pocketrec.distill.genrec import GenRec, GenRecConfig, code_loss
from pocketrec.distill.genrec_eval import evaluate_genrec, make_predictor
from pocketrec.distill.genrec_train import TrainConfig, _kd_loss, train_genrec
from pocketrec.distill.kd import valid_children
from pocketrec.distill.protocol import leave_one_out
from pocketrec.distill.sids.vocab import disambiguate

K = 8


def _sids(n: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, K, n), rng.integers(0, K, n)], 1)
    return disambiguate(codes, K)  # (n, 3)


def _model(**overrides) -> GenRec:
    cfg = GenRecConfig(
        num_levels=3,
        codebook_size=K,
        max_len=6,
        hidden=16,
        num_layers=1,
        num_heads=2,
        **{"dropout": 0.0, **overrides},
    )
    torch.manual_seed(0)
    return GenRec(cfg, torch.from_numpy(_sids())).eval()


def test_training_pass_matches_the_decode_step() -> None:
    """Teacher-forced logits at the last position equal step-by-step beam-search logits."""
    model = _model(num_items=40)
    inputs = torch.tensor([[-1, -1, 3, 7, 1, 9], [5, 6, 7, 8, 9, 10]])
    targets = torch.tensor([[-1, -1, 7, 1, 9, 4], [6, 7, 8, 9, 10, 11]])
    with torch.no_grad():
        logits, codes, valid = model(inputs, targets)
        memory = model.encode(inputs)
        per_row = valid.sum(1).tolist()
        last = np.cumsum(per_row) - 1  # each row's last position in the flattened logits
        for level in range(3):
            prefix = codes[last].clone()[:, :-1]
            prefix[:, level:] = K
            # one beam per user: (U, 1, levels - 1) -> (U, 1, K)
            step = model.level_logits(memory, inputs >= 0, prefix[:, None], torch.tensor(level))
            torch.testing.assert_close(step[:, 0], logits[last, level], rtol=1e-5, atol=1e-5)
    assert codes.shape == (int(valid.sum()), 3)


def test_beams_of_one_history_equal_one_history_per_beam() -> None:
    """A user's beams as a grid over one history give the logits of one history copy per beam."""
    model = _model(num_items=40).eval()
    inputs = torch.tensor([[-1, -1, 3, 7, 1, 9], [5, 6, 7, 8, 9, 10]])
    prefix = torch.tensor([[[K, K], [2, K], [5, K]], [[1, 3], [K, K], [0, 7]]])  # (U, W, 2)
    with torch.no_grad():
        memory = model.encode(inputs)
        grid = model.level_logits(memory, inputs >= 0, prefix, torch.tensor(1))  # (U, W, K)
        users = torch.arange(2).repeat_interleave(3)  # (U*W,) the user of each beam
        single = model.level_logits(
            memory[users], inputs[users] >= 0, prefix.reshape(6, 1, 2), torch.tensor(1)
        )  # (U*W, 1, K)
    torch.testing.assert_close(grid.reshape(6, -1), single[:, 0], rtol=1e-5, atol=1e-5)


def test_scoring_every_level_gives_the_same_logits() -> None:
    """The NPU export's form of the output layer (one MatMul over every level's table, then the
    level's slice) computes the same logits as picking the level's table first."""
    model = _model(num_items=40)
    inputs = torch.tensor([[-1, -1, 3, 7, 1, 9], [5, 6, 7, 8, 9, 10]])
    prefix = torch.tensor([[[K, K], [2, K], [5, K]], [[1, 3], [K, K], [0, 7]]])
    with torch.no_grad():
        memory = model.encode(inputs)
        for level in range(3):
            args = (memory, inputs >= 0, prefix, torch.tensor(level))
            picked = model.level_logits(*args)
            every = model.level_logits(*args, every_level=True)
            assert every.shape == picked.shape == (2, 3, K)
            torch.testing.assert_close(every, picked, rtol=1e-5, atol=1e-5)


def test_history_padding_does_not_change_the_prediction() -> None:
    model = _model()
    short = torch.tensor([[-1, -1, -1, 2, 3, 4]])
    with torch.no_grad():
        a = model.encode(short)[:, -1]
        model.eval()
        b = model.encode(torch.tensor([[-1, 2, 3, 4]]))[:, -1]
    # Positions are counted from the right, so the same history gives the same state.
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_constraint_mask_marks_valid_children() -> None:
    sids = _sids()
    index = PrefixIndex(sids, K)
    mask = valid_children(index, torch.from_numpy(sids[:5]).long())
    for row, sid in enumerate(sids[:5]):
        for level in range(3):
            assert mask[row, level, sid[level]]  # the true code is always allowed
            siblings = {tuple(s) for s in sids[:, : level + 1] if (s[:level] == sid[:level]).all()}
            assert int(mask[row, level].sum()) == len(siblings)


def test_kd_loss_is_zero_when_student_equals_teacher() -> None:
    logits = torch.randn(4, 3, K)
    logp = torch.log_softmax(logits, -1)
    top, codes = logp.topk(K, -1)
    assert _kd_loss(logits, top, codes, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert _kd_loss(torch.zeros(4, 3, K), top, codes, 1.0).item() > 0
    # Masked (-inf) teacher entries contribute nothing and produce no NaN.
    top[:, :, -2:] = float("-inf")
    assert torch.isfinite(_kd_loss(logits, top, codes, 2.0))


def test_config_and_table_mismatches_are_refused() -> None:
    with pytest.raises(ConfigError, match="levels"):
        GenRec(GenRecConfig(num_levels=4, codebook_size=K), torch.from_numpy(_sids()))
    with pytest.raises(ConfigError, match="codebook size"):
        GenRec(GenRecConfig(num_levels=3, codebook_size=4), torch.from_numpy(_sids()))
    with pytest.raises(ConfigError, match="divisible"):
        GenRecConfig(hidden=30, num_heads=4)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_learns_a_deterministic_next_item(tmp_path, precision: str) -> None:
    """Users walk item i -> i+1; a trained model ranks the true next item first, also when it
    trains under bfloat16 autocast."""
    n = 40
    rng = np.random.default_rng(0)
    seqs = [[f"i{(s + t) % n}" for t in range(8)] for s in rng.integers(0, n, 150)]
    seqs[0] = [f"i{t}" for t in range(n)]
    ds = build_dataset("walk", [f"u{u}" for u in range(150)], seqs, default_history_len=6)
    sids = _sids(n)
    index = PrefixIndex(sids, K)
    cfg = GenRecConfig(
        num_levels=3,
        codebook_size=K,
        max_len=6,
        hidden=32,
        num_layers=1,
        num_heads=2,
        dropout=0.0,
        num_items=n,
    )
    torch.manual_seed(0)
    model = GenRec(cfg, torch.from_numpy(sids))
    split = leave_one_out(ds)
    train = TrainConfig(
        lr=1e-2,
        batch_size=32,
        max_epochs=15,
        eval_every=5,
        patience=10,
        beam_width=20,
        precision=precision,
    )
    metrics = train_genrec(model, split, index, train, tmp_path / "m")
    assert metrics["test"]["ndcg@10"] > 0.9
    assert metrics["test"]["valid_item_rate"] == 1.0
    again = evaluate_genrec(model, split, index, "test", beam_width=20)
    assert again["ndcg@10"] == pytest.approx(metrics["test"]["ndcg@10"])
    # No walk revisits an item, so leaving the history out can only lift the target.
    excluded = evaluate_genrec(model, split, index, "test", beam_width=20, exclude_history=True)
    assert excluded["ndcg@10"] >= again["ndcg@10"] and excluded["valid_item_rate"] == 1.0
    assert excluded["history_share@10"] == 0.0


def test_excluding_history_is_the_full_ranking_without_it() -> None:
    """With a beam as wide as the catalogue the search is exact: the history-excluded list is
    the plain ranking with the history's items taken out, and still full."""
    model = _model(num_items=40)
    index = PrefixIndex(_sids(), K)
    hist = np.array([[-1, -1, 3, 7, 1, 9], [5, 6, 7, 8, 9, 5], [-1] * 6])
    plain = make_predictor(model, index, beam_width=40, top_k=40)(hist)
    excluded = make_predictor(model, index, beam_width=40, top_k=20, exclude_history=True)(hist)
    for row, ranked, kept in zip(hist, plain, excluded, strict=True):
        expected = [i for i in ranked if i not in set(row)][:20]
        assert kept.tolist() == expected
    # A narrow beam still returns full lists: one extra beam per history item.
    narrow = make_predictor(model, index, beam_width=20, top_k=20, exclude_history=True)(hist)
    assert (narrow >= 0).all()
    assert not any(set(r.tolist()) & set(h.tolist()) for r, h in zip(narrow, hist, strict=True))


def test_history_share_counts_the_top_ten_slots_that_repeat_the_history(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A predictor that always returns items 0..19 (slot 4 invalid): the share of its top-10
    valid slots that lie in each user's history window, counted by set intersection."""
    import pocketrec.distill.genrec_eval as genrec_eval

    rng = np.random.default_rng(1)
    seqs = [[f"i{v}" for v in rng.permutation(40)[:9]] for _ in range(30)]
    ds = build_dataset("shuffle", [f"u{u}" for u in range(30)], seqs, default_history_len=6)
    seen: list[np.ndarray] = []

    def fixed(hist: np.ndarray) -> np.ndarray:
        seen.append(hist.copy())
        items = np.tile(np.arange(20), (len(hist), 1))  # (B, 20)
        items[:, 4] = -1
        return items

    monkeypatch.setattr(genrec_eval, "make_predictor", lambda *a, **k: fixed)
    model, index = _model(), PrefixIndex(_sids(), K)
    metrics = evaluate_genrec(model, leave_one_out(ds), index, "test", beam_width=20)
    top = set(range(10)) - {4}
    repeats = sum(len(top & set(row[row >= 0].tolist())) for hist in seen for row in hist)
    rows = sum(len(hist) for hist in seen)
    assert rows == 30
    assert metrics["history_share@10"] == pytest.approx(repeats / (9 * rows))
    assert 0 < metrics["history_share@10"] < 1


def test_code_loss_is_item_nll() -> None:
    logits = torch.zeros(2, 3, K)
    targets = torch.zeros(2, 3, dtype=torch.long)
    assert code_loss(logits, targets).item() == pytest.approx(3 * np.log(K), rel=1e-5)


def test_an_interrupted_run_resumes_to_the_same_model(tmp_path, interrupt_training) -> None:
    """Ctrl-C after the third epoch, then the same call again: the same weights and scores."""
    from safetensors.torch import load_file

    n = 40
    rng = np.random.default_rng(1)
    seqs = [[f"i{(s + 3 * t) % n}" for t in range(7)] for s in rng.integers(0, n, 60)]
    ds = build_dataset("walk", [f"u{u}" for u in range(60)], seqs, default_history_len=6)
    split, index = leave_one_out(ds), PrefixIndex(_sids(n), K)
    train = TrainConfig(lr=1e-2, batch_size=16, max_epochs=6, eval_every=2, patience=5)

    def run(out, *, interrupt: bool) -> dict:
        model = _model(dropout=0.2)  # dropout: the torch RNG must resume too
        if not interrupt:
            return train_genrec(model, split, index, train, out)
        with interrupt_training(3):
            train_genrec(model, split, index, train, out)
        assert (out / "checkpoint").exists()
        return train_genrec(_model(dropout=0.2), split, index, train, out)

    full = run(tmp_path / "full", interrupt=False)
    resumed = run(tmp_path / "resumed", interrupt=True)
    assert resumed["test"] == full["test"] and resumed["best_epoch"] == full["best_epoch"]
    a = load_file(tmp_path / "full" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "resumed" / "checkpoint").exists()
    # Each epoch is logged once, though epochs after the checkpoint ran twice.
    logged = [json.loads(x)["epoch"] for x in (tmp_path / "resumed" / "log.jsonl").open()]
    assert logged == list(range(6))


def _walk_split():
    n = 40
    rng = np.random.default_rng(1)
    seqs = [[f"i{(s + 3 * t) % n}" for t in range(7)] for s in rng.integers(0, n, 60)]
    ds = build_dataset("walk", [f"u{u}" for u in range(60)], seqs, default_history_len=6)
    return leave_one_out(ds), PrefixIndex(_sids(n), K)


def test_a_checkpoint_keeps_the_best_weights_and_older_checkpoints_still_resume(
    tmp_path, interrupt_training
) -> None:
    """The best weights live in the checkpoint (one atomic write with the stopper); a checkpoint
    written before that, with the best weights beside it, resumes to the same model."""
    from safetensors.torch import load_file

    split, index = _walk_split()
    train = TrainConfig(lr=1e-2, batch_size=16, max_epochs=6, eval_every=2, patience=5)
    full = train_genrec(_model(dropout=0.2), split, index, train, tmp_path / "full")
    old = tmp_path / "old"
    with interrupt_training(4):
        train_genrec(_model(dropout=0.2), split, index, train, old)
    assert (old / "checkpoint" / "best.safetensors").exists()
    assert not (old / "model.safetensors").exists()  # written once, before the final tests
    (old / "checkpoint" / "best.safetensors").rename(old / "model.safetensors")
    resumed = train_genrec(_model(dropout=0.2), split, index, train, old)
    assert resumed["test"] == full["test"] and resumed["best_epoch"] == full["best_epoch"]
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(old / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_killed_during_its_final_evaluation_trains_no_further(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Early stopping had ended training; resuming goes straight to the final evaluation."""
    from safetensors.torch import load_file

    import pocketrec.distill.genrec_train as genrec_train

    real = genrec_train.evaluate_genrec
    calls = {"periodic": 0, "test": 0}

    def evaluate(model, split, index, stage, *, beam_width, limit=None, shared=False):
        if limit == 55:  # the periodic validation: scores that only fall, so epoch 1 is best
            calls["periodic"] += 1
            return {"ndcg@10": 1.0 / calls["periodic"]}
        if stage == "test":
            calls["test"] += 1
            if calls["test"] == 1:
                raise KeyboardInterrupt
        return real(model, split, index, stage, beam_width=beam_width, limit=limit, shared=shared)

    monkeypatch.setattr(genrec_train, "evaluate_genrec", evaluate)
    split, index = _walk_split()
    train = TrainConfig(
        lr=1e-2, batch_size=16, max_epochs=20, eval_every=2, patience=2, eval_limit=55
    )
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_genrec(_model(), split, index, train, out)
    assert calls["periodic"] == 3  # best at epoch 1, two worse evaluations: stopped after epoch 5
    stopped_at = load_file(out / "model.safetensors")
    metrics = train_genrec(_model(), split, index, train, out)
    assert calls["periodic"] == 3 and calls["test"] == 2  # no epoch trained after the restart
    assert metrics["best_epoch"] == 1
    logged = [json.loads(x)["epoch"] for x in (out / "log.jsonl").open()]
    assert logged == list(range(6))
    final = load_file(out / "model.safetensors")
    assert all(torch.equal(final[k], stopped_at[k]) for k in final)


def test_bf16_training_runs_under_autocast(tmp_path) -> None:
    """The first epoch's loss differs from float32 training's: bfloat16 autocast was on."""
    ds = build_dataset(
        "walk",
        [f"u{u}" for u in range(40)],
        [[f"i{(u + t) % 40}" for t in range(8)] for u in range(40)],
    )
    split, sids = leave_one_out(ds), _sids(40)
    losses = {}
    for precision in ("fp32", "bf16"):
        train = TrainConfig(max_epochs=1, eval_every=1, beam_width=20, precision=precision)
        train_genrec(_model(num_items=40), split, PrefixIndex(sids, K), train, tmp_path / precision)
        losses[precision] = json.loads((tmp_path / precision / "log.jsonl").read_text())["loss"]
    assert losses["bf16"] != losses["fp32"]
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ConfigError, match="precision must be"):
        TrainConfig(precision="fp16")


@pytest.mark.parametrize("decay", [-0.1, float("nan"), float("inf")])
def test_a_negative_or_non_finite_weight_decay_is_refused(decay: float) -> None:
    with pytest.raises(ConfigError, match="weight_decay must be a finite number >= 0"):
        TrainConfig(weight_decay=decay)
