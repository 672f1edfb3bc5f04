"""A bundle's ONNX graphs as one model: encode histories, decode a level, run the search graph."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from pocketrec._bundle import Bundle
from pocketrec._search import SearchResult, one_user_result
from pocketrec._sessions import run_decoder, run_fixed, static_dim

__all__ = ["Model"]

States = tuple[NDArray[np.float32], NDArray[np.bool_]]


class Model:
    """The sessions of one bundle and the tables their inputs are built from.

    It holds no per-call state, so one instance serves every thread, and the Recommenders that
    `with_adapters` makes share it: an adapter changes only the bias passed in.
    """

    def __init__(
        self, bundle: Bundle, sessions: tuple[Any, Any] | tuple[Any, Any, Any] | None = None
    ) -> None:
        """Wrap an opened bundle's sessions.

        Args:
            bundle: an opened bundle.
            sessions: replacements for its (encoder, decoder) or (encoder, decoder, search)
                sessions; with two there is no search graph (it belongs to the bundle's
                decoder).
        """
        chosen = sessions or (bundle.encoder, bundle.decoder, bundle.search)
        self._encoder, self._decoder = chosen[0], chosen[1]
        self._search: Any = chosen[2] if len(chosen) == 3 else None
        self._index = bundle.index
        manifest = bundle.manifest
        levels = manifest.semantic_ids.num_levels
        padding = np.zeros((1, levels), dtype=np.int64)
        self._codes = np.concatenate([padding, bundle.semantic_ids])  # row 0 = padding
        self._enc_rows = static_dim(manifest.encoder.inputs[0].shape[0])
        prefix_shape = manifest.decoder.inputs[2].shape  # (users, beams, levels - 1)
        self._dec_users, self._dec_beams = static_dim(prefix_shape[0]), static_dim(prefix_shape[1])
        self._level_feeds = tuple(np.asarray(lv, dtype=np.int64) for lv in range(levels))

    @property
    def has_search_graph(self) -> bool:
        """Whether one user's whole search can run as one graph (`search_one`)."""
        return self._search is not None

    def encode(self, histories: NDArray[np.int64]) -> States:
        """(B, window) catalogue rows (-1 = padding) -> memory (B, window, D) and its mask."""
        rows = histories.astype(np.int64) + 1  # (B, L)
        feeds = {"history_codes": self._codes[rows], "history_rows": rows}
        memory = run_fixed(self._encoder, feeds, self._enc_rows, tuple(feeds))
        return memory, histories >= 0

    def step(
        self,
        states: States,
        prefix: NDArray[np.int64],
        level: int,
        bias: NDArray[np.float32] | None,
    ) -> NDArray[np.float32]:
        """(B, W, codebook_size) logits of `level`'s codes for each user's W beam prefixes.

        `prefix` is (B, W, num_levels - 1); `bias` ((num_levels, codebook_size) or None) is
        added to the logits.
        """
        memory, mask = states
        feeds = {
            "memory": memory,
            "memory_mask": mask,
            "prefix": prefix,
            "level": self._level_feeds[level],
        }
        logits = run_decoder(self._decoder, feeds, self._dec_users, self._dec_beams)
        return logits if bias is None else logits + bias[level]

    def search_one(
        self,
        history_rows: NDArray[np.int64],
        *,
        exclude: list[int],
        width: int,
        extra: int,
        k: int,
        bias: NDArray[np.float32],
    ) -> SearchResult:
        """`beam_search` for one user in one run of the bundle's search graph.

        The same result as the numpy search (which stays the reference, and serves batches):
        the graph is the bundle's decoder with the search around it, checked at export.
        `extra` beams are added before the last level as `rank` adds them; `exclude` lists the
        rows to leave out (repeats do not matter).
        """
        memory, mask = self.encode(history_rows)
        items, log_probs = self._search.run(
            None,
            {
                "memory": memory,
                "memory_mask": mask,
                "exclude": np.array(exclude, dtype=np.int64),
                "beam_width": np.array(width, dtype=np.int64),
                "extra_width": np.array(extra, dtype=np.int64),
                "code_bias": bias,
            },
        )
        return one_user_result(self._index, items, log_probs, k)
