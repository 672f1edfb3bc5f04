"""Semantic-ID layout: the collision level, the shared token vocabulary, and quality statistics.

A semantic ID is `num_levels` codes from the quantizer plus one collision code that numbers the
items sharing those codes (TIGER), so every item has a unique ID. As tokens, level l code c is
written `<{letter}_{c}>` with letters a, b, c, ... (the collision level is the last letter) and
has vocabulary id `NUM_SPECIAL + l * codebook_size + c`. `tokenizer.json` is written with the
`tokenizers` library so the Python SDK, the Android app and an LM teacher share one vocabulary.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pocketrec.distill.errors import DataError

__all__ = [
    "SPECIAL_TOKENS",
    "code_stats",
    "disambiguate",
    "sid_token",
    "token_id",
    "write_tokenizer",
]

SPECIAL_TOKENS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")


def sid_token(level: int, code: int) -> str:
    return f"<{chr(ord('a') + level)}_{code}>"


def token_id(level: int, code: int, codebook_size: int) -> int:
    return len(SPECIAL_TOKENS) + level * codebook_size + code


def disambiguate(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """Append the collision level: items sharing all codes get 0, 1, 2, ... by item order.

    Args:
        codes: (N, L) quantizer codes.
        codebook_size: the collision level has as many codes as the other levels.

    Returns:
        (N, L + 1) int32 semantic IDs, unique per row.

    Raises:
        DataError: more than `codebook_size` items share one code (the quantizer collapsed).
    """
    seen: Counter[tuple[int, ...]] = Counter()
    slot = np.empty(len(codes), dtype=np.int64)
    for i, row in enumerate(map(tuple, codes.tolist())):
        slot[i] = seen[row]
        seen[row] += 1
    worst = max(seen.values()) if seen else 0
    if worst > codebook_size:
        raise DataError(
            f"{worst} items share one code but the collision level has {codebook_size} slots; "
            "the quantizer collapsed. Add a level or use a larger codebook."
        )
    return np.concatenate([codes, slot[:, None]], axis=1).astype(np.int32)


def code_stats(
    codes: np.ndarray, codebook_size: int, leaf_categories: Sequence[str] | None = None
) -> dict[str, Any]:
    """Collision rate, per-level utilisation and perplexity, and (with categories) coherence.

    - collision_rate: 1 - distinct full codes / items, the share of items that need a non-zero
      collision code.
    - utilization: share of a level's codes used by at least one item; perplexity: exp of the
      entropy of code usage (codebook_size when usage is uniform).
    - leaf_category_agreement: probability that two distinct items sharing a level-1 code have
      the same leaf category, against the same probability for a random assignment with the
      same code sizes (which equals the probability for two random distinct items).
    """
    n, levels = codes.shape
    distinct = len({tuple(r) for r in codes.tolist()})
    per_level = []
    for level in range(levels):
        counts = np.bincount(codes[:, level], minlength=codebook_size)
        p = counts[counts > 0] / n
        per_level.append(
            {
                "level": level,
                "utilization": float((counts > 0).sum() / codebook_size),
                "perplexity": float(math.exp(-(p * np.log(p)).sum())),
                "max_items_per_code": int(counts.max()),
            }
        )
    sizes = Counter(map(tuple, codes.tolist()))
    stats: dict[str, Any] = {
        "num_items": n,
        "collision_rate": 1.0 - distinct / n,
        "items_sharing_a_code": int(sum(c for c in sizes.values() if c > 1)),
        "max_items_per_full_code": int(max(sizes.values())),
        "levels": per_level,
    }
    if leaf_categories is not None:
        stats["leaf_category_agreement"] = _agreement(codes[:, 0], leaf_categories)
    return stats


def _pairs_same(labels: Sequence[str]) -> tuple[int, int]:
    counts = Counter(labels)
    same = sum(c * (c - 1) for c in counts.values())
    total = len(labels) * (len(labels) - 1)
    return same, total


def _agreement(level1: np.ndarray, leaves: Sequence[str]) -> dict[str, float]:
    same = total = 0
    for code in np.unique(level1):
        members = [leaves[int(i)] for i in np.flatnonzero(level1 == code)]
        s, t = _pairs_same(members)
        same, total = same + s, total + t
    s_all, t_all = _pairs_same(list(leaves))
    within = same / total if total else 0.0
    random = s_all / t_all if t_all else 0.0
    return {
        "same_level1_code": within,
        "random_assignment": random,
        "ratio": within / random if random else float("inf"),
    }


def write_tokenizer(path: Path, num_levels: int, codebook_size: int) -> Path:
    """Write tokenizer.json: special tokens, then every level's code tokens, in id order.

    Levels 0 .. num_levels-1 are quantizer codes and level num_levels is the collision level.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers

    vocab: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for level in range(num_levels + 1):
        for code in range(codebook_size):
            vocab[sid_token(level, code)] = token_id(level, code, codebook_size)
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(r"<[a-z]_\d+>"), behavior="isolated"),
        ]
    )
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL_TOKENS])
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return path
