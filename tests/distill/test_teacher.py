"""The item-level MiniLM teacher: its code marginals are exact, it trains and ranks, and an
ensemble of teachers is read out the same way."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pocketrec._errors import ConfigError
from pocketrec._prefix import PrefixIndex
from pocketrec.distill.data import build_dataset
from pocketrec.distill.genrec import GenRecConfig, code_loss
from pocketrec.distill.genrec_eval import evaluate_genrec
from pocketrec.distill.genrec_train import TrainConfig, train_genrec
from pocketrec.distill.kd import valid_children
from pocketrec.distill.protocol import leave_one_out
from pocketrec.distill.sasrec import SASRec, SASRecConfig
from pocketrec.distill.sids.vocab import disambiguate
from pocketrec.distill.teacher import ItemTeacher, TeacherEnsemble, without_history

K = 8


def _teacher(
    n: int = 60, seed: int = 0, *, codes: bool = False, init_seed: int | None = None
) -> tuple[ItemTeacher, np.ndarray]:
    rng = np.random.default_rng(seed)
    sids = disambiguate(np.stack([rng.integers(0, K, n), rng.integers(0, 3, n)], 1), K)
    cfg = GenRecConfig(
        num_levels=3, codebook_size=K, max_len=6, hidden=16, num_layers=1, num_heads=2, dropout=0
    )
    torch.manual_seed(seed if init_seed is None else init_seed)
    features = rng.normal(size=(n, 12)).astype(np.float32)
    return ItemTeacher(cfg, sids, features, code_embeddings=codes).eval(), sids


def test_code_marginals_multiply_to_the_item_probability() -> None:
    """Per-level distributions along the true prefix telescope to p(item), exactly."""
    teacher, sids = _teacher()
    scores = torch.randn(9, len(sids), dtype=torch.float64).float()
    targets = torch.arange(9) * 6
    logp = teacher.code_logits(scores, targets).log_softmax(-1)  # (9, levels, K)
    codes = torch.from_numpy(sids)[targets]
    chain = logp.gather(-1, codes[..., None]).squeeze(-1).sum(-1)
    torch.testing.assert_close(chain, scores.log_softmax(-1)[torch.arange(9), targets])
    # The summed per-level cross-entropy the training loop uses is item cross-entropy.
    torch.testing.assert_close(
        code_loss(teacher.code_logits(scores, targets), codes), F.cross_entropy(scores, targets)
    )


def test_code_marginals_put_mass_only_on_codes_that_exist() -> None:
    teacher, sids = _teacher()
    targets = torch.tensor([0, 5, 17])
    logits = teacher.code_logits(torch.randn(3, len(sids)), targets)
    allowed = valid_children(PrefixIndex(sids, K), torch.from_numpy(sids)[targets])
    assert torch.equal(torch.isfinite(logits), allowed)


def test_level_zero_is_the_mass_of_each_first_code() -> None:
    teacher, sids = _teacher()
    scores = torch.randn(1, len(sids))
    p = scores.softmax(-1)[0]
    level0 = teacher.code_logits(scores, torch.tensor([3]))[0, 0].exp()
    for code in range(K):
        torch.testing.assert_close(level0[code], p[torch.from_numpy(sids[:, 0] == code)].sum())


def test_marginals_give_no_nan_gradient_through_missing_codes() -> None:
    teacher, sids = _teacher()
    scores = torch.randn(4, len(sids), requires_grad=True)
    logits = teacher.code_logits(scores, torch.tensor([1, 2, 3, 4]))
    code_loss(logits, torch.from_numpy(sids[[1, 2, 3, 4]])).backward()
    assert scores.grad is not None and torch.isfinite(scores.grad).all()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_teacher_trains_and_ranks_exactly(tmp_path, precision: str) -> None:
    """A next-item pattern the teacher learns, also under bfloat16 autocast; it is ranked by
    exact full-catalogue top-K."""
    n = 60
    rng = np.random.default_rng(1)
    seqs = [[f"i{(s + t) % n}" for t in range(8)] for s in rng.integers(0, n, 150)]
    seqs[0] = [f"i{t}" for t in range(n)]  # items get internal ids 0..n-1 in walk order
    data = build_dataset("walk", [f"u{u}" for u in range(150)], seqs, default_history_len=6)
    split = leave_one_out(data)
    teacher, sids = _teacher(n)
    index = PrefixIndex(sids, K)
    cfg = TrainConfig(
        max_epochs=30, eval_every=10, patience=3, lr=5e-3, beam_width=20, precision=precision
    )
    metrics = train_genrec(teacher.train(), split, index, cfg, tmp_path / "t", desc="teacher")
    assert metrics["test"]["ndcg@10"] > 0.5
    assert metrics["test"]["valid_item_rate"] == 1.0
    again = evaluate_genrec(teacher, split, index, "test", beam_width=20)
    assert again["ndcg@10"] == metrics["test"]["ndcg@10"]


def test_code_embeddings_are_shared_by_items_with_the_same_code() -> None:
    """With code embeddings, two items differ by their id rows and their differing codes only."""
    teacher, sids = _teacher(codes=True)
    same_first = (sids[:, 0] == sids[0, 0]) & (np.arange(len(sids)) != 0)
    a, b = int(np.flatnonzero(same_first)[0]), 0
    sasrec = teacher.sasrec
    with torch.no_grad():
        sasrec.item_emb.weight.zero_()
        sasrec.code_emb.weight.zero_()
        if sasrec.text_proj is not None:
            for p in sasrec.text_proj.parameters():
                p.zero_()
        sasrec.code_emb.weight[1 : 1 + K].normal_()  # level-0 codes only
    weights = sasrec.item_weights()
    assert torch.equal(weights[a], weights[b])  # same first code, other levels zero
    other = int(np.flatnonzero(sids[:, 0] != sids[0, 0])[0])
    assert not torch.equal(weights[other], weights[b])
    # the padding token stays a zero vector
    assert torch.equal(sasrec.embed(torch.tensor([0])), torch.zeros(1, teacher.cfg.hidden))


def test_ensemble_is_the_mean_of_its_members_distributions() -> None:
    first, sids = _teacher(codes=True, init_seed=0)
    second, _ = _teacher(codes=True, init_seed=1)
    ensemble = TeacherEnsemble([first, second]).eval()
    hist = torch.from_numpy(sids[:4, :1].repeat(6, 1) % len(sids)).long()
    with torch.no_grad():
        mixed = ensemble.score_items(hist).exp()
        mean = (first.score_items(hist).softmax(-1) + second.score_items(hist).softmax(-1)) / 2
    torch.testing.assert_close(mixed, mean)
    inputs = torch.tensor([[-1, 3, 7, 11, 2, 5]])
    targets = torch.tensor([[-1, 7, 11, 2, 5, 9]])
    with torch.no_grad():
        logits, codes, valid = ensemble(inputs, targets)
        scores, _, _ = ensemble(inputs, targets, marginals=False)
    # the per-level marginals of the mixture multiply to the mixture's item probability
    chain = logits.log_softmax(-1).gather(-1, codes[..., None]).squeeze(-1).sum(-1)
    y = targets[valid]
    torch.testing.assert_close(chain, scores.log_softmax(-1)[torch.arange(len(y)), y])
    assert valid.sum() == 5 and codes.shape == (5, 3)


def test_item_tables_of_the_wrong_length_are_refused() -> None:
    shape = SASRecConfig(max_len=6, hidden=16, num_layers=1, num_heads=2)
    with pytest.raises(ConfigError, match="text features have 9 rows for 10 items"):
        SASRec(shape, 10, torch.zeros(9, 4))
    with pytest.raises(ConfigError, match="semantic IDs have 11 rows for 10 items"):
        SASRec(shape, 10, None, torch.zeros(11, 2, dtype=torch.long))


def test_collaborative_features_read_only_the_runs_training_events() -> None:
    """Without item text the teacher's features come from its split: events held back for
    on-device personalization (here, half of the users) must not shape them."""
    from pocketrec.distill.protocol import training_split
    from pocketrec.distill.teacher import item_features

    rng = np.random.default_rng(0)
    seqs = [[f"i{(s + 2 * t) % 30}" for t in range(8)] for s in rng.integers(0, 30, 80)]
    ds = build_dataset("walk", [f"u{u}" for u in range(80)], seqs, default_history_len=6)
    everyone, kind = item_features(ds, training_split(ds), progress=False)
    assert kind == "cooccurrence-svd"
    np.testing.assert_array_equal(everyone, item_features(ds, leave_one_out(ds))[0])
    held_back, _ = item_features(ds, training_split(ds, device_users=0.5), progress=False)
    assert not np.allclose(held_back, everyone)


def test_the_item_level_teacher_refuses_a_teacher_cache(tmp_path) -> None:
    data = build_dataset("walk", ["u0", "u1"], [[f"i{t}" for t in range(8)]] * 2)
    teacher, sids = _teacher(8)
    with pytest.raises(ConfigError, match="not from a cache"):
        train_genrec(
            teacher,
            leave_one_out(data),
            PrefixIndex(sids, K),
            TrainConfig(max_epochs=1, beam_width=20),
            tmp_path / "t",
            teacher_cache={},
        )
    assert not (tmp_path / "t" / "log.jsonl").exists()


def test_without_history_masks_each_positions_own_past_but_never_its_target() -> None:
    inputs = torch.tensor([[-1, 1, 2, 3]])
    targets = torch.tensor([[-1, 2, 3, 1]])  # the last next item repeats item 1
    valid = (inputs >= 0) & (targets >= 0)
    out = without_history(torch.zeros(3, 5), inputs, valid, targets[valid])
    masked = [torch.isinf(row).nonzero().flatten().tolist() for row in out]
    assert masked == [[1], [1, 2], [2, 3]]  # position t sees items up to t; a target stays


@pytest.mark.parametrize("ensemble", [False, True])
def test_teacher_targets_without_history_move_its_mass_to_other_items(ensemble: bool) -> None:
    """The cached per-level distributions are those of the item softmax with the history's
    items removed, renormalised: the chain along a target's codes is that softmax."""
    teacher, sids = _teacher()
    model = TeacherEnsemble([teacher, _teacher(init_seed=1)[0]]) if ensemble else teacher
    rng = np.random.default_rng(3)
    inputs = torch.from_numpy(rng.choice(len(sids), size=(4, 6), replace=False))
    targets = torch.from_numpy(rng.choice(len(sids), size=(4, 6)))
    with torch.no_grad():
        scores, codes, valid = model(inputs, targets, marginals=False)
        plain, _, _ = model(inputs, targets)
        logits, _, _ = model(inputs, targets, exclude_history=True)
    y = targets[valid]
    expected = without_history(scores, inputs, valid, y).log_softmax(-1)[torch.arange(len(y)), y]
    chain = logits.log_softmax(-1).gather(-1, codes[..., None]).squeeze(-1).sum(-1)
    torch.testing.assert_close(chain, expected)
    assert not torch.allclose(logits, plain)  # the history had mass to move
