"""The real datasets load with their published counts (needs POCKETREC_DATA)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from pocketrec.distill.data import list_datasets, load_dataset
from pocketrec.distill.data._formats import group_sequences, read_movielens_ratings

pytestmark = pytest.mark.data


@pytest.mark.parametrize(
    ("name", "users", "items", "interactions"),
    [
        ("beauty", 22_363, 12_101, 198_502),
        ("sports", 35_598, 18_357, 296_337),
        ("ml-1m", 6_040, 3_416, 999_611),
    ],
)
def test_published_counts(
    data_root: Path, name: str, users: int, items: int, interactions: int
) -> None:
    stats = load_dataset(name, root=data_root).stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (users, items, interactions)


def test_item_text_shapes(data_root: Path) -> None:
    beauty = load_dataset("beauty", root=data_root)
    assert beauty.item_text is not None
    assert sum(not t.is_empty() for t in beauty.item_text) == 12_101
    assert sum(bool(t.title) for t in beauty.item_text) == 12_094  # 7 empty titles in the source
    first = beauty.item_text[0]
    assert first.brand == "OPI" and first.categories[:2] == ("Beauty", "Makeup")
    ml = load_dataset("ml-1m", root=data_root)
    assert ml.item_text is not None and all(t.title for t in ml.item_text)
    assert load_dataset("sports", root=data_root).item_text is None
    assert (beauty.default_history_len, ml.default_history_len) == (20, 200)


def test_other_amazon_categories_are_discovered(data_root: Path, tmp_path: Path) -> None:
    # Any amazon2014_<category> folder in the same layout loads, with no list to update.
    folder = tmp_path / "amazon2014_toys_and_games"
    folder.mkdir()
    (folder / "user_sequence.txt.gz").write_bytes(gzip.compress(b"U1 A B C\nU2 C D\n"))
    assert "amazon2014_toys_and_games" in list_datasets(tmp_path)
    assert load_dataset("amazon2014_toys_and_games", root=tmp_path).num_users == 2
    assert {"amazon2014_beauty", "amazon2014_sports", "movielens_1m"} <= set(
        list_datasets(data_root)
    )


def test_official_ratings_parser_reproduces_staged_sequences(data_root: Path) -> None:
    """The partial official ratings.dat, ordered by the loader, gives the staged sequences."""
    partial = data_root / "movielens_1m" / "partial" / "ratings_PARTIAL_users1-2999.dat.gz"
    if not partial.exists():
        pytest.skip("partial ratings file not staged")
    staged = load_dataset("ml-1m", root=data_root)
    kept = set(staged.item_ids)
    users, sequences, _ = group_sequences(read_movielens_ratings(partial), tiebreak="item")
    by_user = dict(zip(staged.user_ids, range(staged.num_users), strict=True))
    checked = 0
    for user, seq in zip(users, sequences, strict=True):
        expected = staged.item_ids[staged.sequence(by_user[user])].tolist()
        assert [m for m in seq if m in kept] == expected, f"user {user}"
        checked += 1
    assert checked == 2_999


def test_sequences_are_int32_csr(data_root: Path) -> None:
    ds = load_dataset("beauty", root=data_root)
    assert ds.items.dtype == np.int32 and ds.offsets[-1] == ds.num_interactions
    assert ds.lengths().min() == 5
