"""Find a dataset by name under POCKETREC_DATA (or a path) and load it from whatever layout it has.

Names: `ml-1m`, `beauty`, `sports`, any `amazon2014_<category>` folder, or a path to a folder of
a user's own catalogue. A folder is read from the first layout found, official raw files first:

| layout | files |
|---|---|
| MovieLens official | `ratings.dat` + `movies.dat` (GroupLens ml-1m, unzipped) |
| MovieLens staged | `derived_llamarec_5core_sequences.txt.gz` + `movies.dat` |
| Amazon 2014 official | `reviews_<Category>_5.json.gz` (+ `meta_<Category>.json.gz`) |
| Amazon staged | `user_sequence.txt.gz` (+ `items.jsonl.gz`) |
| generic | `interactions.csv` or `interactions.jsonl` (+ `items.jsonl`) |
"""

from __future__ import annotations

import os
from pathlib import Path

from pocketrec.distill.data._dataset import Dataset, ItemText, build_dataset
from pocketrec.distill.data._download import AMAZON_2014_KNOWN_COUNTS, AMAZON_SHORT_NAMES
from pocketrec.distill.data._formats import (
    filter_min_counts,
    group_sequences,
    read_amazon_meta,
    read_amazon_reviews,
    read_generic_interactions,
    read_generic_items,
    read_movielens_movies,
    read_movielens_ratings,
    read_staged_amazon_items,
    read_user_sequences,
)
from pocketrec.distill.errors import DataError, DatasetNotFoundError

__all__ = ["DATA_ENV", "dataset_folder", "list_datasets", "load_dataset"]

DATA_ENV = "POCKETREC_DATA"
ALIASES = {
    "ml-1m": "movielens_1m",
    "movielens-1m": "movielens_1m",
    "beauty": "amazon2014_beauty",
} | {short: f"amazon2014_{short}" for short in AMAZON_SHORT_NAMES}
_GENERIC_FILES = (
    "interactions.csv",
    "interactions.csv.gz",
    "interactions.jsonl",
    "interactions.jsonl.gz",
)
# Evaluation history length by the protocol: TIGER/P5 for Amazon, HSTU for MovieLens-1M.
AMAZON_HISTORY = 20
MOVIELENS_HISTORY = 200
# The published ML-1M sequences drop movies with fewer than 5 ratings, then users with fewer
# than 5 (one pass). The official ratings.dat is filtered the same way so both forms agree.
ML_MIN_ITEM, ML_MIN_USER = 5, 5


def _data_root(root: Path | str | None) -> Path | None:
    if root is not None:
        return Path(root)
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else None


def dataset_folder(name: str, root: Path | str | None = None) -> Path:
    """Resolve a dataset name or path to its folder.

    Raises:
        DatasetNotFoundError: naming the path looked at, the environment variable, and the
            download command.
    """
    as_path = Path(name).expanduser()
    base = _data_root(root)
    folder_name = ALIASES.get(name.lower(), name)
    # A path written as one (`./ml-1m`, `data/ml-1m`, `/abs`, `~/x`) is only ever that path.
    explicit = as_path.is_absolute() or "/" in name or os.sep in name or name[:1] in ".~"
    in_root = None if base is None or explicit else base / folder_name
    rooted = in_root is not None and in_root.is_dir()
    # A bare name that is also a folder in the working directory means that folder when it
    # holds a dataset, or when the data root has none by that name: an unrelated folder
    # (`--out ml-1m`, a cache) must not hide the data root's `ml-1m`.
    if as_path.is_dir() and (not rooted or _layout(as_path) is not None):
        return as_path
    if in_root is not None and rooted:
        return in_root
    if explicit:
        where = f"{as_path} is not a folder"
    elif base is not None:
        where = f"looked for {base / folder_name} ({DATA_ENV}={base})"
    else:
        where = f"{DATA_ENV} is not set and {name!r} is not a folder"
    hint = (
        f"Set {DATA_ENV} to the folder that holds `{folder_name}/`, or download the official "
        f"files with `pocketrec data download {name}` and set {DATA_ENV} to the folder it prints."
    )
    if base is not None and base.is_dir():
        available = list_datasets(base)
        if available:
            hint += f" Datasets found in {base}: {', '.join(available)}."
    raise DatasetNotFoundError(f"dataset {name!r} not found: {where}. {hint}")


def list_datasets(root: Path | str | None = None) -> list[str]:
    """Names of the dataset folders under the data root that pocketrec can load."""
    base = _data_root(root)
    if base is None or not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and _layout(p) is not None)


def _first(folder: Path, *patterns: str) -> Path | None:
    for pattern in patterns:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def _layout(folder: Path) -> str | None:
    if _first(folder, "ratings.dat", "ratings.dat.gz") and _first(folder, "movies.dat"):
        return "movielens-official"
    if _first(folder, "*sequences.txt.gz", "*sequences.txt") and _first(folder, "movies.dat"):
        return "movielens-staged"
    if _first(folder, "reviews_*_5.json.gz", "reviews_*_5.json"):
        return "amazon-official"
    if _first(folder, "user_sequence.txt.gz", "user_sequence.txt"):
        return "amazon-staged"
    if _first(folder, *_GENERIC_FILES):
        return "generic"
    return None


