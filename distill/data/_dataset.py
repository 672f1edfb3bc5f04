"""The in-memory dataset every loader returns: users' chronological item sequences and item text."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Dataset", "ItemText", "build_dataset"]


# Attributes kept for display but left out of encoder text: a sales rank is a number a sentence
# encoder cannot use, and it changes over time.
_NOT_RENDERED = frozenset({"sales_rank"})


@dataclass(frozen=True)
class ItemText:
    """Text and display metadata of one item: one shape for every loader.

    Attributes:
        title: display title ("" when unknown).
        brand: brand or maker ("" when unknown).
        categories: category path from broad to narrow (Amazon), or genres (MovieLens).
        price: price in the source's currency, None when unknown.
        attributes: any other field the source has (year, sales rank, ...), as strings.
    """

    title: str = ""
    brand: str = ""
    categories: tuple[str, ...] = ()
    price: float | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)

    def is_empty(self) -> bool:
        """True when the item has no text an encoder could use."""
        return not (self.title or self.brand or self.categories)

    def render(self) -> str:
        """The item as one line of text for a sentence encoder ("Title: ...; Brand: ...")."""
        parts = []
        if self.title:
            parts.append(f"Title: {self.title}")
        if self.brand:
            parts.append(f"Brand: {self.brand}")
        if self.categories:
            parts.append(f"Categories: {' > '.join(self.categories)}")
        if self.price is not None:
            parts.append(f"Price: {self.price:.2f}")
        parts.extend(
            f"{k.replace('_', ' ').capitalize()}: {v}"
            for k, v in self.attributes.items()
            if k not in _NOT_RENDERED
        )
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "brand": self.brand,
            "categories": list(self.categories),
            "price": self.price,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_fields(
        cls,
        *,
        title: Any = "",
        brand: Any = "",
        categories: Any = (),
        price: Any = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> ItemText:
        """Normalise raw source fields: unescape HTML entities, strip, parse price and lists."""
        return cls(
            title=_clean(title),
            brand=_clean(brand),
            categories=tuple(c for c in (_clean(x) for x in _as_list(categories)) if c),
            price=_parse_price(price),
            attributes={
                str(k): _clean(v) for k, v in (attributes or {}).items() if _clean(v) != ""
            },
        )


def _clean(value: Any) -> str:
    if value is None:
        return ""
    return html.unescape(str(value)).strip()


def _as_list(value: Any) -> list[Any]:
    """Category fields come as lists, as "'a', 'b'" strings, or as "a|b" strings."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    text = str(value)
    if "|" in text:
        return text.split("|")
    if text.startswith("'") or text.startswith('"'):
        return [part.strip().strip("'\"") for part in text.split("', '")]
    return [text]


