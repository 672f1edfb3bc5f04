"""The Recommender on the tiny deterministic bundle: golden output, bad input, threads."""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

import pocketrec
from pocketrec import (
    BundleError,
    IncompatibleRuntimeError,
    InvalidRequestError,
    ProviderUnavailableError,
    Recommender,
    UnknownItemError,
    UnknownItemWarning,
)

GOLDEN = Path(__file__).parent / "golden" / "tiny_recommendations.json"
HISTORIES = [["item3", "item10"], ["item1"], ["item5", "item6", "item7", "item8", "item9"], []]


def _snapshot(rec: Recommender) -> list[list[dict[str, object]]]:
    return [
        [
            {
                "item_id": r.item_id,
                "log_prob": round(r.log_prob, 5),
                "semantic_id": list(r.semantic_id),
            }
            for r in rec.recommend(h, k=5)
        ]
        for h in HISTORIES
    ]


def test_golden_recommendations(tiny_bundle: Path) -> None:
    """Regenerate with: python -m tests.sdk.test_recommender (only after an intended change)."""
    got = _snapshot(Recommender.from_bundle(tiny_bundle))
    expected = json.loads(GOLDEN.read_text())
    for g, e in zip(got, expected, strict=True):
        assert [r["item_id"] for r in g] == [r["item_id"] for r in e]
        assert [r["semantic_id"] for r in g] == [r["semantic_id"] for r in e]
        np.testing.assert_allclose(
            [r["log_prob"] for r in g], [r["log_prob"] for r in e], atol=2e-4
        )


