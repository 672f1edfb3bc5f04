"""Parsers for the file formats pocketrec reads: staged, official raw, and generic.

Every parser reports a malformed line with its file and 1-based line number
(`MalformedDataError`), so a user can open the file at the bad line.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import math
import re
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pocketrec.distill.data._dataset import ItemText
from pocketrec.distill.errors import MalformedDataError

__all__ = [
    "Interactions",
    "filter_min_counts",
    "group_sequences",
    "read_amazon_meta",
    "read_amazon_reviews",
    "read_generic_interactions",
    "read_generic_items",
    "read_movielens_movies",
    "read_movielens_ratings",
    "read_staged_amazon_items",
    "read_user_sequences",
]


def open_text(path: Path, encoding: str = "utf-8") -> io.TextIOBase:
    """Open a text file, transparently gunzipping `.gz` files."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def _lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line end), skipping blank lines."""
    try:
        with open_text(path, encoding) as f:
            for number, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield number, line
    except UnicodeDecodeError as e:
        raise MalformedDataError(path, 0, f"not {encoding} text ({e.reason})") from e
    except (OSError, EOFError, zlib.error) as e:  # truncated or corrupt gzip
        raise MalformedDataError(
            path,
            0,
            f"cannot read the file ({e}); if it was downloaded, delete it and download again",
        ) from e


class Interactions:
    """Columns of (user, item, timestamp) rows in file order; timestamps may be absent."""

    def __init__(
        self, users: list[str], items: list[str], timestamps: Sequence[float] | None
    ) -> None:
        self.users = users
        self.items = items
        self.timestamps = timestamps

    def __len__(self) -> int:
        return len(self.users)


# --- user-sequence files (staged Amazon, staged MovieLens) -----------------------------------


def read_user_sequences(path: Path) -> tuple[list[str], list[list[str]]]:
    """Read `user item1 item2 ...` lines (items oldest first).

    A line with a user and no items is kept as an empty sequence (the dataset builder drops it
    and counts it). A user that appears on two lines is an error: the file would be ambiguous.
    """
    users: list[str] = []
    sequences: list[list[str]] = []
    seen: set[str] = set()
    for number, line in _lines(path):
        fields = line.split()
        user = fields[0]
        if user in seen:
            raise MalformedDataError(path, number, f"user {user!r} appears on an earlier line")
        seen.add(user)
        users.append(user)
        sequences.append(fields[1:])
    return users, sequences


# --- MovieLens (GroupLens ml-1m) --------------------------------------------------------------

_YEAR = re.compile(r"\((\d{4})\)\s*$")


def read_movielens_movies(path: Path) -> dict[str, ItemText]:
    """Read GroupLens `movies.dat` (`MovieID::Title (Year)::Genre|Genre`, ISO-8859-1)."""
    movies: dict[str, ItemText] = {}
    for number, line in _lines(path, encoding="latin-1"):
        fields = line.split("::")
        if len(fields) != 3 or not fields[0].isdigit():
            raise MalformedDataError(
                path, number, f"expected 'MovieID::Title::Genres', got {line[:80]!r}"
            )
        movie_id, title, genres = fields
        year = _YEAR.search(title)
        movies[movie_id] = ItemText.from_fields(
            title=title,
            categories=genres.split("|") if genres else [],
            attributes={"year": year.group(1)} if year else None,
        )
    return movies


_INTEGER = re.compile(r"-?[0-9]+")


def read_movielens_ratings(path: Path) -> Interactions:
    """Read GroupLens `ratings.dat` (`UserID::MovieID::Rating::Timestamp`)."""
    users: list[str] = []
    items: list[str] = []
    times: list[int] = []
    for number, line in _lines(path, encoding="latin-1"):
        fields = [f.strip() for f in line.split("::")]
        # ASCII digits only: str.isdigit() also passes latin-1 superscripts, which int() refuses
        if len(fields) != 4 or not all(_INTEGER.fullmatch(f) for f in fields):
            raise MalformedDataError(
                path, number, f"expected 'UserID::MovieID::Rating::Timestamp', got {line[:80]!r}"
            )
        users.append(fields[0])
        items.append(fields[1])
        times.append(int(fields[3]))
    return Interactions(users, items, times)


# --- Amazon 2014 (McAuley lab) ----------------------------------------------------------------


