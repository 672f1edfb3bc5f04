"""benchmarks/personalize.py: groups, the paired bootstrap, the settings rule, batched adapters."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from pocketrec import FitSettings, Recommender
from pocketrec._personalize import fit_personal
from pocketrec._search import exclusion_batch
from tests.benchmarks.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("personalize")


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from tests.bundles import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("tiny"))


def test_groups_split_at_their_upper_edges(bench: ModuleType) -> None:
    edges = (5, 10, 20)
    assert bench.bucket_labels(edges) == ["<=5", "6-10", "11-20", ">20"]
    groups = bench.bucket_of(np.array([1, 5, 6, 10, 11, 20, 21, 500]), edges)
    assert groups.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_stratified_sample_caps_each_group(bench: ModuleType) -> None:
    groups = np.array([0] * 50 + [1] * 3 + [2] * 20)
    picked = bench.stratified_sample(groups, 3, 10, np.random.default_rng(0))
    assert np.bincount(groups[picked]).tolist() == [10, 3, 10]
    assert len(set(picked.tolist())) == len(picked)


def test_paired_bootstrap_sees_a_real_gain_and_no_gain(bench: ModuleType) -> None:
    rng = np.random.default_rng(0)
    shared = rng.integers(0, 40, size=400)
    groups = np.repeat([0, 1], 200)
    same = bench.paired_bootstrap(
        shared, shared, groups, np.array([0.5, 0.5]), num_samples=200, rng=rng
    )
    for interval in [*same["groups"], same["population"]]:
        assert interval["ndcg@10"] == {"diff": 0.0, "lo": 0.0, "hi": 0.0}
    better = np.where(groups == 1, 0, shared)  # group 1: every target ranked first
    out = bench.paired_bootstrap(
        shared, better, groups, np.array([0.9, 0.1]), num_samples=200, rng=rng
    )
    assert out["groups"][0]["ndcg@10"]["diff"] == 0.0
    gain = out["groups"][1]["ndcg@10"]
    assert gain["lo"] > 0 and bench.verdict(gain) == "helps"
    assert out["population"]["ndcg@10"]["diff"] == pytest.approx(0.1 * gain["diff"])
    assert bench.verdict({"lo": -0.2, "hi": -0.1}) == "hurts"
    assert bench.verdict({"lo": -0.2, "hi": 0.1}) == "within noise"


def _entry(l2: float, diffs: list[tuple[float, float, float]]) -> dict[str, object]:
    groups = [{"ndcg@10": {"diff": d, "lo": lo, "hi": hi}} for d, lo, hi in diffs]
    return {
        "settings": {"l2": l2},
        "weights": [1 / len(diffs)] * len(diffs),
        "bootstrap": {"groups": groups},
    }


def test_settings_rule_gates_off_hurt_short_histories(bench: ModuleType) -> None:
    edges = (5, 10)
    base = FitSettings(min_events=2)
    hurt_short = _entry(2.0, [(-0.01, -0.02, -0.005), (0.02, 0.01, 0.03), (0.03, 0.0, 0.06)])
    mild = _entry(8.0, [(0.001, -0.01, 0.01), (0.004, -0.01, 0.02), (0.005, -0.01, 0.02)])
    chosen, why = bench.choose_settings([hurt_short, mild], edges, base)
    # l2=2 gated below 6 events gains (0.02 + 0.03) / 3 > l2=8's (0.001 + 0.004 + 0.005) / 3.
    assert chosen.l2 == 2.0 and chosen.min_events == 6 and "gated" in why
    assert not bench.adapts(5, chosen) and bench.adapts(6, chosen)
    chosen, _ = bench.choose_settings([mild], edges, base)
    assert chosen.l2 == 8.0 and chosen.min_events == 2
    all_hurt = _entry(2.0, [(0.0, -0.01, 0.01), (0.0, -0.01, 0.01), (-0.1, -0.2, -0.05)])
    chosen, why = bench.choose_settings([all_hurt], edges, base)
    assert not bench.adapts(10**6, chosen) and "off" in why


@pytest.mark.parametrize("min_events", [0, 2, 3, 6])
@pytest.mark.parametrize("max_events", [100, 3])
def test_adapts_matches_the_sdk(
    bench: ModuleType, tiny_bundle: Path, min_events: int, max_events: int
) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    settings = FitSettings(min_events=min_events, steps=20, max_events=max_events)
    for length in range(1, 9):
        fitted = fit_personal(rec, list(range(length)), settings).bias.any()
        assert bool(fitted) == bench.adapts(length, settings), length


def test_batched_biases_rank_as_with_adapters(bench: ModuleType, tiny_bundle: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    rng = np.random.default_rng(0)
    histories = rng.integers(-1, len(rec.item_ids), size=(6, rec.window))
    histories[:, -1] = rng.integers(0, len(rec.item_ids), size=6)  # every user has an item
    zero = np.zeros((6, *rec.total_bias.shape), np.float32)
    plain = rec.rank(histories, k=10, beam_width=10).items
    np.testing.assert_array_equal(
        bench.rank_with_biases(rec, histories, zero, k=10, beam_width=10), plain
    )
    biases = rng.normal(0, 2.0, size=zero.shape).astype(np.float32)
    batched = bench.rank_with_biases(rec, histories, biases, k=10, beam_width=10)
    assert (batched != plain).any()  # the biases matter
    for i in range(6):
        one = rec.fit_adapter([], settings=FitSettings())  # a zero adapter of the right shape
        adapted = rec.with_adapters(type(one)(bundle=one.bundle, bias=biases[i]))
        expected = adapted.rank(histories[i : i + 1], k=10, beam_width=10).items[0]
        np.testing.assert_array_equal(batched[i], expected)


@pytest.mark.parametrize("num_seen", [3, 30])
def test_batched_biases_leave_out_seen_items_as_rank_does(
    bench: ModuleType, tiny_bundle: Path, num_seen: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recommender.from_bundle(tiny_bundle)  # 40 items, window 5
    rng = np.random.default_rng(1)
    events = [rng.permutation(len(rec.item_ids))[:num_seen].tolist() for _ in range(6)]
    events[0] = events[0][:1] + events[0][:1]  # a repeated event is left out once
    seen = exclusion_batch(events)  # what the benchmark leaves out: recommend_batch's rows
    assert [sorted(r[r >= 0].tolist()) for r in seen] == [sorted(set(e)) for e in events]
    histories = np.full((6, rec.window), -1, np.int64)
    for b, rows in enumerate(events):
        tail = rows[-rec.window :]
        histories[b, rec.window - len(tail) :] = tail
    zero = np.zeros((6, *rec.total_bias.shape), np.float32)
    plain = rec.rank(histories, k=10, beam_width=10, exclude=seen).items
    import pocketrec._search as search_module

    searched: list[int] = []  # users per beam search: a second entry is the refill
    search = search_module.beam_search

    def counting(states: tuple[np.ndarray, ...], *args: object, **kwargs: object) -> object:
        searched.append(len(states[0]))
        return search(states, *args, **kwargs)

    monkeypatch.setattr(search_module, "beam_search", counting)
    np.testing.assert_array_equal(
        bench.rank_with_biases(rec, histories, zero, k=10, beam_width=10, exclude=seen), plain
    )
    # 30 of 40 items seen crowds the capped beams out for some users, who are searched again.
    assert (len(searched) > 1) == (num_seen == 30)
    biases = rng.normal(0, 2.0, size=zero.shape).astype(np.float32)
    batched = bench.rank_with_biases(rec, histories, biases, k=10, beam_width=10, exclude=seen)
    for i in range(6):
        assert not set(batched[i].tolist()) & set(events[i])
        one = rec.fit_adapter([], settings=FitSettings())
        adapted = rec.with_adapters(type(one)(bundle=one.bundle, bias=biases[i]))
        expected = adapted.rank(histories[i : i + 1], k=10, beam_width=10, exclude=seen[i : i + 1])
        np.testing.assert_array_equal(batched[i], expected.items[0])


def test_keeping_the_first_levels_equals_fitting_them_alone() -> None:
    from pocketrec._personalize import fit_bias

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(12, 3, 6)).astype(np.float32)
    targets = rng.integers(0, 6, size=(12, 3))
    allowed = rng.random((12, 3, 6)) < 0.7
    allowed[np.arange(12)[:, None], np.arange(3)[None, :], targets] = True
    start = np.zeros((3, 6), np.float32)
    every = fit_bias(logits, targets, allowed, start=start, settings=FitSettings(l2=1.0))
    first = fit_bias(
        logits[:, :1], targets[:, :1], allowed[:, :1], start=start[:1], settings=FitSettings(l2=1.0)
    )
    np.testing.assert_allclose(every[:1], first, rtol=1e-6, atol=1e-7)
    assert np.abs(every[1:]).max() > 0.01  # the other levels were fitted too


def test_probe_windows_cover_every_pair_once(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when run as a script
    probe = load_script("personalize_finetune_probe")
    for length in (7, 5, 2):
        seq = np.arange(10, 10 + length)
        rows = probe.windows_of(seq, 3)  # (N, 4), PAD-left
        pairs = [(int(a), int(b)) for row in rows for a, b in itertools.pairwise(row) if a >= 0]
        assert sorted(pairs) == [(int(a), int(a) + 1) for a in seq[:-1]]  # each pair once
        assert rows.shape[1] == 4 and all((row[row < 0] == -1).all() for row in rows)


def test_user_vector_probe_shift_is_the_sdk_state_shift(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's vector moves every level's logits by E_l . u: the SDK's shift-form bias."""
    torch = pytest.importorskip("torch")
    from pocketrec.distill.genrec import GenRec, GenRecConfig

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when run as a script
    probe = load_script("personalize_user_vector_probe")
    torch.manual_seed(0)
    sids = torch.tensor([[0, 1, 2], [1, 0, 3], [2, 2, 0], [3, 1, 1]])
    cfg = GenRecConfig(num_levels=3, codebook_size=4, max_len=5, hidden=8, dropout=0.0)
    model = GenRec(cfg, sids).eval()
    shift = probe.StateShift(model)
    inputs = torch.tensor([[-1, 0, 1, 2, 3], [-1, -1, 3, 2, 1]])
    targets = torch.tensor([[-1, 1, 2, 3, 0], [-1, -1, 2, 1, 0]])
    with torch.no_grad():
        plain, _, _ = model(inputs, targets)
        u = torch.randn(2, 1, cfg.hidden)
        shift.value = u
        moved, _, valid = model(inputs, targets)
        shift.value = None
    rows = u.expand(-1, 5, -1)[valid]  # (M, D): each position's user vector
    expected = torch.einsum("md,lkd->mlk", rows, model.code_emb)
    torch.testing.assert_close(moved - plain, expected, rtol=1e-4, atol=1e-5)
    shift.captured = []
    with torch.no_grad():
        model(inputs, targets)
    assert len(shift.captured) == cfg.num_levels  # one head state per level, as the fit reads