def test_recommendations_are_valid_and_sorted(tiny_bundle: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    out = rec.recommend(["item3", "item10"], k=10)
    assert len(out) == 10 and len({r.item_id for r in out}) == 10
    assert all(r.item_id in rec.item_ids for r in out)
    assert [r.log_prob for r in out] == sorted((r.log_prob for r in out), reverse=True)
    assert all(r.log_prob <= 0 for r in out)
    assert out[0].metadata["title"].startswith("Item ")
    assert {"item3", "item10"}.isdisjoint(r.item_id for r in out)
    kept = rec.recommend(["item3", "item10"], k=10, exclude_history=False)
    assert len(kept) == 10


def test_empty_history_gets_popular_items(tiny_bundle: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    out = rec.recommend([], k=4)
    counts = json.loads((tiny_bundle / "catalog.json").read_text())["popularity"]
    top = sorted(range(len(counts)), key=lambda i: (-counts[i], i))[:4]
    assert [r.item_id for r in out] == [rec.item_ids[i] for i in top]


def test_long_history_uses_the_most_recent_window(tiny_bundle: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    long = [f"item{i}" for i in range(30)]
    recent = long[-rec.window :]
    a = rec.recommend(long, k=5, exclude_history=False)
    b = rec.recommend(recent, k=5, exclude_history=False)
    assert [r.item_id for r in a] == [r.item_id for r in b]


def test_unknown_ids_drop_with_warning_or_raise(tiny_bundle: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    with pytest.warns(UnknownItemWarning, match="dropped 2 history items"):
        dropped = rec.recommend(["item3", "nope", "item10", "gone"], k=5)
    assert dropped == rec.recommend(["item3", "item10"], k=5)
    with pytest.raises(UnknownItemError, match="'nope', 'gone'"):
        rec.recommend(["item3", "nope", "gone"], k=5, unknown="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec.recommend(["item3"], k=5)  # known ids: no warning


def test_unknown_id_warnings_point_at_the_apps_call(tiny_bundle: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    history = ["nope", "item3", "item4"]
    calls = {
        "recommend": lambda: rec.recommend(history, k=2),
        "recommend_batch": lambda: rec.recommend_batch([history], k=2),
        "fit_adapter": lambda: rec.fit_adapter(history),
        "federated_update": lambda: rec.federated_update(history, seed=0),
    }
    for name, call in calls.items():
        with pytest.warns(UnknownItemWarning) as caught:
            call()
        assert [w.filename for w in caught] == [__file__], name


@pytest.mark.parametrize(
    ("history", "match"),
    [
        ([None], r"history\[0\] is None"),
        (["item3", 2.5], r"history\[1\] is 2\.5"),
        ([True], "bool"),
        ("item3", "list of item ids"),
    ],
)
def test_non_id_history_entries_are_refused(tiny_bundle: Path, history, match: str) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    with pytest.raises(InvalidRequestError, match=match):
        rec.recommend(history, k=3)


def test_batch_errors_name_the_user(tiny_bundle: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    with pytest.raises(UnknownItemError, match=r"histories\[2\]: 1 history items .*'nope'"):
        rec.recommend_batch([["item3"], [], ["item4", "nope"]], k=3, unknown="raise")
    with pytest.raises(InvalidRequestError, match=r"histories\[1\]: history\[0\] is None"):
        rec.recommend_batch([["item3"], [None]], k=3)


def test_integer_ids_are_looked_up_as_strings(bundle_copy: Path) -> None:
    rec = Recommender.from_bundle(bundle_copy)
    with pytest.warns(UnknownItemWarning):
        rec.recommend([3], k=2)  # this catalogue's ids are strings like "item3"


@pytest.mark.parametrize("k", [0, -1, 41, 2.0, True, np.int64(41)])
def test_k_out_of_range(tiny_bundle: Path, k: object) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    with pytest.raises(InvalidRequestError, match=r"k must be an integer in \[1, 40\]"):
        rec.recommend(["item3"], k=k)  # type: ignore[arg-type]


def test_numpy_integers_are_integers(tiny_bundle: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    assert rec.recommend(["item3"], k=np.int64(5), beam_width=np.int32(8)) == rec.recommend(
        ["item3"], k=5, beam_width=8
    )
    with pytest.raises(InvalidRequestError, match="beam_width must be a positive integer"):
        rec.recommend(["item3"], k=5, beam_width=True)


def test_k_equal_to_the_catalogue(tiny_bundle: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    out = rec.recommend(["item3"], k=40, exclude_history=False)
    assert sorted(r.item_id for r in out) == sorted(rec.item_ids)


def test_a_history_that_crowds_out_the_beams_still_gets_a_full_list(tiny_bundle: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    numpy_search = Recommender(rec._bundle, sessions=(rec._bundle.encoder, rec._bundle.decoder))
    history = list(rec.item_ids[3:])  # all but three items: more than the capped extra beams
    left = set(rec.item_ids[:3])
    for r in (rec, numpy_search):  # the search graph and the numpy search
        got = r.recommend(history, k=3, beam_width=1)
        assert {x.item_id for x in got} == left
        batch = r.recommend_batch([history, history[:2]], k=3, beam_width=1)
        assert {x.item_id for x in batch[0]} == left and len(batch[1]) == 3


def test_batch_equals_single_calls(tiny_bundle: Path) -> None:
    """Same items; scores equal up to float rounding (ONNX Runtime kernels depend on batch size)."""
    rec = Recommender.from_bundle(tiny_bundle)
    batch = rec.recommend_batch(HISTORIES, k=5)
    for history, together in zip(HISTORIES, batch, strict=True):
        alone = rec.recommend(history, k=5)
        assert [r.item_id for r in together] == [r.item_id for r in alone]
        np.testing.assert_allclose(
            [r.log_prob for r in together], [r.log_prob for r in alone], atol=1e-5
        )


def test_concurrent_calls_match_single_threaded(tiny_bundle: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle)
    histories = [[f"item{(7 * i + j) % 40}" for j in range(1 + i % 6)] for i in range(40)]
    expected = [rec.recommend(h, k=5) for h in histories]
    errors: list[BaseException] = []
    mismatches = []

    def worker(offset: int) -> None:
        try:
            for call in range(500):
                i = (offset * 13 + call) % len(histories)
                if rec.recommend(histories[i], k=5) != expected[i]:
                    mismatches.append(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and mismatches == []


def test_missing_file_is_a_bundle_error(bundle_copy: Path) -> None:
    (bundle_copy / "decoder.onnx").unlink()
    with pytest.raises(BundleError, match="decoder.onnx is missing"):
        Recommender.from_bundle(bundle_copy)


def test_altered_file_is_a_bundle_error(bundle_copy: Path) -> None:
    catalog = bundle_copy / "catalog.json"
    catalog.write_text(catalog.read_text().replace("Item 1 ", "Item X "))
    with pytest.raises(BundleError, match="catalog.json does not match its sha256"):
        Recommender.from_bundle(bundle_copy)


def test_newer_manifest_schema_is_refused(bundle_copy: Path) -> None:
    path = bundle_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["schema_version"] = pocketrec.SCHEMA_VERSION + 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="upgrade pocketrec"):
        Recommender.from_bundle(bundle_copy)


def test_schema_one_bundle_is_refused_with_a_reexport_hint(bundle_copy: Path) -> None:
    """Schema 1 decoders take one history copy per beam: feeding them a grid would fail later."""
    path = bundle_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["schema_version"] = 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="schema version 1.*pocketrec export"):
        Recommender.from_bundle(bundle_copy)


def test_corrupt_manifest(bundle_copy: Path) -> None:
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Recommender.from_bundle(bundle_copy)
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match="no manifest.json"):
        Recommender.from_bundle(bundle_copy)


def test_old_onnxruntime_is_refused_with_the_version(bundle_copy: Path) -> None:
    path = bundle_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["min_onnxruntime"] = "99.1"
    path.write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleRuntimeError, match=r"needs onnxruntime >= 99\.1"):
        Recommender.from_bundle(bundle_copy)


def _edit_manifest(bundle: Path, **changes: object) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"min_onnxruntime": "latest"}, "min_onnxruntime must be a version"),
        ({"search": {"beam_width": "20", "top_k": 10}}, "search.beam_width must be an integer"),
        ({"provider_options": ["QNN"]}, "malformed"),
        ({"files": {"catalog.json": 5}}, "catalog.json should be an object"),
        ({"schema_version": True}, "schema_version should be"),
        ({"static_batch": 0}, "static_batch must be an integer >= 1"),
    ],
)
def test_malformed_manifest_values_are_bundle_errors(
    bundle_copy: Path, changes: dict[str, object], match: str
) -> None:
    """Each of these used to load, or fail later with a raw TypeError or a passed check."""
    _edit_manifest(bundle_copy, **changes)
    with pytest.raises(BundleError, match=match):
        Recommender.from_bundle(bundle_copy)


def _rewrite(bundle: Path, name: str, content: bytes) -> None:
    """Replace a bundle file and its manifest entry, as an exporter bug or an edit would."""
    from pocketrec._bundle import sha256_file

    (bundle / name).write_bytes(content)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][name] = {
        "sha256": sha256_file(bundle / name),
        "bytes": (bundle / name).stat().st_size,
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _catalog_edit(edit: str) -> object:
    def apply(catalog: dict) -> None:
        items, pop = catalog["items"], catalog.setdefault("popularity", [1] * len(catalog["items"]))
        if edit == "no id":
            del items[3]["id"]
        elif edit == "not a dict":
            items[3] = "item3"
        elif edit == "duplicate id":
            items[4]["id"] = items[3]["id"]
        elif edit == "short popularity":
            del pop[-1]
        elif edit == "NaN popularity":
            pop[2] = None

    return apply


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ("no id", r"catalogue items \[3\] have no string id"),
        ("not a dict", r"catalogue items \[3\] have no string id"),
        ("duplicate id", "catalogue id 'item[0-9]+' appears more than once"),
        ("short popularity", "popularity must be 40 finite numbers"),
        ("NaN popularity", "popularity must be 40 finite numbers"),
    ],
)
def test_invalid_catalogue_is_a_bundle_error(bundle_copy: Path, edit: str, match: str) -> None:
    catalog = json.loads((bundle_copy / "catalog.json").read_text())
    _catalog_edit(edit)(catalog)  # type: ignore[operator]
    _rewrite(bundle_copy, "catalog.json", json.dumps(catalog).encode())
    with pytest.raises(BundleError, match=f"{match}.*re-export"):
        Recommender.from_bundle(bundle_copy)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ("out of range", "outside 0..7"),
        ("negative", "outside 0..7"),
        ("duplicate", "two items share a semantic ID"),
        ("float", "holds float32, not integers"),
    ],
)
def test_invalid_semantic_id_table_is_a_bundle_error(
    bundle_copy: Path, edit: str, match: str
) -> None:
    import io

    table = np.load(bundle_copy / "semantic_ids.npy")
    if edit == "out of range":
        table[5, 0] = 8
    elif edit == "negative":
        table[5, 1] = -1
    elif edit == "duplicate":
        table[5] = table[6]
    elif edit == "float":
        table = table.astype(np.float32) + 0.5
    buffer = io.BytesIO()
    np.save(buffer, table)
    _rewrite(bundle_copy, "semantic_ids.npy", buffer.getvalue())
    with pytest.raises(BundleError, match=match):
        Recommender.from_bundle(bundle_copy)


