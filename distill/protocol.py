"""The evaluation protocol: leave-one-out splits, history truncation, and the scoring loop.

Protocol (REFERENCE.md), used for every number pocketrec reports:

- Leave-one-out per user: last item = test target, second-to-last = validation target, the rest
  = training. Users with fewer than 3 items give all their items to training and are not
  evaluated (`Split.describe()` counts them).
- The model sees the most recent `max_len` items before the target (20 for Amazon, 200 for
  MovieLens-1M by default); the validation history excludes the test item.
- Ranking over the full item catalogue, no sampled negatives, no filtering of items already in
  the history. Recall@K and NDCG@K for K = 5, 10, 20 (`pocketrec.distill.metrics`).
- Model selection on validation only; test is reported once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pocketrec.distill.data import Dataset
from pocketrec.distill.metrics import KS, metrics_from_ranks, ranks_from_scores, ranks_from_topk

__all__ = [
    "PAD",
    "PROTOCOL",
    "Split",
    "evaluate",
    "leave_one_out",
    "metrics_of",
    "pad_left",
    "target_ranks",
    "training_split",
]

PAD = -1
PROTOCOL = (
    "leave-one-out (last item test, second-to-last validation); full-catalogue ranking, no "
    "sampled negatives, no history filtering, ties counted against the target; "
    "history = most recent {max_len} items"
)
Stage = Literal["valid", "test"]


def pad_left(offsets: np.ndarray, items: np.ndarray, ends: np.ndarray, max_len: int) -> np.ndarray:
    """Right-aligned windows of the `max_len` items before each end index, PAD on the left.

    Args:
        offsets: (U,) start of each user's sequence in `items`.
        items: flat item ids.
        ends: (U,) exclusive end index of each window in `items`.
        max_len: window length.

    Returns:
        (U, max_len) int32, most recent item last.
    """
    positions = ends[:, None] - max_len + np.arange(max_len)[None, :]  # (U, L)
    valid = positions >= offsets[:, None]
    window = items[np.clip(positions, 0, max(len(items) - 1, 0))]
    return np.where(valid, window, PAD).astype(np.int32)


@dataclass(frozen=True, eq=False)
class Split:
    """A leave-one-out split of a dataset.

    Attributes:
        dataset: the dataset split.
        eval_users: (E,) users that have validation and test targets.
        train_ends: (num_users,) exclusive end of each user's training items in
            `dataset.items` (the training sequence is items[offsets[u]:train_ends[u]]).
    """

    dataset: Dataset
    eval_users: np.ndarray
    train_ends: np.ndarray

    def train_sequence(self, user: int) -> np.ndarray:
        return self.dataset.items[self.dataset.offsets[user] : self.train_ends[user]]

    def train_lengths(self) -> np.ndarray:
        return self.train_ends - self.dataset.offsets[:-1]

    def train_windows(self, max_len: int) -> np.ndarray:
        """(num_users, max_len + 1) the last max_len + 1 training items per user, PAD-left.

        Column t is the input at step t and column t + 1 its next-item target.
        """
        return pad_left(self.dataset.offsets[:-1], self.dataset.items, self.train_ends, max_len + 1)

    def histories(self, stage: Stage, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets for evaluation.

        Returns:
            (E, max_len) int32 histories (PAD-left, most recent last) and (E,) int64 targets.
        """
        if stage not in ("valid", "test"):
            raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")
        ends = self.dataset.offsets[1:][self.eval_users] - (2 if stage == "valid" else 1)
        starts = self.dataset.offsets[:-1][self.eval_users]
        hist = pad_left(starts, self.dataset.items, ends, max_len)
        return hist, self.dataset.items[ends].astype(np.int64)

    def with_validation_in_training(self) -> Split:
        """The same split with each evaluated user's validation item moved into training.

        For refitting a model after selection on validation: the final model then learns from
        every interaction except the test item, and is scored on test only.
        """
        ends = self.train_ends.copy()
        ends[self.eval_users] += 1
        return Split(dataset=self.dataset, eval_users=self.eval_users, train_ends=ends)

    def holding_out(self, events: int) -> Split:
        """The same split with each evaluated user's last `events` training items left out.

        Models the events a phone collects after the bundle it runs was trained: the model
        never learns from them, but they are in the user's history at validation and test
        time (`histories` is unchanged), which is what on-device personalization and federated
        rounds have to learn from. Every user keeps at least 2 training items (one training
        pair), so users with short histories hold out fewer (or none).
        """
        if events < 0:
            raise ValueError(f"events must be >= 0, got {events}")
        held = np.clip(self.train_lengths()[self.eval_users] - 2, 0, events)
        ends = self.train_ends.copy()
        ends[self.eval_users] -= held
        return Split(dataset=self.dataset, eval_users=self.eval_users, train_ends=ends)

    def device_users(self, fraction: float) -> np.ndarray:
        """A fixed random `fraction` of the evaluated users (sorted): users whose data stays on
        their devices.

        The draw depends only on the split and `fraction` (seed 0), so training
        (`pocketrec distill --device-users`) and the benchmarks that score those users
        (`benchmarks/personalize.py`, `benchmarks/federated_oracle.py`) pick the same users.
        """
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"fraction must be in [0, 1), got {fraction}")
        order = np.random.default_rng(0).permutation(len(self.eval_users))
        return np.sort(self.eval_users[order[: round(fraction * len(self.eval_users))]])

    def holding_out_users(self, users: np.ndarray) -> Split:
        """The same split with none of `users`' items in training.

        Models users who never share their data: the model is trained on everyone else and
        meets these users only at validation and test time (`histories` is unchanged), which
        is where on-device personalization has the most to learn from their own events.
        """
        ends = self.train_ends.copy()
        ends[users] = self.dataset.offsets[:-1][users]
        return Split(dataset=self.dataset, eval_users=self.eval_users, train_ends=ends)

    def describe(self, max_len: int) -> dict[str, Any]:
        """What a results file states about the protocol."""
        return {
            "protocol": PROTOCOL.format(max_len=max_len),
            "history_len": max_len,
            "users_evaluated": len(self.eval_users),
            "users_not_evaluated": self.dataset.num_users - len(self.eval_users),
            "train_interactions": int(self.train_lengths().sum()),
            "ks": list(KS),
        }


