"""Prefix index and constrained beam search, against brute force on small tries."""

from __future__ import annotations

import numpy as np
import pytest

from pocketrec._prefix import PrefixIndex
from pocketrec._search import _top, beam_search, masked_log_softmax, search_excluding

SIDS = np.array([[0, 1, 0], [0, 1, 1], [0, 2, 0], [1, 0, 0], [2, 2, 0], [2, 3, 0]])


def test_prefix_index_children_and_items() -> None:
    index = PrefixIndex(SIDS, codebook_size=4)
    root = index.child_mask(0, index.keys(np.zeros((1, 0), np.int64)))
    assert root.tolist() == [[True, True, True, False]]
    level1 = index.child_mask(1, index.keys(np.array([[0], [2], [3]])))
    assert level1.tolist() == [
        [False, True, True, False],
        [False, False, True, True],
        [False, False, False, False],
    ]  # 3 is not a prefix
    assert index.child_mask(2, index.keys(np.array([[0, 1]]))).tolist() == [
        [True, True, False, False]
    ]
    keys = index.keys(np.array([[2, 3, 0], [0, 1, 1], [3, 3, 3]]))
    assert index.items(keys).tolist() == [5, 1, -1]


def test_prefix_index_rejects_bad_tables() -> None:
    with pytest.raises(ValueError, match="share a semantic ID"):
        PrefixIndex(np.array([[0, 1], [0, 1]]), 4)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        PrefixIndex(np.array([[0, 4]]), 4)


def test_masked_log_softmax() -> None:
    logits = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    mask = np.array([[True, False, True], [False, False, False]])
    out = masked_log_softmax(logits, mask)
    assert np.exp(out[0, [0, 2]]).sum() == pytest.approx(1.0)
    assert out[0, 1] == -np.inf and np.isneginf(out[1]).all()


