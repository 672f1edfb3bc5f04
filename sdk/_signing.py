"""Bundle signatures: who published a bundle, checked on the device before it is used.

The sha256 of every file in `manifest.json` shows a file is the one exported with that
manifest, but anyone who can replace the files can also rewrite the manifest. A publisher
therefore signs the exact bytes of `manifest.json` with an Ed25519 private key
(`pocketrec sign BUNDLE --key KEY`), which covers every file through their sha256, and an app
that pins the publisher's public key accepts only bundles that key signed
(`Recommender.from_bundle(path, trusted_keys=[...])`). This matters most for bundles that
arrive over the air, such as a new federated version of the shared adapter.

`signature.json` beside the manifest:

    {"algorithm": "ed25519", "key_id": "<16 hex>", "manifest_sha256": "<64 hex>",
     "signature": "<base64 of 64 bytes>"}

`key_id` is the first 16 hex digits of the sha256 of the public key's DER
SubjectPublicKeyInfo (the body of its PEM file), so an app can say which key signed a bundle it
does not trust. Ed25519 comes from the `cryptography` package (the `signing` extra), imported
only when a signature is checked: a base install that does not pin keys never needs it, and
cryptographic primitives are not something to write by hand. Android's `java.security` verifies
the same files (API 33+).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketrec._errors import RecommenderError, SignatureError
from pocketrec._manifest import SIGNATURE_FILE, read_manifest_bytes

__all__ = [
    "PublicKey",
    "Signature",
    "key_id",
    "load_public_keys",
    "read_signature",
    "verify_signature",
]

ALGORITHM = "ed25519"
SIGN_HINT = "sign it with `pocketrec sign BUNDLE --key PRIVATE_KEY.pem`"


def require_cryptography() -> Any:
    """The `cryptography` package, or an error with the pip command that installs it."""
    try:
        import cryptography.hazmat.primitives.serialization as serialization
    except ImportError as e:
        raise RecommenderError(
            "checking bundle signatures needs the cryptography package, which the base install "
            "leaves out; install it with: pip install 'pocketrec[signing]'"
        ) from e
    return serialization


def key_id(der: bytes) -> str:
    """The id of a public key: 16 hex digits of the sha256 of its DER SubjectPublicKeyInfo."""
    return hashlib.sha256(der).hexdigest()[:16]


@dataclass(frozen=True)
class PublicKey:
    """A trusted Ed25519 public key and its id."""

    key_id: str
    der: bytes


def _read_key_text(key: str | bytes | Path) -> tuple[bytes, str]:
    """PEM bytes of `key` (PEM text or bytes, or a path to a PEM file) and where it came from."""
    if isinstance(key, bytes):
        return key, "a key given as bytes"
    text = str(key)
    if "-----BEGIN" in text:
        return text.encode(), "a key given as PEM text"
    path = Path(key)
    if not path.is_file():
        raise RecommenderError(
            f"trusted key {text!r} is neither PEM text nor a file; pass the publisher's public "
            "key (`pocketrec keygen` writes it as signing_key.pub.pem)"
        )
    return path.read_bytes(), str(path)


def load_public_keys(keys: Sequence[str | bytes | Path]) -> tuple[PublicKey, ...]:
    """Parse trusted Ed25519 public keys (PEM text, PEM bytes, or paths to PEM files).

    Raises:
        RecommenderError: no keys, a key that is not an Ed25519 public key in PEM form, or
            `cryptography` is not installed.
    """
    if isinstance(keys, (str, bytes, Path)):
        keys = [keys]
    if not keys:
        raise RecommenderError(
            "trusted_keys is empty, so no bundle could be accepted; pass the publisher's "
            "public key, or leave trusted_keys out to skip the signature check"
        )
    serialization = require_cryptography()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    found = []
    for key in keys:
        pem, where = _read_key_text(key)
        if b"PRIVATE KEY" in pem:
            raise RecommenderError(
                f"{where} is a private key; an app needs only the public one "
                "(signing_key.pub.pem). Keep the private key with the publisher."
            )
        try:
            loaded = serialization.load_pem_public_key(pem)
        except ValueError as e:
            raise RecommenderError(f"{where} is not a PEM public key ({e})") from e
        if not isinstance(loaded, Ed25519PublicKey):
            raise RecommenderError(
                f"{where} is a {type(loaded).__name__}, bundles are signed with Ed25519 keys "
                "(make a pair with `pocketrec keygen`)"
            )
        der = loaded.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        found.append(PublicKey(key_id=key_id(der), der=der))
    return tuple(found)


@dataclass(frozen=True)
class Signature:
    """A parsed `signature.json`."""

    key_id: str
    manifest_sha256: str
    signature: bytes


def read_signature(folder: Path) -> Signature | None:
    """The bundle's signature, or None when it has no `signature.json`.

    Raises:
        SignatureError: the file exists but is not a valid signature record.
    """
    path = Path(folder) / SIGNATURE_FILE
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text())
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        if obj.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm {obj.get('algorithm')!r}, expected {ALGORITHM!r}")
        kid, digest, sig = obj["key_id"], obj["manifest_sha256"], obj["signature"]
        if not all(isinstance(v, str) for v in (kid, digest, sig)):
            raise ValueError("key_id, manifest_sha256 and signature must be strings")
        raw = base64.b64decode(sig, validate=True)
        if len(raw) != 64:
            raise ValueError(f"an Ed25519 signature has 64 bytes, this one {len(raw)}")
    except (UnicodeDecodeError, ValueError, KeyError, binascii.Error) as e:
        raise SignatureError(
            f"{path} is not a valid signature record ({e}); the bundle is corrupt: "
            f"re-download it, or {SIGN_HINT}"
        ) from e
    return Signature(key_id=kid, manifest_sha256=digest, signature=raw)


def verify_signature(folder: Path, trusted: Sequence[PublicKey]) -> tuple[str, bytes]:
    """Check that one of the `trusted` keys signed the bundle's manifest.json as it is now.

    Returns:
        The id of the key that signed it, and the manifest bytes the signature was checked on:
        parse those (`read_manifest(folder, data=...)`), not the file again, which could have
        been replaced in between.

    Raises:
        BundleError: the folder has no manifest.json.
        SignatureError: the bundle is unsigned, signed by a key that is not trusted, or its
            manifest changed after it was signed.
    """
    folder = Path(folder)
    serialization = require_cryptography()
    from cryptography.exceptions import InvalidSignature

    manifest = read_manifest_bytes(folder)
    sig = read_signature(folder)
    names = ", ".join(k.key_id for k in trusted)
    if sig is None:
        raise SignatureError(
            f"{folder} is not signed, and this app accepts only bundles signed by {names}; "
            f"{SIGN_HINT}"
        )
    candidates = [k for k in trusted if k.key_id == sig.key_id]
    if not candidates:
        raise SignatureError(
            f"{folder} is signed by key {sig.key_id}, which is not trusted here (trusted: "
            f"{names}); get the bundle from its publisher, or add that publisher's public key"
        )
    for key in candidates:  # ids are 64-bit prefixes: try every trusted key that has this one
        try:
            serialization.load_der_public_key(key.der).verify(sig.signature, manifest)
        except InvalidSignature:
            continue
        return sig.key_id, manifest
    changed = hashlib.sha256(manifest).hexdigest() != sig.manifest_sha256
    raise SignatureError(
        f"{folder}/manifest.json does not match its signature by {sig.key_id}: "
        + (
            "the manifest was changed after signing"
            if changed
            else "the signature does not verify (corrupt or forged)"
        )
        + "; do not use this bundle: re-download it from its publisher"
    )
