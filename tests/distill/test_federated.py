"""The federated server side: upload checks, aggregators, privacy, bundle versions, a simulation."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")
pytest.importorskip("torch")

from pocketrec import BundleError, ConfigError, Recommender
from pocketrec._adapter import Adapter, _decode, _encode, make_update
from pocketrec._cli import main
from pocketrec._manifest import FileEntry
from pocketrec.distill.federated.aggregate import (
    aggregate_deltas,
    aggregate_uploads,
    make_aggregator,
)
from pocketrec.distill.federated.client import attack_payload, client_uploads, promoted_code
from pocketrec.distill.federated.config import SimulationConfig
from pocketrec.distill.federated.privacy import dp_epsilon, privacy_spent
from pocketrec.distill.federated.publish import write_bundle_version
from pocketrec.distill.federated.updates import REASONS, UpdateRules, check_update

HISTORY = [f"item{i}" for i in (3, 10, 17, 24, 31, 38, 5)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny deterministic bundle; its dataset is the sibling folder tiny_shop."""
    from tests.bundles import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def rec(tiny: Path) -> Recommender:
    return Recommender.from_bundle(tiny)


def _rules(rec: Recommender, **changes: Any) -> UpdateRules:
    layout = rec.manifest.semantic_ids
    base: dict[str, Any] = {
        "bundle": rec.manifest.name,
        "models": {rec.manifest.model_id},
        "version": 0,
        "shape": (layout.num_levels, layout.codebook_size),
        "clip_norm": 0.5,
        "noise_multiplier": 1.0,
    }
    return UpdateRules(**(base | changes))


def _payload(rec: Recommender, **edits: Any) -> bytes:
    """A real SDK upload, with fields replaced by `edits`."""
    obj = json.loads(rec.federated_update(HISTORY, clip_norm=0.5, noise_multiplier=1.0, seed=0))
    obj.update(edits)
    return json.dumps(obj).encode()


def test_an_sdk_upload_is_accepted(rec: Recommender) -> None:
    payload = rec.federated_update(HISTORY, clip_norm=0.5, noise_multiplier=1.0, seed=0)
    verdict = check_update(payload, _rules(rec))
    assert verdict.accepted and verdict.reason is None and verdict.num_bytes == len(payload)
    expected = _decode(json.loads(payload)["delta"], "delta")
    np.testing.assert_array_equal(verdict.delta, expected)


@pytest.fixture(scope="module")
def bad_uploads(rec: Recommender) -> dict[str, bytes]:
    """One upload per way of being wrong; the key's first word is the expected reason."""
    delta = _decode(json.loads(_payload(rec))["delta"], "delta")
    with_nan = delta.copy()
    with_nan[0, 0] = np.nan
    with_inf = delta.copy()
    with_inf[1, 2] = -np.inf
    return {
        "oversized": _payload(rec, padding="x" * 20_000),
        "malformed": b"\x00not json",
        "malformed list": b"[1, 2]",
        "malformed nesting": b"[" * 15_000,
        "malformed version type": _payload(rec, base_version="0"),
        "wrong_schema": _payload(rec, format="pocketrec-update/0"),
        "other_bundle": _payload(rec, bundle="another-bundle"),
        "other_model": _payload(rec, model="0" * 64),
        "malformed model": _payload(rec, model=None),
        "stale_version": _payload(rec, base_version=3),
        "wrong_shape": _payload(rec, delta=_encode(np.zeros((2, 8), np.float32))),
        "wrong_shape bytes": _payload(
            rec, delta={"dtype": "float32", "shape": [3, 8], "b64": "AA"}
        ),
        "non_finite": _payload(rec, delta=_encode(with_nan)),
        "non_finite inf": _payload(rec, delta=_encode(with_inf)),
        "dp_settings": _payload(rec, noise_multiplier=0.1),
        "norm_too_large": _payload(rec, delta=_encode(delta * 100)),
    }


