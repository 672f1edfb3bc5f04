"""Signing bundles for release: an Ed25519 key pair, and `signature.json` over a manifest.

The publisher keeps the private key; apps pin the public key and open bundles with
`Recommender.from_bundle(path, trusted_keys=[...])` (see `pocketrec._signing` for the format and
why the manifest is what is signed). Ed25519 and PEM come from the `cryptography` package.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pocketrec._bundle import _verify_files
from pocketrec._errors import ConfigError
from pocketrec._manifest import SIGNATURE_FILE, read_manifest, read_manifest_bytes
from pocketrec._signing import ALGORITHM, key_id, require_cryptography

__all__ = ["PASSWORD_ENV", "generate_key_pair", "load_private_key", "sign_bundle"]

# An encrypted private key is unlocked with the password in this environment variable, so the
# password never appears on a command line or in a shell history.
PASSWORD_ENV = "POCKETREC_SIGNING_PASSWORD"
PRIVATE_FILE = "signing_key.pem"
PUBLIC_FILE = "signing_key.pub.pem"


def generate_key_pair(folder: Path, *, password: str | None = None) -> tuple[Path, Path, str]:
    """Write a new Ed25519 pair: `signing_key.pem` (private, mode 600) and `.pub.pem`.

    Args:
        folder: where to write them; existing keys there are never overwritten.
        password: encrypt the private key with it (default: unencrypted; keep the file safe).

    Returns:
        (private key path, public key path, key id).

    Raises:
        ConfigError: a key file already exists in `folder`.
    """
    serialization = require_cryptography()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = Path(folder)
    private_path, public_path = folder / PRIVATE_FILE, folder / PUBLIC_FILE
    existing = [str(p) for p in (private_path, public_path) if p.exists()]
    if existing:
        raise ConfigError(
            f"{', '.join(existing)} already exist; a new pair would orphan every bundle signed "
            "with the old one. Choose another folder, or move the old keys away first",
            where="key folder",
        )
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    encryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    # Created with mode 600 rather than chmod afterwards: the key is never readable by others.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public = key.public_key()
    public_path.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_path, public_path, key_id(der)


def load_private_key(path: Path) -> Any:
    """The Ed25519 private key in `path` (unlocked with $POCKETREC_SIGNING_PASSWORD if needed).

    Raises:
        ConfigError: missing, locked, or not an Ed25519 private key.
    """
    serialization = require_cryptography()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"no private key at {path}; make a pair with `pocketrec keygen --out DIR`",
            where="signing key",
        )
    password = os.environ.get(PASSWORD_ENV)
    try:
        key = serialization.load_pem_private_key(
            path.read_bytes(), password=password.encode() if password else None
        )
    except TypeError as e:  # encrypted without a password, or a password for a plain key
        fix = f"unset ${PASSWORD_ENV}" if password else f"put the key's password in ${PASSWORD_ENV}"
        raise ConfigError(f"{path}: {e}; {fix}", where="signing key") from e
    except ValueError as e:
        raise ConfigError(
            f"{path} is not a PEM private key, or ${PASSWORD_ENV} is not its password ({e})",
            where="signing key",
        ) from e
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            f"{path} is a {type(key).__name__}; bundles are signed with Ed25519 keys "
            "(`pocketrec keygen`)",
            where="signing key",
        )
    return key


def sign_bundle(bundle: Path, key: Path) -> dict[str, str]:
    """Check every file of `bundle` against its manifest, then sign the manifest.

    A bundle whose files do not match its manifest is refused rather than signed: a signature
    vouches for the files, not only for the manifest. An existing signature is replaced.

    Returns:
        The signature record written to `bundle/signature.json`.

    Raises:
        BundleError: not a bundle, or its files do not match the manifest.
        ConfigError: the key is missing, locked, or not an Ed25519 private key.
    """
    bundle = Path(bundle)
    private = load_private_key(key)
    manifest = read_manifest_bytes(bundle)  # what is checked is what is signed
    _verify_files(bundle, read_manifest(bundle, data=manifest))
    serialization = require_cryptography()
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = {
        "algorithm": ALGORITHM,
        "key_id": key_id(der),
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "signature": base64.b64encode(private.sign(manifest)).decode(),
    }
    tmp = bundle / (SIGNATURE_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(bundle / SIGNATURE_FILE)
    return record
