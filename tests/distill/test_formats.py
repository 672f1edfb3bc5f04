"""Raw-format parsers on small files the tests write, and the loaders' bad-input behaviour."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from pocketrec.distill.data import ItemText, load_dataset
from pocketrec.distill.errors import DatasetNotFoundError, MalformedDataError
from tests.conftest import write_text


def test_movielens_official_files(tmp_path: Path) -> None:
    folder = tmp_path / "ml"
    lines = []
    ratings = {
        1: [10, 20, 30, 40, 50, 60],
        2: [10, 20, 40, 50, 60],
        3: [10, 20, 30, 40],  # loses movie 30, then has < 5 ratings: dropped
        4: [10, 20, 40, 50, 60],
        5: [60, 50, 40, 20, 10],  # written newest first
        6: [60, 50, 40, 20, 10],  # all at one second: ordered by movie id
    }
    for user, movies in ratings.items():
        for t, movie in enumerate(movies):
            when = {5: 1000 - t, 6: 500}.get(user, 1000 + t)
            lines.append(f"{user}::{movie}::4::{when}")
    lines.append("1::5::3::999")  # movie 5 has one rating: dropped
    write_text(folder / "ratings.dat", "\n".join(lines) + "\n")
    movies = "\n".join(
        f"{m}::Movie {m} (199{m % 10})::Drama|Comedy" for m in (5, 10, 20, 30, 40, 50, 60)
    )
    (folder / "movies.dat").write_bytes((movies + "\n").encode("latin-1"))
    ds = load_dataset(str(folder))
    assert list(ds.user_ids) == ["1", "2", "4", "5", "6"]
    assert set(ds.item_ids) == {"10", "20", "40", "50", "60"}
    for user in range(ds.num_users):
        assert [ds.item_ids[i] for i in ds.sequence(user)] == ["10", "20", "40", "50", "60"]
    assert ds.timestamps is not None
    text = ds.item_text[0]
    assert text.title == "Movie 10 (1990)" and text.categories == ("Drama", "Comedy")
    assert text.attributes == {"year": "1990"}
    assert ds.default_history_len == 200


def test_movielens_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "ml"
    write_text(folder / "ratings.dat", "1::10::4::100\n1::oops::4\n")
    write_text(folder / "movies.dat", "10::A (1999)::Drama\n")
    with pytest.raises(MalformedDataError) as e:
        load_dataset(str(folder))
    assert e.value.line == 2 and e.value.path.name == "ratings.dat"
    assert "ratings.dat:2" in str(e.value)


def test_amazon_official_reviews_and_meta(tmp_path: Path) -> None:
    folder = tmp_path / "amazon2014_toolbox"
    reviews = [
        {"reviewerID": "U1", "asin": "B2", "unixReviewTime": 20},
        {"reviewerID": "U1", "asin": "B1", "unixReviewTime": 10},
        {"reviewerID": "U2", "asin": "B1", "unixReviewTime": 5},
        {"reviewerID": "U1", "asin": "B3", "unixReviewTime": 30},
    ]
    write_text(
        folder / "reviews_Toolbox_5.json.gz", "\n".join(json.dumps(r) for r in reviews), gz=True
    )
    # The 2014 meta files are Python literals, not JSON (single quotes).
    meta = [
        "{'asin': 'B1', 'title': 'Hammer &amp; Nails', 'brand': 'Acme', 'price': 9.5, "
        "'salesRank': {'Tools': 12}, 'categories': [['Tools', 'Hand Tools'], ['Other']]}",
        "{'asin': 'B2', 'title': 'Saw', 'categories': [['Tools']]}",
        "{'asin': 'ZZ', 'title': 'not in the reviews'}",
    ]
    write_text(folder / "meta_Toolbox.json.gz", "\n".join(meta), gz=True)
    ds = load_dataset(str(folder))
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (2, 3, 4)
    assert [ds.item_ids[i] for i in ds.sequence(0)] == ["B1", "B2", "B3"]  # sorted by time
    by_id = dict(zip(ds.item_ids, ds.item_text, strict=True))
    assert by_id["B1"] == ItemText(
        title="Hammer & Nails",
        brand="Acme",
        categories=("Tools", "Hand Tools"),
        price=9.5,
        attributes={"sales_rank": "Tools 12"},
    )
    assert by_id["B3"].is_empty()  # no meta line: empty text, still an item


def test_amazon_reviews_malformed_json(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    write_text(
        folder / "reviews_X_5.json",
        '{"reviewerID": "U", "asin": "B", "unixReviewTime": 1}\n{broken\n',
    )
    with pytest.raises(MalformedDataError, match=r"reviews_X_5.json:2"):
        load_dataset(str(folder))


def test_staged_user_sequences_and_items(tmp_path: Path) -> None:
    folder = tmp_path / "amazon2014_mini"
    write_text(folder / "user_sequence.txt.gz", "U1 A B C\nU2 B C D E\nU3\n", gz=True)
    items = [
        {
            "asin": "A",
            "title": "Alpha",
            "brand": "X",
            "categories": "'Cat', 'Sub'",
            "price": "3.5",
            "sales_rank": "10.0",
        }
    ]
    write_text(folder / "items.jsonl.gz", "\n".join(json.dumps(i) for i in items), gz=True)
    ds = load_dataset(str(folder))
    assert ds.num_users == 2 and ds.source["dropped_empty_users"] == 1
    assert list(ds.item_ids) == ["A", "B", "C", "D", "E"]
    assert ds.item_text[0].categories == ("Cat", "Sub") and ds.item_text[0].price == 3.5
    assert ds.item_text[1].is_empty()
    assert "Sales rank" not in ds.item_text[0].render()


def test_duplicate_user_line_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    write_text(folder / "user_sequence.txt", "U1 A B\nU2 B\nU1 C\n")
    with pytest.raises(MalformedDataError, match=r"user_sequence.txt:3: user 'U1'"):
        load_dataset(str(folder))


def test_truncated_gzip_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    data = gzip.compress(("U1 A B C\n" * 1000).encode())
    (folder / "user_sequence.txt.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(MalformedDataError, match="cannot read"):
        load_dataset(str(folder))


def test_generic_csv_with_timestamps(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    write_text(
        folder / "interactions.csv",
        "user_id,item_id,timestamp\nu1,i2,20\nu1,i1,10\nu2,i3,5\nu2,i1,6\n",
    )
    write_text(
        folder / "items.jsonl",
        '{"item": "i1", "title": "One", "categories": ["A", "B"], "color": "red"}\n'
        '{"item": "i9", "title": "Never bought"}\n',
    )
    ds = load_dataset(str(folder))
    assert ds.name == "shop"
    assert [ds.item_ids[i] for i in ds.sequence(0)] == ["i1", "i2"]
    assert ds.timestamps is not None and ds.timestamps.tolist() == [10, 20, 5, 6]
    one = dict(zip(ds.item_ids, ds.item_text, strict=True))["i1"]
    assert one.title == "One" and one.attributes == {"color": "red"}
    assert ds.source["items_without_interactions"] == 1


def test_generic_jsonl_without_timestamps_keeps_file_order(tmp_path: Path) -> None:
    folder = tmp_path / "j"
    rows = [{"user": "a", "item": 3}, {"user": "b", "item": 1}, {"user": "a", "item": 1}]
    write_text(folder / "interactions.jsonl", "\n".join(json.dumps(r) for r in rows))
    ds = load_dataset(str(folder))
    assert ds.timestamps is None and ds.item_text is None
    assert [ds.item_ids[i] for i in ds.sequence(0)] == ["3", "1"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("user,item,timestamp\nu1,i1,10\nu1,i2,\n", "give all or none"),
        ("user,item,timestamp\nu1,i1,yesterday\n", "not a finite number"),
        ("user,item,timestamp\nu1,i1,inf\n", "not a finite number"),
        ("customer,product\nu1,i1\n", "needs a user and an item column"),
        ("user,item\nu1,\n", "no user or no item"),
    ],
)
def test_generic_csv_errors(tmp_path: Path, content: str, problem: str) -> None:
    folder = tmp_path / "bad"
    write_text(folder / "interactions.csv", content)
    with pytest.raises(MalformedDataError, match=problem):
        load_dataset(str(folder))


def test_generic_csv_from_a_spreadsheet_keeps_its_timestamps_and_their_fractions(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "excel"
    folder.mkdir()
    text = "timestamp,user,item\n20,u1,i2\n10,u1,i1\n10.7,u2,late\n10.2,u2,early\n"
    (folder / "interactions.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())  # UTF-8 BOM
    ds = load_dataset(str(folder))
    assert [ds.item_ids[i] for i in ds.sequence(0)] == ["i1", "i2"]  # by time, not file order
    assert [ds.item_ids[i] for i in ds.sequence(1)] == ["early", "late"]


def test_unreadable_csv_and_corrupt_gzip_are_malformed_data_errors(tmp_path: Path) -> None:
    folder = tmp_path / "cp1252"
    folder.mkdir()
    (folder / "interactions.csv").write_bytes("user,item\nu1,caf\u00e9\n".encode("cp1252"))
    with pytest.raises(MalformedDataError, match="not UTF-8 text .*save the CSV as UTF-8"):
        load_dataset(str(folder))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    data = bytearray(gzip.compress(("U1 A B C\n" * 1000).encode()))
    data[20:40] = b"\xff" * 20  # flipped bytes, not a short file
    (corrupt / "user_sequence.txt.gz").write_bytes(bytes(data))
    with pytest.raises(MalformedDataError, match="delete it and download again"):
        load_dataset(str(corrupt))


def test_movielens_ids_must_be_ascii_digits(tmp_path: Path) -> None:
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "ratings.dat").write_bytes(b"1::10::4::100\n1::1\xb2::4::101\n")  # superscript 2
    write_text(folder / "movies.dat", "10::A (1999)::Drama\n")
    with pytest.raises(MalformedDataError, match="ratings.dat:2"):
        load_dataset(str(folder))


def test_other_interactions_files_are_not_a_dataset(tmp_path: Path) -> None:
    folder = tmp_path / "zipped"
    write_text(folder / "interactions.csv.zip", "not read")
    with pytest.raises(DatasetNotFoundError, match="holds no dataset"):
        load_dataset(str(folder))


def test_missing_dataset_names_path_env_and_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("beauty", root=tmp_path)
    message = str(e.value)
    assert str(tmp_path / "amazon2014_beauty") in message
    assert "POCKETREC_DATA" in message
    assert "pocketrec data download beauty" in message


def test_folder_without_known_layout(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="holds no dataset"):
        load_dataset(str(tmp_path / "empty"))


def test_item_text_normalisation() -> None:
    text = ItemText.from_fields(title="  A &amp; B ", categories="x|y", price="$1,299.00")
    assert text.title == "A & B" and text.categories == ("x", "y") and text.price == 1299.0
    assert ItemText.from_fields(price="n/a").price is None
    assert ItemText.from_fields(price="-3").price is None
    assert ItemText.from_fields(title="T", brand="B", categories=["c"], price=2).render() == (
        "Title: T; Brand: B; Categories: c; Price: 2.00"
    )
