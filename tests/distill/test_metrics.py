"""The metric code against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pocketrec.distill.metrics import (
    UNRANKED,
    metrics_from_ranks,
    ranks_from_scores,
    ranks_from_topk,
    summarize_seeds,
)


def test_ranks_from_scores_counts_higher_items() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [4.0, 3.0, 2.0, 1.0]])
    assert ranks_from_scores(scores, np.array([2, 0])).tolist() == [1, 0]
    assert ranks_from_scores(scores, np.array([0, 3])).tolist() == [3, 3]


def test_ties_count_against_the_target() -> None:
    # Equal scores everywhere must not give the target rank 0.
    assert ranks_from_scores(np.zeros((1, 5)), np.array([2])).tolist() == [4]
    # -inf items (excluded) rank below any finite target.
    scores = np.array([[-np.inf, 1.0, -np.inf, 0.5]])
    assert ranks_from_scores(scores, np.array([3])).tolist() == [1]


def test_nan_scores_are_rejected() -> None:
    with pytest.raises(ValueError, match="NaN"):
        ranks_from_scores(np.array([[0.0, np.nan]]), np.array([0]))


def test_targets_out_of_range_are_rejected() -> None:
    with pytest.raises(ValueError, match="item ids"):
        ranks_from_scores(np.zeros((1, 3)), np.array([3]))


def test_ranks_from_topk_positions_and_misses() -> None:
    topk = np.array([[7, 3, 9], [1, 2, -1], [5, 6, 4]])
    ranks = ranks_from_topk(topk, np.array([9, 8, 5]))
    assert ranks.tolist() == [2, int(UNRANKED), 0]


def test_metrics_hand_computed() -> None:
    ranks = np.array([0, 1, 4, 9, 10, int(UNRANKED)])
    m = metrics_from_ranks(ranks, ks=(1, 5, 10))
    assert m["recall@1"] == pytest.approx(1 / 6)
    assert m["recall@5"] == pytest.approx(3 / 6)
    assert m["recall@10"] == pytest.approx(4 / 6)
    assert m["ndcg@1"] == pytest.approx(1 / 6)
    expected5 = (1 + 1 / math.log2(3) + 1 / math.log2(6)) / 6
    assert m["ndcg@5"] == pytest.approx(expected5)
    expected10 = (1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(11)) / 6
    assert m["ndcg@10"] == pytest.approx(expected10)


def test_scores_and_topk_paths_agree() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 30))
    targets = rng.integers(0, 30, size=50)
    topk = np.argsort(-scores, axis=1)[:, :20]
    a = metrics_from_ranks(ranks_from_scores(scores, targets))
    b = metrics_from_ranks(ranks_from_topk(topk, targets))
    assert a == pytest.approx(b)


def test_empty_rank_list_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        metrics_from_ranks(np.array([], dtype=np.int64))


def test_summarize_seeds_mean_and_sample_std() -> None:
    s = summarize_seeds([{"ndcg@10": 0.1}, {"ndcg@10": 0.2}, {"ndcg@10": 0.3}])
    assert s["ndcg@10"]["mean"] == pytest.approx(0.2)
    assert s["ndcg@10"]["std"] == pytest.approx(0.1)
    assert s["ndcg@10"]["values"] == [0.1, 0.2, 0.3]
