"""Score generative semantic-ID models by constrained beam search over the protocol's users.

The item-level MiniLM teacher is ranked exactly instead. Every evaluation also reports the
valid-item rate of the returned lists and how much of the top 10 repeats the history.
"""

from __future__ import annotations

import numpy as np
import torch

from pocketrec._prefix import PrefixIndex
from pocketrec._search import beam_search, search_excluding
from pocketrec.distill import dist
from pocketrec.distill.genrec import GenRec
from pocketrec.distill.protocol import Split, Stage, metrics_of, target_ranks

__all__ = ["evaluate_genrec", "make_predictor"]


def make_predictor(
    model: GenRec,
    index: PrefixIndex,
    *,
    beam_width: int,
    top_k: int = 20,
    device: torch.device | None = None,
    exclude_history: bool = False,
):
    """(B, L) histories -> (B, top_k) item ids by constrained beam search over the model.

    An item-level model (the MiniLM teacher, `item_level = True`) is ranked exactly instead:
    the top items of its full-catalogue scores, which beam search over its code marginals
    approximates.

    With `exclude_history`, no item of the history window is returned, as the SDK's
    `recommend` does by default: the search bans them at the last level and keeps one extra
    beam per banned item before it (`extra_beams`), so that prefixes leading only to banned
    items cannot crowd the others out.

    Args:
        model: a GenRec, or an item-level model (`item_level = True`, `score_items`).
        index: the prefix index of the valid semantic IDs.
        beam_width: beams kept per level.
        top_k: items returned per history.
        device: where to run the model (default: where its parameters are).
        exclude_history: never return an item of the history window.

    Returns:
        predict(hist) -> (B, top_k) item ids, -1 where fewer valid items exist.
    """
    device = device or next(model.parameters()).device
    if getattr(model, "item_level", False):

        def exact(hist: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                scores = model.score_items(torch.from_numpy(hist).to(device))
                if exclude_history:
                    rows, cols = np.nonzero(hist >= 0)
                    pairs = np.stack([rows, hist[rows, cols]]).astype(np.int64)  # (2, N)
                    banned = torch.from_numpy(pairs).to(scores.device)
                    scores[banned[0], banned[1]] = -torch.inf
            return scores.topk(top_k, dim=-1).indices.cpu().numpy()

        return exact

    def step(states: tuple[np.ndarray, np.ndarray], prefix: np.ndarray, level: int) -> np.ndarray:
        memory, memory_mask = states
        with torch.no_grad():
            logits = model.level_logits(
                torch.from_numpy(memory).to(device),
                torch.from_numpy(memory_mask).to(device),
                torch.from_numpy(prefix).to(device),
                torch.tensor(level, device=device),
            )
        return logits.float().cpu().numpy()

    def predict(hist: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            memory = model.encode(torch.from_numpy(hist).to(device)).float().cpu().numpy()
        states = (memory, hist >= 0)
        if not exclude_history:
            return beam_search(states, step, index, beam_width=beam_width, top_k=top_k).items
        return search_excluding(  # as the SDK's `recommend` leaves the history out
            states,
            step,
            index,
            beam_width=beam_width,
            top_k=top_k,
            exclude=hist.astype(np.int64),
            window=hist.shape[1],
        ).items

    return predict


def evaluate_genrec(
    model: GenRec,
    split: Split,
    index: PrefixIndex,
    stage: Stage,
    *,
    beam_width: int,
    limit: int | None = None,
    exclude_history: bool = False,
    shared: bool = False,
) -> dict[str, float]:
    """Recall/NDCG@5/10/20 by beam search, plus the valid-item rate of the returned lists and
    `history_share@10`: the share of the top-10 slots that hold an item of the user's own
    history window (0 with `exclude_history`). On data where nobody consumes an item twice
    (MovieLens ratings), every such slot is wasted.

    `exclude_history` ranks without the items of each user's history window (see
    `protocol.evaluate`); not this project's protocol, which ranks every item.

    `shared`: every rank of a distributed run calls this together; each scores every
    world-size-th batch of users and all of them return the metrics of every user, the same
    as one process scoring them all. Otherwise the caller scores every user itself.

    Args:
        model: the model to score (put in eval mode here).
        split: the leave-one-out split; `stage` picks its validation or test targets.
        index: the prefix index of the valid semantic IDs.
        beam_width: beams kept per level.
        limit: score the first `limit` users only (a validation sample).

    Returns:
        recall@K and ndcg@K for K in 5, 10, 20, `valid_item_rate` and `history_share@10`.
    """
    model.eval()
    predict = make_predictor(model, index, beam_width=beam_width, exclude_history=exclude_history)
    returned = {"valid": 0, "total": 0, "history": 0, "top10": 0}

    def counting(hist: np.ndarray) -> np.ndarray:
        items = predict(hist)
        returned["valid"] += int((items >= 0).sum())
        returned["total"] += items.size
        top = items[:, :10]  # (B, 10)
        seen = (top[:, :, None] == hist[:, None, :]).any(-1) & (top >= 0)  # (B, 10)
        returned["history"] += int(seen.sum())
        returned["top10"] += int((top >= 0).sum())
        return items

    by_batch = target_ranks(
        counting,
        split,
        stage,
        max_len=model.cfg.max_len,
        limit=limit,
        exclude_history=exclude_history,
        part=(dist.rank(), dist.world_size()) if shared else (0, 1),
    )
    parts = dist.gather((by_batch, returned)) if shared else [(by_batch, returned)]
    merged = {
        start: ranks for ranks_by_batch, _ in parts for start, ranks in ranks_by_batch.items()
    }
    metrics = metrics_of(merged)
    counted = {key: sum(counts[key] for _, counts in parts) for key in returned}
    metrics["valid_item_rate"] = counted["valid"] / max(1, counted["total"])
    metrics["history_share@10"] = counted["history"] / max(1, counted["top10"])
    return metrics
