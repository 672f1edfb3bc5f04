"""On-device adapters: fitting, applying, persisting, federated updates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pocketrec import Adapter, BundleError, FitSettings, InvalidRequestError, Recommender
from pocketrec._adapter import UPDATE_FORMAT
from pocketrec._personalize import fit_bias


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
    with pytest.raises(InvalidRequestError, match="at least one next-item target"):
        fit_bias(logits[:0], targets[:0], allowed[:0], start=zero, settings=FitSettings())


@pytest.mark.parametrize("min_events", [0, 2, 3])
def test_min_events_counts_history_items_for_fits_and_updates(
    tiny_bundle: Path, min_events: int
) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    settings = FitSettings(min_events=min_events, steps=20)
    need = max(2, min_events)
    for length in range(1, 6):
        history = list(rec.item_ids[3 : 3 + length])
        adapter = rec.fit_adapter(history, settings=settings)
        assert adapter.bias.any() == (length >= need), length
        if length < need:
            with pytest.raises(InvalidRequestError, match=f"at least {need} known history items"):
                rec.federated_update(history, settings=settings, seed=0)
        else:  # every update that leaves the device carries a fitted change, not noise alone
            update = json.loads(
                rec.federated_update(history, settings=settings, noise_multiplier=0.0, seed=0)
            )
            assert update["num_events"] == length - 1
            from pocketrec._adapter import _decode

            assert np.linalg.norm(_decode(update["delta"], "delta")) > 0
    # min_events above max_events still fits the most recent max_events targets
    long = list(rec.item_ids[:12])
    fitted = rec.fit_adapter(long, settings=FitSettings(min_events=10, max_events=3, steps=20))
    assert fitted.bias.any() and fitted.info["fitted"] == 3


def test_personal_adapter_shifts_towards_the_users_codes(tiny_bundle: Path, tmp_path: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    # A user who always picks items whose first code is 5.
    liked = [i for i, sid in zip(rec.item_ids, rec.semantic_ids, strict=True) if sid[0] == 5]
    history = (liked * 3)[:12]
    adapter = rec.fit_adapter(history, settings=FitSettings(l2=0.5, form="bias"))
    assert adapter.bias[0].argmax() == 5 and adapter.info["form"] == "bias"
    personal = rec.with_adapters(adapter)
    base = rec.recommend(history[-3:], k=10, exclude_history=False)
    tuned = personal.recommend(history[-3:], k=10, exclude_history=False)
    share = lambda recs: np.mean([r.semantic_id[0] == 5 for r in recs])  # noqa: E731
    assert share(tuned) >= share(base)
    assert all(r.item_id in rec.item_ids for r in tuned)  # never an invalid item
    path = adapter.save(tmp_path / "personal.json")
    again = Adapter.load(path)
    np.testing.assert_array_equal(again.bias, adapter.bias)
    assert again.model == adapter.model == rec.manifest.model_id
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
        {"form": "lora"},
        {"holdout": -1},
    ],
)
def test_bad_fit_settings_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidRequestError, match=f"FitSettings: {next(iter(changes))}"):
        FitSettings(**changes)  # type: ignore[arg-type]


def test_a_shift_fit_reaches_the_minimum_of_its_regularised_loss() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 3, 8)).astype(np.float32)
    targets = rng.integers(0, 8, size=(40, 3))
    targets[:, 0] = 2  # a first-level preference a shift can express
    allowed = np.ones((40, 3, 8), bool)
    basis = rng.normal(size=(3, 8, 4)).astype(np.float32)
    zero = np.zeros((3, 8), np.float32)
    onehot = np.zeros(logits.shape)
    np.put_along_axis(onehot, targets[..., None], 1.0, axis=2)

    def shift_gradient(bias: np.ndarray, shift: np.ndarray, l2: float) -> np.ndarray:
        """d/d shift of the summed cross-entropy + l2/2 |shift|^2, at bias = basis @ shift."""
        z = logits + bias[None]
        p = np.exp(z - z.max(axis=2, keepdims=True))
        p /= p.sum(axis=2, keepdims=True)
        return np.einsum("lk,lkd->d", (p - onehot).sum(axis=0), basis) + l2 * shift

    settings = FitSettings(l2=1.0)
    bias = fit_bias(logits, targets, allowed, start=zero, settings=settings, basis=basis)
    # the result is basis @ shift for some shift, at which the loss's gradient vanishes
    shift, *_ = np.linalg.lstsq(basis.reshape(-1, 4), bias.reshape(-1), rcond=None)
    np.testing.assert_allclose(basis @ shift, bias, atol=1e-4)
    at_start = np.linalg.norm(shift_gradient(zero, np.zeros(4), 1.0))
    assert np.linalg.norm(shift_gradient(bias, shift, 1.0)) < 1e-4 * at_start
    strong = fit_bias(
        logits, targets, allowed, start=zero, settings=FitSettings(l2=1e4), basis=basis
    )
    assert np.abs(strong).max() < 0.05 * np.abs(bias).max()


def test_shift_adapters_need_a_bundle_with_code_embeddings(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    from tests.bundles import drop_code_embeddings

    rec = Recommender.from_bundle(tiny_bundle)
    table = rec.code_embeddings
    layout = rec.manifest.semantic_ids
    assert table is not None
    assert table.shape == (layout.num_levels, layout.codebook_size, rec.manifest.hidden)
    history = list(rec.item_ids[2:14])
    assert rec.fit_adapter(history).info["form"] == "bias"  # the default
    adapter = rec.fit_adapter(history, settings=FitSettings(form="shift"))
    assert adapter.info["form"] == "shift" and adapter.bias.any()
    s, *_ = np.linalg.lstsq(table.reshape(-1, table.shape[2]), adapter.bias.reshape(-1))
    np.testing.assert_allclose(table @ s, adapter.bias, atol=1e-4)
    valid = {tuple(c) for c in rec.semantic_ids.tolist()}
    assert all(r.semantic_id in valid for r in rec.with_adapters(adapter).recommend(history))

    old = Recommender.from_bundle(drop_code_embeddings(tiny_bundle, tmp_path / "old"))
    assert old.code_embeddings is None
    assert old.fit_adapter(history).info["form"] == "bias"
    with pytest.raises(InvalidRequestError, match="exported without them; export it again"):
        old.fit_adapter(history, settings=FitSettings(form="shift"))


def test_the_holdout_check_keeps_adapters_that_predict_the_users_latest_events(
    tiny_bundle: Path,
) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    by_first: dict[int, list[str]] = {}
    for item, sid in zip(rec.item_ids, rec.semantic_ids, strict=True):
        by_first.setdefault(int(sid[0]), []).append(item)
    a, b = [codes for codes in by_first.values() if len(codes) >= 3][:2]
    settings = FitSettings(l2=0.1, form="bias", holdout=4)
    steady = (a * 8)[:20]  # one taste throughout: the check keeps the adapter
    kept = rec.fit_adapter(steady, settings=settings)
    before, after = kept.info["holdout_nll"]
    assert kept.info["kept"] and after < before and kept.bias.any()
    full = rec.fit_adapter(steady, settings=FitSettings(l2=0.1, form="bias"))
    np.testing.assert_array_equal(kept.bias, full.bias)  # refitted on every target
    changed = (a * 8)[:16] + b[:4]  # the latest events leave the fitted taste
    dropped = rec.fit_adapter(changed, settings=settings)
    assert not dropped.info["kept"] and not dropped.bias.any()
    short = rec.fit_adapter(steady[:4], settings=settings)  # 3 targets, none left to fit
    assert not short.info["kept"] and not short.bias.any()


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (np.zeros((2, 3), np.float16), "must be"),
        ("nan", "must be"),
        ("int", "must be"),
        (b"not an npy file", "cannot read"),
    ],
)
def test_a_bad_code_embedding_table_is_refused_with_a_fix(
    tiny_bundle: Path, tmp_path: Path, table: object, problem: str
) -> None:
    from pocketrec._bundle import sha256_file

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    path = bundle / "code_embeddings.npy"
    if isinstance(table, bytes):
        path.write_bytes(table)
    else:
        good = np.load(path)
        bad = {"nan": np.full_like(good, np.nan), "int": good.astype(np.int64)}
        np.save(path, bad[table] if isinstance(table, str) else table)
    manifest = json.loads((bundle / "manifest.json").read_text())  # re-hashed: not tampering
    manifest["files"]["code_embeddings.npy"] = {
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=f"{problem}.*re-export the bundle"):
        Recommender.from_bundle(bundle)


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


def test_adapter_fitted_on_another_model_of_the_same_bundle_name_is_refused(
    tiny_bundle: Path,
) -> None:
    """After an app ships a re-exported bundle, a kept personal adapter must be fitted again."""
    rec = Recommender.from_bundle(tiny_bundle)
    fitted = rec.fit_adapter([f"item{i}" for i in (3, 10, 17, 24, 31, 38, 5)])
    old = Adapter.from_json(fitted.to_json() | {"model": "0" * 64})
    with pytest.raises(InvalidRequestError, match="another model .*fit it again"):
        rec.with_adapters(old)
    legacy = fitted.to_json()
    del legacy["model"]  # saved before adapters named their model: fits any model of the name
    assert Adapter.from_json(legacy).model is None
    rec.with_adapters(Adapter.from_json(legacy))
    with pytest.raises(BundleError, match="model"):
        Adapter.from_json(fitted.to_json() | {"model": 7})


def _adapter_json(**changes: object) -> dict[str, object]:
    good = Adapter(bundle="b", bias=np.zeros((2, 3), np.float32), kind="shared", version=2)
    return {**good.to_json(), **changes}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (
            json.dumps(_adapter_json(bias={"dtype": "float32", "shape": [2, 3], "b64": "AAAA"})),
            "does not match its shape",
        ),
        (
            json.dumps(_adapter_json(bias={"dtype": "float32", "b64": "AAAA"})),
            "shape must be a list of positive integers",
        ),
        (json.dumps([1, 2]), "not a pocketrec adapter .*'list'"),
        (
            json.dumps({k: v for k, v in _adapter_json().items() if k != "bundle"}),
            "bundle must name the bundle",
        ),
        (json.dumps(_adapter_json(version="v1")), "version must be an integer"),
        (json.dumps(_adapter_json(info=[1])), "info must be an object"),
        (json.dumps(_adapter_json(kind="mine")), "kind must be personal or shared"),
        ("nope", "cannot read adapter"),
        (b"\xff\xfe\x00garbage", "cannot read adapter"),
    ],
)
def test_corrupt_adapter_files_are_refused_with_a_fix(
    tmp_path: Path, content: str | bytes, match: str
) -> None:
    path = tmp_path / "a.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(BundleError, match=match) as err:
        Adapter.load(path)
    assert "fit the adapter again" in str(err.value)
    good = tmp_path / "good.json"
    Adapter.from_json(_adapter_json()).save(good)
    assert Adapter.load(good).version == 2  # the checks pass what to_json writes


def test_adapters_that_would_remove_every_item_are_refused(tiny_bundle: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    history = list(rec.item_ids[:4])
    for bad in (np.nan, np.inf, -np.inf):
        bias = np.zeros_like(rec.total_bias)
        bias[0, 1] = bad
        with pytest.raises(InvalidRequestError, match="NaN, infinite"):
            rec.with_adapters(Adapter(bundle=rec.manifest.name, bias=bias))
    with pytest.raises(InvalidRequestError, match="pocketrec.Adapter"):
        rec.with_adapters(np.zeros_like(rec.total_bias))  # type: ignore[arg-type]
    assert len(rec.recommend(history, k=5)) == 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clip_norm": float("nan")}, "clip_norm must be a finite number > 0"),
        ({"clip_norm": float("inf"), "noise_multiplier": 0.0}, "clip_norm must be a finite"),
        ({"clip_norm": 0.0}, "clip_norm must be a finite number > 0"),
        ({"clip_norm": "1"}, "clip_norm must be a finite number > 0"),
        ({"noise_multiplier": -1.0}, "noise_multiplier must be a finite number >= 0"),
        ({"noise_multiplier": float("nan")}, "noise_multiplier must be a finite number >= 0"),
    ],
)
def test_privacy_settings_are_checked_before_the_fit(
    tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, object], match: str
) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    import pocketrec._recommender as module

    def no_fit(*args: object, **kw: object) -> bytes:
        raise AssertionError("the fit ran before the settings were checked")

    monkeypatch.setattr(module, "federated_update", no_fit)
    with pytest.raises(InvalidRequestError, match=match):
        rec.federated_update(list(rec.item_ids[:6]), **kwargs)  # type: ignore[arg-type]


def test_federated_update_is_clipped_noised_small_and_versioned(tiny_bundle: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    history = [f"item{i}" for i in (3, 10, 17, 24, 31, 38, 5)]
    clean = json.loads(rec.federated_update(history, clip_norm=0.5, noise_multiplier=0.0, seed=0))
    assert clean["format"] == UPDATE_FORMAT and clean["bundle"] == rec.manifest.name
    assert clean["base_version"] == 0 and clean["num_events"] == 6  # next-item targets
    assert clean["model"] == rec.manifest.model_id and len(clean["model"]) == 64
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


def test_an_adapter_keeps_a_read_only_float32_copy_of_a_real_bias() -> None:
    source = [[0, 1], [2, 3]]
    adapter = Adapter(bundle="b", bias=source, version=np.int64(3))  # type: ignore[arg-type]
    assert adapter.bias.dtype == np.float32 and adapter.bias.shape == (2, 2)
    with pytest.raises(ValueError, match="read-only"):
        adapter.bias[0, 0] = np.nan  # the finiteness check holds for the adapter's lifetime
    array = np.zeros((2, 2), np.float32)
    copy = Adapter(bundle="b", bias=array)
    array[0, 0] = np.nan  # the caller's array is not the adapter's
    assert np.isfinite(copy.bias).all()
    json.dumps(adapter.to_json())  # the numpy version is written as a JSON number
    for bad in (np.zeros((2, 2), np.complex64), np.zeros((2, 2), bool), [[0, 1], [2]]):
        with pytest.raises(InvalidRequestError, match="real .*array"):
            Adapter(bundle="b", bias=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [[-1, 2], "22", [2.9, 2], [True, 4], None])
def test_array_shapes_in_files_must_be_lists_of_positive_integers(shape: object) -> None:
    from pocketrec._adapter import _decode

    data = {"dtype": "float32", "shape": shape, "b64": "AAAAAAAAAAAAAAAAAAAAAA=="}
    with pytest.raises(InvalidRequestError, match="shape must be a list of positive integers"):
        _decode(data, "bias")


def test_updates_that_would_reach_the_server_broken_are_refused_on_the_device() -> None:
    from pocketrec._adapter import MAX_UPDATE_BYTES, make_update

    def update(delta: np.ndarray, **kw: object) -> bytes:
        args: dict = {"bundle": "b", "model": "m", "base_version": 0, "clip_norm": 1.0}
        args |= {"noise_multiplier": 0.0, "num_events": 5, "rng": np.random.default_rng(0)}
        return make_update(delta, **(args | kw))

    for bad in (np.nan, np.inf):  # a diverged fit: NaN would skip the clipping
        delta = np.zeros((4, 8), np.float32)
        delta[1, 2] = bad
        with pytest.raises(InvalidRequestError, match="not finite .*lower FitSettings.lr"):
            update(delta)
    with pytest.raises(InvalidRequestError, match="over the 16,384-byte upload limit"):
        update(np.zeros((4, 1024), np.float32))
    small = update(np.ones((4, 8), np.float32), clip_norm=np.float32(0.5), base_version=np.int64(2))
    payload = json.loads(small)  # numpy scalars are written as JSON numbers
    assert payload["clip_norm"] == 0.5 and payload["base_version"] == 2
    assert len(small) <= MAX_UPDATE_BYTES


def test_fit_settings_hold_plain_numbers() -> None:
    settings = FitSettings(l2=np.float32(2.0), steps=np.int64(5))  # type: ignore[arg-type]
    assert type(settings.l2) is float and type(settings.steps) is int
