"""Give semantic IDs to items added after the tokenizer was built, without retraining it.

Encode the new item's text the same way, take the nearest code at every level, then the next
free slot of the collision level for that code. Old items keep their IDs; the same new items
in the same order always get the same IDs. The table (`semantic_ids.npy`, `item_ids.json`) is
rewritten atomically and every assignment is appended to `new_items.jsonl`.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from pocketrec.distill.data import ItemText
from pocketrec.distill.errors import DataError
from pocketrec.distill.runinfo import utc_now, write_json
from pocketrec.distill.sids.embed import check_embeddings, encode_texts
from pocketrec.distill.sids.stage import load_semantic_ids

__all__ = ["assign_new_items"]


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def _nearest_codes(vectors: np.ndarray, sid_dir: Path, config: dict) -> np.ndarray:
    """(M, num_levels) codes: residual nearest-centroid search in the quantizer's space."""
    books = np.load(sid_dir / "codebooks.npy", allow_pickle=False)  # (L, K, D)
    if config["method"] == "rqvae":
        import torch
        from safetensors.torch import load_file

        from pocketrec.distill.sids.quantize import RQVAE, RQVAEConfig

        rq = RQVAE(
            vectors.shape[1],
            RQVAEConfig(num_levels=config["num_levels"], codebook_size=config["codebook_size"]),
        )
        rq.load_state_dict(load_file(sid_dir / "quantizer.safetensors"))
        with torch.no_grad():
            residual = rq.encoder(torch.from_numpy(vectors)).numpy()
    else:
        residual = vectors.copy()
    codes = np.empty((len(vectors), books.shape[0]), dtype=np.int64)
    for level, book in enumerate(books):
        dist = ((residual[:, None, :] - book[None, :, :]) ** 2).sum(-1)  # (M, K)
        codes[:, level] = dist.argmin(1)
        residual = residual - book[codes[:, level]]
    return codes


def assign_new_items(
    sid_dir: Path, items: Iterable[tuple[str, ItemText]]
) -> list[tuple[str, list[int]]]:
    """Add items to a semantic-ID table.

    Args:
        sid_dir: folder written by `build_semantic_ids`.
        items: (source item id, text) pairs; ids already in the table are left unchanged.

    Returns:
        (item id, semantic ID) of every item of `items`, old ones included.

    Raises:
        DataError: the table was built from collaborative embeddings only (new items have no
            interactions to place them by), an item has no text, or a code's collision level
            is full.
    """
    sids, item_ids, config = load_semantic_ids(sid_dir)
    items = list(items)
    index = {item: row for row, item in enumerate(item_ids)}
    new = [(item, text) for item, text in items if item not in index]
    if new:
        if config["source"] == "cf":
            raise DataError(
                "these semantic IDs come from collaborative embeddings, which new items do not "
                "have yet; rebuild with --source both or text to place items by their text"
            )
        empty = [item for item, text in new if text.is_empty()]
        if empty:
            raise DataError(f"new items without text cannot be placed: {', '.join(empty[:20])}")
        vectors = encode_texts([t.render() for _, t in new], config["encoder"], progress=False)
        if config["source"] == "both":  # text half, empty collaborative half, as when built
            cf = np.zeros((len(new), config["cf_dim"]), np.float32)
            vectors = np.concatenate([vectors, cf], 1) / math.sqrt(2)
        codes = _nearest_codes(check_embeddings(vectors, "new item embeddings"), sid_dir, config)
        used = Counter(tuple(row[:-1]) for row in sids.tolist())
        rows = []
        for (item, _), code in zip(new, codes.tolist(), strict=True):
            slot = used[tuple(code)]
            if slot >= config["codebook_size"]:
                raise DataError(f"item {item}: all {slot} collision slots of {code} are taken")
            used[tuple(code)] += 1
            rows.append([*code, slot])
        sids = np.concatenate([sids, np.asarray(rows, dtype=sids.dtype)])
        item_ids = item_ids + [item for item, _ in new]
        _save_npy(sid_dir / "semantic_ids.npy", sids)
        write_json(sid_dir / "item_ids.json", item_ids)
        with open(sid_dir / "new_items.jsonl", "a") as log:
            when = utc_now()
            for (item, _), row in zip(new, rows, strict=True):
                log.write(json.dumps({"item": item, "semantic_id": row, "added": when}) + "\n")
        index = {item: row for row, item in enumerate(item_ids)}
    return [(item, sids[index[item]].tolist()) for item, _ in items]
