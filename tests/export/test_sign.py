"""Signed bundles: keygen, sign, and an app that accepts only what its publisher signed."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

pytest.importorskip("cryptography")

from pocketrec import Recommender, RecommenderError, SignatureError
from pocketrec._bundle import open_bundle, sha256_file
from pocketrec._cli import main
from pocketrec._errors import BundleError, ConfigError
from pocketrec._manifest import SIGNATURE_FILE, read_manifest
from pocketrec.export.sign import PASSWORD_ENV, generate_key_pair, sign_bundle


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from tests.bundles import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("tiny_sign"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    return generate_key_pair(tmp_path_factory.mktemp("keys"))


@pytest.fixture()
def signed(tiny: Path, keys: tuple[Path, Path, str], tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny, bundle)
    sign_bundle(bundle, keys[0])
    return bundle


def _rewrite_manifest(bundle: Path, edit: dict[str, object]) -> None:
    """What an attacker can do without the key: edit the manifest and re-hash files in it."""
    obj = json.loads((bundle / "manifest.json").read_text())
    obj.update(edit)
    for name in obj["files"]:
        obj["files"][name] = {
            "sha256": sha256_file(bundle / name),
            "bytes": (bundle / name).stat().st_size,
        }
    (bundle / "manifest.json").write_text(json.dumps(obj, indent=2) + "\n")


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    private, public, kid = generate_key_pair(tmp_path)
    before = private.read_bytes()
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    assert len(kid) == 16 and int(kid, 16) >= 0
    with pytest.raises(ConfigError, match="already exist"):
        generate_key_pair(tmp_path)
    assert private.read_bytes() == before  # untouched by the refused call


def test_a_signed_bundle_opens_with_its_publishers_key(
    signed: Path, keys: tuple[Path, Path, str]
) -> None:
    record = json.loads((signed / SIGNATURE_FILE).read_text())
    assert record["key_id"] == keys[2]
    assert record["manifest_sha256"] == sha256_file(signed / "manifest.json")
    assert SIGNATURE_FILE not in read_manifest(signed).files
    for trusted in (keys[1], keys[1].read_text(), keys[1].read_bytes(), str(keys[1])):
        rec = Recommender.from_bundle(signed, trusted_keys=[trusted])
        assert rec.signed_by == keys[2]
    assert len(rec.recommend(["item3", "item10"], k=5)) == 5
    # Without trusted keys a signature is neither required nor checked.
    assert Recommender.from_bundle(signed).signed_by is None


def test_an_unsigned_bundle_is_refused_when_keys_are_pinned(
    tiny: Path, keys: tuple[Path, Path, str]
) -> None:
    with pytest.raises(SignatureError, match=rf"not signed.*{keys[2]}.*pocketrec sign"):
        open_bundle(tiny, trusted_keys=[keys[1]])


def test_a_bundle_signed_by_another_key_is_refused(signed: Path, tmp_path: Path) -> None:
    _, other, other_id = generate_key_pair(tmp_path / "other")
    with pytest.raises(
        SignatureError, match=rf"signed by key \w+, which is not trusted.*{other_id}"
    ):
        open_bundle(signed, trusted_keys=[other])


def test_a_rewritten_manifest_passes_sha256_but_not_the_signature(
    signed: Path, keys: tuple[Path, Path, str]
) -> None:
    catalog = json.loads((signed / "catalog.json").read_text())
    catalog["items"][0]["title"] = "Buy this instead"
    (signed / "catalog.json").write_text(json.dumps(catalog))
    _rewrite_manifest(signed, {})
    open_bundle(signed)  # every sha256 matches the rewritten manifest
    with pytest.raises(SignatureError, match="manifest was changed after signing"):
        open_bundle(signed, trusted_keys=[keys[1]])


def test_a_rewritten_manifest_with_its_digest_updated_is_still_refused(
    signed: Path, keys: tuple[Path, Path, str]
) -> None:
    _rewrite_manifest(signed, {"name": "someone-else"})
    record = json.loads((signed / SIGNATURE_FILE).read_text())
    record["manifest_sha256"] = sha256_file(signed / "manifest.json")
    (signed / SIGNATURE_FILE).write_text(json.dumps(record))
    with pytest.raises(SignatureError, match="does not verify"):
        open_bundle(signed, trusted_keys=[keys[1]])


def test_the_manifest_checked_is_the_manifest_used(
    signed: Path, keys: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest swapped in right after the signature check is never read."""
    import pocketrec._bundle as bundle_module

    check = bundle_module.verify_signature

    def check_then_swap(folder: Path, trusted: object) -> object:
        result = check(folder, trusted)  # type: ignore[arg-type]
        (signed / "catalog.json").write_text('{"items": []}')
        _rewrite_manifest(signed, {})
        return result

    monkeypatch.setattr(bundle_module, "verify_signature", check_then_swap)
    with pytest.raises(BundleError, match="catalog.json does not match its sha256"):
        open_bundle(signed, trusted_keys=[keys[1]])


