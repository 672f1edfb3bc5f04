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
"""step(states, prefix (M, num_levels - 1), level) -> logits (M, codebook_size).

`states` is what the caller passed to `beam_search` (an array, or a tuple of arrays, with the
user on the first axis), each array repeated so that row m belongs to beam m. `prefix[:, j]` is
the chosen code of level j for j < level and `codebook_size` (the empty code) for j >= level.
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


def _rank(scores: NDArray[np.float64], keep: int) -> NDArray[np.int64]:
    """Indices of the `keep` best entries of every row: higher score first, then lower index."""
    order: NDArray[np.int64] = np.argsort(-scores, axis=1, kind="stable")[:, :keep]
    return order


def beam_search(
    states: States,
    step: StepFn,
    index: PrefixIndex,
    *,
    beam_width: int,
    top_k: int,
    exclude: NDArray[np.int64] | None = None,
) -> SearchResult:
    """Find the `top_k` most likely existing items for each user.

    Args:
        states: encoded histories, an array or a tuple of arrays with users on axis 0; passed
            to `step` with every row repeated once per beam.
        step: the model's next-level logits (see `StepFn`).
        index: valid prefixes and the item of every full semantic ID.
        beam_width: beams kept per level; at least `top_k`.
        top_k: items returned per user.
        exclude: optional (B, E) item ids (-1 padded) that must not be returned. The beam is
            widened by E at every level, which leaves at least `top_k` other items whenever the
            catalogue has them (every kept prefix ends in at least one item).

    Returns:
        The items, their log-probabilities and semantic IDs.
    """
    if top_k <= 0 or beam_width < top_k:
        raise ValueError(f"need 0 < top_k <= beam_width, got top_k={top_k}, beam={beam_width}")
    parts = states if isinstance(states, tuple) else (states,)
    num_users = parts[0].shape[0]
    k_codes, levels = index.codebook_size, index.num_levels
    empty = np.int64(k_codes)
    # One beam per user before the first level; beams are (B, W) after it.
    codes = np.zeros((num_users, 1, 0), dtype=np.int64)  # (B, W, level)
    scores = np.zeros((num_users, 1), dtype=np.float64)  # (B, W)
    extra = 0 if exclude is None else exclude.shape[1]
    for level in range(levels):
        width = codes.shape[1]
        flat_codes = codes.reshape(num_users * width, level)  # (B*W, level)
        prefix = np.full((num_users * width, levels - 1), empty, dtype=np.int64)
        prefix[:, :level] = flat_codes
        repeated = tuple(np.repeat(part, width, axis=0) for part in parts)  # (B*W, ...)
        beam_states = repeated if isinstance(states, tuple) else repeated[0]
        logits = step(beam_states, prefix, level)  # (B*W, K)
        mask = index.child_mask(level, index.keys(flat_codes))  # (B*W, K)
        log_p = masked_log_softmax(logits, mask).reshape(num_users, width, k_codes)
        cand = (scores[:, :, None] + log_p).reshape(num_users, width * k_codes)  # (B, W*K)
        keep = min(width * k_codes, beam_width + extra)
        chosen = _rank(cand, keep)  # (B, keep)
        beam, code = np.divmod(chosen, k_codes)
        codes = np.concatenate(
            [np.take_along_axis(codes, beam[:, :, None], axis=1), code[:, :, None]], axis=2
        )  # (B, keep, level + 1)
        scores = np.take_along_axis(cand, chosen, axis=1)  # (B, keep)
    items = index.items(index.keys(codes.reshape(-1, levels))).reshape(num_users, -1)
    items = np.where(np.isfinite(scores), items, -1)
    if exclude is not None:
        banned = (items[:, :, None] == exclude[:, None, :]) & (exclude[:, None, :] >= 0)
        scores = np.where(banned.any(axis=2), -np.inf, scores)
        items = np.where(np.isfinite(scores), items, -1)
        order = _rank(scores, scores.shape[1])  # stable: keeps the beam order among survivors
        items = np.take_along_axis(items, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        codes = np.take_along_axis(codes, order[:, :, None], axis=1)
    items, scores, codes = items[:, :top_k], scores[:, :top_k], codes[:, :top_k]
    if items.shape[1] < top_k:  # fewer candidates than asked for (tiny catalogues)
        pad = top_k - items.shape[1]
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        codes = np.pad(codes, ((0, 0), (0, pad), (0, 0)), constant_values=-1)
    return SearchResult(items=items, log_probs=scores, semantic_ids=codes)
