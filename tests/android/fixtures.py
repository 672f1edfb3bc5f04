"""Conformance fixtures for the JVM core of android_demo: a bundle and golden traces.

    python -m tests.android.fixtures            # rewrite the tiny bundle + trace
    python -m tests.android.fixtures BUNDLE     # also trace another bundle (a Beauty student)

The JVM tests replay each trace's recorded model outputs through their own decoding code and
must return the same recommendations; tests/android/test_fixtures.py checks that the committed
traces still match what the SDK does.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

RESOURCES = Path(__file__).resolve().parents[2] / "android_demo/core/src/test/resources"


def tiny_cases() -> list[dict[str, Any]]:
    """Requests that exercise every branch of the decoding logic on the tiny bundle."""
    return [
        {"history": ["item3", "item10"], "options": {"k": 5}},
        {"history": ["item1"], "options": {"k": 10, "exclude_history": False}},
        {"history": [f"item{i}" for i in range(12)], "options": {"k": 5}},  # longer than window
        {"history": [], "options": {"k": 4}},  # cold start: popularity
        {"history": ["item3", "nope", "item3"], "options": {"k": 3}},  # unknown dropped, repeat
        {"history": ["nope"], "options": {"k": 3}},  # only unknown ids: cold start
        {"history": ["item3", "nope"], "options": {"k": 3, "unknown": "raise"}},
        {"history": ["item7"], "options": {"k": 40, "exclude_history": False}},  # whole catalogue
        {"history": ["item7", "item8"], "options": {"k": 1, "beam_width": 1}},
        {"history": ["item2"], "options": {"k": 0}},  # invalid k
        {"history": ["item5", "item6"], "options": {"k": 6, "beam_width": 3}},
    ]


def beauty_cases(item_ids: list[str]) -> list[dict[str, Any]]:
    step = max(1, len(item_ids) // 40)
    picks = item_ids[::step]
    return [
        {"history": picks[i : i + n], "options": {"k": 10}}
        for i, n in ((0, 3), (5, 8), (13, 1), (20, 20), (30, 25))
    ] + [{"history": [], "options": {"k": 10}}]


def write_tiny(resources: Path = RESOURCES) -> None:
    from pocketrec._recommender import Recommender
    from pocketrec._trace import record_trace, write_trace
    from tests.bundles import make_tiny_bundle

    bundle = make_tiny_bundle(Path(tempfile.mkdtemp()))
    target = resources / "tiny_bundle"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(bundle, target)
    rec = Recommender.from_bundle(bundle)
    write_trace(record_trace(rec, tiny_cases()), resources / "tiny_trace.json.gz")
    sign_tiny(resources)
    write_model_ids(resources)


# A fixed, publicly derivable Ed25519 key: the signed tiny bundle must be reproducible, and a
# key anyone can derive from this line is plainly no secret. Never sign real bundles with it.
TEST_SIGNING_SEED = b"pocketrec test fixture signing key"
PUBLIC_KEY_FILE = "tiny_signing_key.pub.pem"


def sign_tiny(resources: Path = RESOURCES) -> str:
    """Sign the committed tiny bundle with the test key; the JVM core checks the signature."""
    import hashlib

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pocketrec.export.sign import sign_bundle

    seed = hashlib.sha256(TEST_SIGNING_SEED).digest()
    key = Ed25519PrivateKey.from_private_bytes(seed)
    keys = Path(tempfile.mkdtemp())
    (keys / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (resources / PUBLIC_KEY_FILE).write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    record = sign_bundle(resources / "tiny_bundle", keys / "key.pem")
    shutil.rmtree(keys)
    return record["key_id"]


# Model ids (`Manifest.model_id`) the JVM core must compute alike: the tiny bundle's, and that of
# its manifest with these extra file entries, whose names need JSON escaping and whose order by
# code point differs from Java's default String order (U+FF01 before U+1F600).
MODEL_IDS_FILE = "model_ids.json"
ODD_FILE_NAMES = ["donn\u00e9es/\u00e9.bin", 'a"b', "\uff01", "\U0001f600", "tab\there"]


def odd_files_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """`manifest` (parsed JSON) with an entry per ODD_FILE_NAMES (sha256 "0"*64, "1"*64, ...)."""
    extra = {name: {"sha256": str(n) * 64, "bytes": 1} for n, name in enumerate(ODD_FILE_NAMES)}
    return manifest | {"files": manifest["files"] | extra}


def write_model_ids(resources: Path = RESOURCES) -> None:
    import json

    from pocketrec._manifest import Manifest

    obj = json.loads((resources / "tiny_bundle" / "manifest.json").read_text())
    ids = {
        "tiny_bundle": Manifest.parse(obj).model_id,
        "tiny_bundle_with_odd_file_names": Manifest.parse(odd_files_manifest(obj)).model_id,
    }
    (resources / MODEL_IDS_FILE).write_text(json.dumps(ids, indent=2) + "\n")


def anonymize(trace: dict[str, Any]) -> dict[str, Any]:
    """Replace the catalogue's item ids by row names (`item<row>`), consistently everywhere.

    A real catalogue's ids are the dataset's, which stays out of the repository; the decoding
    being checked depends on rows, codes and model outputs only.
    """
    rename = {item: f"item{row}" for row, item in enumerate(trace["item_ids"])}
    trace["item_ids"] = [rename[i] for i in trace["item_ids"]]
    for case in trace["cases"]:
        case["history"] = [rename.get(i, i) for i in case["history"]]
        for found in case["result"] or []:
            found["item_id"] = rename[found["item_id"]]
        if case["error"] is not None:  # messages may quote ids
            for item, name in rename.items():
                case["error"]["message"] = case["error"]["message"].replace(item, name)
    trace["bundle"]["name"] = trace["bundle"]["name"].split("/")[-1]
    return trace


def write_bundle_trace(bundle: Path, name: str, resources: Path = RESOURCES) -> Path:
    """Trace a real student's bundle (ids anonymized); its bundle stays out of the repository."""
    from pocketrec._recommender import Recommender
    from pocketrec._trace import record_trace, write_trace

    rec = Recommender.from_bundle(bundle)
    trace = anonymize(record_trace(rec, beauty_cases(list(rec.item_ids))))
    return write_trace(trace, resources / f"{name}_trace.json.gz")


if __name__ == "__main__":
    write_tiny()
    if len(sys.argv) > 1:
        write_bundle_trace(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "beauty")
    print(f"fixtures written to {RESOURCES}")
