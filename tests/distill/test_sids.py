"""Semantic IDs: quantizers, the collision level, artifacts, new items and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pocketrec._errors import ConfigError
from pocketrec.distill.data import ItemText, build_dataset
from pocketrec.distill.errors import DataError
from pocketrec.distill.protocol import leave_one_out
from pocketrec.distill.sids.assign import assign_new_items
from pocketrec.distill.sids.embed import cf_embeddings, check_embeddings, item_texts
from pocketrec.distill.sids.quantize import (
    RQVAEConfig,
    deconflict_last_level,
    kmeans,
    rq_kmeans,
    train_rqvae,
)
from pocketrec.distill.sids.stage import SIDConfig, build_semantic_ids, load_semantic_ids
from pocketrec.distill.sids.vocab import code_stats, disambiguate, token_id

COLORS = ["red", "blue", "green", "black", "white", "pink"]
KINDS = ["lipstick", "shampoo", "nail polish", "face cream", "eye shadow", "perfume", "brush"]


def _catalogue(num_users: int = 60, seed: int = 0):
    """A small shop: every (kind, color) is an item; two items share identical text."""
    rng = np.random.default_rng(seed)
    text = {}
    for k, kind in enumerate(KINDS):
        for c, color in enumerate(COLORS):
            text[f"i{k}_{c}"] = ItemText.from_fields(
                title=f"{color} {kind}", brand=f"Brand{k % 3}", categories=["Beauty", kind]
            )
    text["dup"] = text["i0_0"]  # identical text, different item
    ids = list(text)
    sequences = [[ids[j] for j in rng.choice(len(ids), 6, replace=False)] for _ in range(num_users)]
    sequences[0] = ids  # every item appears at least once
    return build_dataset("shop", [f"u{u}" for u in range(num_users)], sequences, item_text=text)


def test_capacity_is_checked_up_front_with_the_minimum() -> None:
    cfg = SIDConfig(num_levels=2, codebook_size=4)
    with pytest.raises(ConfigError) as e:
        cfg.check_capacity(20)
    assert "--codebook-size 5" in str(e.value) and "--levels 3" in str(e.value)
    cfg.check_capacity(16)


def test_config_validation_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as e:
        SIDConfig(source="image", method="vq", num_levels=0)
    assert all(w in str(e.value) for w in ("source", "method", "num_levels"))


def test_nan_embeddings_are_rejected() -> None:
    x = np.ones((5, 3), np.float32)
    x[3, 1] = np.nan
    x[4, 0] = np.inf
    with pytest.raises(DataError, match=r"2 rows contain NaN or inf \(first: \[3, 4\]\)"):
        check_embeddings(x, "test")


def test_items_without_text_are_listed() -> None:
    ds = build_dataset("t", ["u"], [["a", "b", "c"]], item_text={"a": ItemText(title="A")})
    with pytest.raises(DataError, match=r"2 items .* have no text \(b, c\).*--source both"):
        item_texts(ds)
    no_text = build_dataset("t", ["u"], [["a"]])
    with pytest.raises(DataError, match="--source cf"):
        item_texts(no_text)


def test_disambiguate_numbers_shared_codes() -> None:
    codes = np.array([[1, 2], [1, 2], [0, 0], [1, 2]])
    sids = disambiguate(codes, codebook_size=4)
    assert sids[:, -1].tolist() == [0, 1, 0, 2]
    assert len({tuple(r) for r in sids.tolist()}) == 4
    with pytest.raises(DataError, match="collapsed"):
        disambiguate(np.zeros((5, 2), np.int64), codebook_size=4)


def test_kmeans_finds_separated_clusters() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 8)) * 10
    x = torch.from_numpy((centers.repeat(25, 0) + rng.normal(size=(100, 8))).astype(np.float32))
    _, assign = kmeans(x, 4, seed=0)
    truth = np.arange(4).repeat(25)
    for cluster in range(4):  # every found cluster is one true cluster
        assert len(set(truth[assign.numpy() == cluster])) == 1


def test_balanced_kmeans_caps_cluster_sizes() -> None:
    rng = np.random.default_rng(1)
    x = torch.from_numpy(np.concatenate([rng.normal(size=(90, 4)), rng.normal(5, 1, (10, 4))]))
    _, assign = kmeans(x.float(), 5, seed=0, balanced=True)
    assert torch.bincount(assign, minlength=5).max() <= 20


def test_deconflict_separates_near_duplicates() -> None:
    codebook = torch.eye(4)
    residual = torch.tensor(
        [[1.0, 0, 0, 0], [0.99, 0.01, 0, 0], [0.98, 0, 0.02, 0], [0, 1.0, 0, 0]]
    )
    codes = torch.tensor([[0, 0], [0, 0], [0, 0], [1, 1]])
    out = deconflict_last_level(codes, residual, codebook)
    assert out[0, 1] == 0  # the closest keeps its code
    assert len(set(out[:3, 1].tolist())) == 3  # the group's three items now differ
    assert out[3].tolist() == [1, 1]  # other groups are untouched


def test_rq_kmeans_is_deterministic_and_unique() -> None:
    x = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    a, books = rq_kmeans(x, 2, 32, seed=3)
    b, _ = rq_kmeans(x, 2, 32, seed=3)
    assert np.array_equal(a, b) and books.shape == (2, 32, 16)
    stats = code_stats(a, 32)
    assert stats["collision_rate"] == 0.0
    assert all(level["utilization"] >= 0.9 for level in stats["levels"])


def test_rqvae_uses_its_codebooks() -> None:
    x = np.random.default_rng(0).normal(size=(400, 24)).astype(np.float32)
    cfg = RQVAEConfig(
        num_levels=2, codebook_size=16, latent_dim=8, hidden=(32,), epochs=30, batch_size=128
    )
    _, codes, info = train_rqvae(x, cfg, progress=False)
    stats = code_stats(codes, 16)
    assert codes.shape == (400, 2) and info["reconstruction_mse"] < 1.0
    assert all(level["utilization"] >= 0.9 for level in stats["levels"])


def test_cf_embeddings_are_finite_unit_vectors() -> None:
    ds = _catalogue()
    x = cf_embeddings(leave_one_out(ds), dim=8)
    assert x.shape == (ds.num_items, 8) and np.isfinite(x).all()
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sids")
    cfg = SIDConfig(dataset="shop", num_levels=2, codebook_size=8, device="cpu")
    return build_semantic_ids(cfg, out, dataset=_catalogue())


def test_artifacts_and_unique_ids(built: Path) -> None:
    sids, item_ids, config = load_semantic_ids(built)
    assert sids.shape == (43, 3) and len(item_ids) == 43
    assert len({tuple(r) for r in sids.tolist()}) == 43  # identical texts still differ
    assert config["method"] == "rqkmeans"
    stats = json.loads((built / "stats.json").read_text())
    for key in (
        "collision_rate",
        "levels",
        "reconstruction_mse",
        "wall_time_s",
        "leaf_category_agreement",
    ):
        assert key in stats
    # Items sharing a level-1 code share their kind more often than chance.
    agreement = stats["leaf_category_agreement"]
    assert agreement["same_level1_code"] > 2 * agreement["random_assignment"]


def test_tokenizer_maps_semantic_id_tokens(built: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(built / "tokenizer.json"))
    assert tok.get_vocab_size() == 4 + 3 * 8
    ids = tok.encode("[BOS] <a_3><b_7> <c_1> [EOS]").ids
    assert ids == [1, token_id(0, 3, 8), token_id(1, 7, 8), token_id(2, 1, 8), 2]
    assert tok.encode("<z_1>").ids == [3]  # unknown -> [UNK]


def test_new_items_keep_old_ids_and_get_unique_valid_ones(built: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    before, old_ids, _ = load_semantic_ids(copy)
    new = [
        ("n1", ItemText(title="red lipstick deluxe")),
        ("n2", ItemText(title="blue brush")),
        ("n3", ItemText(title="red lipstick deluxe")),
    ]
    assigned = assign_new_items(copy, new)
    after, ids, _ = load_semantic_ids(copy)
    assert np.array_equal(after[: len(before)], before) and ids[: len(old_ids)] == old_ids
    rows = {tuple(r) for r in after.tolist()}
    assert len(rows) == len(after)  # still unique
    assert all(0 <= c < 8 for _, sid in assigned for c in sid)
    assert assigned[0][1][:2] == assigned[2][1][:2] and assigned[0][1] != assigned[2][1]
    # Deterministic: the same additions to a fresh copy give the same IDs; re-adding is a no-op.
    again = tmp_path / "again"
    shutil.copytree(built, again)
    assert assign_new_items(again, new) == assigned
    assert assign_new_items(again, new) == assigned
    assert len(load_semantic_ids(again)[1]) == len(ids)
    log = (copy / "new_items.jsonl").read_text().splitlines()
    assert [json.loads(line)["item"] for line in log] == ["n1", "n2", "n3"]


def test_cf_ids_refuse_new_items_by_text(tmp_path: Path) -> None:
    cfg = SIDConfig(
        dataset="shop", source="cf", num_levels=2, codebook_size=8, cf_dim=8, device="cpu"
    )
    out = build_semantic_ids(cfg, tmp_path / "cf", dataset=_catalogue())
    with pytest.raises(DataError, match="collaborative"):
        assign_new_items(out, [("n1", ItemText(title="x"))])


def test_cf_ids_learn_only_from_the_split_they_are_given(tmp_path: Path) -> None:
    ds = _catalogue()
    cfg = SIDConfig(
        dataset="shop", source="cf", num_levels=2, codebook_size=8, cf_dim=8, device="cpu"
    )
    split = leave_one_out(ds)
    kept = split.holding_out_users(split.device_users(0.5))
    plain = build_semantic_ids(cfg, tmp_path / "plain", dataset=ds)
    held = build_semantic_ids(cfg, tmp_path / "held", dataset=ds, split=kept)
    expected = check_embeddings(cf_embeddings(kept, 8), "cf")
    assert np.allclose(np.load(held / "embeddings.npy"), expected, atol=1e-6)
    assert not np.allclose(np.load(plain / "embeddings.npy"), expected, atol=1e-3)
    recorded = json.loads((held / "stats.json").read_text())["embedding"]
    assert recorded["cf_training_interactions"] == kept.train_lengths().sum()
    assert recorded["cf_training_interactions"] < split.train_lengths().sum()


def test_cf_ids_from_a_baseline_run_use_its_best_seed(tmp_path: Path) -> None:
    ds = _catalogue()
    run = tmp_path / "baseline"
    rng = np.random.default_rng(0)
    for seed, score in ((0, 0.01), (1, 0.02)):  # seed 1 is better on validation
        folder = run / f"seed_{seed}"
        folder.mkdir(parents=True)
        np.save(folder / "item_embeddings.npy", rng.normal(size=(ds.num_items, 6)) * (seed + 1))
        (folder / "metrics.json").write_text(json.dumps({"valid": {"ndcg@10": score}}))
    cfg = SIDConfig(
        dataset="shop",
        source="cf",
        num_levels=2,
        codebook_size=8,
        cf_embeddings=str(run),
        device="cpu",
    )
    out = build_semantic_ids(cfg, tmp_path / "sids", dataset=ds)
    used = np.load(out / "embeddings.npy")
    best = np.load(run / "seed_1" / "item_embeddings.npy")
    assert np.allclose(used, best / np.linalg.norm(best, axis=1, keepdims=True), atol=1e-6)
    sids, _, _ = load_semantic_ids(out)
    assert len({tuple(r) for r in sids.tolist()}) == ds.num_items


def test_cf_embeddings_of_another_catalogue_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "other.npy", np.ones((3, 4), np.float32))
    cfg = SIDConfig(
        dataset="shop",
        source="cf",
        num_levels=2,
        codebook_size=8,
        cf_embeddings=str(tmp_path / "other.npy"),
        device="cpu",
    )
    with pytest.raises(DataError, match="another dataset"):
        build_semantic_ids(cfg, tmp_path / "sids", dataset=_catalogue())
