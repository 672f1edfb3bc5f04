"""On-device adapters: fitting, applying, persisting, federated updates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pocketrec import Adapter, BundleError, FitSettings, InvalidRequestError, Recommender
from pocketrec._adapter import UPDATE_FORMAT, fit_bias


def test_fit_bias_moves_towards_the_targets_and_respects_l2() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(30, 2, 6)).astype(np.float32)
    targets = np.tile([[2, 4]], (30, 1))
    allowed = np.ones((30, 2, 6), bool)
    zero = np.zeros((2, 6), np.float32)
    weak = fit_bias(logits, targets, allowed, start=zero, settings=FitSettings(l2=1.0))
    strong = fit_bias(logits, targets, allowed, start=zero, settings=FitSettings(l2=100.0))
    assert weak[0, 2] > strong[0, 2] > 0 and weak[1, 4] > 0
    assert np.abs(strong).max() < np.abs(weak).max()
    few = fit_bias(
        logits[:1], targets[:1], allowed[:1], start=zero, settings=FitSettings(min_events=2)
    )
    assert not few.any()  # too little data: stays at the start


def test_personal_adapter_shifts_towards_the_users_codes(tiny_bundle: Path, tmp_path: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    # A user who always picks items whose first code is 5.
    liked = [i for i, sid in zip(rec.item_ids, rec.semantic_ids, strict=True) if sid[0] == 5]
    history = (liked * 3)[:12]
    adapter = rec.fit_adapter(history, settings=FitSettings(l2=0.5))
    assert adapter.bias[0].argmax() == 5
    personal = rec.with_adapters(adapter)
    base = rec.recommend(history[-3:], k=10, exclude_history=False)
    tuned = personal.recommend(history[-3:], k=10, exclude_history=False)
    share = lambda recs: np.mean([r.semantic_id[0] == 5 for r in recs])  # noqa: E731
    assert share(tuned) >= share(base)
    assert all(r.item_id in rec.item_ids for r in tuned)  # never an invalid item
    path = adapter.save(tmp_path / "personal.json")
    again = Adapter.load(path)
    np.testing.assert_array_equal(again.bias, adapter.bias)
    assert rec.with_adapters(again).recommend(history[-3:], k=10) == personal.recommend(
        history[-3:], k=10
    )


def test_a_huge_history_fits_its_most_recent_events_with_their_full_context(
    tiny_bundle: Path,
) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    rng = np.random.default_rng(0)
    history = [rec.item_ids[i] for i in rng.integers(0, len(rec.item_ids), 20_000)]
    settings = FitSettings(max_events=30, steps=50)
    adapter = rec.fit_adapter(history, settings=settings)
    assert adapter.info["events"] == 20_000 and adapter.info["fitted"] == 30
    # Only the 30 targets and the window each reads matter...
    read = rec.fit_adapter(history[-(30 + rec.window) :], settings=settings)
    np.testing.assert_allclose(adapter.bias, read.bias, atol=1e-6)
    # ...and they read earlier events: the same 30 targets cut from their context differ.
    cut = rec.fit_adapter(history[-31:], settings=settings)
    assert cut.info["fitted"] == 30 and not np.allclose(adapter.bias, cut.bias, atol=1e-4)
    update = rec.federated_update(history, settings=settings, noise_multiplier=0.0, seed=0)
    assert len(update) <= 16 * 1024
    assert json.loads(update)["num_events"] == 30  # the history's length stays on the device


@pytest.mark.parametrize(
    "changes",
    [
        {"max_events": 0},
        {"steps": -1},
        {"min_events": -1},
        {"min_events": 1.5},
        {"l2": float("nan")},
        {"l2": float("inf")},
        {"lr": "1"},
    ],
)
def test_bad_fit_settings_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidRequestError, match=f"FitSettings: {next(iter(changes))}"):
        FitSettings(**changes)  # type: ignore[arg-type]


def test_adapted_recommenders_share_the_bundles_tables_and_keep_their_own_bias(
    tiny_bundle: Path,
) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    bias = np.zeros_like(rec.total_bias)
    bias[0, 5] = 3.0
    personal = rec.with_adapters(Adapter(bundle=rec.manifest.name, bias=bias))
    raw = personal.without_adapters()
    assert personal.prefix_index is rec.prefix_index is raw.prefix_index  # not rebuilt
    np.testing.assert_array_equal(personal.total_bias, rec.total_bias + bias)
    assert not raw.total_bias.any() and not raw.adapters
    assert rec.adapters == () and not rec.total_bias.any()  # the original is unchanged
    history = list(rec.item_ids[:4])
    assert raw.recommend(history, k=5) == rec.recommend(history, k=5)


def test_adapter_for_another_bundle_is_refused(tiny_bundle: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    wrong = Adapter(bundle="other", bias=np.zeros_like(rec.total_bias))
    with pytest.raises(InvalidRequestError, match="does not fit"):
        rec.with_adapters(wrong)
    with pytest.raises(InvalidRequestError):
        rec.with_adapters(Adapter(bundle=rec.manifest.name, bias=np.zeros((2, 2), np.float32)))


def test_corrupt_adapter_file(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        json.dumps(
            {
                "format": "pocketrec-adapter/1",
                "bundle": "b",
                "bias": {"dtype": "float32", "shape": [2, 3], "b64": "AAAA"},
            }
        )
    )
    with pytest.raises((BundleError, InvalidRequestError)):
        Adapter.load(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("nope")
    with pytest.raises(BundleError, match="cannot read adapter"):
        Adapter.load(tmp_path / "b.json")


def test_federated_update_is_clipped_noised_small_and_versioned(tiny_bundle: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    history = [f"item{i}" for i in (3, 10, 17, 24, 31, 38, 5)]
    clean = json.loads(rec.federated_update(history, clip_norm=0.5, noise_multiplier=0.0, seed=0))
    assert clean["format"] == UPDATE_FORMAT and clean["bundle"] == rec.manifest.name
    assert clean["base_version"] == 0 and clean["num_events"] == 6  # next-item targets
    from pocketrec._adapter import _decode

    delta = _decode(clean["delta"], "delta")
    assert delta.shape == rec.total_bias.shape
    assert np.linalg.norm(delta) <= 0.5 + 1e-5  # clipped
    payload = rec.federated_update(history, clip_norm=0.5, noise_multiplier=1.0, seed=1)
    assert len(payload) <= 16 * 1024
    noisy = _decode(json.loads(payload)["delta"], "delta")
    assert np.linalg.norm(noisy - delta) > 1.0  # noise of std 0.5 on 3*8 entries
    assert payload == rec.federated_update(history, clip_norm=0.5, noise_multiplier=1.0, seed=1)
    with pytest.raises(InvalidRequestError, match="at least 2"):
        rec.federated_update(["item3"])
