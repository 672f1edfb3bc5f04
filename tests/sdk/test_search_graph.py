"""The one-user search graph: `recommend` runs it, and it agrees with the numpy search."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pocketrec import Adapter, BundleError, Recommender
from pocketrec._bundle import open_bundle
from tests.bundles import drop_search_graph


class _Counted:
    """A session that counts its runs."""

    def __init__(self, session: Any, calls: list[str], name: str) -> None:
        self._session, self._calls, self._name = session, calls, name

    def run(self, names: Any, feeds: dict[str, Any]) -> Any:
        self._calls.append(self._name)
        return self._session.run(names, feeds)


def _both(path: Path) -> tuple[Recommender, Recommender]:
    """(the search graph's Recommender, the numpy search's) on the same sessions."""
    bundle = open_bundle(path, threads=1)
    graph = Recommender(bundle)
    numpy_search = Recommender(bundle, sessions=(bundle.encoder, bundle.decoder))
    return graph, numpy_search


def _histories(rec: Recommender, n: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    ids = rec.item_ids
    out = [[i] for i in ids]  # every one-item history
    for _ in range(n):
        size = int(rng.integers(1, 12))
        out.append([ids[i] for i in rng.choice(len(ids), size, replace=True)])  # repeats too
    return out


def _assert_same(graph: Recommender, numpy_search: Recommender, history: list[str], **kw: Any):
    ours, ref = graph.recommend(history, **kw), numpy_search.recommend(history, **kw)
    assert [r.item_id for r in ours] == [r.item_id for r in ref], (history, kw)
    assert [r.semantic_id for r in ours] == [r.semantic_id for r in ref]
    expected = np.array([r.log_prob for r in ref])
    np.testing.assert_allclose([r.log_prob for r in ours], expected, rtol=1e-9, atol=0)


def test_the_tiny_bundle_has_a_search_graph_and_recommend_runs_only_it(tiny_bundle: Path) -> None:
    bundle = open_bundle(tiny_bundle)
    spec = bundle.manifest.search_graph
    assert spec is not None and spec.file in bundle.manifest.files
    assert [t.name for t in spec.inputs] == [
        "memory",
        "memory_mask",
        "exclude",
        "beam_width",
        "extra_width",
        "code_bias",
    ]
    assert [t.name for t in spec.outputs] == ["items", "log_probs"]
    calls: list[str] = []
    assert bundle.search is not None
    rec = Recommender(
        bundle,
        sessions=(
            _Counted(bundle.encoder, calls, "encoder"),
            _Counted(bundle.decoder, calls, "decoder"),
            _Counted(bundle.search, calls, "search"),
        ),
    )
    assert len(rec.recommend(["item3", "item10"], k=5)) == 5
    assert calls == ["encoder", "search"]
    calls.clear()
    rec.recommend_batch([["item3"], ["item4"]], k=5)  # batches keep the numpy search
    assert calls == ["encoder", "decoder", "decoder", "decoder"]


@pytest.mark.parametrize("exclude_history", [True, False])
@pytest.mark.parametrize(("k", "beam_width"), [(1, None), (5, None), (10, 3), (7, 7), (12, 30)])
def test_search_graph_and_numpy_search_give_the_same_items_and_log_probs(
    tiny_bundle: Path, k: int, beam_width: int | None, exclude_history: bool
) -> None:
    # The tiny catalogue has fewer candidates than beams at some levels, so this also covers
    # beams that stop short of the width, and excluded items that leave fewer than k results.
    graph, numpy_search = _both(tiny_bundle)
    for history in _histories(graph, 40, seed=k):
        _assert_same(
            graph,
            numpy_search,
            history,
            k=k,
            beam_width=beam_width,
            exclude_history=exclude_history,
        )


def test_adapters_reach_the_search_graph_and_never_give_invalid_items(tiny_bundle: Path) -> None:
    graph, numpy_search = _both(tiny_bundle)
    shape = graph.total_bias.shape
    rng = np.random.default_rng(0)
    for scale in (0.5, 5.0, 50.0):  # up to biases that dwarf the model's logits
        adapter = Adapter(graph.manifest.name, (rng.normal(size=shape) * scale).astype(np.float32))
        with_graph, with_numpy = graph.with_adapters(adapter), numpy_search.with_adapters(adapter)
        assert with_graph._model.has_search_graph and not with_numpy._model.has_search_graph
        valid = {tuple(s) for s in graph.semantic_ids.tolist()}
        for history in _histories(graph, 20, seed=1):
            _assert_same(with_graph, with_numpy, history, k=10)
            assert all(r.semantic_id in valid for r in with_graph.recommend(history, k=10))
        unadapted = with_graph.without_adapters()
        _assert_same(unadapted, numpy_search, ["item3", "item10"], k=10)


def test_a_bundle_without_the_search_graph_loads_and_searches_in_numpy(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    old = drop_search_graph(tiny_bundle, tmp_path / "old")
    rec = Recommender.from_bundle(old)
    assert rec.manifest.search_graph is None and not rec._model.has_search_graph
    graph = Recommender.from_bundle(tiny_bundle)
    for history in _histories(graph, 10, seed=2):
        _assert_same(graph, rec, history, k=10)


def test_a_search_graph_entry_without_its_file_entry_is_refused(bundle_copy: Path) -> None:
    path = bundle_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["files"]["search.onnx"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"search\.onnx.*no sha256 entry"):
        Recommender.from_bundle(bundle_copy)


def test_recommend_through_the_search_graph_is_thread_safe(tiny_bundle: Path) -> None:
    import threading

    graph, numpy_search = _both(tiny_bundle)
    histories = _histories(graph, 30, seed=3)
    expected = [[r.item_id for r in numpy_search.recommend(h, k=5)] for h in histories]
    errors: list[str] = []

    def work() -> None:
        for h, want in zip(histories, expected, strict=True):
            got = [r.item_id for r in graph.recommend(h, k=5)]
            if got != want:
                errors.append(f"{h}: {got} != {want}")
            time.sleep(0)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
