"""The one metric implementation: full-catalogue Recall@K and NDCG@K from target ranks.

Every model in pocketrec (baseline, teacher, student, exported bundles) is scored by turning its
output into the 0-based rank of the held-out item, then `metrics_from_ranks`. Two ways in:

- `ranks_from_scores`: a score for every item in the catalogue (B, N). Ties are broken
  pessimistically: an item that ties with the target counts as ranked above it, so a model that
  scores everything equally gets no credit.
- `ranks_from_topk`: a ranked list of item ids per user (B, K), as constrained beam search
  returns. A target not in the list is unranked (it counts as a miss at every K).

With one target per user, Recall@K = HR@K. NDCG@K = 1 / log2(rank + 2) when rank < K, else 0.
Needs numpy only, so the SDK-side evaluation uses the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "KS",
    "UNRANKED",
    "metrics_from_ranks",
    "ranks_from_scores",
    "ranks_from_topk",
    "summarize_seeds",
]

KS = (5, 10, 20)
UNRANKED = np.int64(2**40)  # rank given to a target missing from a top-K list


def ranks_from_scores(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target among all items.

    Args:
        scores: (B, N) float scores over the full catalogue; -inf marks an item that cannot be
            recommended. NaN is an error.
        targets: (B,) int item ids in [0, N).

    Returns:
        (B,) int64 ranks: items scoring higher than the target plus the other items tying it.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(
            f"expected scores (B, N) and targets (B,), got {scores.shape} and {targets.shape}"
        )
    if targets.size and (targets.min() < 0 or targets.max() >= scores.shape[1]):
        raise ValueError(f"targets must be item ids in [0, {scores.shape[1]})")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; the model diverged or its input was invalid")
    target_scores = scores[np.arange(len(targets)), targets][:, None]  # (B, 1)
    higher = (scores > target_scores).sum(axis=1)
    ties = (scores == target_scores).sum(axis=1) - 1
    return (higher + ties).astype(np.int64)


def ranks_from_topk(topk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based position of each target in its ranked list, or UNRANKED when absent.

    Args:
        topk: (B, K) int item ids, best first; -1 pads lists shorter than K.
        targets: (B,) int item ids.
    """
    topk = np.asarray(topk)
    targets = np.asarray(targets, dtype=np.int64)
    if topk.ndim != 2 or targets.shape != (topk.shape[0],):
        raise ValueError(
            f"expected topk (B, K) and targets (B,), got {topk.shape} and {targets.shape}"
        )
    hit = topk == targets[:, None]  # (B, K)
    return np.where(hit.any(axis=1), hit.argmax(axis=1), UNRANKED).astype(np.int64)


def metrics_from_ranks(ranks: np.ndarray, ks: Iterable[int] = KS) -> dict[str, float]:
    """Recall@K and NDCG@K averaged over users, for each K in `ks`."""
    ranks = np.asarray(ranks, dtype=np.int64)
    if ranks.size == 0:
        raise ValueError("no ranks to score: the evaluation set is empty")
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        gain = np.where(hit, 1.0 / np.log2(np.minimum(ranks, k) + 2.0), 0.0)
        out[f"recall@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(gain.mean())
    return out


def summarize_seeds(
    runs: Sequence[Mapping[str, float]],
) -> dict[str, dict[str, float | list[float]]]:
    """Mean, sample standard deviation and per-seed values of every metric over seeds."""
    if not runs:
        raise ValueError("no runs to summarize")
    out: dict[str, dict[str, float | list[float]]] = {}
    for key in runs[0]:
        values = np.array([run[key] for run in runs], dtype=np.float64)
        out[key] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "values": [float(v) for v in values],
        }
    return out
