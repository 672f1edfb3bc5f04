"""The prefix index: which codes may follow a partial semantic ID, and which item a full one is.

Built from the semantic-ID table (num_items, num_levels) in a few milliseconds. A prefix of
length l is packed into one int64 key (codes in base `codebook_size`); for every level the index
keeps the sorted parent keys and, CSR-style, the sorted child codes of each parent. Lookups are
vectorised over any number of beams with `searchsorted`, so constrained beam search never
leaves numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["PrefixIndex"]

IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class _Level:
    parents: IntArray  # (P,) sorted keys of the prefixes before this level
    offsets: IntArray  # (P + 1,) children of parents[i] are codes[offsets[i]:offsets[i + 1]]
    codes: IntArray  # (E,) child codes, sorted within each parent


class PrefixIndex:
    """Valid continuations of every semantic-ID prefix, and the item of every full ID.

    Args:
        semantic_ids: (num_items, num_levels) int codes; row i is item i; rows are unique.
        codebook_size: codes per level (every code is in [0, codebook_size)).

    Raises:
        ValueError: codes out of range, or two items with the same semantic ID.
    """

    def __init__(self, semantic_ids: NDArray[np.integer], codebook_size: int) -> None:
        sids = np.asarray(semantic_ids, dtype=np.int64)
        if sids.ndim != 2 or sids.shape[0] == 0:
            raise ValueError(f"semantic_ids must be (num_items, num_levels), got {sids.shape}")
        if sids.min() < 0 or sids.max() >= codebook_size:
            raise ValueError(f"semantic-ID codes must lie in [0, {codebook_size})")
        if codebook_size ** sids.shape[1] >= 2**62:
            raise ValueError("codebook_size ** num_levels does not fit a 64-bit key")
        self.codebook_size = codebook_size
        self.num_levels = sids.shape[1]
        self.num_items = sids.shape[0]
        self.levels: list[_Level] = []
        for level in range(self.num_levels):
            parent = self.keys(sids[:, :level])  # (N,)
            pairs = np.unique(np.stack([parent, sids[:, level]], axis=1), axis=0)  # sorted
            parents, starts = np.unique(pairs[:, 0], return_index=True)
            offsets = np.append(starts, len(pairs)).astype(np.int64)
            self.levels.append(_Level(parents, offsets, pairs[:, 1].copy()))
        full = self.keys(sids)
        order = np.argsort(full, kind="stable")
        self._full_keys = full[order]
        self._full_items = order.astype(np.int64)
        if np.any(self._full_keys[1:] == self._full_keys[:-1]):
            raise ValueError("two items share a semantic ID; add the collision level first")

    def keys(self, prefixes: NDArray[np.integer]) -> IntArray:
        """(M, l) codes -> (M,) int64 keys (0 for the empty prefix)."""
        prefixes = np.asarray(prefixes, dtype=np.int64)
        key = np.zeros(prefixes.shape[0], dtype=np.int64)
        for j in range(prefixes.shape[1]):
            key = key * self.codebook_size + prefixes[:, j]
        return key

    def children(self, level: int, prefix_keys: IntArray) -> tuple[IntArray, IntArray]:
        """Every valid (row, code) continuation of the prefixes, in row order, codes ascending.

        Args:
            level: the level being chosen (prefixes have `level` codes).
            prefix_keys: (M,) keys of the prefixes; keys that are not prefixes have no children.

        Returns:
            rows (E,) and codes (E,): prefix_keys[rows[e]] continues with codes[e].
        """
        lv = self.levels[level]
        idx = np.searchsorted(lv.parents, prefix_keys)
        idx_clipped = np.minimum(idx, len(lv.parents) - 1)
        found = lv.parents[idx_clipped] == prefix_keys
        start = np.where(found, lv.offsets[idx_clipped], 0)
        count = np.where(found, lv.offsets[idx_clipped + 1] - lv.offsets[idx_clipped], 0)
        rows = np.repeat(np.arange(len(prefix_keys)), count)
        first = np.repeat(np.cumsum(count) - count, count)
        codes = lv.codes[np.arange(len(rows)) - first + np.repeat(start, count)]
        return rows, codes

    def child_mask(self, level: int, prefix_keys: IntArray) -> NDArray[np.bool_]:
        """(M,) keys of prefixes of length `level` -> (M, codebook_size) True where valid.

        Keys that are not valid prefixes get an all-False row.
        """
        rows, codes = self.children(level, prefix_keys)
        mask = np.zeros((len(prefix_keys), self.codebook_size), dtype=bool)
        mask[rows, codes] = True
        return mask

    def items(self, full_keys: IntArray) -> IntArray:
        """(M,) keys of full semantic IDs -> (M,) item ids, -1 where no item has that ID."""
        idx = np.searchsorted(self._full_keys, full_keys)
        idx_clipped = np.minimum(idx, len(self._full_keys) - 1)
        found = self._full_keys[idx_clipped] == full_keys
        return np.where(found, self._full_items[idx_clipped], -1)
