"""The demo page's JSON API as plain functions: catalogue pages, recommendations, validation.

Independent of HTTP (`pocketrec._demo` serves it): request values in, JSON-ready dicts out, and
a `DemoRequestError` with the HTTP status for every input the API refuses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import numpy as np

from pocketrec._errors import PocketrecError
from pocketrec._recommender import Recommendation, Recommender
from pocketrec._version import __version__

__all__ = ["DemoApp", "DemoRequestError", "display_title"]

DEFAULT_K = 10
MAX_K = 100  # the page shows one list, and the beam (so the latency) grows with k
PAGE_SIZE = 50  # catalogue rows per page: a screenful, fast to render for 12k-item catalogues
MAX_PAGE_SIZE = 200
MAX_QUERY_CHARS = 200
MAX_HISTORY = 500  # the model reads only its window; fitting an adapter reads all of it


class DemoRequestError(PocketrecError):
    """A request the demo cannot serve; becomes a JSON error response with `status`."""

    def __init__(
        self, status: HTTPStatus, message: str, *, allow: str | None = None, **details: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.allow = allow  # the method to use instead, for 405 Method Not Allowed
        self.details = details


def display_title(metadata: Mapping[str, Any], item_id: str) -> str:
    """The title the page shows: the catalogue's title, or the id when there is none."""
    title = metadata.get("title")
    return str(title) if title else item_id


def _finite(x: float) -> float | None:
    """JSON has no infinities; a score that is not finite is sent as null."""
    return x if math.isfinite(x) else None


