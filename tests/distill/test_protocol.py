"""Leave-one-out splits: targets, windows, and that no evaluation target leaks into training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pocketrec.distill.data import build_dataset, load_dataset
from pocketrec.distill.protocol import PAD, evaluate, leave_one_out, metrics_of, target_ranks


def _toy():
    return build_dataset(
        "toy",
        ["u1", "u2", "u3", "u4"],
        [["a", "b", "c", "d", "e"], ["c", "d", "e"], ["a", "b"], ["f"]],
        default_history_len=3,
    )


def test_targets_and_histories() -> None:
    ds = _toy()
    split = leave_one_out(ds)
    assert split.eval_users.tolist() == [0, 1]  # users with >= 3 items
    hist, targets = split.histories("test", max_len=3)
    ids = ds.item_ids
    assert [ids[t] for t in targets] == ["e", "e"]
    assert hist.tolist()[0] == [ds.item_index()[x] for x in "bcd"]  # truncated to the last 3
    assert hist[1, 0] == PAD and [ids[i] for i in hist[1, 1:]] == ["c", "d"]
    hist, targets = split.histories("valid", max_len=3)
    assert [ids[t] for t in targets] == ["d", "d"]
    assert [ids[i] for i in hist[0]] == ["a", "b", "c"]
    describe = split.describe(3)
    assert describe["users_evaluated"] == 2 and describe["users_not_evaluated"] == 2


def test_short_users_train_only() -> None:
    split = leave_one_out(_toy())
    assert split.train_sequence(2).tolist() == [0, 1]  # the two-item user keeps both for training
    assert split.train_sequence(3).size == 1


def test_train_windows_end_before_validation() -> None:
    ds = _toy()
    split = leave_one_out(ds)
    windows = split.train_windows(max_len=4)  # (U, 5)
    assert windows.shape == (4, 5)
    assert [ds.item_ids[i] for i in windows[0] if i != PAD] == ["a", "b", "c"]


def test_holding_out_keeps_fresh_events_out_of_training_only() -> None:
    ds = _toy()
    split = leave_one_out(ds)
    held = split.holding_out(2)
    # u1 trains on a, b, c normally; holding out 2 would leave one item, so it keeps a, b.
    assert [ds.item_ids[i] for i in held.train_sequence(0)] == ["a", "b"]
    assert held.train_sequence(1).size == 1  # u2 had one training item: nothing to hold out
    assert held.train_sequence(2).tolist() == split.train_sequence(2).tolist()  # not evaluated
    for stage in ("valid", "test"):  # the device still shows the model every event
        for a, b in zip(held.histories(stage, 3), split.histories(stage, 3), strict=True):
            assert np.array_equal(a, b)
    assert held.holding_out(0).train_ends.tolist() == held.train_ends.tolist()
    with pytest.raises(ValueError, match=">= 0"):
        split.holding_out(-1)


def test_device_users_leave_training_but_keep_their_histories() -> None:
    ds = build_dataset(
        "toy", [f"u{i}" for i in range(10)], [list("abcde")] * 10, default_history_len=3
    )
    split = leave_one_out(ds)
    users = split.device_users(0.3)
    assert len(users) == 3 and np.array_equal(users, np.unique(users))
    assert np.array_equal(split.device_users(0.3), users)  # a fixed draw
    assert split.device_users(0.0).size == 0
    held = split.holding_out_users(users)
    lengths = held.train_lengths()
    assert (lengths[users] == 0).all() and (np.delete(lengths, users) == 3).all()
    for stage in ("valid", "test"):  # the model still meets them at evaluation
        for a, b in zip(held.histories(stage, 3), split.histories(stage, 3), strict=True):
            assert np.array_equal(a, b)
    windows = held.train_windows(3)
    assert (windows[users] == PAD).all()  # no training pair: every trainer skips them
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        split.device_users(1.0)


def test_unknown_stage() -> None:
    with pytest.raises(ValueError, match="stage"):
        leave_one_out(_toy()).histories("train", 3)  # type: ignore[arg-type]


def test_evaluate_oracle_and_topk() -> None:
    ds = _toy()
    split = leave_one_out(ds)
    _, targets = split.histories("test", 3)

    def oracle(hist: np.ndarray) -> np.ndarray:
        scores = np.zeros((len(hist), ds.num_items))
        scores[np.arange(len(hist)), targets[: len(hist)]] = 1.0
        return scores

    assert evaluate(oracle, split, "test", max_len=3, ks=(1,))["ndcg@1"] == 1.0

    def lists(hist: np.ndarray) -> np.ndarray:
        return np.tile(np.arange(ds.num_items), (len(hist), 1))

    out = evaluate(lists, split, "test", max_len=3, ks=(5,))
    assert out["recall@5"] == 1.0 and out["num_users"] == 2.0
    with pytest.raises(ValueError, match="need >= 20"):
        evaluate(lambda h: np.zeros((len(h), 3), dtype=np.int64), split, "test", max_len=3)


def test_parts_of_an_evaluation_merge_into_the_whole() -> None:
    rng = np.random.default_rng(0)
    seqs = [
        [f"i{j}" for j in rng.choice(40, size=rng.integers(3, 9), replace=False)] for _ in range(50)
    ]
    ds = build_dataset("r", [f"u{u}" for u in range(50)], seqs, default_history_len=4)
    split = leave_one_out(ds)
    table = rng.normal(size=(ds.num_items, ds.num_items))

    def scores(hist: np.ndarray) -> np.ndarray:  # depends on the history only
        return table[np.where(hist >= 0, hist, 0)].sum(1)

    whole = evaluate(scores, split, "valid", max_len=4, batch_size=7, limit=45)
    parts = [
        target_ranks(scores, split, "valid", max_len=4, batch_size=7, limit=45, part=(i, 3))
        for i in range(3)
    ]
    assert all(parts) and not set(parts[0]) & set(parts[1])  # each part has its own batches
    assert metrics_of({s: r for part in parts for s, r in part.items()}) == whole
    assert whole["num_users"] == 45
    with pytest.raises(ValueError, match="part"):
        target_ranks(scores, split, "valid", max_len=4, part=(3, 3))


def test_excluding_history_ranks_without_the_users_past_items() -> None:
    ds = _toy()
    split = leave_one_out(ds)
    index = ds.item_index()
    # d > c > b > e (the target of both test users) > everything else
    fixed = np.zeros(ds.num_items)
    for item, score in zip("dcbe", (4.0, 3.0, 2.0, 1.0), strict=True):
        fixed[index[item]] = score

    def scores(hist: np.ndarray) -> np.ndarray:
        return np.tile(fixed, (len(hist), 1))

    plain = evaluate(scores, split, "test", max_len=3, ks=(5,))
    assert plain["ndcg@5"] == pytest.approx(1 / np.log2(5))  # rank 4 for both users
    # u1's window b, c, d all drop out (rank 1); u2's window c, d does, b stays (rank 2).
    excluded = evaluate(scores, split, "test", max_len=3, ks=(5,), exclude_history=True)
    assert excluded["ndcg@5"] == pytest.approx((1 + 1 / np.log2(3)) / 2)
    # A target the user had before is excluded with the rest: a miss.
    rep = build_dataset("repeat", ["u"], [["x", "a", "y", "a"]], default_history_len=3)
    repeat = leave_one_out(rep)
    only_a = np.zeros(rep.num_items)
    only_a[rep.item_index()["a"]] = 1.0
    best_a = lambda h: np.tile(only_a, (len(h), 1))  # noqa: E731
    assert evaluate(best_a, repeat, "test", max_len=3, ks=(1,))["recall@1"] == 1.0
    hit = evaluate(best_a, repeat, "test", max_len=3, ks=(1,), exclude_history=True)
    assert hit["recall@1"] == 0.0
    # Ranked lists must leave the history out themselves; those that do are scored as they are.
    lists = lambda h: np.tile(np.arange(ds.num_items), (len(h), 1))  # noqa: E731
    with pytest.raises(ValueError, match="history window"):
        evaluate(lists, split, "test", max_len=3, exclude_history=True)

    def ranked_without(hist: np.ndarray) -> np.ndarray:
        order = np.argsort(-fixed, kind="stable")
        kept = [[i for i in order if i not in set(h)] for h in hist]
        return np.stack([np.pad(k, (0, 20 - len(k)), constant_values=-1) for k in kept])

    assert evaluate(ranked_without, split, "test", max_len=3, ks=(5,), exclude_history=True) == (
        excluded
    )


@pytest.mark.data
def test_no_target_leaks_into_training(data_root: Path) -> None:
    for name in ("beauty", "ml-1m"):
        ds = load_dataset(name, root=data_root)
        split = leave_one_out(ds)
        lengths = split.train_lengths()
        ends = ds.offsets[1:]
        assert np.array_equal(split.train_ends[split.eval_users], ends[split.eval_users] - 2)
        assert lengths.sum() == ds.num_interactions - 2 * len(split.eval_users)
        # The training windows never contain positions at or after a user's validation item.
        windows = split.train_windows(ds.default_history_len)
        last = windows[:, -1]
        valid_hist, _ = split.histories("valid", ds.default_history_len)
        assert np.array_equal(last[split.eval_users], valid_hist[:, -1])
