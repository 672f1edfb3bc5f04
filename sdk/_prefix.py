"""The prefix index: which codes may follow a partial semantic ID, and which item a full one is.

Built from the semantic-ID table (num_items, num_levels) in a few milliseconds. A prefix of
length l is packed into one int64 key (codes in base `codebook_size`); for every level the index
keeps the sorted parent keys and, CSR-style, the sorted child codes of each parent. Lookups are
vectorised over any number of beams with `searchsorted`, so constrained beam search never
leaves numpy.

The same tables are also a trie with numbered nodes, which the one-user search walks without any
lookup: the nodes of depth l are the level-l parents in key order, and the children of node n
are the entries `offsets[n]:offsets[n + 1]` of level l, so child entry e *is* node e of depth
l + 1 (both are the sorted keys of the prefixes of length l + 1), and an entry of the last
level is the item `leaf_items[e]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["PrefixIndex"]

IntArray = NDArray[np.int64]

_SENTINEL = np.iinfo(np.int64).max


@dataclass(frozen=True)
class _Level:
    parents: IntArray  # (P + 1,) sorted keys of the prefixes before this level, then a sentinel
    offsets: IntArray  # (P + 2,) children of parents[i] are codes[offsets[i]:offsets[i + 1]]
    codes: IntArray  # (E,) child codes, sorted within each parent
    # The same level as a trie layer: node n (= parents[n]) has counts[n] >= 1 children, the
    # entries starting at offsets[n]; prefixes[n] is its decoder input (codes of the levels
    # before this one, then the empty code); single: every node has exactly one child.
    counts: IntArray  # (P,)
    prefixes: IntArray  # (P, num_levels - 1)
    single: bool


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
            raise ValueError(
                f"semantic-ID codes span {sids.min()}..{sids.max()}, outside "
                f"0..{codebook_size - 1}: they must lie in [0, {codebook_size})"
            )
        if codebook_size ** sids.shape[1] >= 2**62:
            raise ValueError("codebook_size ** num_levels does not fit a 64-bit key")
        self.codebook_size = codebook_size
        self.semantic_ids = sids  # (num_items, num_levels)
        self.num_levels = sids.shape[1]
        self.num_items = sids.shape[0]
        self.levels: list[_Level] = []
        for level in range(self.num_levels):
            parent = self.keys(sids[:, :level])  # (N,)
            pairs = np.unique(np.stack([parent, sids[:, level]], axis=1), axis=0)  # sorted
            parents, starts = np.unique(pairs[:, 0], return_index=True)
            # A sentinel parent larger than any key, with no children, so that a lookup never
            # runs past the end (keys are below 2**62).
            counts = np.diff(np.append(starts, len(pairs))).astype(np.int64)  # (P,)
            prefixes = np.full((len(parents), self.num_levels - 1), codebook_size, np.int64)
            prefixes[:, :level] = self._codes_of(parents, level)  # (P, num_levels - 1)
            parents = np.append(parents, _SENTINEL).astype(np.int64)
            offsets = np.append(starts, [len(pairs), len(pairs)]).astype(np.int64)
            self.levels.append(
                _Level(
                    parents,
                    offsets,
                    pairs[:, 1].copy(),
                    counts,
                    prefixes,
                    bool((counts == 1).all()),
                )
            )
        full = self.keys(sids)
        order = np.argsort(full, kind="stable")
        self._full_keys = full[order]
        self._full_items = order.astype(np.int64)
        if np.any(self._full_keys[1:] == self._full_keys[:-1]):
            raise ValueError("two items share a semantic ID; add the collision level first")
        self.root_edges: IntArray = np.arange(len(self.levels[0].codes), dtype=np.int64)
        # The last level's entries are the full keys in sorted order: entry e is this item.
        self.leaf_items: IntArray = self._full_items

    def _codes_of(self, keys: IntArray, length: int) -> IntArray:
        """(M,) keys of prefixes of `length` codes -> (M, length) codes (inverse of `keys`)."""
        codes = np.empty((len(keys), length), dtype=np.int64)
        rest = keys.copy()
        for j in reversed(range(length)):
            rest, codes[:, j] = np.divmod(rest, self.codebook_size)
        return codes

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
        rows, codes, _ = self.child_runs(level, prefix_keys)
        return rows, codes

    def child_runs(self, level: int, prefix_keys: IntArray) -> tuple[IntArray, IntArray, IntArray]:
        """`children`, plus how many children each prefix has.

        Returns:
            rows (E,), codes (E,) as in `children`, and counts (M,): the children of prefix m
            are the run of `counts[m]` entries starting at `sum(counts[:m])`.
        """
        lv = self.levels[level]
        idx = np.searchsorted(lv.parents, prefix_keys)  # (M,), at most P: the sentinel
        start = lv.offsets[idx]
        count = np.where(lv.parents[idx] == prefix_keys, lv.offsets[idx + 1] - start, 0)
        rows = np.repeat(np.arange(len(prefix_keys)), count)  # (E,)
        shift = np.repeat(start - (np.cumsum(count) - count), count)  # (E,) run start in codes
        codes = lv.codes[np.arange(len(rows)) + shift]
        return rows, codes, count

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