def read_amazon_reviews(path: Path) -> Interactions:
    """Read `reviews_<Category>_5.json.gz`: one JSON review a line (reviewerID, asin, time)."""
    users: list[str] = []
    items: list[str] = []
    times: list[int] = []
    for number, line in _lines(path):
        try:
            review = json.loads(line)
            users.append(str(review["reviewerID"]))
            items.append(str(review["asin"]))
            times.append(int(review["unixReviewTime"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise MalformedDataError(
                path, number, f"expected a JSON review with reviewerID, asin, unixReviewTime ({e})"
            ) from e
    return Interactions(users, items, times)


_ASIN = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")


def read_amazon_meta(path: Path, wanted: set[str] | None = None) -> dict[str, ItemText]:
    """Read `meta_<Category>.json.gz`.

    The 2014 release writes each line as a Python dict literal, not JSON; it is parsed with
    `ast.literal_eval`, which evaluates literals only (never code). Lines for items outside
    `wanted` are skipped before parsing, which makes reading a large category fast.
    """
    out: dict[str, ItemText] = {}
    for number, line in _lines(path):
        if wanted is not None:
            match = _ASIN.search(line)
            if match is None or match.group(1) not in wanted:
                continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            try:
                record = ast.literal_eval(line)
            except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
                raise MalformedDataError(path, number, f"not a JSON or Python dict: {e}") from e
        if not isinstance(record, dict) or "asin" not in record:
            raise MalformedDataError(path, number, "expected a dict with an 'asin' key")
        categories = record.get("categories") or [[]]
        rank = record.get("salesRank")
        rank_text = (
            ", ".join(f"{k} {v}" for k, v in rank.items()) if isinstance(rank, dict) else rank
        )
        out[str(record["asin"])] = ItemText.from_fields(
            title=record.get("title"),
            brand=record.get("brand"),
            categories=categories[0] if categories and isinstance(categories[0], list) else [],
            price=record.get("price"),
            attributes={"sales_rank": rank_text} if rank_text else None,
        )
    return out


def read_staged_amazon_items(path: Path) -> dict[str, ItemText]:
    """Read the staged `items.jsonl.gz` (asin, title, brand, categories, price, sales_rank)."""
    out: dict[str, ItemText] = {}
    for number, line in _lines(path):
        try:
            record = json.loads(line)
            asin = str(record["asin"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise MalformedDataError(
                path, number, f"expected a JSON object with 'asin' ({e})"
            ) from e
        out[asin] = ItemText.from_fields(
            title=record.get("title"),
            brand=record.get("brand"),
            categories=record.get("categories"),
            price=record.get("price"),
            attributes={"sales_rank": record["sales_rank"]} if record.get("sales_rank") else None,
        )
    return out


# --- generic catalogue format -----------------------------------------------------------------

_USER_KEYS = ("user", "user_id", "userId", "userid")
_ITEM_KEYS = ("item", "item_id", "itemId", "itemid", "asin")
_TIME_KEYS = ("timestamp", "time", "ts", "unixReviewTime")


def _pick(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in record and record[key] not in (None, ""):
            return record[key]
    return None


def _parse_time(value: Any, path: Path, number: int) -> float:
    """Unix seconds as given (fractions are kept, so that they order events)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds):
        raise MalformedDataError(
            path, number, f"timestamp {value!r} is not a finite number (use Unix seconds)"
        )
    return seconds


def read_generic_interactions(path: Path) -> Interactions:
    """Read a user's own interactions: CSV with a header, or JSON lines.

    Columns (any of the aliases): user (`user`, `user_id`), item (`item`, `item_id`), and an
    optional timestamp (`timestamp`, `time`; Unix seconds). Without timestamps the file order
    is the chronological order. Either every row has a timestamp or none does.
    """
    rows: list[tuple[int, dict[str, Any]]] = []
    if path.name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
        for number, line in _lines(path):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise MalformedDataError(path, number, f"not a JSON object ({e.msg})") from e
            if not isinstance(record, dict):
                raise MalformedDataError(path, number, "expected a JSON object per line")
            rows.append((number, record))
    else:
        try:  # utf-8-sig: a spreadsheet's byte-order mark must not rename the first column
            with open_text(path, encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                header = reader.fieldnames or []
                if _pick(dict.fromkeys(header, 1), _USER_KEYS) is None or not any(
                    k in header for k in _ITEM_KEYS
                ):
                    raise MalformedDataError(
                        path, 1, f"CSV header needs a user and an item column, got {header}"
                    )
                rows.extend((number, record) for number, record in enumerate(reader, start=2))
        except UnicodeDecodeError as e:
            raise MalformedDataError(
                path, 0, f"not UTF-8 text ({e.reason}); save the CSV as UTF-8"
            ) from e
        except (csv.Error, OSError, EOFError, zlib.error) as e:
            raise MalformedDataError(path, 0, f"cannot read the CSV ({e})") from e
    users: list[str] = []
    items: list[str] = []
    times: list[float] = []
    for number, record in rows:
        user, item = _pick(record, _USER_KEYS), _pick(record, _ITEM_KEYS)
        if user is None or item is None:
            raise MalformedDataError(path, number, "row has no user or no item value")
        users.append(str(user))
        items.append(str(item))
        time = _pick(record, _TIME_KEYS)
        if time is not None:
            times.append(_parse_time(time, path, number))
        if bool(times) and len(times) != len(items):
            raise MalformedDataError(
                path, number, "some rows have a timestamp and others not; give all or none"
            )
    return Interactions(users, items, times if times else None)


_ITEM_TEXT_KEYS = {"title", "brand", "categories", "category", "genres", "price"}


def read_generic_items(path: Path) -> dict[str, ItemText]:
    """Read optional item metadata JSON lines: `{"item": ..., "title": ..., ...}`.

    Known keys: title, brand, categories (list, or "a|b"), genres, price. Every other key is
    kept as an attribute.
    """
    out: dict[str, ItemText] = {}
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise MalformedDataError(path, number, f"not a JSON object ({e.msg})") from e
        item = _pick(record, _ITEM_KEYS) if isinstance(record, dict) else None
        if item is None:
            raise MalformedDataError(path, number, "expected a JSON object with an 'item' key")
        categories = record.get("categories", record.get("category", record.get("genres")))
        extra = {
            k: v
            for k, v in record.items()
            if k not in _ITEM_TEXT_KEYS and k not in _ITEM_KEYS and not isinstance(v, (dict, list))
        }
        out[str(item)] = ItemText.from_fields(
            title=record.get("title"),
            brand=record.get("brand"),
            categories=categories,
            price=record.get("price"),
            attributes=extra,
        )
    return out


# --- turning interactions into sequences ------------------------------------------------------


def filter_min_counts(rows: Interactions, *, min_item: int, min_user: int) -> Interactions:
    """Drop items with fewer than `min_item` rows, then users with fewer than `min_user`.

    One pass in that order, the preprocessing behind the published MovieLens-1M sequences
    (items first, then users; not iterated to a fixed point).
    """
    items = np.asarray(rows.items, dtype=object)
    _, inverse, counts = np.unique(items, return_inverse=True, return_counts=True)
    keep = counts[inverse] >= min_item
    users = np.asarray(rows.users, dtype=object)
    _, u_inverse, u_counts = np.unique(users[keep], return_inverse=True, return_counts=True)
    keep_idx = np.flatnonzero(keep)[u_counts[u_inverse] >= min_user]
    times = None if rows.timestamps is None else [rows.timestamps[i] for i in keep_idx]
    return Interactions([rows.users[i] for i in keep_idx], [rows.items[i] for i in keep_idx], times)


def group_sequences(
    rows: Interactions, *, tiebreak: str = "order"
) -> tuple[list[str], list[list[str]], list[list[float]] | None]:
    """Group rows by user (in order of first appearance) and sort each user's items by time.

    Args:
        rows: interactions in file order.
        tiebreak: among equal timestamps, "order" keeps file order; "item" orders by the item id
            (numerically when every id is a number), the rule of the published ML-1M sequences.

    Returns:
        user ids, per-user item ids oldest first, and per-user timestamps (None without them).
    """
    by_user: dict[str, list[int]] = {}
    for i, user in enumerate(rows.users):
        by_user.setdefault(user, []).append(i)
    numeric = tiebreak == "item" and all(i.isascii() and i.isdigit() for i in rows.items)

    def item_key(i: int) -> Any:
        return int(rows.items[i]) if numeric else rows.items[i]

    stamps = rows.timestamps
    users, sequences, times = [], [], []
    for user, idx in by_user.items():
        if stamps is not None:
            if tiebreak == "item":
                idx = sorted(idx, key=lambda i: (stamps[i], item_key(i)))
            else:
                idx = sorted(idx, key=lambda i: stamps[i])
            times.append([stamps[i] for i in idx])
        users.append(user)
        sequences.append([rows.items[i] for i in idx])
    return users, sequences, (times if rows.timestamps is not None else None)