def leave_one_out(dataset: Dataset) -> Split:
    """Split every user's sequence: last = test, second-to-last = validation, rest = train."""
    lengths = dataset.lengths()
    evaluated = lengths >= 3
    train_ends = dataset.offsets[1:] - np.where(evaluated, 2, 0)
    return Split(
        dataset=dataset,
        eval_users=np.flatnonzero(evaluated),
        train_ends=train_ends.astype(np.int64),
    )


def training_split(
    dataset: Dataset, *, device_holdout: int = 0, device_users: float = 0.0
) -> Split:
    """The leave-one-out split a distill run learns from.

    Every stage that reads training events (collaborative semantic IDs, teacher, student, the
    bundle's popularity table) takes this one split, so events held back for on-device
    personalization (`Split.holding_out`, `Split.device_users`) never reach any of them.
    """
    split = leave_one_out(dataset).holding_out(device_holdout)
    return split.holding_out_users(split.device_users(device_users))


def evaluate(
    predict: Callable[[np.ndarray], np.ndarray],
    split: Split,
    stage: Stage,
    *,
    max_len: int,
    batch_size: int = 512,
    ks: tuple[int, ...] = KS,
    limit: int | None = None,
    progress: bool = False,
    exclude_history: bool = False,
) -> dict[str, float]:
    """Score a model on the validation or test targets of a split.

    Args:
        predict: maps a (B, max_len) int32 history batch (PAD = -1 on the left) to either
            (B, N) float scores over all items, or (B, K) int ranked item ids (K >= max(ks),
            -1 for padding). The dtype decides which.
        split: the leave-one-out split.
        stage: "valid" or "test".
        max_len: history length the model sees.
        batch_size: users per call of `predict`.
        ks: cut-offs.
        limit: score only `limit` users, evenly spaced over the evaluated users (quick checks
            during training). Not the first `limit`: user order in the staged files is not
            random, and the first 5,000 Beauty users are twice as hard as the rest.
        progress: show a progress bar (needs tqdm).
        exclude_history: rank without the items in each user's history window (their scores
            become -inf; a target that is in it counts as a miss). Not this project's protocol,
            which ranks every item: HSTU's published MovieLens numbers are computed this way,
            and this makes them comparable. Top-K outputs must leave those items out
            themselves (a constrained beam search does it as it searches: removing them
            afterwards would leave short lists); a list that holds one is refused.

    Returns:
        recall@K / ndcg@K for each K, plus "num_users".
    """
    by_batch = target_ranks(
        predict,
        split,
        stage,
        max_len=max_len,
        batch_size=batch_size,
        ks=ks,
        limit=limit,
        progress=progress,
        exclude_history=exclude_history,
    )
    return metrics_of(by_batch, ks)