def load_dataset(name: str, *, root: Path | str | None = None) -> Dataset:
    """Load a dataset by name (`ml-1m`, `beauty`, `sports`, `amazon2014_<category>`) or path.

    Args:
        name: dataset name, or a folder in one of the layouts in this module's docstring.
        root: data root; default `$POCKETREC_DATA`.

    Raises:
        DatasetNotFoundError: the folder is missing or holds no known layout.
        MalformedDataError: a file has a bad line (file and line number in the message).
    """
    folder = dataset_folder(name, root)
    layout = _layout(folder)
    display = folder.name if folder == Path(name).expanduser() else name
    display = {v: k for k, v in ALIASES.items() if k in ("ml-1m", "beauty", "sports")}.get(
        display, display
    )
    if layout is None:
        raise DatasetNotFoundError(
            f"{folder} holds no dataset pocketrec can read. Expected one of: GroupLens "
            "ratings.dat + movies.dat; reviews_<Category>_5.json.gz (+ meta_<Category>.json.gz); "
            "user_sequence.txt.gz (+ items.jsonl.gz); or interactions.csv / interactions.jsonl "
            "(+ items.jsonl) with user, item and optional timestamp columns."
        )
    loader = {
        "movielens-official": _load_movielens_official,
        "movielens-staged": _load_movielens_staged,
        "amazon-official": _load_amazon_official,
        "amazon-staged": _load_amazon_staged,
        "generic": _load_generic,
    }[layout]
    return loader(display, folder)


def _load_movielens_staged(name: str, folder: Path) -> Dataset:
    path = _first(folder, "*sequences.txt.gz", "*sequences.txt")
    assert path is not None  # _layout checked it
    users, sequences = read_user_sequences(path)
    movies = read_movielens_movies(folder / "movies.dat")
    return build_dataset(
        name,
        users,
        sequences,
        item_text=movies,
        default_history_len=MOVIELENS_HISTORY,
        source={
            "layout": "movielens-staged",
            "files": [path.name, "movies.dat"],
            "note": "5-core sequences without ratings.dat: movies with < 5 ratings are dropped "
            "(999,611 of 1,000,209 ratings kept); no timestamps.",
        },
    )


def _load_movielens_official(name: str, folder: Path) -> Dataset:
    path = _first(folder, "ratings.dat", "ratings.dat.gz")
    assert path is not None
    rows = filter_min_counts(
        read_movielens_ratings(path), min_item=ML_MIN_ITEM, min_user=ML_MIN_USER
    )
    users, sequences, times = group_sequences(rows, tiebreak="item")
    return build_dataset(
        name,
        users,
        sequences,
        timestamps=times,
        item_text=read_movielens_movies(folder / "movies.dat"),
        default_history_len=MOVIELENS_HISTORY,
        source={
            "layout": "movielens-official",
            "files": [path.name, "movies.dat"],
            "note": f"items with < {ML_MIN_ITEM} ratings, then users with < {ML_MIN_USER}, "
            "dropped; each user's items sorted by (timestamp, movie id).",
        },
    )


def _load_amazon_staged(name: str, folder: Path) -> Dataset:
    path = _first(folder, "user_sequence.txt.gz", "user_sequence.txt")
    assert path is not None
    users, sequences = read_user_sequences(path)
    items_path = _first(folder, "items.jsonl.gz", "items.jsonl")
    text = read_staged_amazon_items(items_path) if items_path else None
    return build_dataset(
        name,
        users,
        sequences,
        item_text=text,
        default_history_len=AMAZON_HISTORY,
        source={
            "layout": "amazon-staged",
            "files": [p.name for p in (path, items_path) if p is not None],
            "note": "Amazon 2014 5-core (P5/S3Rec/TIGER split); order only, no timestamps.",
        },
    )


def _load_amazon_official(name: str, folder: Path) -> Dataset:
    path = _first(folder, "reviews_*_5.json.gz", "reviews_*_5.json")
    assert path is not None
    category = path.name.removeprefix("reviews_").split("_5.json")[0]
    rows = read_amazon_reviews(path)
    users, sequences, times = group_sequences(rows, tiebreak="order")
    meta_path = _first(folder, f"meta_{category}.json.gz", f"meta_{category}.json")
    text: dict[str, ItemText] | None = None
    if meta_path is not None:
        text = read_amazon_meta(meta_path, wanted=set(rows.items))
    dataset = build_dataset(
        name,
        users,
        sequences,
        timestamps=times,
        item_text=text,
        default_history_len=AMAZON_HISTORY,
        source={
            "layout": "amazon-official",
            "files": [p.name for p in (path, meta_path) if p is not None],
            "note": "each user's reviews sorted by unixReviewTime (file order among equals).",
        },
    )
    expected = AMAZON_2014_KNOWN_COUNTS.get(category)
    actual = (dataset.num_users, dataset.num_items, dataset.num_interactions)
    if expected is not None and actual != expected:
        raise DataError(
            f"{path} parses to {actual} (users, items, interactions) but the published 5-core "
            f"{category} has {expected}. The file is incomplete or not the 2014 release; "
            f"delete it and run `pocketrec data download {category}` again."
        )
    return dataset


def _load_generic(name: str, folder: Path) -> Dataset:
    path = _first(folder, *_GENERIC_FILES)
    assert path is not None  # _layout found one
    rows = read_generic_interactions(path)
    users, sequences, times = group_sequences(rows, tiebreak="order")
    items_path = _first(folder, "items.jsonl", "items.jsonl.gz")
    text = read_generic_items(items_path) if items_path else None
    unknown = set() if text is None else set(text) - set(rows.items)
    source: dict[str, object] = {
        "layout": "generic",
        "files": [p.name for p in (path, items_path) if p is not None],
        "note": "order by timestamp" if times is not None else "order as in the file",
    }
    if unknown:
        source["items_without_interactions"] = len(unknown)
    return build_dataset(
        name,
        users,
        sequences,
        timestamps=times,
        item_text=text,
        default_history_len=AMAZON_HISTORY,
        source=source,
    )
