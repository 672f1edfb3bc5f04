"""Score a Recommender with the project's protocol and metric code, through the SDK path.

The dataset side (`pocketrec.distill.data`, `pocketrec.distill.protocol`) needs numpy only, so
this works on the base install; it is imported when called, not with the SDK.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np

from pocketrec._checks import is_int
from pocketrec._errors import InvalidRequestError
from pocketrec._recommender import Recommender

__all__ = ["evaluate_recommender"]


def evaluate_recommender(
    rec: Recommender,
    dataset: Any,
    *,
    stage: Literal["valid", "test"] = "test",
    beam_width: int | None = None,
    batch_size: int = 256,
    limit: int | None = None,
    progress: bool = False,
    exclude_history: bool = False,
) -> dict[str, float]:
    """Recall/NDCG@5/10/20 of `rec` on a dataset's leave-one-out targets.

    Items are matched by id, so the bundle's catalogue order does not matter; dataset items the
    bundle lacks count as misses. No history filtering (the protocol), beam search as in
    `recommend`. With `exclude_history`, the items of each user's history window are left out
    as `recommend_batch(..., exclude_history=True)` leaves them out: the ranking an app shows
    (and the way HSTU's published MovieLens numbers are computed).
    """
    from pocketrec.distill.protocol import evaluate, leave_one_out

    for name, value in (("batch_size", batch_size), ("limit", limit), ("beam_width", beam_width)):
        if value is not None and not (is_int(value) and value >= 1):
            raise InvalidRequestError(f"{name} must be a positive integer, got {value!r}")
    lookup = {item: row for row, item in enumerate(rec.item_ids)}
    to_bundle = np.array([lookup.get(str(i), -1) for i in dataset.item_ids] + [-1], np.int64)
    to_dataset = np.full(len(rec.item_ids) + 1, -1, np.int64)
    known = to_bundle[:-1] >= 0
    _check_overlap(int(known.sum()), len(known), getattr(dataset, "name", "the dataset"))
    to_dataset[to_bundle[:-1][known]] = np.flatnonzero(known)

    def predict(hist: np.ndarray) -> np.ndarray:
        rows = to_bundle[hist]  # PAD (-1) indexes the trailing -1
        exclude = _distinct(rows) if exclude_history else None
        found = rec.rank(rows, k=20, beam_width=beam_width, exclude=exclude)
        return to_dataset[found.items]  # -1 indexes the trailing -1

    return evaluate(
        predict,
        leave_one_out(dataset),
        stage,
        max_len=rec.window,
        batch_size=batch_size,
        limit=limit,
        progress=progress,
        exclude_history=exclude_history,
    )


def _check_overlap(known: int, total: int, name: str) -> None:
    """Refuse a dataset that shares no item with the bundle; warn when most items are missing.

    Missing items count as misses, so scoring a bundle on another catalogue would print a
    near-zero NDCG instead of an error.
    """
    if known == 0:
        raise InvalidRequestError(
            f"none of {name}'s {total} items is in this bundle's catalogue; evaluate the "
            "bundle on the dataset it was exported from"
        )
    if known < total / 2:
        warnings.warn(
            f"only {known} of {name}'s {total} items are in this bundle's catalogue; the rest "
            "count as misses, so the scores are not the model's quality",
            UserWarning,
            stacklevel=3,
        )


def _distinct(rows: np.ndarray) -> np.ndarray:
    """(B, E) each row's distinct catalogue rows, -1 padded; E is the largest count."""
    unique = [np.unique(r[r >= 0]) for r in rows]
    out = np.full((len(rows), max((len(u) for u in unique), default=0)), -1, np.int64)
    for b, u in enumerate(unique):
        out[b, : len(u)] = u
    return out