def metrics_of(by_batch: dict[int, np.ndarray], ks: tuple[int, ...] = KS) -> dict[str, float]:
    """`evaluate`'s metrics from `target_ranks` results (the parts of several callers merged)."""
    ranks = np.concatenate([by_batch[s] for s in sorted(by_batch)]) if by_batch else np.zeros(0)
    metrics = metrics_from_ranks(ranks, ks)
    metrics["num_users"] = float(len(ranks))
    return metrics


def target_ranks(
    predict: Callable[[np.ndarray], np.ndarray],
    split: Split,
    stage: Stage,
    *,
    max_len: int,
    batch_size: int = 512,
    ks: tuple[int, ...] = KS,
    limit: int | None = None,
    progress: bool = False,
    exclude_history: bool = False,
    part: tuple[int, int] = (0, 1),
) -> dict[int, np.ndarray]:
    """Each evaluated user's rank of its target, as {first user of a batch: the batch's ranks}.

    The arguments are `evaluate`'s. `part=(i, n)` scores only batches i, i + n, i + 2n, ...:
    n workers (the ranks of a distributed run) each score one part, every batch exactly as one
    caller would, and `metrics_of` on the merged dicts gives `evaluate`'s result.
    """
    index, parts = part
    if not 0 <= index < parts:
        raise ValueError(f"part {part}: want (i, n) with 0 <= i < n")
    hist, targets = split.histories(stage, max_len)
    if limit is not None and limit < len(targets):
        pick = np.linspace(0, len(targets) - 1, limit).round().astype(np.int64)
        hist, targets = hist[pick], targets[pick]
    starts = range(index * batch_size, len(targets), parts * batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"evaluate {stage}", unit="batch", leave=False)
    ranks = {}
    for s in starts:
        batch_hist = hist[s : s + batch_size]
        out = np.asarray(predict(batch_hist))
        batch_targets = targets[s : s + batch_size]
        if np.issubdtype(out.dtype, np.integer):
            if exclude_history:
                _check_lists_exclude(out, batch_hist, first_user=s)
            if out.shape[1] < max(ks):
                raise ValueError(f"top-K lists have {out.shape[1]} items; need >= {max(ks)}")
            ranks[s] = ranks_from_topk(out, batch_targets)
        else:
            if exclude_history:
                rows, cols = np.nonzero(batch_hist != PAD)
                out = out.copy()  # same dtype: a cast could create ties
                out[rows, batch_hist[rows, cols]] = -np.inf
            ranks[s] = ranks_from_scores(out, batch_targets)
    return ranks


def _check_lists_exclude(topk: np.ndarray, hist: np.ndarray, *, first_user: int) -> None:
    """Refuse top-K lists that hold an item of their user's history window."""
    returned = topk[:, :, None] == np.where(hist >= 0, hist, -2)[:, None, :]  # (B, K, L)
    if returned.any():
        row, rank, _ = (int(i[0]) for i in np.nonzero(returned))
        raise ValueError(
            f"exclude_history: the ranked list of evaluated user {first_user + row} holds item "
            f"{int(topk[row, rank])} of that user's history window at rank {rank + 1}; the "
            "predict must leave them out (beam_search(exclude=...)) or return scores"
        )
