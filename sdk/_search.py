"""Constrained beam search over semantic IDs, in numpy, with the model step injected.

The model is reached through one function, `step(states, prefix, level) -> logits`, so the same
search drives an ONNX Runtime session (the SDK), a torch model (training-side evaluation) or a
fake (tests). At every level the logits of codes that no item continues are masked out and the
rest are renormalised, so every finished beam is an existing item: invalid recommendations are
impossible by construction, and an item's score is its log-probability under the model.

Ordering is fully specified, so other runtimes (the JVM core of the Android demo) reproduce it
exactly: candidates are ranked by log-probability, higher first, and ties by the candidate's
flat index (beam index * codebook_size + code), lower first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pocketrec._prefix import PrefixIndex

__all__ = ["SearchResult", "StepFn", "beam_search", "masked_log_softmax"]

States = Any
StepFn = Callable[[States, NDArray[np.int64], int], NDArray[np.floating]]
"""step(states, prefix (B, W, num_levels - 1), level) -> logits (B, W, codebook_size).

`states` is what the caller passed to `beam_search` (an array, or a tuple of arrays, with the
user on the first axis), once per user: the W beams of user b are `prefix[b]`, so a model can
work on a user's history once for all of its beams. `prefix[b, w, j]` is the chosen code of
level j for j < level and `codebook_size` (the empty code) for j >= level.
"""


@dataclass(frozen=True)
class SearchResult:
    """Top-k items per user, best first.

    Attributes:
        items: (B, k) int64 item ids; -1 where fewer than k items could be reached.
        log_probs: (B, k) float64 log-probability of each item; -inf for -1 entries.
        semantic_ids: (B, k, num_levels) int64 codes of each item.
    """

    items: NDArray[np.int64]
    log_probs: NDArray[np.float64]
    semantic_ids: NDArray[np.int64]


def masked_log_softmax(
    logits: NDArray[np.floating], mask: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """log-softmax over the True entries of each row (float64); -inf elsewhere and on empty rows."""
    x = np.where(mask, logits.astype(np.float64), -np.inf)
    top = x.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):  # empty rows: log(0) = -inf, masked
        lse = np.log(np.exp(x - top).sum(axis=1, keepdims=True)) + top
        out: NDArray[np.float64] = np.where(mask, x - lse, -np.inf)
    return out


def _segment_log_softmax(
    values: NDArray[np.float64], rows: NDArray[np.int64]
) -> NDArray[np.float64]:
    """log-softmax of `values` within each run of equal `rows` (rows are non-decreasing)."""
    if len(values) == 0:
        return values
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    run = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(rows)]))
    top = np.maximum.reduceat(values, starts)
    lse = np.log(np.add.reduceat(np.exp(values - top[run]), starts)) + top
    out: NDArray[np.float64] = values - lse[run]
    return out


def beam_search(
    states: States,
    step: StepFn,
    index: PrefixIndex,
    *,
    beam_width: int,
    top_k: int,
    exclude: NDArray[np.int64] | None = None,
    extra_width: int | None = None,
) -> SearchResult:
    """Find the `top_k` most likely existing items for each user.

    Args:
        states: encoded histories, an array or a tuple of arrays with users on axis 0; passed
            to `step` as they are.
        step: the model's next-level logits (see `StepFn`).
        index: valid prefixes and the item of every full semantic ID.
        beam_width: beams kept per level; at least `top_k`.
        top_k: items returned per user.
        exclude: optional (B, E) item ids (-1 padded) that must not be returned: at the last
            level their candidates score -inf.
        extra_width: beams added at every level but the last, so that prefixes leading only
            to excluded items do not crowd out the others (default: E, which guarantees
            `top_k` results whenever the catalogue has them).

    Returns:
        The items, their log-probabilities and semantic IDs.
    """
    if top_k <= 0 or beam_width < top_k:
        raise ValueError(f"need 0 < top_k <= beam_width, got top_k={top_k}, beam={beam_width}")
    parts = states if isinstance(states, tuple) else (states,)
    num_users = parts[0].shape[0]
    k_codes, levels = index.codebook_size, index.num_levels
    if extra_width is None:
        extra_width = 0 if exclude is None else exclude.shape[1]
    if num_users == 1:
        return _search_one(states, step, index, beam_width, top_k, exclude, extra_width)
    banned_keys = None
    if exclude is not None:  # (user, item) pairs that must not be returned, as one int64 key
        user_of, item_of = np.nonzero(exclude >= 0)
        banned_keys = np.unique(user_of * (index.num_items + 1) + exclude[user_of, item_of])
    # One beam per user before the first level; beams are (B, W) after it. Only valid
    # continuations are ever materialised (a few per beam after the first level).
    codes = np.zeros((num_users, 1, 0), dtype=np.int64)  # (B, W, level)
    scores = np.zeros((num_users, 1), dtype=np.float64)  # (B, W)
    for level in range(levels):
        width = codes.shape[1]
        flat_codes = codes.reshape(num_users * width, level)  # (B*W, level)
        prefix = np.full((num_users, width, levels - 1), k_codes, dtype=np.int64)  # (B, W, C-1)
        prefix[:, :, :level] = codes
        logits = step(states, prefix, level).reshape(num_users * width, k_codes)  # (B*W, K)
        parent = index.keys(flat_codes)  # (B*W,)
        live = np.isfinite(scores.ravel())
        rows, child = index.children(level, np.where(live, parent, -1))  # (E,), (E,)
        log_p = _segment_log_softmax(np.asarray(logits, dtype=np.float64)[rows, child], rows)
        cand = scores.ravel()[rows] + log_p  # (E,)
        user = rows // width
        last = level == levels - 1
        if last and banned_keys is not None:
            cand_items = index.items(parent[rows] * k_codes + child)
            cand = np.where(
                np.isin(user * (index.num_items + 1) + cand_items, banned_keys), -np.inf, cand
            )
        keep = beam_width + (0 if last else extra_width)
        # Rank within each user: higher score first, then lower flat index (rows are in beam
        # order and codes ascend within a beam, so position order is flat-index order).
        order = np.lexsort((np.arange(len(cand)), -cand, user))
        group_start = np.searchsorted(user[order], user[order], side="left")
        rank = np.arange(len(order)) - group_start
        picked = order[rank < keep]
        width_next = int(min(keep, max(1, np.bincount(user, minlength=num_users).max())))
        slot = rank[rank < keep]
        new_codes = np.zeros((num_users, width_next, level + 1), dtype=np.int64)
        new_scores = np.full((num_users, width_next), -np.inf)
        beam = rows[picked] % width
        new_codes[user[picked], slot, :level] = codes[user[picked], beam]
        new_codes[user[picked], slot, level] = child[picked]
        new_scores[user[picked], slot] = cand[picked]
        codes, scores = new_codes, new_scores
    finite = np.isfinite(scores)
    items = index.items(index.keys(codes.reshape(-1, levels))).reshape(num_users, -1)
    items = np.where(finite, items, -1)
    codes = np.where(finite[:, :, None], codes, -1)
    items, scores, codes = items[:, :top_k], scores[:, :top_k], codes[:, :top_k]
    if items.shape[1] < top_k:  # fewer candidates than asked for (tiny catalogues)
        pad = top_k - items.shape[1]
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        codes = np.pad(codes, ((0, 0), (0, pad), (0, 0)), constant_values=-1)
    return SearchResult(items=items, log_probs=scores, semantic_ids=codes)


def _top(cand: NDArray[np.float64], keep: int) -> NDArray[np.intp]:
    """Positions of the `keep` highest `cand`, highest first, ties by lower position.

    The same as `np.argsort(-cand, kind="stable")[:keep]`, but only the candidates at or above
    the keep-th score are sorted (a partition finds it); with many candidates and a narrow
    beam that is most of the cost of a level.
    """
    neg = -cand
    if len(neg) <= 2 * keep:
        return np.argsort(neg, kind="stable")[:keep]
    kth = np.partition(neg, keep - 1)[keep - 1]
    if np.isnan(kth):  # NaN scores sort last; too few numbers to fill the beam
        return np.argsort(neg, kind="stable")[:keep]
    near = np.flatnonzero(neg <= kth)  # every candidate that can be kept, in position order
    return near[np.argsort(neg[near], kind="stable")[:keep]]


def _search_one(
    states: States,
    step: StepFn,
    index: PrefixIndex,
    beam_width: int,
    top_k: int,
    exclude: NDArray[np.int64] | None,
    extra_width: int,
) -> SearchResult:
    """`beam_search` for one user: the same result with far fewer numpy calls.

    An app's `recommend` call is one user, and at that size the per-call cost of numpy, not
    arithmetic, is what the search spends next to the model. With one user, candidates come in
    flat-index order, so a stable sort on the score alone gives the specified ranking.
    """
    k_codes, levels = index.codebook_size, index.num_levels
    banned = None
    if exclude is not None:
        listed = exclude[0][exclude[0] >= 0]
        if len(listed):
            banned = np.zeros(index.num_items + 1, dtype=bool)  # [-1] (no item): never banned
            banned[listed] = True
    scores = np.zeros(1, dtype=np.float64)  # (W,)
    keys = np.zeros(1, dtype=np.int64)  # (W,) prefix keys of the beams
    prefix = np.full((1, 1, levels - 1), k_codes, dtype=np.int64)  # (1, W, levels - 1)
    codes = np.zeros((1, levels), dtype=np.int64)  # (W, levels), complete after the last level
    for level in range(levels):
        logits = step(states, prefix, level)[0]  # (W, K)
        live_keys = np.where(scores > -np.inf, keys, -1)
        rows, child, count = index.child_runs(level, live_keys)
        last = level == levels - 1
        keep = beam_width + (0 if last else extra_width)
        if len(rows) == 0:  # nothing reachable: one dead beam, as in the batched search
            scores = np.full(1, -np.inf)
            keys = np.zeros(1, dtype=np.int64)
            prefix = np.full((1, 1, levels - 1), k_codes, dtype=np.int64)
            prefix[:, :, : level + 1] = 0
            codes = np.zeros((1, levels), dtype=np.int64)
            continue
        values = np.asarray(logits[rows, child], dtype=np.float64)  # (E,)
        # log-softmax within each beam's run of children (rows ascend)
        first = np.cumsum(count) - count  # (W,) where each beam's run starts
        if count.all():
            starts, run = first, rows
        else:
            starts = first[count > 0]
            run = np.repeat(np.arange(len(starts)), count[count > 0])
        top = np.maximum.reduceat(values, starts)
        lse = np.log(np.add.reduceat(np.exp(values - top[run]), starts)) + top
        cand = scores[rows] + (values - lse[run])
        child_keys = keys[rows] * k_codes + child
        if last and banned is not None:
            cand = np.where(banned[index.items(child_keys)], -np.inf, cand)
        picked = _top(cand, keep)
        beam = rows[picked]
        scores = cand[picked]
        keys = child_keys[picked]
        if last:
            codes = np.empty((len(picked), levels), dtype=np.int64)
            codes[:, : levels - 1] = prefix[0, beam]
            codes[:, levels - 1] = child[picked]
        else:
            prefix = prefix[:, beam]  # (1, W, levels - 1)
            prefix[0, :, level] = child[picked]
    n = min(top_k, len(scores))
    finite = np.isfinite(scores[:n])
    out_items = np.full((1, top_k), -1, dtype=np.int64)
    out_scores = np.full((1, top_k), -np.inf)
    out_codes = np.full((1, top_k, levels), -1, dtype=np.int64)
    out_items[0, :n] = np.where(finite, index.items(keys[:n]), -1)
    out_scores[0, :n] = scores[:n]
    out_codes[0, :n] = np.where(finite[:, None], codes[:n], -1)
    return SearchResult(items=out_items, log_probs=out_scores, semantic_ids=out_codes)