def test_unavailable_provider_lists_the_available_ones(tiny_bundle: Path) -> None:
    with pytest.raises(ProviderUnavailableError, match="available: .*CPUExecutionProvider"):
        Recommender.from_bundle(tiny_bundle, providers=["TensorrtExecutionProvider"])


def test_threads_option(tiny_bundle: Path) -> None:
    rec = Recommender.from_bundle(tiny_bundle, threads=1, providers=["CPUExecutionProvider"])
    assert rec.providers == ("CPUExecutionProvider",)


if __name__ == "__main__":  # regenerate the golden file after an intended change
    import tempfile

    from tests.bundles import make_tiny_bundle

    GOLDEN.parent.mkdir(exist_ok=True)
    bundle = make_tiny_bundle(Path(tempfile.mkdtemp()))
    GOLDEN.write_text(json.dumps(_snapshot(Recommender.from_bundle(bundle)), indent=1) + "\n")
    print(f"wrote {GOLDEN}")


def _dataset(item_ids: list[str]) -> object:
    """Three users who each saw four of `item_ids`, in the project's Dataset type."""
    from pocketrec.distill.data import Dataset

    rng = np.random.default_rng(0)
    items = np.concatenate([rng.permutation(len(item_ids))[:4] for _ in range(3)]).astype(np.int32)
    return Dataset(
        name="shop",
        item_ids=np.array(item_ids),
        user_ids=np.array(["u0", "u1", "u2"]),
        offsets=np.array([0, 4, 8, 12]),
        items=items,
        timestamps=None,
        item_text=None,
        default_history_len=20,
    )


def test_evaluating_on_another_catalogue_is_refused_or_warned(tiny_bundle: Path) -> None:
    pytest.importorskip("pocketrec.distill.protocol")
    from pocketrec._evaluate import evaluate_recommender

    rec = Recommender.from_bundle(tiny_bundle)
    with pytest.raises(InvalidRequestError, match="none of shop's 10 items is in this bundle"):
        evaluate_recommender(rec, _dataset([f"other{i}" for i in range(10)]))
    mostly_other = [f"item{i}" for i in range(3)] + [f"other{i}" for i in range(7)]
    with pytest.warns(UserWarning, match="only 3 of shop's 10 items"):
        metrics = evaluate_recommender(rec, _dataset(mostly_other))
    assert metrics["num_users"] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the bundle's own catalogue: no warning
        evaluate_recommender(rec, _dataset([f"item{i}" for i in range(10)]))