class DemoApp:
    """The demo's request logic, independent of HTTP: request values in, JSON-ready dicts out.

    Read-only after construction, so one instance serves every server thread (the
    Recommender is thread-safe).
    """

    def __init__(self, rec: Recommender) -> None:
        self.rec = rec
        # The Recommender keeps catalogue metadata on its bundle; the demo lists all of it.
        self._metadata = rec.item_metadata
        self._lookup = {item: row for row, item in enumerate(rec.item_ids)}
        self._titles = [
            display_title(m, i) for m, i in zip(self._metadata, rec.item_ids, strict=True)
        ]
        # One lower-cased search key per item (title, brand, id): a substring scan over 12k
        # short strings takes a few milliseconds, so no index is needed.
        self._keys = [
            f"{title} {m.get('brand') or ''} {item}".casefold()
            for title, m, item in zip(self._titles, self._metadata, rec.item_ids, strict=True)
        ]
        self.k_max = min(MAX_K, len(rec.item_ids))

    def info(self) -> dict[str, Any]:
        manifest = self.rec.manifest
        return {
            "bundle": manifest.name,
            "precision": manifest.precision,
            "num_items": len(self.rec.item_ids),
            "providers": list(self.rec.providers),
            "window": self.rec.window,
            "k_default": min(DEFAULT_K, self.k_max),
            "k_max": self.k_max,
            "page_size": PAGE_SIZE,
            "max_history": MAX_HISTORY,
            "version": __version__,
        }

    def _item(self, row: int) -> dict[str, Any]:
        metadata = self._metadata[row]
        return {
            "item_id": self.rec.item_ids[row],
            "title": self._titles[row],
            "brand": metadata.get("brand"),
            "categories": metadata.get("categories") or [],
        }

    def items(self, params: Mapping[str, list[str]]) -> dict[str, Any]:
        """A page of the catalogue whose title, brand or id contains every word of `q`."""
        unknown = sorted(set(params) - {"q", "offset", "limit"})
        if unknown:
            raise DemoRequestError(
                HTTPStatus.BAD_REQUEST,
                f"unknown query parameters {unknown}; expected q, offset, limit",
            )
        query = _single(params, "q", "")
        if len(query) > MAX_QUERY_CHARS:
            raise DemoRequestError(
                HTTPStatus.BAD_REQUEST, f"q is longer than {MAX_QUERY_CHARS} characters"
            )
        offset = _int_param(params, "offset", 0, 0, None)
        limit = _int_param(params, "limit", PAGE_SIZE, 1, MAX_PAGE_SIZE)
        words = query.casefold().split()
        rows: Sequence[int] = range(len(self._keys))
        if words:
            rows = [r for r, key in enumerate(self._keys) if all(w in key for w in words)]
            exact = self._lookup.get(query.strip())
            if exact is not None:  # an exact id goes first
                rows = [exact, *(r for r in rows if r != exact)]
        return {
            "q": query,
            "offset": offset,
            "limit": limit,
            "total": len(rows),
            "items": [self._item(r) for r in rows[offset : offset + limit]],
        }

    def recommend(self, body: Any) -> dict[str, Any]:
        """Top-k for a history, with an adapter fitted on that history when `personalize`."""
        history, k, personalize = self._parse_recommend(body)
        started = time.perf_counter()
        rec = self.rec
        adapter_info: dict[str, Any] | None = None
        fit_ms = None
        if personalize:
            adapter = rec.fit_adapter(history)
            rec = rec.with_adapters(adapter)
            fit_ms = (time.perf_counter() - started) * 1e3  # fitting and applying it
            adapter_info = {
                "active": bool(adapter.bias.any()),  # too short a history leaves it at zero
                "num_events": len(history),
                "norm": float(np.linalg.norm(adapter.bias)),
            }
        t0 = time.perf_counter()
        found = rec.recommend(history, k=k, unknown="raise")
        done = time.perf_counter()
        return {
            "bundle": self.rec.manifest.name,
            "history": history,
            "k": k,
            "personalized": personalize,
            "adapter": adapter_info,
            "latency_ms": (done - started) * 1e3,
            "fit_ms": fit_ms,
            "recommend_ms": (done - t0) * 1e3,
            "recommendations": [_recommendation(r) for r in found],
        }

    def _parse_recommend(self, body: Any) -> tuple[list[str], int, bool]:
        example = '{"history": ["<item id>", ...], "k": 10, "personalize": false}'
        if not isinstance(body, dict):
            raise DemoRequestError(
                HTTPStatus.BAD_REQUEST, f"the body must be a JSON object like {example}"
            )
        unknown = sorted(set(body) - {"history", "k", "personalize"})
        if unknown:
            raise DemoRequestError(
                HTTPStatus.BAD_REQUEST,
                f"unknown fields {unknown}; expected history, k, personalize",
            )
        history = body.get("history", [])
        if not isinstance(history, list):
            raise DemoRequestError(
                HTTPStatus.BAD_REQUEST,
                f"history must be a list of item ids (strings), oldest first, got "
                f"{type(history).__name__}",
            )
        for position, item in enumerate(history):
            if not isinstance(item, str):
                raise DemoRequestError(
                    HTTPStatus.BAD_REQUEST,
                    f"history[{position}] is {item!r}; item ids are strings, as in GET /api/items",
                )
        if len(history) > MAX_HISTORY:
            raise DemoRequestError(
                HTTPStatus.BAD_REQUEST,
                f"history has {len(history)} items; the demo takes at most {MAX_HISTORY}",
            )
        missing = list(dict.fromkeys(h for h in history if h not in self._lookup))
        if missing:
            raise DemoRequestError(
                HTTPStatus.BAD_REQUEST,
                f"{len(missing)} history items are not in the bundle's catalogue: "
                f"{', '.join(repr(m) for m in missing[:10])}{' ...' if len(missing) > 10 else ''};"
                " pick items from GET /api/items",
                unknown_items=missing,
            )
        k = body.get("k", min(DEFAULT_K, self.k_max))
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.k_max:
            raise DemoRequestError(
                HTTPStatus.BAD_REQUEST, f"k must be an integer in [1, {self.k_max}], got {k!r}"
            )
        personalize = body.get("personalize", False)
        if not isinstance(personalize, bool):
            raise DemoRequestError(
                HTTPStatus.BAD_REQUEST, f"personalize must be true or false, got {personalize!r}"
            )
        return history, k, personalize


def _recommendation(r: Recommendation) -> dict[str, Any]:
    return {
        "item_id": r.item_id,
        "title": display_title(r.metadata, r.item_id),
        "log_prob": _finite(r.log_prob),
        "semantic_id": list(r.semantic_id),
        "metadata": dict(r.metadata),
    }


def _single(params: Mapping[str, list[str]], name: str, default: str) -> str:
    values = params.get(name, [default])
    if len(values) != 1:
        raise DemoRequestError(HTTPStatus.BAD_REQUEST, f"{name} is given {len(values)} times")
    return values[0]


def _int_param(
    params: Mapping[str, list[str]], name: str, default: int, low: int, high: int | None
) -> int:
    raw = _single(params, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise DemoRequestError(
            HTTPStatus.BAD_REQUEST, f"{name} must be an integer {bound}, got {raw!r}"
        )
    return value