def test_a_folder_that_is_not_a_bundle_says_so(
    keys: tuple[Path, Path, str], tmp_path: Path
) -> None:
    (tmp_path / SIGNATURE_FILE).write_text("{}")
    with pytest.raises(BundleError, match="is not a pocketrec bundle: it has no manifest.json"):
        open_bundle(tmp_path, trusted_keys=[keys[1]])


@pytest.mark.parametrize("name", ["../outside.onnx", "/etc/passwd", "C:evil", "a/../../b", ""])
def test_manifest_file_names_stay_inside_the_bundle(signed: Path, name: str) -> None:
    obj = json.loads((signed / "manifest.json").read_text())
    obj["files"][name] = {"sha256": "0" * 64, "bytes": 1}
    (signed / "manifest.json").write_text(json.dumps(obj))
    with pytest.raises(BundleError, match="must be a relative path inside the bundle folder"):
        read_manifest(signed)


def test_a_forged_signature_is_refused(signed: Path, keys: tuple[Path, Path, str]) -> None:
    record = json.loads((signed / SIGNATURE_FILE).read_text())
    record["signature"] = base64.b64encode(bytes(64)).decode()
    (signed / SIGNATURE_FILE).write_text(json.dumps(record))
    with pytest.raises(SignatureError, match=r"does not verify \(corrupt or forged\)"):
        open_bundle(signed, trusted_keys=[keys[1]])


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"algorithm": "rsa"}',
        '{"algorithm": "ed25519", "key_id": "a"}',
        '{"algorithm": "ed25519", "key_id": "a", "manifest_sha256": "b", "signature": "AAAA"}',
        # 64 bytes, unpadded: the JVM core refuses it too
        '{"algorithm": "ed25519", "key_id": "a", "manifest_sha256": "b", "signature": "'
        + "A" * 86
        + '"}',
    ],
)
def test_a_corrupt_signature_file_is_a_clear_error(
    signed: Path, keys: tuple[Path, Path, str], content: str
) -> None:
    (signed / SIGNATURE_FILE).write_text(content)
    with pytest.raises(SignatureError, match="not a valid signature record"):
        open_bundle(signed, trusted_keys=[keys[1]])


def test_pinned_keys_check_every_file_even_without_verify(
    signed: Path, keys: tuple[Path, Path, str]
) -> None:
    with open(signed / "catalog.json", "a") as f:
        f.write(" ")
    open_bundle(signed, verify=False)  # the caller opted out of the sha256 check
    with pytest.raises(BundleError, match="catalog.json does not match its sha256"):
        open_bundle(signed, verify=False, trusted_keys=[keys[1]])