def _parse_price(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        price = float(str(value).replace("$", "").replace(",", ""))
    except ValueError:
        return None
    return price if np.isfinite(price) and price >= 0 else None


@dataclass(frozen=True, eq=False)
class Dataset:
    """Users' chronological item sequences plus item text.

    Sequences are stored as one flat array with per-user offsets (CSR), which keeps a
    million-interaction dataset in two numpy arrays and makes batching vectorizable.

    Attributes:
        name: dataset name ("beauty", "ml-1m", or the folder name of a user's catalogue).
        item_ids: (num_items,) the source's item ids; internal item i is item_ids[i].
        user_ids: (num_users,) the source's user ids.
        offsets: (num_users + 1,) int64; user u's items are items[offsets[u]:offsets[u+1]].
        items: (num_interactions,) int32 internal item ids, oldest first within each user.
        timestamps: (num_interactions,) int64 Unix seconds aligned with `items`, or None when the
            source only gives the order.
        item_text: one ItemText per item, or None when the source has no item text at all.
        default_history_len: the history length of the evaluation protocol for this data
            (20 for Amazon, 200 for MovieLens-1M; see REFERENCE).
        source: provenance: format, files, and notes a results file should repeat.
    """

    name: str
    item_ids: np.ndarray
    user_ids: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray | None
    item_text: tuple[ItemText, ...] | None
    default_history_len: int
    source: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_interactions(self) -> int:
        return len(self.items)

    def sequence(self, user: int) -> np.ndarray:
        """Internal item ids of one user, oldest first."""
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def lengths(self) -> np.ndarray:
        """(num_users,) sequence length of every user."""
        return np.diff(self.offsets)

    def item_index(self) -> dict[str, int]:
        """Map from the source's item id to the internal id."""
        return {str(item): i for i, item in enumerate(self.item_ids)}

    def stats(self) -> dict[str, Any]:
        """Counts a user checks a dataset by (and the acceptance tests assert)."""
        lengths = self.lengths()
        counts = np.bincount(self.items, minlength=self.num_items)
        with_text = 0 if self.item_text is None else sum(not t.is_empty() for t in self.item_text)
        owner = np.repeat(np.arange(self.num_users, dtype=np.int64), lengths)
        pairs = len(np.unique(owner * max(1, self.num_items) + self.items))
        return {
            "name": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": self.num_interactions,
            "sequence_length": {
                "min": int(lengths.min()) if len(lengths) else 0,
                "max": int(lengths.max()) if len(lengths) else 0,
                "mean": round(float(lengths.mean()), 3) if len(lengths) else 0.0,
                "median": float(np.median(lengths)) if len(lengths) else 0.0,
            },
            "interactions_per_item": {
                "min": int(counts.min()) if len(counts) else 0,
                "max": int(counts.max()) if len(counts) else 0,
            },
            "density": round(self.num_interactions / max(1, self.num_users * self.num_items), 6),
            # share of interactions with an item the user met before (0: nobody repeats, and
            # `pocketrec distill --kd-exclude-history` fits the data)
            "repeat_share": round(1 - pairs / max(1, self.num_interactions), 6),
            "items_with_text": with_text,
            "has_timestamps": self.timestamps is not None,
            "default_history_len": self.default_history_len,
            "source": dict(self.source),
        }

    def to_json_stats(self) -> str:
        return json.dumps(self.stats(), indent=2)


def build_dataset(
    name: str,
    user_ids: Sequence[str],
    sequences: Sequence[Sequence[str]],
    *,
    timestamps: Sequence[Sequence[float]] | None = None,
    item_text: Mapping[str, ItemText] | None = None,
    default_history_len: int = 20,
    source: Mapping[str, Any] | None = None,
) -> Dataset:
    """Build a Dataset from per-user lists of source item ids (oldest first).

    Internal item ids follow the order of first appearance, so the same input always gives the
    same ids. Users with no items are dropped (they carry nothing to train or evaluate on).

    Args:
        name: dataset name.
        user_ids: source user ids, one per sequence.
        sequences: per user, source item ids oldest first.
        timestamps: optional per-user Unix times aligned with `sequences`.
        item_text: optional text per source item id; items missing from it get an empty
            ItemText. Pass None when the source has no text at all.
        default_history_len: protocol history length for this data.
        source: provenance recorded in `Dataset.source`.
    """
    index: dict[str, int] = {}
    flat: list[int] = []
    flat_ts: list[int] = []
    offsets = [0]
    kept_users: list[str] = []
    for u, seq in enumerate(sequences):
        if len(seq) == 0:
            continue
        for item in seq:
            flat.append(index.setdefault(item, len(index)))
        if timestamps is not None:
            flat_ts.extend(int(t) for t in timestamps[u])
        offsets.append(len(flat))
        kept_users.append(str(user_ids[u]))
    item_ids = np.array(list(index), dtype=object)
    texts = None
    if item_text is not None:
        texts = tuple(item_text.get(str(item), ItemText()) for item in item_ids)
    meta = dict(source or {})
    dropped = len(sequences) - len(kept_users)
    if dropped:
        meta["dropped_empty_users"] = dropped
    return Dataset(
        name=name,
        item_ids=item_ids,
        user_ids=np.array(kept_users, dtype=object),
        offsets=np.asarray(offsets, dtype=np.int64),
        items=np.asarray(flat, dtype=np.int32),
        timestamps=np.asarray(flat_ts, dtype=np.int64) if timestamps is not None else None,
        item_text=texts,
        default_history_len=default_history_len,
        source=meta,
    )
