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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pocketrec._prefix import PrefixIndex

__all__ = [
    "SearchResult",
    "StepFn",
    "beam_search",
    "exclusion_batch",
    "extra_beams",
    "masked_log_softmax",
    "one_user_result",
    "search_excluding",
]

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
    extra_width: int | NDArray[np.integer] | None = None,
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
            to excluded items do not crowd out the others: one number for every user or (B,)
            one per user (default: each user's number of distinct excluded items, which
            guarantees `top_k` results whenever the catalogue has them). Each user's beams
            depend only on that user's own settings, so a user gets the same items alone as
            in any batch.

    Returns:
        The items, their log-probabilities and semantic IDs.
    """
    if top_k <= 0 or beam_width < top_k:
        raise ValueError(f"need 0 < top_k <= beam_width, got top_k={top_k}, beam={beam_width}")
    parts = states if isinstance(states, tuple) else (states,)
    num_users = parts[0].shape[0]
    k_codes, levels = index.codebook_size, index.num_levels
    if num_users == 1:
        if extra_width is None:
            extra_width = 0 if exclude is None else len(np.unique(exclude[exclude >= 0]))
        extra_one = int(np.max(extra_width))  # an int, or a (1,) array
        return _search_one(states, step, index, beam_width, top_k, exclude, extra_one)
    banned_keys = None
    if exclude is not None:  # (user, item) pairs that must not be returned, as one int64 key
        user_of, item_of = np.nonzero(exclude >= 0)
        banned_keys = np.unique(user_of * (index.num_items + 1) + exclude[user_of, item_of])
    if extra_width is None:  # each user's number of distinct excluded items
        extra_width = (
            0
            if banned_keys is None
            else np.bincount(banned_keys // (index.num_items + 1), minlength=num_users)
        )
    extra = np.broadcast_to(np.asarray(extra_width, dtype=np.int64), (num_users,))  # (B,)
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
        keep = beam_width + (np.zeros_like(extra) if last else extra)  # (B,) beams per user
        # Rank within each user: higher score first, then lower flat index (rows are in beam
        # order and codes ascend within a beam, so position order is flat-index order).
        order = np.lexsort((np.arange(len(cand)), -cand, user))
        group_start = np.searchsorted(user[order], user[order], side="left")
        rank = np.arange(len(order)) - group_start
        kept = rank < keep[user[order]]
        picked = order[kept]
        width_next = int(min(keep.max(), max(1, np.bincount(user, minlength=num_users).max())))
        slot = rank[kept]
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

    The same as `np.argsort(-cand, kind="stable")[:keep]` (so -inf, then NaN, come last), but
    with many candidates and a narrow beam only those at or above the keep-th score are sorted
    (a partition finds it). Array methods, not `np.` functions: at these sizes the functions'
    dispatch costs as much as the work.
    """
    neg = -cand
    if len(neg) <= 8 * keep:  # a small sort is cheaper than partition + select + sort
        return neg.argsort(kind="stable")[:keep]
    part = neg.copy()
    part.partition(keep - 1)
    kth = part[keep - 1]
    if kth != kth:  # NaN: NaN scores sort last; too few numbers to fill the beam
        return neg.argsort(kind="stable")[:keep]
    near = (neg <= kth).nonzero()[0]  # every candidate that can be kept, in position order
    out: NDArray[np.intp] = near[neg[near].argsort(kind="stable")[:keep]]
    return out