def test_trusted_keys_must_be_public_ed25519_keys(
    signed: Path, keys: tuple[Path, Path, str], tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

    with pytest.raises(RecommenderError, match="trusted_keys is empty"):
        open_bundle(signed, trusted_keys=[])
    with pytest.raises(RecommenderError, match="is a private key"):
        open_bundle(signed, trusted_keys=[keys[0]])
    with pytest.raises(RecommenderError, match="neither PEM text nor a file"):
        open_bundle(signed, trusted_keys=[tmp_path / "missing.pem"])
    ec = generate_private_key(SECP256R1()).public_key()
    pem = ec.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(RecommenderError, match="Ed25519"):
        open_bundle(signed, trusted_keys=[pem])
    with pytest.raises(RecommenderError, match="not a PEM public key"):
        open_bundle(signed, trusted_keys=[b"-----BEGIN PUBLIC KEY-----\nAAAA\n"])


def test_rewriting_a_manifest_drops_its_stale_signature(signed: Path) -> None:
    read_manifest(signed).write(signed)
    assert not (signed / SIGNATURE_FILE).exists()


def test_sign_refuses_a_bundle_whose_files_do_not_match(
    tiny: Path, keys: tuple[Path, Path, str], tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny, bundle)
    (bundle / "semantic_ids.npy").write_bytes(b"broken")
    with pytest.raises(BundleError, match="semantic_ids.npy does not match"):
        sign_bundle(bundle, keys[0])
    assert not (bundle / SIGNATURE_FILE).exists()


def test_an_encrypted_key_needs_its_password(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny, bundle)
    private, public, kid = generate_key_pair(tmp_path / "keys", password="correct horse")
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(ConfigError, match=PASSWORD_ENV):
        sign_bundle(bundle, private)
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    with pytest.raises(ConfigError, match="not its password"):
        sign_bundle(bundle, private)
    monkeypatch.setenv(PASSWORD_ENV, "correct horse")
    assert sign_bundle(bundle, private)["key_id"] == kid
    assert open_bundle(bundle, trusted_keys=[public]).signed_by == kid
    plain, _, _ = generate_key_pair(tmp_path / "plain")
    with pytest.raises(ConfigError, match=f"unset \\${PASSWORD_ENV}"):
        sign_bundle(bundle, plain)


def test_checking_signatures_without_cryptography_says_what_to_install(
    signed: Path, keys: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.serialization", None)
    with pytest.raises(RecommenderError, match=r"pip install 'pocketrec\[signing\]'"):
        open_bundle(signed, trusted_keys=[keys[1]])


def test_cli_keygen_sign_verify(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny, bundle)
    assert main(["keygen", "--out", str(tmp_path / "keys"), "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    private, public, kid = Path(made["private"]), Path(made["public"]), made["key_id"]
    assert private == tmp_path / "keys/signing_key.pem" and public.is_file()
    assert main(["keygen", "--out", str(tmp_path / "keys")]) == 2
    assert "already exist" in capsys.readouterr().err
    assert main(["verify", str(bundle)]) == 0
    assert "unsigned" in capsys.readouterr().out
    assert main(["verify", str(bundle), "--trusted-key", str(public)]) == 2
    assert "is not signed" in capsys.readouterr().err

    assert main(["sign", str(bundle), "--key", str(private)]) == 0
    assert f"signed by key {kid}" in capsys.readouterr().out
    assert main(["verify", str(bundle)]) == 0
    assert f"signed by key {kid} (not checked" in capsys.readouterr().out
    assert main(["verify", str(bundle), "--trusted-key", str(public), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["signed_by"] == kid and record["signature_checked"] is True
    assert record["files"] == len(read_manifest(bundle).files)
    assert record["model"] == read_manifest(bundle).model_id  # what a server's rules name
    history = ["--history", "item3,item10", "--json"]
    assert main(["recommend", str(bundle), "--trusted-key", str(public), *history]) == 0
    assert len(json.loads(capsys.readouterr().out)["recommendations"]) == 10

    good = (bundle / SIGNATURE_FILE).read_text()
    (bundle / SIGNATURE_FILE).write_text("{}")  # usable without keys, refused with them
    assert main(["verify", str(bundle)]) == 0
    assert "signature.json is not usable" in capsys.readouterr().out
    assert main(["verify", str(bundle), "--trusted-key", str(public)]) == 2
    assert "not a valid signature record" in capsys.readouterr().err
    (bundle / SIGNATURE_FILE).write_text(good)

    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["search"]["beam_width"] = 1
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert main(["verify", str(bundle), "--trusted-key", str(public)]) == 2
    assert "changed after signing" in capsys.readouterr().err
    assert os.path.exists(bundle / SIGNATURE_FILE)  # a failed check deletes nothing
