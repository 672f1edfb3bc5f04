"""Fitting adapters on a user's history and computing federated updates (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from pocketrec._adapter import Adapter, FitSettings, make_update
from pocketrec._errors import InvalidRequestError

if TYPE_CHECKING:
    from pocketrec._recommender import Recommender

__all__ = [
    "check_form",
    "code_nll",
    "federated_update",
    "fit_bias",
    "fit_personal",
    "min_rows",
    "teacher_forced",
]


def fit_bias(
    logits: NDArray[np.float32],
    targets: NDArray[np.int64],
    allowed: NDArray[np.bool_],
    *,
    start: NDArray[np.float32],
    settings: FitSettings,
    basis: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """Fit a code bias to teacher-forced logits by regularised cross-entropy (numpy Adam).

    Args:
        logits: (T, L, K) the model's logits at T positions of the history, every level.
        targets: (T, L) the codes of the item that followed each position.
        allowed: (T, L, K) True where a code continues the target's prefix (the constrained
            softmax the search uses).
        start: (L, K) the bias to start from and be pulled back to.
        settings: strength and length of the fit (its `form` is the caller's business: the
            `basis` argument decides what is fitted).
        basis: (L, K, D) the decoder's code embeddings: fit a state shift s (D numbers) and
            return start + basis @ s. None: fit the (L, K) change freely.

    Returns:
        (L, K) float32 bias.
    """
    if len(targets) == 0:
        raise InvalidRequestError("fit_bias needs at least one next-item target")
    table = None if basis is None else basis.astype(np.float64)
    theta = np.zeros(start.shape if table is None else table.shape[2])  # the fitted change
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    onehot = np.zeros(logits.shape, dtype=np.float64)
    t_idx, l_idx = np.meshgrid(np.arange(len(targets)), np.arange(targets.shape[1]), indexing="ij")
    onehot[t_idx, l_idx, targets] = 1.0
    base = np.where(allowed, logits.astype(np.float64), -np.inf) + start[None]
    for step in range(1, settings.steps + 1):
        p = np.exp(_log_softmax(base + (theta if table is None else table @ theta)[None]))
        grad = (p - onehot).sum(axis=0)  # (L, K): d loss / d bias
        if table is not None:
            grad = np.einsum("lk,lkd->d", grad, table)
        grad += settings.l2 * theta
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        theta -= settings.lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    change = theta if table is None else table @ theta
    return (start + change).astype(np.float32)


def code_nll(
    logits: NDArray[np.float32], targets: NDArray[np.int64], allowed: NDArray[np.bool_]
) -> float:
    """Summed -log p of the targets' codes under the constrained softmax (the fit's loss).

    Args:
        logits: (T, L, K), any bias already added.
        targets: (T, L) codes.
        allowed: (T, L, K) codes that continue each target's prefix.
    """
    log_p = _log_softmax(np.where(allowed, logits.astype(np.float64), -np.inf))
    return float(-np.take_along_axis(log_p, targets[..., None], axis=2).sum())


def _log_softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Log-softmax over the last axis (codes); -inf entries (disallowed codes) stay -inf."""
    z = z - z.max(axis=2, keepdims=True)
    out: NDArray[np.float64] = z - np.log(np.exp(z).sum(axis=2, keepdims=True))
    return out


def min_rows(settings: FitSettings) -> int:
    """The fewest known history items a fit uses (two give the first next-item target)."""
    return max(2, settings.min_events)


def teacher_forced(
    rec: Recommender, rows: Sequence[int], last: int | None = None
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.bool_]]:
    """The model's raw logits (no adapter) at positions of a history, true prefixes.

    Args:
        rec: the Recommender.
        rows: the history as catalogue rows, oldest first (at least 2).
        last: only the last this-many next-item targets (default: every one). Each still reads
            its full window of earlier rows, as `recommend` would at that point.

    Returns:
        logits (T, L, K), target codes (T, L), allowed codes (T, L, K), with
        T = min(len(rows) - 1, last); allowed marks the codes that continue the target's prefix
        (the constrained softmax).
    """
    seq = np.asarray(rows, dtype=np.int64)
    window = rec.window
    levels = rec.manifest.semantic_ids.num_levels
    k = rec.manifest.semantic_ids.codebook_size
    first = 1 if last is None else max(1, len(seq) - last)  # index of the first target
    t = len(seq) - first
    positions = np.arange(first, len(seq))[:, None] - window + np.arange(window)[None, :]
    windows = np.where(positions >= 0, seq[np.clip(positions, 0, None)], -1)  # (T, window)
    raw = rec.without_adapters()
    states = raw.encode(windows)
    targets = rec.semantic_ids[seq[first:]]  # (T, L)
    logits = np.empty((t, levels, k), dtype=np.float32)
    allowed = np.empty((t, levels, k), dtype=bool)
    for level in range(levels):
        prefix = np.full((t, 1, levels - 1), k, dtype=np.int64)  # (T, 1 beam, levels - 1)
        prefix[:, 0, :level] = targets[:, :level]
        logits[:, level] = raw.step(states, prefix, level)[:, 0]
        allowed[:, level] = rec.prefix_index.child_mask(
            level, rec.prefix_index.keys(targets[:, :level])
        )
    return logits, targets, allowed