@pytest.mark.parametrize(
    "case",
    [
        "oversized",
        "malformed",
        "malformed list",
        "malformed nesting",
        "malformed version type",
        "wrong_schema",
        "other_bundle",
        "other_model",
        "malformed model",
        "stale_version",
        "wrong_shape",
        "wrong_shape bytes",
        "non_finite",
        "non_finite inf",
        "dp_settings",
        "norm_too_large",
    ],
)
def test_each_bad_upload_is_rejected_with_its_reason(
    rec: Recommender, bad_uploads: dict[str, bytes], case: str
) -> None:
    verdict = check_update(bad_uploads[case], _rules(rec))
    assert not verdict.accepted and verdict.delta is None
    assert verdict.reason == case.split()[0] and verdict.reason in REASONS
    assert verdict.detail


def test_a_round_counts_rejections_and_keeps_the_adapter_when_nothing_passes(
    rec: Recommender, bad_uploads: dict[str, bytes]
) -> None:
    rules = _rules(rec)
    bad = bad_uploads
    good = [
        rec.federated_update(HISTORY, clip_norm=0.5, noise_multiplier=1.0, seed=s) for s in (1, 2)
    ]
    uploads = [("a", good[0]), ("a", bad["stale_version"]), ("b", good[1]), ("b", bad["oversized"])]
    bias = np.zeros(rules.shape, np.float32)
    new, report = aggregate_uploads(
        uploads, bias=bias, rules=rules, aggregator=make_aggregator("fedavg")
    )
    assert report["uploads"] == 4 and report["accepted"] == 2 and report["published"]
    assert report["rejected"] == {"oversized": 1, "stale_version": 1}
    sizes = {c: sum(len(p) for k, p in uploads if k == c) for c in "ab"}
    assert report["upload_bytes"]["per_client"] == sizes
    mean = np.mean([_decode(json.loads(g)["delta"], "delta") for g in good], axis=0)
    assert new is not None
    np.testing.assert_allclose(new, mean, rtol=1e-6)
    start = np.full(rules.shape, 0.5, np.float32)
    faster, report_x3 = aggregate_uploads(
        uploads, bias=start, rules=rules, aggregator=make_aggregator("fedavg"), server_lr=3.0
    )
    assert faster is not None
    np.testing.assert_allclose(faster, start + 3.0 * mean, rtol=1e-5, atol=1e-6)
    assert report_x3["update_norm"] == pytest.approx(3.0 * float(np.linalg.norm(mean)), rel=1e-5)
    none, report = aggregate_uploads(
        [("a", bad["non_finite"])], bias=bias, rules=rules, aggregator=make_aggregator("median")
    )
    assert none is None and not report["published"] and report["rejected"] == {"non_finite": 1}


@pytest.mark.parametrize("attack", [100.0, -100.0], ids=["scale", "flip"])
def test_median_and_trimmed_mean_resist_a_malicious_update_fedavg_does_not(attack: float) -> None:
    rng = np.random.default_rng(0)
    target = rng.normal(size=(3, 8)).astype(np.float32)
    honest = [target + 0.1 * rng.normal(size=target.shape).astype(np.float32) for _ in range(9)]
    deltas = [*honest, attack * target]
    errors = {
        name: float(np.linalg.norm(aggregate_deltas(deltas, make_aggregator(name)) - target))
        for name in ("fedavg", "median", "trimmed")
    }
    clean = float(np.linalg.norm(aggregate_deltas(honest, make_aggregator("fedavg")) - target))
    scale = float(np.linalg.norm(target))
    assert errors["fedavg"] > 5 * scale  # one device in ten moves the mean far away
    assert errors["median"] < 0.1 * scale and errors["trimmed"] < 0.1 * scale
    assert errors["trimmed"] < 3 * clean + 1e-3


def test_unknown_aggregator_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fedavg"):
        make_aggregator("krum")
    with pytest.raises(ConfigError, match="trim_fraction"):
        make_aggregator("trimmed", trim_fraction=0.5)