def _fake_model(seed: int, num_users: int, levels: int, k: int):
    """Logits that depend on the user, the level and the whole prefix (deterministic)."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(num_users, levels, k**levels, k))

    def step(states: np.ndarray, prefix: np.ndarray, level: int) -> np.ndarray:
        users = states[:, 0].astype(np.int64)[:, None]  # (B, 1)
        key = np.zeros(prefix.shape[:2], np.int64)  # (B, W)
        for j in range(level):
            key = key * k + prefix[:, :, j]
        return table[users, level, key]  # (B, W, K)

    return step


def _brute_force(step, users: int, levels: int, k: int, index: PrefixIndex) -> np.ndarray:
    """log p(item) of every item under the constrained, renormalised model."""
    scores = np.full((users, len(SIDS)), -np.inf)
    for item, sid in enumerate(SIDS):
        for u in range(users):
            total = 0.0
            for level in range(levels):
                prefix = np.full((1, 1, levels - 1), k, np.int64)
                prefix[0, 0, :level] = sid[:level]
                logits = step(np.array([[u]], np.float32), prefix, level)[0]
                mask = index.child_mask(level, index.keys(sid[None, :level]))
                total += masked_log_softmax(logits, mask)[0, sid[level]]
            scores[u, item] = total
    return scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_equals_exact_ranking(seed: int) -> None:
    index = PrefixIndex(SIDS, 4)
    step = _fake_model(seed, num_users=5, levels=3, k=4)
    states = np.arange(5, dtype=np.float32)[:, None]
    result = beam_search(states, step, index, beam_width=6, top_k=6)
    exact = _brute_force(step, 5, 3, 4, index)
    assert (result.items >= 0).all()
    for u in range(5):
        assert result.items[u].tolist() == np.argsort(-exact[u], kind="stable").tolist()
        np.testing.assert_allclose(result.log_probs[u], np.sort(exact[u])[::-1], rtol=1e-9)
        assert np.exp(exact[u]).sum() == pytest.approx(1.0)  # a distribution over items
    assert result.semantic_ids[0].tolist() == SIDS[result.items[0]].tolist()


def test_narrow_beam_returns_valid_items_best_first() -> None:
    index = PrefixIndex(SIDS, 4)
    step = _fake_model(3, num_users=4, levels=3, k=4)
    result = beam_search(
        np.arange(4, dtype=np.float32)[:, None], step, index, beam_width=2, top_k=2
    )
    assert ((result.items >= 0) & (result.items < len(SIDS))).all()
    assert (np.diff(result.log_probs, axis=1) <= 0).all()


def test_exclusion_removes_items_and_keeps_k() -> None:
    index = PrefixIndex(SIDS, 4)
    step = _fake_model(4, num_users=2, levels=3, k=4)
    states = np.arange(2, dtype=np.float32)[:, None]
    full = beam_search(states, step, index, beam_width=6, top_k=6)
    banned = full.items[:, :2]  # drop each user's two best items
    exclude = np.concatenate([banned, np.full((2, 1), -1)], axis=1)
    result = beam_search(states, step, index, beam_width=3, top_k=3, exclude=exclude)
    for u in range(2):
        assert result.items[u].tolist() == full.items[u, 2:5].tolist()


def test_search_excluding_searches_again_only_users_whose_capped_beams_came_back_short() -> None:
    index = PrefixIndex(SIDS, 4)
    step = _fake_model(1, num_users=2, levels=3, k=4)
    states = np.arange(2, dtype=np.float32)[:, None]  # one array, not a tuple: subset as one
    full = beam_search(states, step, index, beam_width=6, top_k=6)  # exact: every item
    # User 0 bans its four best items, more than the widening's cap of max(beam 2, window 1).
    exclude = np.array([full.items[0, :4].tolist(), [full.items[1, 0], -1, -1, -1]])
    capped = beam_search(
        states, step, index, beam_width=2, top_k=2, exclude=exclude, extra_width=np.array([2, 1])
    )
    assert (capped.items[0] >= 0).sum() < 2  # the cap crowds user 0's list out
    found = search_excluding(states, step, index, beam_width=2, top_k=2, exclude=exclude, window=1)
    assert found.items[0].tolist() == full.items[0, 4:6].tolist()  # searched again: full
    assert found.items[1].tolist() == capped.items[1].tolist()  # not capped: kept as found
    assert found.semantic_ids[0].tolist() == SIDS[full.items[0, 4:6]].tolist()


def test_a_users_items_do_not_depend_on_the_batch() -> None:
    """Extra beams are each user's own: a user with few excluded items gets the same items
    alone as beside a user with many (the batch's widest would give it wider beams)."""
    index = PrefixIndex(SIDS, 4)
    step = _fake_model(13, num_users=3, levels=3, k=4)
    states = np.arange(3, dtype=np.float32)[:, None]
    exclude = np.array([[-1, -1, -1, 2], [0, 1, 3, 4], [5, 5, -1, -1]])
    together = beam_search(states, step, index, beam_width=1, top_k=1, exclude=exclude)
    for u in range(3):
        mine = exclude[u : u + 1]
        alone = beam_search(states[u : u + 1], step, index, beam_width=1, top_k=1, exclude=mine)
        assert together.items[u].tolist() == alone.items[0].tolist()
        assert together.log_probs[u].tolist() == alone.log_probs[0].tolist()
    # User 0 with the widest user's 4 extra beams finds another item, so the check can fail.
    wider = beam_search(
        states[:1], step, index, beam_width=1, top_k=1, exclude=exclude[:1], extra_width=4
    )
    assert wider.items[0].tolist() != together.items[0].tolist()


def test_ties_break_by_lower_flat_index() -> None:
    index = PrefixIndex(SIDS, 4)

    def flat(states: np.ndarray, prefix: np.ndarray, level: int) -> np.ndarray:
        return np.zeros((*prefix.shape[:2], 4))

    result = beam_search(np.zeros((1, 1), np.float32), flat, index, beam_width=6, top_k=6)
    # Uniform logits: item 3 is its root code's only item (1/3); items 2, 4 and 5 tie at 1/6
    # and come in the order of their beams, then items 0 and 1 at 1/12.
    assert result.items[0].tolist() == [3, 2, 4, 5, 0, 1]


def test_fewer_items_than_k_are_padded() -> None:
    index = PrefixIndex(SIDS[:2], 4)
    step = _fake_model(0, num_users=1, levels=3, k=4)
    result = beam_search(np.zeros((1, 1), np.float32), step, index, beam_width=5, top_k=5)
    assert result.items[0, 2:].tolist() == [-1, -1, -1]
    assert np.isneginf(result.log_probs[0, 2:]).all()


@pytest.mark.parametrize("num_users", [1, 2])
def test_states_come_once_per_user_with_a_grid_of_beams(num_users: int) -> None:
    index = PrefixIndex(SIDS, 4)
    seen = []

    def step(states: tuple[np.ndarray, np.ndarray], prefix: np.ndarray, level: int) -> np.ndarray:
        a, b = states
        seen.append((a.shape, b.shape, prefix.shape))
        return np.zeros((*prefix.shape[:2], 4))

    states = (np.zeros((num_users, 3, 5)), np.ones((num_users, 3), bool))
    beam_search(states, step, index, beam_width=4, top_k=2)
    # Level 0 sees one beam per user; level 1 every kept beam: the root has 3 valid codes, so
    # each user keeps 3 beams. The states are never repeated per beam.
    n = num_users
    assert seen[0] == ((n, 3, 5), (n, 3), (n, 1, 2))
    assert seen[1] == ((n, 3, 5), (n, 3), (n, 3, 2))


def test_bad_arguments() -> None:
    index = PrefixIndex(SIDS, 4)
    with pytest.raises(ValueError, match="top_k"):
        beam_search(
            np.zeros((1, 1)),
            lambda s, p, lv: np.zeros((*p.shape[:2], 4)),
            index,
            beam_width=2,
            top_k=3,
        )


def test_single_user_search_equals_the_batched_search() -> None:
    """The one-user fast path returns bit-identical results and makes the same model calls.

    Ties, exclusions, -inf and NaN logits (dead beams, nothing reachable) and one-child levels
    (a collision level) included.
    """
    rng = np.random.default_rng(0)
    for _ in range(200):
        k_codes, levels = int(rng.choice([4, 8, 16])), int(rng.choice([1, 2, 3, 4]))
        n = int(rng.integers(1, min(k_codes**levels, 300)))
        flat = rng.choice(k_codes**levels, n, replace=False)
        sids = np.stack([(flat // k_codes ** (levels - 1 - j)) % k_codes for j in range(levels)], 1)
        if levels > 1 and rng.random() < 0.3:  # the last level has one child per prefix
            sids = np.unique(np.concatenate([sids[:, :-1], np.zeros((n, 1), int)], 1), axis=0)
            n = len(sids)
        index = PrefixIndex(sids, k_codes)
        table: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
        bad = (0.3, 0.05) if rng.random() < 0.4 else (0.0, 0.0)  # share of -inf, NaN logits
        calls: list[tuple[int, list[list[int]]]] = []

        def step(
            states: np.ndarray,
            prefix: np.ndarray,
            level: int,
            table: dict[tuple[int, tuple[int, ...]], np.ndarray] = table,
            k_codes: int = k_codes,
            bad: tuple[float, float] = bad,
            calls: list[tuple[int, list[list[int]]]] = calls,
        ) -> np.ndarray:
            out = np.empty((*prefix.shape[:2], k_codes), np.float32)  # (B, W, K)
            for b, beams in enumerate(prefix.tolist()):
                for w, p in enumerate(beams):
                    key = (level, tuple(p))
                    if key not in table:
                        logits = rng.normal(size=k_codes).astype(np.float32)
                        logits = np.round(logits) if rng.random() < 0.3 else logits  # ties
                        logits[rng.random(k_codes) < bad[0]] = -np.inf
                        logits[rng.random(k_codes) < bad[1]] = np.nan
                        table[key] = logits
                    out[b, w] = table[key]
            calls.append((level, prefix[0].tolist()))  # user 0's beams
            return out

        width = int(rng.integers(1, 12))
        k = int(rng.integers(1, width + 1))
        exclude = rng.integers(-1, n, size=(1, int(rng.integers(1, 6))))
        exclude = exclude if rng.random() < 0.6 else None
        extra = None if rng.random() < 0.5 else int(rng.integers(0, 5))
        state = np.zeros((1, 2), np.float32)
        with np.errstate(invalid="ignore"):
            one = beam_search(
                state, step, index, beam_width=width, top_k=k, exclude=exclude, extra_width=extra
            )
            one_calls = calls[:]
            calls.clear()
            two = beam_search(
                np.concatenate([state, state]),
                step,
                index,
                beam_width=width,
                top_k=k,
                exclude=None if exclude is None else np.concatenate([exclude, exclude]),
                extra_width=extra,
            )
        assert one_calls == calls
        assert np.array_equal(one.items[0], two.items[0])
        assert np.array_equal(one.log_probs[0], two.log_probs[0], equal_nan=True)
        assert np.array_equal(one.semantic_ids[0], two.semantic_ids[0])


def test_trie_tables_agree_with_the_key_lookups() -> None:
    """Node n of depth l is parents[n]: its decoder prefix, its children, its items."""
    index = PrefixIndex(SIDS, 4)
    for level, lv in enumerate(index.levels):
        parents = lv.parents[:-1]  # (P,) without the sentinel
        expected = np.full((len(parents), index.num_levels - 1), 4)
        expected[:, :level] = index._codes_of(parents, level)
        assert index.keys(lv.prefixes[:, :level]).tolist() == parents.tolist()
        assert lv.prefixes.tolist() == expected.tolist()
        _, codes, counts = index.child_runs(level, parents)
        assert counts.tolist() == lv.counts.tolist() and lv.single == bool((counts == 1).all())
        assert codes.tolist() == lv.codes.tolist()  # entries in node order
    assert index.root_edges.tolist() == list(range(3))
    full = index.keys(SIDS[index.leaf_items])  # the last level's entries are the items
    assert np.all(full[1:] > full[:-1]) and sorted(index.leaf_items.tolist()) == list(range(6))


def test_top_is_the_stable_descending_order() -> None:
    """`_top` keeps what a stable sort of -score keeps: ties, -inf and NaN included."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 200))
        cand = np.round(rng.normal(size=n), int(rng.integers(0, 3)))  # coarse rounding: ties
        cand[rng.random(n) < 0.1] = -np.inf
        if rng.random() < 0.2:
            cand[rng.random(n) < 0.3] = np.nan
        keep = int(rng.integers(1, n + 1))
        expected = np.argsort(-cand, kind="stable")[:keep]
        assert _top(cand, keep).tolist() == expected.tolist()


def test_child_runs_counts_the_children_of_each_prefix() -> None:
    index = PrefixIndex(SIDS, 4)
    keys = np.array([0, 2, 1, 3, -1, 99])  # 3, -1 and 99 are not level-1 prefixes
    rows, codes, counts = index.child_runs(1, keys)
    expected_rows, expected_codes = index.children(1, keys)
    assert rows.tolist() == expected_rows.tolist() and codes.tolist() == expected_codes.tolist()
    assert counts.tolist() == np.bincount(rows, minlength=len(keys)).tolist()
    assert counts[3:].tolist() == [0, 0, 0]
