"""What an app passes to a Recommender and gets back: checked histories and settings, results.

Every public entry point (`recommend`, `recommend_batch`, `fit_adapter`, `federated_update`)
reads a history through `catalogue_rows`, so an unknown or malformed id gets the same error
or warning from each.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pocketrec._checks import is_int
from pocketrec._errors import InvalidRequestError, UnknownItemError
from pocketrec._search import SearchResult

__all__ = [
    "ItemId",
    "Recommendation",
    "UnknownItemWarning",
    "catalogue_rows",
    "check_request",
    "to_recommendations",
]

ItemId = str | int


class UnknownItemWarning(UserWarning):
    """History items were dropped because the catalogue does not have them."""


@dataclass(frozen=True)
class Recommendation:
    """One recommended item.

    Attributes:
        item_id: the catalogue's id of the item.
        log_prob: log-probability the model gives the item as the next one (higher is better).
            For an empty history it is the item's log share of training interactions.
        semantic_id: the item's semantic ID (one code per level).
        metadata: display metadata from the catalogue (title, brand, categories, price, ...).
    """

    item_id: str
    log_prob: float
    semantic_id: tuple[int, ...]
    metadata: Mapping[str, Any]


def catalogue_rows(
    lookup: Mapping[str, int], history: Sequence[ItemId], unknown: str, stacklevel: int
) -> list[int]:
    """Catalogue rows of a history's items, oldest first.

    Args:
        lookup: catalogue id -> row.
        history: item ids, str or int.
        unknown: "drop" ids the catalogue lacks (with an `UnknownItemWarning`) or "raise".
        stacklevel: `warnings.warn`'s, counted from this function (the app's call is 3 when
            an API method calls it directly).

    Raises:
        InvalidRequestError: the history is not a list of ids.
        UnknownItemError: with unknown="raise", ids not in the catalogue.
    """
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise InvalidRequestError(
            f"history must be a list of item ids, got {type(history).__name__}"
        )
    loose: Mapping[Any, int] = lookup  # str keys: other ids raise KeyError
    try:  # the usual case, every id a catalogue id (a str): one dict lookup each
        return [loose[item] for item in history]
    except (KeyError, TypeError):  # unknown ids, ints, or not ids at all: check each
        pass
    rows, missing = [], []
    for position, item in enumerate(history):
        if isinstance(item, bool) or not isinstance(item, (str, int, np.integer)):
            raise InvalidRequestError(
                f"history[{position}] is {item!r} ({type(item).__name__}); item ids are "
                "str or int, as in the catalogue"
            )
        row = lookup.get(str(item))
        if row is None:
            missing.append(str(item))
        else:
            rows.append(row)
    if missing:
        if unknown == "raise":
            raise UnknownItemError(missing)
        warnings.warn(
            f"dropped {len(missing)} history items not in the catalogue "
            f"(first: {missing[0]!r}); pass unknown='raise' to fail instead",
            UnknownItemWarning,
            stacklevel=stacklevel,
        )
    return rows


def check_request(k: object, unknown: str, beam_width: object, num_items: int) -> None:
    """Refuse a k outside the catalogue, an unknown-id policy or a beam width that is not one.

    Raises:
        InvalidRequestError: naming the argument and the values it takes.
    """
    if not is_int(k) or not 1 <= k <= num_items:  # type: ignore[operator]
        raise InvalidRequestError(
            f"k must be an integer in [1, {num_items}] (the catalogue size), got {k!r}"
        )
    if unknown not in ("drop", "raise"):
        raise InvalidRequestError(f"unknown must be 'drop' or 'raise', got {unknown!r}")
    if beam_width is not None and (not is_int(beam_width) or beam_width < 1):  # type: ignore[operator]
        raise InvalidRequestError(f"beam_width must be a positive integer, got {beam_width!r}")


def to_recommendations(
    found: SearchResult, item_ids: Sequence[str], metadata: Sequence[Mapping[str, Any]]
) -> list[list[Recommendation]]:
    """Search results as `Recommendation`s per user, -1 entries left out."""
    return [
        [
            # positional: keywords make building a result a third slower
            Recommendation(item_ids[i], log_prob, tuple(codes), metadata[i])
            for i, log_prob, codes in zip(items, log_probs, semantic_ids, strict=True)
            if i >= 0
        ]
        for items, log_probs, semantic_ids in zip(
            found.items.tolist(),
            found.log_probs.tolist(),
            found.semantic_ids.tolist(),
            strict=True,
        )
    ]
