"""The committed conformance fixtures of android_demo still describe what the SDK does.

The JVM core's tests replay `android_demo/core/src/test/resources/*_trace.json.gz`; these tests
replay the same traces through the Python SDK, with the recorded model outputs standing in for
ONNX Runtime, and require the recorded results. A change to the SDK's decoding (prefix index,
beam search, history handling) that the traces do not reflect fails here first; regenerate them
with `python -m tests.android.fixtures`.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pocketrec._bundle import Bundle, open_bundle
from pocketrec._errors import RecommenderError
from pocketrec._prefix import PrefixIndex
from pocketrec._recommender import Recommender, UnknownItemWarning
from pocketrec._trace import FORMAT, decode_array
from tests.android.fixtures import PUBLIC_KEY_FILE, RESOURCES, tiny_cases

TRACES = sorted(RESOURCES.glob("*_trace.json.gz"))


def _read(path: Path) -> dict[str, Any]:
    trace: dict[str, Any] = json.loads(gzip.decompress(path.read_bytes()))
    assert trace["format"] == FORMAT
    return trace


class _Replay:
    """A session stand-in: checks each call's inputs and returns the recorded output."""

    def __init__(self, graph: str, calls: Iterator[dict[str, Any]]) -> None:
        self._graph, self._calls = graph, calls

    def run(self, names: Any, feeds: dict[str, Any]) -> list[Any]:
        call = next(self._calls, None)
        assert call is not None, "more model calls than recorded"
        assert call["graph"] == self._graph
        assert set(feeds) == set(call["inputs"])
        for name, value in feeds.items():
            np.testing.assert_array_equal(np.asarray(value), decode_array(call["inputs"][name]))
        return [decode_array(call["output"])]


def test_traces_are_committed() -> None:
    assert (RESOURCES / "tiny_trace.json.gz") in TRACES
    assert (RESOURCES / "tiny_bundle" / "manifest.json").is_file()


def test_the_committed_tiny_bundle_is_signed_by_the_test_key() -> None:
    """The JVM core checks the same signature (BundleSignatureTest): one format, two readers."""
    pytest.importorskip("cryptography")
    bundle = open_bundle(RESOURCES / "tiny_bundle", trusted_keys=[RESOURCES / PUBLIC_KEY_FILE])
    assert (
        bundle.signed_by
        == json.loads((RESOURCES / "tiny_bundle/signature.json").read_text())["key_id"]
    )


def test_tiny_trace_records_the_current_cases() -> None:
    cases = _read(RESOURCES / "tiny_trace.json.gz")["cases"]
    recorded = [{"history": c["history"], "options": c["options"]} for c in cases]
    assert recorded == tiny_cases()


def _bundle_from_trace(trace: dict[str, Any]) -> Bundle:
    """The SDK's bundle for a trace committed without its bundle (a real student's): tables
    and settings from the trace, graph input names from the tiny bundle (same exporter)."""
    template = open_bundle(RESOURCES / "tiny_bundle", providers=["CPUExecutionProvider"])
    info = trace["bundle"]
    sids = decode_array(trace["semantic_ids"]).astype(np.int64)
    manifest = dataclasses.replace(
        template.manifest,
        name=info["name"],
        precision=info["precision"],
        max_len=info["max_len"],
        search=info["search"],
        static_batch=info["static_batch"],
        num_items=len(trace["item_ids"]),
        semantic_ids=dataclasses.replace(
            template.manifest.semantic_ids,
            num_levels=info["num_levels"],
            codebook_size=info["codebook_size"],
        ),
    )
    return dataclasses.replace(
        template,
        manifest=manifest,
        semantic_ids=sids,
        index=PrefixIndex(sids, manifest.semantic_ids.codebook_size),
        item_ids=tuple(trace["item_ids"]),
        metadata=tuple({} for _ in trace["item_ids"]),
        popularity=decode_array(trace["popularity"]).astype(np.float64),
        adapters=(),
    )


def test_a_real_student_trace_is_committed() -> None:
    trace = _read(RESOURCES / "beauty_trace.json.gz")
    assert len(trace["item_ids"]) == 12101  # the Beauty catalogue, ids anonymized
    assert trace["item_ids"][:2] == ["item0", "item1"]
    assert all(case["result"] for case in trace["cases"])


@pytest.mark.parametrize("path", TRACES, ids=[p.name for p in TRACES])
def test_trace_replays_through_the_sdk(path: Path) -> None:
    folder = RESOURCES / path.name.replace("_trace.json.gz", "_bundle")
    trace = _read(path)
    if folder.is_dir():
        bundle = open_bundle(folder, providers=["CPUExecutionProvider"])  # verifies every sha256
    else:
        bundle = _bundle_from_trace(trace)
    assert list(bundle.item_ids) == trace["item_ids"]
    np.testing.assert_array_equal(bundle.semantic_ids, decode_array(trace["semantic_ids"]))
    for number, case in enumerate(trace["cases"]):
        calls = iter(case["calls"])
        rec = Recommender(bundle, sessions=(_Replay("encoder", calls), _Replay("decoder", calls)))
        where = f"{path.name} case {number}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnknownItemWarning)
                found = rec.recommend(case["history"], **case["options"])
        except RecommenderError as e:
            assert case["error"] is not None, f"{where}: raised {e!r}, recorded a result"
            assert type(e).__name__ == case["error"]["type"], where
            continue
        assert case["error"] is None, f"{where}: recorded {case['error']}, got a result"
        assert next(calls, None) is None, f"{where}: fewer model calls than recorded"
        assert [r.item_id for r in found] == [r["item_id"] for r in case["result"]], where
        assert [list(r.semantic_id) for r in found] == [r["semantic_id"] for r in case["result"]]
        np.testing.assert_allclose(
            [r.log_prob for r in found],
            [r["log_prob"] for r in case["result"]],
            rtol=1e-12,
            err_msg=where,
        )


def test_the_committed_model_ids_are_the_sdks() -> None:
    """The JVM core computes `Manifest.model_id` for these manifests and must get these ids."""
    from pocketrec._manifest import Manifest
    from tests.android.fixtures import MODEL_IDS_FILE, odd_files_manifest

    ids = json.loads((RESOURCES / MODEL_IDS_FILE).read_text())
    manifest = json.loads((RESOURCES / "tiny_bundle" / "manifest.json").read_text())
    assert ids == {
        "tiny_bundle": Manifest.parse(manifest).model_id,
        "tiny_bundle_with_odd_file_names": Manifest.parse(odd_files_manifest(manifest)).model_id,
    }
    assert ids["tiny_bundle"] == open_bundle(RESOURCES / "tiny_bundle").manifest.model_id
