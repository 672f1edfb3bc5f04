"""The Recommender: load a bundle once, then recommend from any thread."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from pocketrec._adapter import Adapter, FitSettings, check_privacy
from pocketrec._bundle import Bundle, open_bundle
from pocketrec._errors import InvalidRequestError, UnknownItemError
from pocketrec._manifest import Manifest
from pocketrec._model import Model
from pocketrec._personalize import federated_update, fit_personal
from pocketrec._prefix import PrefixIndex
from pocketrec._requests import (
    ItemId,
    Recommendation,
    UnknownItemWarning,
    catalogue_rows,
    check_request,
    to_recommendations,
)
from pocketrec._search import (
    SearchResult,
    beam_search,
    exclusion_batch,
    extra_beams,
    search_excluding,
)

__all__ = ["Recommendation", "Recommender", "UnknownItemWarning"]


class Recommender:
    """Recommendations from a pocketrec bundle, with numpy and onnxruntime only.

    Create it with `Recommender.from_bundle(path)`. One instance serves concurrent
    `recommend` calls from many threads: it holds no per-call state, and ONNX Runtime sessions
    are thread-safe.
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        sessions: tuple[Any, Any] | tuple[Any, Any, Any] | None = None,
        adapters: tuple[Adapter, ...] | None = None,
    ) -> None:
        """Use `from_bundle`.

        Args:
            bundle: an opened bundle.
            sessions: replacements for the (encoder, decoder) or (encoder, decoder, search)
                sessions (tracing, timing, other graphs); with two, `recommend` searches in
                numpy (the bundle's search graph belongs to its own decoder).
            adapters: code-bias adapters to apply (default: the bundle's shared adapter).
        """
        self._bundle = bundle
        self._model = Model(bundle, sessions)
        self._adapters = bundle.adapters if adapters is None else adapters
        self._bias = self._bias_of(bundle, self._adapters)
        manifest = bundle.manifest
        self._levels = manifest.semantic_ids.num_levels
        self._window = manifest.max_len
        self._index = bundle.index
        self._lookup = {item: row for row, item in enumerate(bundle.item_ids)}
        pop = np.maximum(bundle.popularity, 0.0) + 1e-9
        self._pop_log_prob = np.log(pop / pop.sum())
        self._pop_order = np.argsort(-pop, kind="stable")

    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        trusted_keys: Sequence[str | bytes | Path] | None = None,
    ) -> Recommender:
        """Open a bundle folder, verifying every file's sha256.

        Args:
            path: the bundle folder (with manifest.json).
            providers: ONNX Runtime execution providers in order of preference; default: the
                bundle's intended providers that this machine has, else CPU.
            threads: intra-op threads per session (default: ONNX Runtime's choice).
            trusted_keys: Ed25519 public keys (PEM text or bytes, or paths to PEM files) of
                the publishers this app accepts bundles from. When given, the bundle must be
                signed by one of them (`pocketrec sign`); needs `pip install
                'pocketrec[signing]'`. Default: no signature check.

        Raises:
            BundleError: missing or altered files, or an invalid manifest.
            SignatureError: with `trusted_keys`: the bundle is unsigned, signed by another
                key, or was changed after signing.
            IncompatibleRuntimeError: onnxruntime is older than the bundle needs.
            ProviderUnavailableError: a requested provider is not available (the message
                lists the available ones).
        """
        return cls(
            open_bundle(path, providers=providers, threads=threads, trusted_keys=trusted_keys)
        )

    @staticmethod
    def _bias_of(bundle: Bundle, adapters: tuple[Adapter, ...]) -> NDArray[np.float32]:
        """(num_levels, codebook_size) sum of the adapters' biases."""
        layout = bundle.manifest.semantic_ids
        zero = np.zeros((layout.num_levels, layout.codebook_size), np.float32)
        return sum((a.bias for a in adapters), zero)

    # --- properties ------------------------------------------------------------------------

    @property
    def manifest(self) -> Manifest:
        return self._bundle.manifest

    @property
    def item_ids(self) -> tuple[str, ...]:
        """Every item of the catalogue, in bundle order."""
        return self._bundle.item_ids

    @property
    def item_metadata(self) -> tuple[Mapping[str, Any], ...]:
        """Display metadata of every item (title, brand, ...), aligned with `item_ids`."""
        return self._bundle.metadata

    @property
    def providers(self) -> tuple[str, ...]:
        """The execution providers the sessions run on."""
        return self._bundle.providers

    @property
    def signed_by(self) -> str | None:
        """Id of the trusted key that signed the bundle (None when opened without keys)."""
        return self._bundle.signed_by

    @property
    def adapters(self) -> tuple[Adapter, ...]:
        """The code-bias adapters applied at recommend time (shared first)."""
        return self._adapters

    def with_adapters(self, *adapters: Adapter) -> Recommender:
        """A Recommender on the same bundle and sessions that also applies `adapters`.

        Raises:
            InvalidRequestError: an adapter belongs to another bundle or another model of
                this bundle, or has the wrong shape.
        """
        shape = self._bias.shape
        for a in adapters:
            if not isinstance(a, Adapter):  # an Adapter's bias is finite (Adapter checks it)
                raise InvalidRequestError(
                    f"with_adapters takes pocketrec.Adapter objects, got {type(a).__name__}"
                )
            a.check_fits(self.manifest.name, self.manifest.model_id, shape)
        return self._with(self._adapters + tuple(adapters))

    def without_adapters(self) -> Recommender:
        """The same model with no adapter at all (the raw shared model)."""
        return self._with(())

    def _with(self, adapters: tuple[Adapter, ...]) -> Recommender:
        """This Recommender with other adapters, sharing everything else.

        The prefix index, id lookup and tables are read-only, so the copy shares them instead
        of rebuilding them: an app (or a benchmark) that fits one adapter per user would
        otherwise pay for the whole catalogue's index on every user (~30 ms on Beauty).
        """
        other = copy.copy(self)
        other._adapters = adapters
        other._bias = self._bias_of(self._bundle, adapters)
        return other

    @property
    def total_bias(self) -> NDArray[np.float32]:
        """(num_levels, codebook_size) sum of the applied adapters' biases."""
        return self._bias

    @property
    def semantic_ids(self) -> NDArray[np.int64]:
        """(num_items, num_levels) semantic ID of every catalogue row."""
        return self._bundle.semantic_ids

    @property
    def code_embeddings(self) -> NDArray[np.float32] | None:
        """(num_levels, codebook_size, hidden) the decoder's output table, when the bundle has
        one (personal adapters fitted as a state shift need it)."""
        return self._bundle.code_embeddings

    @property
    def prefix_index(self) -> PrefixIndex:
        return self._index

    def fit_adapter(
        self, history: Sequence[ItemId], *, settings: FitSettings | None = None
    ) -> Adapter:
        """Fit a personal adapter on a user's history, on the device (numpy, milliseconds).

        Apply it with `with_adapters`; keep it with the user's events with
        `EventStore.save_adapter`, so the user's `export` and `forget` cover it.
        Histories shorter than `settings.min_events` give a zero (no-op) adapter. Pass the
        whole history: the fit uses its `settings.max_events` most recent events, each read
        with the events before it, so cost stays bounded however long the history grows.
        """
        rows = catalogue_rows(self._lookup, history, "drop", 3)
        return fit_personal(self, rows, settings or FitSettings())

    def federated_update(
        self,
        history: Sequence[ItemId],
        *,
        clip_norm: float = 1.0,
        noise_multiplier: float = 1.0,
        settings: FitSettings | None = None,
        seed: int | None = None,
    ) -> bytes:
        """The change this user's data makes to the shared adapter, clipped and noised.

        Args:
            history: the user's items, oldest first (stays on the device).
            clip_norm: L2 bound of the change (the sensitivity of one client's update).
            noise_multiplier: Gaussian noise std in units of clip_norm, added on the device.
            settings: fitting strength and length.
            seed: noise seed, for tests and simulations only (default: fresh OS randomness).

        Returns:
            A `pocketrec-update/2` JSON payload (a few KB) that names the bundle, its model
            (`manifest.model_id`) and the shared adapter's version it starts from.

        Raises:
            InvalidRequestError: clip_norm or noise_multiplier is not finite and in range, or
                the history has fewer than `max(2, settings.min_events)` known items.
        """
        check_privacy(clip_norm, noise_multiplier)
        rows = catalogue_rows(self._lookup, history, "drop", 3)
        return federated_update(
            self,
            rows,
            clip_norm=clip_norm,
            noise_multiplier=noise_multiplier,
            settings=settings or FitSettings(),
            rng=np.random.default_rng(seed),
        )

    @property
    def window(self) -> int:
        """How many of the most recent history items the model reads."""
        return self._window

    # --- model calls -----------------------------------------------------------------------

    def encode(self, histories: NDArray[np.int64]) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
        """(B, window) catalogue rows (-1 = padding) -> memory (B, window, D) and its mask."""
        return self._model.encode(histories)

    def step(
        self,
        states: tuple[NDArray[np.float32], NDArray[np.bool_]],
        prefix: NDArray[np.int64],
        level: int,
    ) -> NDArray[np.float32]:
        """The decoder: logits of `level`'s codes for each beam (the beam-search step).

        Args:
            states: memory (B, window, D) and its mask (B, window), once per user.
            prefix: (B, W, num_levels - 1) codes of each user's W beams.
            level: the level to decode.

        Returns:
            (B, W, codebook_size) logits, with the adapters' bias added.
        """
        return self._model.step(states, prefix, level, self._bias if self._adapters else None)

    def _search_graph(
        self, history_rows: NDArray[np.int64], exclude: list[int], width: int, extra: int, k: int
    ) -> SearchResult:
        """One user's search in the bundle's search graph, with the adapters' bias."""
        return self._model.search_one(
            history_rows, exclude=exclude, width=width, extra=extra, k=k, bias=self._bias
        )

    def rank(
        self,
        histories: NDArray[np.int64],
        *,
        k: int,
        beam_width: int | None = None,
        exclude: NDArray[np.int64] | None = None,
    ) -> SearchResult:
        """Top-k catalogue rows for a batch of encoded histories (vectorised; no checks).

        Args:
            histories: (B, window) catalogue rows, most recent last, -1 = padding.
            k: items per user.
            beam_width: beams per level (default: the bundle's, at least k).
            exclude: optional (B, E) rows to leave out (-1 padded).

        Histories with no items get the most popular items of the training data.
        """
        width = max(k, beam_width or self.manifest.search.get("beam_width", k))
        result_items = np.full((len(histories), k), -1, dtype=np.int64)
        result_lp = np.full((len(histories), k), -np.inf)
        result_codes = np.full((len(histories), k, self._levels), -1, dtype=np.int64)
        has = (histories >= 0).any(axis=1)
        if has.any():
            states = self.encode(histories[has])
            found = (
                self._beam(states, width, k, None, None)
                if exclude is None
                else search_excluding(
                    states,
                    self.step,
                    self._index,
                    beam_width=width,
                    top_k=k,
                    exclude=exclude[has],
                    window=self._window,
                )
            )
            result_items[has], result_lp[has] = found.items, found.log_probs
            result_codes[has] = found.semantic_ids
        for row in np.flatnonzero(~has):  # cold start: popularity
            banned = set() if exclude is None else set(exclude[row].tolist())
            top = [i for i in self._pop_order[: k + len(banned)] if i not in banned][:k]
            result_items[row, : len(top)] = top
            result_lp[row, : len(top)] = self._pop_log_prob[top]
            result_codes[row, : len(top)] = self._bundle.semantic_ids[top]
        return SearchResult(items=result_items, log_probs=result_lp, semantic_ids=result_codes)

    def _beam(
        self,
        states: tuple[NDArray[np.float32], NDArray[np.bool_]],
        width: int,
        k: int,
        exclude: NDArray[np.int64] | None,
        extra: Any,
    ) -> SearchResult:
        """`beam_search` over this bundle's decoder and prefix index."""
        return beam_search(
            states,
            self.step,
            self._index,
            beam_width=width,
            top_k=k,
            exclude=exclude,
            extra_width=extra,
        )

    # --- the app-facing API ------------------------------------------------------------------

    def recommend_batch(
        self,
        histories: Sequence[Sequence[ItemId]],
        *,
        k: int = 10,
        exclude_history: bool = True,
        unknown: Literal["drop", "raise"] = "drop",
        beam_width: int | None = None,
        _stacklevel: int = 3,
    ) -> list[list[Recommendation]]:
        """Recommend for many users at once (one model call per level for the whole batch).

        See `recommend` for the arguments; `histories` holds one history per user.
        """
        check_request(k, unknown, beam_width, len(self.item_ids))
        rows = []
        for b, h in enumerate(histories):
            try:
                rows.append(catalogue_rows(self._lookup, h, unknown, _stacklevel))
            except UnknownItemError as e:  # name the user of the batch
                raise UnknownItemError(e.items, where=f"histories[{b}]") from None
            except InvalidRequestError as e:
                raise InvalidRequestError(f"histories[{b}]: {e}") from None
        batch = np.full((len(rows), self._window), -1, dtype=np.int64)
        for b, r in enumerate(rows):
            recent = r[-self._window :]  # longer histories: the most recent items
            if recent:
                batch[b, -len(recent) :] = recent
        exclude = exclusion_batch(rows) if exclude_history and any(rows) else None
        found = self.rank(batch, k=k, beam_width=beam_width, exclude=exclude)
        return self._recommendations(found)

    def _recommendations(self, found: SearchResult) -> list[list[Recommendation]]:
        return to_recommendations(found, self.item_ids, self._bundle.metadata)

    def recommend(
        self,
        history: Sequence[ItemId],
        *,
        k: int = 10,
        exclude_history: bool = True,
        unknown: Literal["drop", "raise"] = "drop",
        beam_width: int | None = None,
    ) -> list[Recommendation]:
        """The k items the user is most likely to want next, best first.

        Args:
            history: item ids the user interacted with, oldest first. Only the most recent
                `window` items are read. An empty history gets the most popular items.
            k: how many items (1 .. catalogue size).
            exclude_history: leave out items already in the history.
            unknown: what to do with ids not in the catalogue: "drop" them with an
                `UnknownItemWarning`, or "raise" `UnknownItemError`.
            beam_width: beams per level of the constrained beam search (default: the
                bundle's, at least k); wider is slower and a little more accurate.

        Returns:
            Up to k recommendations with log-probabilities, semantic IDs and metadata.

        Raises:
            InvalidRequestError: k out of range, or a history entry that is not an id.
            UnknownItemError: with unknown="raise", ids not in the catalogue.
        """
        check_request(k, unknown, beam_width, len(self.item_ids))
        rows = catalogue_rows(self._lookup, history, unknown, 3)
        if not rows:  # cold start: the most popular items, as in a batch
            return self.recommend_batch([[]], k=k, beam_width=beam_width)[0]
        # `recommend_batch` for one user, without its batch bookkeeping: an app calls this once
        # per screen, and next to a small model that bookkeeping is a real share of the call.
        width = max(k, beam_width or self.manifest.search.get("beam_width", k))
        recent = rows[-self._window :]
        history_rows = np.full((1, self._window), -1, dtype=np.int64)  # (1, window)
        history_rows[0, self._window - len(recent) :] = recent
        distinct = len(set(rows)) if exclude_history else 0
        extra = extra_beams(distinct, width, self._window)
        if self._model.has_search_graph:
            excluded = sorted(set(rows)) if exclude_history else []  # each banned item once
            found = self._search_graph(history_rows, excluded, width, extra, k)
            if extra < distinct and self._short(found, k, distinct):  # see `search_excluding`
                found = self._search_graph(history_rows, excluded, width, distinct, k)
            return self._recommendations(found)[0]
        exclude = np.array([rows], dtype=np.int64) if exclude_history else None  # (1, E)
        states = self.encode(history_rows)
        found = self._beam(states, width, k, exclude, extra)
        if extra < distinct and self._short(found, k, distinct):  # see `search_excluding`
            found = self._beam(states, width, k, exclude, distinct)
        return self._recommendations(found)[0]

    def _short(self, found: SearchResult, k: int, excluded: int) -> bool:
        """Whether one user's list holds fewer items than k and the catalogue allow."""
        return int((found.items[0] >= 0).sum()) < min(k, len(self.item_ids) - excluded)