def test_epsilon_grows_with_rounds_and_shrinks_with_noise() -> None:
    def eps(z: float, rounds: int, q: float = 0.05) -> float:
        return dp_epsilon(noise_multiplier=z, sampling_rate=q, rounds=rounds, delta=1e-5)

    by_rounds = [eps(1.0, r) for r in (1, 5, 20, 100)]
    by_noise = [eps(z, 20) for z in (0.6, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in itertools.pairwise(by_rounds))
    assert all(a > b for a, b in itertools.pairwise(by_noise))
    assert eps(1.0, 20, q=0.01) < eps(1.0, 20, q=0.1) < eps(1.0, 20, q=1.0)  # sampling helps
    assert eps(1.0, 0) == 0.0 and eps(0.0, 3) == float("inf")
    with pytest.raises(ValueError, match="delta"):
        dp_epsilon(noise_multiplier=1.0, sampling_rate=0.1, rounds=3, delta=0.0)


def test_epsilon_matches_flowers_rdp_accountant() -> None:
    from flwr.serverapp import (
        GaussianPrivacyEvent,
        NeighboringRelation,
        PrivacyConfig,
        RdpAccountant,
        SamplingMethod,
    )

    flower = RdpAccountant(
        PrivacyConfig(
            target_delta=1e-5,
            population_size=1000,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.POISSON,
        )
    )
    flower.compose(
        GaussianPrivacyEvent(noise_multiplier=1.1, sample_size=50, population_size=1000), 30
    )
    ours = dp_epsilon(noise_multiplier=1.1, sampling_rate=0.05, rounds=30, delta=1e-5)
    assert ours == pytest.approx(flower.get_epsilon(1e-5), rel=1e-9)


def test_privacy_report_has_central_epsilon_only_where_accounted() -> None:
    args: dict[str, Any] = {"sampling_rate": 0.05, "rounds": 10, "delta": 1e-5}
    central = privacy_spent(noise_multiplier=0.0, central_noise=1.0, aggregator="fedavg", **args)
    assert central["central"] is not None and central["local"] == float("inf")
    # With device noise an upload's norm is unbounded (the user's own noise comes with the
    # user), so the add/remove-one analysis does not apply; only the local epsilon is given.
    both = privacy_spent(noise_multiplier=1.0, central_noise=1.0, aggregator="fedavg", **args)
    assert both["central"] is None and both["local"] < float("inf")
    for aggregator, noise in (("median", 1.0), ("fedavg", 0.0)):
        report = privacy_spent(
            noise_multiplier=0.0, central_noise=noise, aggregator=aggregator, **args
        )
        assert report["central"] is None
    fewer = privacy_spent(
        noise_multiplier=0.0, central_noise=1.0, aggregator="fedavg", releases=3, **args
    )
    assert fewer["central"] < central["central"]


def test_a_new_bundle_version_loads_and_its_adapter_changes_recommendations(
    tiny: Path, rec: Recommender, tmp_path: Path
) -> None:
    layout = rec.manifest.semantic_ids
    bias = np.zeros((layout.num_levels, layout.codebook_size), np.float32)
    bias[0, 5] = 8.0  # strongly prefer first code 5
    adapter = Adapter(bundle=rec.manifest.name, bias=bias, kind="shared", version=1)
    out = write_bundle_version(tiny, adapter, tmp_path / "v1", quality={"note": "test"})
    new = Recommender.from_bundle(out)  # verifies every file's sha256, the adapter included
    assert new.manifest.version == 1 and rec.manifest.version == 0
    assert new.manifest.parent == hashlib.sha256((tiny / "manifest.json").read_bytes()).hexdigest()
    assert new.manifest.quality == {"note": "test"}
    assert [(a.kind, a.version) for a in new.adapters] == [("shared", 1)]
    np.testing.assert_array_equal(new.adapters[0].bias, bias)
    before = rec.recommend(HISTORY[-3:], k=10)
    after = new.recommend(HISTORY[-3:], k=10)
    assert [r.item_id for r in after] != [r.item_id for r in before]
    assert sum(r.semantic_id[0] == 5 for r in after) > sum(r.semantic_id[0] == 5 for r in before)
    # Devices on the new version upload against it; the old version's uploads are now stale.
    rules = _rules(rec, version=1)
    fresh = new.federated_update(HISTORY, clip_norm=0.5, noise_multiplier=1.0, seed=0)
    old = rec.federated_update(HISTORY, clip_norm=0.5, noise_multiplier=1.0, seed=0)
    assert check_update(fresh, rules).accepted
    assert check_update(old, rules).reason == "stale_version"
    # The next version replaces the shared adapter; a version that is not newer is refused.
    v2 = write_bundle_version(
        out,
        Adapter(bundle=rec.manifest.name, bias=-bias, kind="shared", version=2),
        tmp_path / "v2",
    )
    assert Recommender.from_bundle(v2).adapters[0].version == 2
    # Every published version is the same model: its uploads name the same model id.
    assert new.manifest.model_id == rec.manifest.model_id
    assert Recommender.from_bundle(v2).manifest.model_id == rec.manifest.model_id
    with pytest.raises(BundleError, match="not newer"):
        write_bundle_version(out, adapter, tmp_path / "again")
    with pytest.raises(BundleError, match="shape"):
        wrong = Adapter(bundle=rec.manifest.name, bias=bias[:, :4], kind="shared", version=5)
        write_bundle_version(tiny, wrong, tmp_path / "wrong")
    with pytest.raises(BundleError, match="another export of the same name"):
        other = Adapter(bundle=rec.manifest.name, bias=bias, kind="shared", version=5, model="0")
        write_bundle_version(tiny, other, tmp_path / "other")
    for folder in ("again", "wrong", "other"):
        assert not (tmp_path / folder).exists()
    # An adapter without a model id is published naming this bundle's model.
    assert new.adapters[0].model == rec.manifest.model_id and adapter.model is None


def test_the_model_id_changes_with_any_model_file_and_not_with_the_adapter(
    rec: Recommender,
) -> None:
    """Another export under the same name and version is another model to the server."""
    manifest = rec.manifest
    graph = manifest.decoder.file
    retrained = dataclasses.replace(
        manifest,
        files=manifest.files | {graph: FileEntry(sha256="0" * 64, bytes=1)},
    )
    assert retrained.name == manifest.name and retrained.version == manifest.version
    assert retrained.model_id != manifest.model_id
    with_adapter = dataclasses.replace(
        manifest,
        adapter="a.json",
        files=manifest.files | {"a.json": FileEntry(sha256="1" * 64, bytes=1)},
    )
    assert with_adapter.model_id == manifest.model_id
    upload = rec.federated_update(HISTORY, clip_norm=0.5, noise_multiplier=1.0, seed=0)
    verdict = check_update(upload, _rules(rec, models={retrained.model_id}))
    assert verdict.reason == "other_model" and "model" in verdict.detail


@pytest.mark.parametrize("models", ["ab12", set(), {""}, {3}, 0])
def test_rules_need_a_set_of_model_ids(rec: Recommender, models: object) -> None:
    with pytest.raises(ConfigError, match="models must"):
        _rules(rec, models=models)


def test_a_bundle_refuses_a_shared_adapter_published_for_another_model(
    tiny: Path, rec: Recommender, tmp_path: Path
) -> None:
    """Files of one publish with the adapter of another: the bundle does not open."""
    layout = rec.manifest.semantic_ids
    bias = np.zeros((layout.num_levels, layout.codebook_size), np.float32)
    adapter = Adapter(bundle=rec.manifest.name, bias=bias, kind="shared", version=1)
    out = write_bundle_version(tiny, adapter, tmp_path / "v1")
    manifest = json.loads((out / "manifest.json").read_text())
    path = out / manifest["adapter"]
    path.write_text(json.dumps(json.loads(path.read_text()) | {"model": "0" * 64}))
    manifest["files"][manifest["adapter"]] = {
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "bytes": path.stat().st_size,
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="another model|published for model .*fetch"):
        Recommender.from_bundle(out)


def test_a_published_version_can_be_signed(tiny: Path, rec: Recommender, tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    from pocketrec._errors import SignatureError
    from pocketrec.export.sign import generate_key_pair, sign_bundle

    private, public, kid = generate_key_pair(tmp_path / "keys")
    signed_parent = tmp_path / "parent"
    shutil.copytree(tiny, signed_parent)
    sign_bundle(signed_parent, private)
    layout = rec.manifest.semantic_ids
    adapter = Adapter(
        bundle=rec.manifest.name,
        bias=np.full((layout.num_levels, layout.codebook_size), 0.1, np.float32),
        kind="shared",
        version=1,
    )
    unsigned = write_bundle_version(signed_parent, adapter, tmp_path / "v1")
    with pytest.raises(SignatureError, match="is not signed"):  # the parent's does not carry
        Recommender.from_bundle(unsigned, trusted_keys=[public])
    signed = write_bundle_version(signed_parent, adapter, tmp_path / "v1s", signing_key=private)
    new = Recommender.from_bundle(signed, trusted_keys=[public])
    assert new.signed_by == kid and new.manifest.version == 1

    # A simulation with a key it cannot use fails before any round, and writes nothing.
    from pocketrec.distill.federated.simulate import simulate

    cfg = SimulationConfig(dataset="x", bundle=str(tiny), signing_key=str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError, match="no private key at"):
        simulate(cfg, tmp_path / "sim")
    assert not (tmp_path / "sim").exists()


def test_config_reports_every_problem(tiny: Path) -> None:
    with pytest.raises(ConfigError) as e:
        SimulationConfig(
            dataset="x",
            bundle=str(tiny),
            num_clients=0,
            sampling_rate=1.5,
            aggregator="median",
            central_noise=1.0,
            attack="poison",
            server_lr=0.0,
        )
    text = str(e.value)
    for fragment in ("num_clients", "sampling_rate", "central_noise", "attack", "server_lr"):
        assert fragment in text


def test_client_uploads_are_deterministic_and_malicious_ones_are_attacked(tiny: Path) -> None:
    cfg = SimulationConfig(
        dataset=str(tiny.parent / "tiny_shop"),
        bundle=str(tiny),
        num_clients=2,
        sampling_rate=0.5,
        num_eval_users=10,
        clip_norm=0.5,
        noise_multiplier=0.0,
        malicious_fraction=0.5,
        attack="flip",
        attack_scale=3.0,
    )
    zero = np.zeros((3, 8), np.float32)
    args: dict[str, Any] = {"bias": zero, "version": 0, "clip_norm": 0.5, "noise_multiplier": 0.0}
    uploads = [client_uploads(cfg, c, server_round=1, **args) for c in (0, 1)]
    assert uploads == [client_uploads(cfg, c, server_round=1, **args) for c in (0, 1)]
    assert uploads[0] != client_uploads(cfg, 0, server_round=2, **args)  # resampled each round
    assert 0 < len(uploads[0]) < 10 and 0 < len(uploads[1]) < 10  # about half of 10 users
    norms = [
        [float(np.linalg.norm(_decode(json.loads(p)["delta"], "delta"))) for p in client]
        for client in uploads
    ]
    honest, attacker = sorted(norms, key=max)
    assert max(honest) <= 0.5 + 1e-5 and max(attacker) > 0.5 * 2  # flipped and scaled by 3


def test_promote_attackers_all_push_one_code_that_fedavg_follows_and_median_does_not(
    rec: Recommender,
) -> None:
    rules = UpdateRules(
        bundle=rec.manifest.name,
        models={rec.manifest.model_id},
        version=0,
        shape=(3, 8),
        clip_norm=0.5,
        noise_multiplier=1.0,
    )
    code = promoted_code(0, 8)
    assert code == promoted_code(0, 8) and 0 <= code < 8
    honest, attacks = [], []
    for seed in range(40):
        clean = rec.federated_update(HISTORY, clip_norm=0.5, noise_multiplier=0.0, seed=seed)
        noised = rec.federated_update(HISTORY, clip_norm=0.5, noise_multiplier=1.0, seed=seed)
        honest.append(check_update(noised, rules))
        rng = np.random.default_rng(seed)
        attacks.append(
            check_update(
                attack_payload(
                    clean,
                    attack="promote",
                    scale=8.0,
                    noise_multiplier=1.0,
                    rng=rng,
                    promoted_code=code,
                ),
                rules,
            )
        )
    assert all(v.accepted for v in honest + attacks)  # the norm bound lets both through
    uploads = [v.delta for v in honest[:36] + attacks[:4]]  # 10% attackers
    clean_mean = aggregate_deltas([v.delta for v in honest[:36]], make_aggregator("fedavg"))
    pushed = {
        name: float((aggregate_deltas(uploads, make_aggregator(name)) - clean_mean)[0, code])
        for name in ("fedavg", "median")
    }
    assert pushed["fedavg"] == pytest.approx(0.1 * 8.0 * 0.5, abs=0.15)  # 4 of 40 push 4.0
    # The median moves too (noise spreads the honest values), but by a fraction of the mean.
    assert abs(pushed["median"]) < 0.4 * pushed["fedavg"]


def test_simulation_end_to_end_with_flower(tiny: Path, tmp_path: Path) -> None:
    """The real CLI runs Flower's simulation engine: 2 clients x 2 rounds on the tiny data.

    One of the two clients attacks without noise; with device noise 0 the server's norm bound
    is the clip norm itself, so every attacking upload is rejected and counted.
    """
    out = tmp_path / "sim"
    argv = [
        "federated",
        "simulate",
        str(tiny.parent / "tiny_shop"),
        "--bundle",
        str(tiny),
        "--out",
        str(out),
        "--clients",
        "2",
        "--rounds",
        "2",
        "--sample-rate",
        "1",
        "--eval-users",
        "10",
        "--clip",
        "0.5",
        "--dp-noise",
        "0",
        "--malicious-fraction",
        "0.5",
        "--aggregator",
        "median",
        "--json",
        str(tmp_path / "metrics.json"),
    ]
    assert main(argv) == 0
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record == json.loads((out / "metrics.json").read_text())
    assert record["partition"] == {
        "held_out_users": 10,
        "client_users": 20,
        "users_per_client": [10, 10],
    }
    rounds = record["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2] and [r["version"] for r in rounds] == [0, 1, 2]
    for r in rounds[1:]:
        assert r["uploads"] == 20 and r["accepted"] == 10
        assert r["rejected"] == {"norm_too_large": 10}
        assert set(r["upload_bytes"]["per_client"]) == {"0", "1"}
        assert 0 < r["upload_bytes"]["per_upload_max"] <= 16 * 1024
        assert r["epsilon"] == {"local": "inf", "central": None, "delta": 1e-5}  # no noise
        assert 0.0 <= r["valid"]["ndcg@10"] <= 1.0 and r["valid"]["num_users"] == 10
    final = record["final"]
    assert final["version"] == 2 and final["bundle"] == str(out / "bundle")
    published = Recommender.from_bundle(out / "bundle")
    assert published.manifest.version == 2 and published.adapters[0].version == 2
    assert np.abs(published.adapters[0].bias).sum() > 0
    assert published.adapters[0].model == published.manifest.model_id
    assert published.manifest.model_id == Recommender.from_bundle(tiny).manifest.model_id
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["aggregator"] == "median" and config["command"]


def test_manifests_without_version_fields_still_parse(tiny: Path) -> None:
    """`version` and `parent` are optional: bundles exported before them open as version 0."""
    from pocketrec._manifest import Manifest

    obj = json.loads((tiny / "manifest.json").read_text())
    for key in ("version", "parent"):
        obj.pop(key, None)
    old = Manifest.parse(obj)
    assert old.version == 0 and old.parent is None
    assert Manifest.parse(json.loads(json.dumps(old.to_json()))) == old
    for bad in (-1, "1", True):
        with pytest.raises(BundleError, match="version"):
            Manifest.parse(obj | {"version": bad})


def test_an_upload_without_its_declared_noise_is_rejected() -> None:
    """With enough dimensions the noise has a known norm: honest uploads land inside the band."""
    rules = UpdateRules(
        bundle="b", models={"m"}, version=0, shape=(4, 256), clip_norm=1.0, noise_multiplier=1.0
    )
    assert 20 < rules.min_norm < rules.max_norm < 40
    delta = np.random.default_rng(0).normal(size=rules.shape).astype(np.float32)

    def upload(noise: float, seed: int) -> bytes:
        payload = make_update(
            delta,
            bundle="b",
            model="m",
            base_version=0,
            clip_norm=1.0,
            noise_multiplier=noise,
            num_events=5,
            rng=np.random.default_rng(seed),
        )
        return json.dumps(json.loads(payload) | {"noise_multiplier": 1.0}).encode()

    assert all(check_update(upload(1.0, seed), rules).accepted for seed in range(200))
    assert check_update(upload(0.0, 0), rules).reason == "too_little_noise"
    assert check_update(upload(0.3, 0), rules).reason == "too_little_noise"


@pytest.mark.parametrize(
    "edits",
    [
        {"clip_norm": 10**400},  # beyond float range
        {"delta": {"dtype": "float32", "shape": [float("inf"), 8], "b64": "AA=="}},
        {"delta": {"dtype": "float32", "shape": [10**400, 8], "b64": "AA=="}},
        {"delta": {"dtype": "float32", "shape": "38", "b64": "AA=="}},
        {"delta": {"dtype": "float32", "shape": [3, 8], "b64": 12}},
    ],
    ids=["huge clip", "infinite shape", "huge shape", "string shape", "number b64"],
)
def test_hostile_uploads_are_rejected_not_raised(rec: Recommender, edits: dict) -> None:
    verdict = check_update(_payload(rec, **edits), _rules(rec))
    assert not verdict.accepted and verdict.reason in REASONS and verdict.detail


def test_a_round_survives_an_upload_python_cannot_parse(rec: Recommender) -> None:
    rules = _rules(rec)
    digits = b'{"format": "pocketrec-update/2", "base_version": ' + b"9" * 5000 + b"}"
    good = rec.federated_update(HISTORY, clip_norm=0.5, noise_multiplier=1.0, seed=1)
    new, report = aggregate_uploads(
        [("a", good), ("b", digits)],
        bias=np.zeros(rules.shape, np.float32),
        rules=rules,
        aggregator=make_aggregator("fedavg"),
    )
    assert new is not None and report["accepted"] == 1 and report["rejected"] == {"malformed": 1}


def test_honest_uploads_with_a_large_clip_and_no_noise_are_accepted() -> None:
    rules = UpdateRules(
        bundle="b", models={"m"}, version=0, shape=(4, 256), clip_norm=1000.0, noise_multiplier=0
    )
    rng = np.random.default_rng(0)
    for _ in range(50):
        payload = make_update(
            rng.normal(size=(4, 256)) * 1e4,  # far over the clip: clipped to norm 1000
            bundle="b",
            model="m",
            base_version=0,
            clip_norm=1000.0,
            noise_multiplier=0.0,
            num_events=5,
            rng=rng,
        )
        assert check_update(payload, rules).accepted


def test_a_trimmed_mean_of_few_uploads_still_trims() -> None:
    from pocketrec.distill.federated.aggregate import trimmed_per_end

    honest = [np.full((2, 3), v, np.float32) for v in (1.0, 1.1, 0.9)]
    attacker = np.full((2, 3), 100.0, np.float32)
    trimmed = make_aggregator("trimmed")  # beta 0.2: Flower alone cuts int(0.8) = 0 of 4
    assert trimmed_per_end(trimmed, 4) == 1 and trimmed_per_end(trimmed, 2) == 0
    mean = aggregate_deltas([*honest, attacker], trimmed)
    np.testing.assert_allclose(mean, 1.05, rtol=1e-5)  # 1.0 and 1.1 kept: the attacker cut
    assert trimmed_per_end(make_aggregator("trimmed", trim_fraction=0.0), 4) == 0


def test_central_noise_is_dp_fedavg_every_round_and_not_from_a_known_seed(
    rec: Recommender,
) -> None:
    from pocketrec.distill.federated.aggregate import AdapterStrategy

    rules = _rules(rec, noise_multiplier=0.0)
    zero = np.zeros(rules.shape, np.float32)
    good = [
        rec.federated_update(HISTORY, clip_norm=0.5, noise_multiplier=0.0, seed=s) for s in (1, 2)
    ]
    fedavg = make_aggregator("fedavg")
    with pytest.raises(ConfigError, match="expected_uploads"):
        aggregate_uploads([], bias=zero, rules=rules, aggregator=fedavg, central_noise=1.0)
    with pytest.raises(ConfigError, match="fedavg"):
        aggregate_uploads(
            [],
            bias=zero,
            rules=rules,
            aggregator=make_aggregator("median"),
            central_noise=1.0,
            expected_uploads=10,
        )
    # No upload at all still releases a noised adapter: whether a round publishes is no signal.
    empty, report = aggregate_uploads(
        [], bias=zero, rules=rules, aggregator=fedavg, central_noise=1.0, expected_uploads=10
    )
    assert empty is not None and report["published"] and np.abs(empty).sum() > 0
    # (sum + noise) / a fixed count, whatever number arrived
    rng = np.random.default_rng(7)
    noise = np.random.default_rng(7).normal(0.0, 0.5, size=rules.shape)
    new, _ = aggregate_uploads(
        [("a", g) for g in good],
        bias=zero,
        rules=rules,
        aggregator=fedavg,
        central_noise=1.0,
        expected_uploads=10,
        rng=rng,
    )
    total = sum(_decode(json.loads(g)["delta"], "delta").astype(np.float64) for g in good)
    np.testing.assert_allclose(new, (total + noise) / 10, rtol=1e-5, atol=1e-7)

    def strategy(seed: int | None) -> AdapterStrategy:
        return AdapterStrategy(
            rules=rules,
            aggregator=fedavg,
            num_clients=1,
            central_noise=1.0,
            expected_uploads=10,
            noise_seed=seed,
        )

    draws = []
    for seed in (None, None, 3, 3):
        s = strategy(seed)
        draws.append(np.random.default_rng(s._noise.spawn(1)[0]).normal(size=4))
    assert not np.allclose(draws[0], draws[1])  # from the OS: nobody can subtract it
    np.testing.assert_array_equal(draws[2], draws[3])  # a reproduction asked for a seed


def test_publishing_into_a_folder_that_holds_the_source_is_refused(
    tiny: Path, rec: Recommender, tmp_path: Path
) -> None:
    source = tmp_path / "fed" / "v0"
    shutil.copytree(tiny, source)
    layout = rec.manifest.semantic_ids
    adapter = Adapter(
        bundle=rec.manifest.name,
        bias=np.zeros((layout.num_levels, layout.codebook_size), np.float32),
        kind="shared",
        version=rec.manifest.version + 1,
    )
    with pytest.raises(BundleError, match="a folder that holds it"):
        write_bundle_version(source, adapter, tmp_path / "fed")
    assert (source / "manifest.json").exists()
