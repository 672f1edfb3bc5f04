"""Quality of a bundle through the SDK path, next to fp32 on the same users.

Every precision is scored the way an app would run it: `Recommender.rank` (ONNX Runtime plus
the SDK's numpy beam search) on the provider the bundle is meant for, with the project's
protocol (leave-one-out, full-catalogue ranking, no history filtering). The users are a fixed,
evenly spaced subset of the test users (or all of them), so every precision and fp32 are scored
on exactly the same histories.

The comparison is paired: besides the retention ratio (NDCG@10 of the bundle over that of
fp32) the record carries the standard error of the per-user NDCG@10 difference, because on a
few thousand users a single hit moving from rank 1 out of the top 10 changes NDCG@10 by more
than the int8 gate allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pocketrec._recommender import Recommender
from pocketrec.distill.metrics import metrics_from_ranks, ranks_from_topk
from pocketrec.distill.protocol import PROTOCOL, Split

__all__ = [
    "Probe",
    "quality_record",
    "quality_probe",
    "rank_probe",
    "selection_probe",
    "top_k_agreement",
]

TOP_K = 20  # ranked items per user; metrics go up to @20


@dataclass(frozen=True)
class Probe:
    """Histories to score and their targets (catalogue rows; bundles keep dataset order)."""

    stage: str
    histories: np.ndarray  # (N, window) int64 rows, -1 = padding (left)
    targets: np.ndarray  # (N,) int64
    selection: str  # how the users were picked, for the record


def _probe(split: Split, stage: str, window: int, users: int | None) -> Probe:
    hist, targets = split.histories("test" if stage == "test" else "valid", window)
    total = len(targets)
    if users is not None and users < total:
        pick = np.linspace(0, total - 1, users).round().astype(np.int64)
        hist, targets = hist[pick], targets[pick]
        selection = f"{users} of {total} {stage} users, evenly spaced in dataset order"
    else:
        selection = f"all {total} {stage} users"
    return Probe(stage, hist.astype(np.int64), targets.astype(np.int64), selection)


def quality_probe(split: Split, window: int, users: int | None) -> Probe:
    """The quality probe: `users` evenly spaced test users (None: all of them)."""
    return _probe(split, "test", window, users)


def selection_probe(split: Split, window: int, users: int = 256) -> Probe:
    """Validation histories for choices made during export (block size, what to keep in float).

    Choices are made on validation users so the test users of the quality gate stay unseen.
    """
    return _probe(split, "valid", window, users)


def rank_probe(
    rec: Recommender,
    probe: Probe,
    *,
    beam_width: int | None = None,
    batch_size: int = 256,
    desc: str | None = None,
) -> np.ndarray:
    """(N, TOP_K) catalogue rows ranked by `rec` for every probe history (-1 = none).

    With `desc`, a progress bar counts the users (the HTP simulator takes about a second per
    user, so scoring a few hundred is minutes of otherwise silent work).
    """
    from tqdm.auto import tqdm

    out = []
    with tqdm(total=len(probe.targets), desc=desc, unit="user", disable=desc is None) as bar:
        for s in range(0, len(probe.targets), batch_size):
            batch = probe.histories[s : s + batch_size]
            out.append(rec.rank(batch, k=TOP_K, beam_width=beam_width).items)
            bar.update(len(batch))
    return np.concatenate(out)


def _ndcg10(items: np.ndarray, targets: np.ndarray) -> np.ndarray:
    ranks = ranks_from_topk(items, targets)  # (N,)
    return np.where(ranks < 10, 1.0 / np.log2(np.minimum(ranks, 10) + 2.0), 0.0)


def top_k_agreement(items: np.ndarray, reference: np.ndarray, k: int = 10) -> float:
    """Mean share of the reference's top-k items that `items` also has in its top k."""
    a, b = items[:, :k], reference[:, :k]
    common = (a[:, :, None] == b[:, None, :]) & (b[:, None, :] >= 0)  # (N, k, k)
    return float(common.any(axis=2).sum(axis=1).mean() / k)


def quality_record(
    items: np.ndarray,
    fp32_items: np.ndarray,
    probe: Probe,
    *,
    window: int,
    providers: tuple[str, ...],
    required_retention: float | None,
) -> dict[str, Any]:
    """The manifest's `quality` entry for a bundle ranked `items` where fp32 ranked `fp32_items`.

    `ndcg@10_retention` is NDCG@10 over fp32's NDCG@10 (1.0 when fp32 scores 0: nothing to
    lose); `passed` says whether it reaches `required_retention` (None: no gate, as for fp32).
    """
    metrics = metrics_from_ranks(ranks_from_topk(items, probe.targets))
    reference = metrics_from_ranks(ranks_from_topk(fp32_items, probe.targets))
    ours, theirs = _ndcg10(items, probe.targets), _ndcg10(fp32_items, probe.targets)
    retention = float(ours.mean() / theirs.mean()) if theirs.mean() > 0 else 1.0
    diff = ours - theirs
    record: dict[str, Any] = {
        "protocol": PROTOCOL.format(max_len=window),
        "stage": probe.stage,
        "users": len(probe.targets),
        "user_selection": probe.selection,
        "providers": list(providers),
        "metrics": metrics,
        "fp32_metrics": reference,
        "ndcg@10_retention": retention,
        "ndcg@10_difference_se": float(diff.std(ddof=1) / np.sqrt(len(diff)))
        if len(diff) > 1
        else 0.0,
        "top10_agreement_with_fp32": top_k_agreement(items, fp32_items),
        "identical_top10_share": float((items[:, :10] == fp32_items[:, :10]).all(axis=1).mean()),
    }
    if required_retention is not None:
        record["required_retention"] = required_retention
        record["passed"] = retention >= required_retention
    return record