_ONE_RUN = np.zeros(1, dtype=np.intp)  # reduceat starts of a single run


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
    arithmetic, is what the search spends next to the model. So beams are nodes of the prefix
    trie (no key lookups: a node's children and decoder input are table rows), and with one
    user, candidates come in flat-index order, so a stable sort on the score alone gives the
    specified ranking. The arithmetic of every score is the batched search's, operation for
    operation, so both give the same bits.
    """
    levels, k_codes = index.num_levels, index.codebook_size
    banned = None
    if exclude is not None and exclude.shape[1]:
        banned = np.zeros(index.num_items + 1, dtype=bool)  # [-1]: the padding, never banned
        banned[exclude[0]] = True
        banned[-1] = False
    nodes = np.zeros(1, dtype=np.int64)  # (W,) the beams: trie nodes of depth `level`
    scores = np.zeros(1, dtype=np.float64)  # (W,), best first (as `_top` ranks them)
    for level in range(levels):
        lv = index.levels[level]
        logits = step(states, lv.prefixes[nodes][None], level)[0]  # (W, K)
        last = level == levels - 1
        keep = beam_width + (0 if last else extra_width)
        live = scores[-1] > -np.inf  # every beam live: the worst is last, -inf and NaN included
        if live and lv.single:  # one child each: its log-softmax is v - (log(1) + v)
            edges = lv.offsets[nodes]  # (W,) = (E,)
            flat = np.arange(0, len(nodes) * k_codes, k_codes) + lv.codes[edges]  # (E,)
            values = logits.ravel().take(flat).astype(np.float64)  # logits[beam, code]
            cand = scores + (values - (values + 0.0))
        elif level == 0:  # the root, one beam of score 0: one run of all level-0 codes
            edges = index.root_edges  # (E,)
            values = logits[0].take(lv.codes).astype(np.float64)  # (E,)
            top = np.maximum.reduceat(values, _ONE_RUN)  # (1,)
            lse = np.log(np.add.reduceat(np.exp(values - top), _ONE_RUN)) + top
            cand = scores[0] + (values - lse)
        else:
            # Candidates are the beams' runs of children, beam after beam; per-beam values
            # reach their candidates by `repeat`, the cheapest gather for runs.
            count = lv.counts[nodes] if live else np.where(scores > -np.inf, lv.counts[nodes], 0)
            ends = count.cumsum()  # (W,)
            if ends[-1] == 0:  # nothing reachable: the batched search's one dead beam
                return _dead(states, step, index, level, top_k)
            first = ends - count  # (W,) where each beam's run of children starts
            edges = (lv.offsets[nodes] - first).repeat(count) + np.arange(ends[-1])  # (E,)
            flat = np.arange(0, len(nodes) * k_codes, k_codes).repeat(count) + lv.codes[edges]
            values = logits.ravel().take(flat).astype(np.float64)  # (E,) logits[beam, code]
            # log-softmax within each beam's run of children
            if live:  # trie nodes always have children, so every run is non-empty
                starts, size = first, count
            else:
                starts, size = first[count > 0], count[count > 0]
            top = np.maximum.reduceat(values, starts)
            lse = np.log(np.add.reduceat(np.exp(values - top.repeat(size)), starts)) + top
            cand = scores.repeat(count) + (values - lse.repeat(size))
        if last and banned is not None:
            cand = np.where(banned[index.leaf_items[edges]], -np.inf, cand)
        picked = _top(cand, keep)
        nodes = edges[picked]  # trie nodes of depth level + 1
        scores = cand[picked]
    return one_user_result(index, index.leaf_items[nodes[:top_k]], scores, top_k)


def extra_beams(excluded: int, beam_width: int, window: int) -> int:
    """Beams added before the last level when `excluded` distinct items must not be returned.

    Widening the beam by every excluded item would make long histories slow; a window's worth
    (at least the beam width) covers the recent items the model favours. When the excluded
    items still crowd a user's beams out, the list comes back short, and `search_excluding`
    (or `Recommender.recommend` for one user) searches that user again with one beam per
    excluded item. One rule for the numpy search, the search graph and the export's check of
    it.
    """
    return min(excluded, max(beam_width, window))


def exclusion_batch(rows: Sequence[Sequence[int]]) -> NDArray[np.int64]:
    """(B, E) each user's distinct catalogue rows, ascending and -1 padded (E >= 1): the
    `exclude` of a batch whose users must not get back what they already have."""
    distinct = [sorted(set(r)) for r in rows]
    out = np.full((len(rows), max(map(len, distinct), default=0) or 1), -1, dtype=np.int64)
    for b, items in enumerate(distinct):
        out[b, : len(items)] = items
    return out


def search_excluding(
    states: States,
    step: StepFn,
    index: PrefixIndex,
    *,
    beam_width: int,
    top_k: int,
    exclude: NDArray[np.int64],
    window: int,
) -> SearchResult:
    """`beam_search` leaving each user's `exclude` items out, fast for long histories too.

    Each user's beams widen by `extra_beams` (at most max(beam_width, window)) instead of one
    beam per excluded item. A user whose list then comes back shorter than `top_k` and the catalogue
    allow is searched again with one beam per excluded item, so every list is as full as the
    catalogue permits and only those users pay for the uncapped search.

    Args:
        states: as for `beam_search`; a tuple's arrays are subset together for the users
            searched again, so per-user inputs of `step` can travel in it.
        step, index, beam_width, top_k: as for `beam_search`.
        exclude: (B, E) item ids (-1 padded) that must not be returned.
        window: the model's history window (with the beam width, the cap of the widening).
    """
    distinct = np.array([len(np.unique(row[row >= 0])) for row in exclude], dtype=np.int64)
    extra = np.array([extra_beams(int(d), beam_width, window) for d in distinct], np.int64)
    found = beam_search(
        states, step, index, beam_width=beam_width, top_k=top_k, exclude=exclude, extra_width=extra
    )
    wanted = np.minimum(top_k, index.num_items - distinct)
    short = np.flatnonzero((extra < distinct) & ((found.items >= 0).sum(axis=1) < wanted))
    if not len(short):
        return found
    subset = tuple(part[short] for part in states) if isinstance(states, tuple) else states[short]
    again = beam_search(
        subset,
        step,
        index,
        beam_width=beam_width,
        top_k=top_k,
        exclude=exclude[short],
        extra_width=distinct[short],
    )
    items, log_probs = found.items.copy(), found.log_probs.copy()
    codes = found.semantic_ids.copy()
    items[short], log_probs[short], codes[short] = again.items, again.log_probs, again.semantic_ids
    return SearchResult(items=items, log_probs=log_probs, semantic_ids=codes)


def one_user_result(
    index: PrefixIndex, items: NDArray[np.int64], scores: NDArray[np.float64], top_k: int
) -> SearchResult:
    """The last level's beams of one user, best first, as a `SearchResult` of `top_k` items.

    Args:
        index: the prefix index searched.
        items: (W,) item of each final beam (W may exceed `top_k`; the rest are dropped).
        scores: (W,) log-probabilities, best first; non-finite ones become -1 entries.
        top_k: items per user in the result.
    """
    levels = index.num_levels
    n = min(top_k, len(scores))
    items = items[:n]  # (n,)
    codes = index.semantic_ids[items]  # (n, levels)
    scores = scores[:n]
    # Best first, so the ends bound them all (-inf and NaN sort last, +inf first).
    if n < top_k or not (scores[0] < np.inf and scores[-1] > -np.inf):  # -1 entries to fill
        finite = np.isfinite(scores)
        out_items = np.full(top_k, -1, dtype=np.int64)
        out_scores = np.full(top_k, -np.inf)
        out_codes = np.full((top_k, levels), -1, dtype=np.int64)
        out_items[:n] = np.where(finite, items, -1)
        out_scores[:n] = scores
        out_codes[:n] = np.where(finite[:, None], codes, -1)
        items, scores, codes = out_items, out_scores, out_codes
    return SearchResult(items=items[None], log_probs=scores[None], semantic_ids=codes[None])


def _dead(states: States, step: StepFn, index: PrefixIndex, level: int, top_k: int) -> SearchResult:
    """No beam reached an item at `level`: the batched search goes on with one dead beam.

    Its prefix is all-zero codes (scores -inf, so never expanded); the model is still called at
    every remaining level, as the batched search and the JVM core call it.
    """
    levels = index.num_levels
    for later in range(level + 1, levels):
        prefix = np.full((1, 1, levels - 1), index.codebook_size, dtype=np.int64)
        prefix[:, :, :later] = 0
        step(states, prefix, later)
    return SearchResult(
        items=np.full((1, top_k), -1, dtype=np.int64),
        log_probs=np.full((1, top_k), -np.inf),
        semantic_ids=np.full((1, top_k, levels), -1, dtype=np.int64),
    )