def check_form(rec: Recommender, settings: FitSettings) -> None:
    """Refuse a form of personal adapter the bundle cannot fit, before any work is done.

    Raises:
        InvalidRequestError: form "shift" on a bundle without code embeddings.
    """
    if settings.form == "shift" and rec.code_embeddings is None:
        raise InvalidRequestError(
            f"FitSettings(form='shift') needs the bundle's code embeddings, and bundle "
            f"{rec.manifest.name!r} was exported without them; export it again with this "
            "pocketrec (`pocketrec export RUN_DIR --out BUNDLE_DIR`) or use form='bias'"
        )


def fit_personal(rec: Recommender, rows: Sequence[int], settings: FitSettings) -> Adapter:
    """A personal adapter, on top of the adapters `rec` already applies, from a history."""
    check_form(rec, settings)
    current = rec.total_bias
    zero = np.zeros_like(current)
    info: dict[str, object] = {"events": len(rows), "form": settings.form}
    if len(rows) < min_rows(settings):
        return _personal(rec, zero, info)
    logits, targets, allowed = teacher_forced(rec, rows, settings.max_events)
    base = logits + current[None]
    basis = rec.code_embeddings if settings.form == "shift" else None
    info |= {"fitted": len(targets), "l2": settings.l2, "steps": settings.steps}

    def fit(part: slice) -> NDArray[np.float32]:
        return fit_bias(
            base[part], targets[part], allowed[part], start=zero, settings=settings, basis=basis
        )

    if settings.holdout:
        h = settings.holdout
        if len(targets) <= h:
            return _personal(rec, zero, info | {"kept": False, "why": "too few targets"})
        trial = fit(slice(None, -h))
        before = code_nll(base[-h:], targets[-h:], allowed[-h:])
        after = code_nll(base[-h:] + trial[None], targets[-h:], allowed[-h:])
        info |= {"holdout_nll": [before, after], "kept": after < before}
        if after >= before:
            return _personal(rec, zero, info)
    return _personal(rec, fit(slice(None)), info)


def _personal(rec: Recommender, bias: NDArray[np.float32], info: dict[str, object]) -> Adapter:
    return Adapter(
        bundle=rec.manifest.name,
        bias=bias,
        kind="personal",
        model=rec.manifest.model_id,
        info=info,
    )


def federated_update(
    rec: Recommender,
    rows: Sequence[int],
    *,
    clip_norm: float,
    noise_multiplier: float,
    settings: FitSettings,
    rng: np.random.Generator,
) -> bytes:
    """The clipped, noised change this user's data makes to the shared adapter."""
    need = min_rows(settings)
    if len(rows) < need:
        raise InvalidRequestError(
            f"a federated update needs at least {need} known history items (FitSettings."
            f"min_events), this history has {len(rows)}; upload nothing for this user until "
            "it has more"
        )
    shared = [a for a in rec.adapters if a.kind == "shared"]
    start = shared[0].bias if shared else np.zeros_like(rec.total_bias)
    version = shared[0].version if shared else 0
    logits, targets, allowed = teacher_forced(rec, rows, settings.max_events)
    fitted = fit_bias(logits, targets, allowed, start=start, settings=settings)
    return make_update(
        fitted - start,
        bundle=rec.manifest.name,
        model=rec.manifest.model_id,
        base_version=version,
        clip_norm=clip_norm,
        noise_multiplier=noise_multiplier,
        num_events=len(targets),
        rng=rng,
    )
