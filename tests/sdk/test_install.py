"""install_bundle: a downloaded bundle is checked, switched in at once, and never downgrades."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pocketrec import Adapter, BundleError, Recommender, SignatureError, install_bundle
from pocketrec.distill.federated.publish import write_bundle_version


def _version(bundle: Path, version: int, out: Path) -> Path:
    """`bundle` republished as `version`, with a shared adapter that changes its ranking."""
    rec = Recommender.from_bundle(bundle)
    layout = rec.manifest.semantic_ids
    bias = np.zeros((layout.num_levels, layout.codebook_size), np.float32)
    bias[0, version % layout.codebook_size] = 4.0
    adapter = Adapter(bundle=rec.manifest.name, bias=bias, kind="shared", version=version)
    return write_bundle_version(bundle, adapter, out)


def _versions(target: Path) -> list[str]:
    """The version folders beside `target` (not the lock or the version record)."""
    folder = target.parent / f".{target.name}.versions"
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def test_install_then_upgrade_switches_the_link(tiny_bundle: Path, tmp_path: Path) -> None:
    target = tmp_path / "app" / "current"
    assert install_bundle(tiny_bundle, target) == target
    assert target.is_symlink()
    assert Recommender.from_bundle(target).manifest.version == 0
    first = _versions(target)
    assert len(first) == 1 and first[0].startswith("tiny_shop-student-seed0-fp32-v0-")

    assert not os.path.isabs(os.readlink(target))  # the install folder can move as a whole
    made = (target / "manifest.json").stat().st_mtime_ns

    install_bundle(tiny_bundle, target)  # the installed bundle again: nothing changes
    assert _versions(target) == first
    assert (target / "manifest.json").stat().st_mtime_ns == made

    v2 = _version(tiny_bundle, 2, tmp_path / "v2")
    install_bundle(v2, target)
    rec = Recommender.from_bundle(target)
    assert rec.manifest.version == 2 and [a.version for a in rec.adapters] == [2]
    assert first[0] in _versions(target)  # the version before stays until the next install
    v3 = _version(tiny_bundle, 3, tmp_path / "v3")
    install_bundle(v3, target)
    assert first[0] not in _versions(target) and len(_versions(target)) == 2
    assert (v2 / "manifest.json").is_file()  # the download is left as it was


def test_a_relative_install_path(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    install_bundle(tiny_bundle, "current")
    assert Recommender.from_bundle("current").manifest.version == 0
    made = (tmp_path / "current" / "manifest.json").stat().st_mtime_ns
    install_bundle(tiny_bundle, "current")  # recognised as installed, not copied again
    assert (tmp_path / "current" / "manifest.json").stat().st_mtime_ns == made


def test_a_downgrade_is_refused_unless_asked_for(tiny_bundle: Path, tmp_path: Path) -> None:
    target = tmp_path / "current"
    v1 = _version(tiny_bundle, 1, tmp_path / "v1")
    v3 = _version(tiny_bundle, 3, tmp_path / "v3")
    install_bundle(v3, target)
    with pytest.raises(BundleError, match="version 1 of .* older than version 3 installed at"):
        install_bundle(v1, target)
    assert Recommender.from_bundle(target).manifest.version == 3
    install_bundle(v1, target, allow_downgrade=True)
    assert Recommender.from_bundle(target).manifest.version == 1


def test_switching_names_or_losing_the_link_does_not_reset_the_version(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    target = tmp_path / "current"
    v1 = _version(tiny_bundle, 1, tmp_path / "v1")
    install_bundle(_version(tiny_bundle, 5, tmp_path / "v5"), target)
    other = tmp_path / "other"
    shutil.copytree(tiny_bundle, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["name"] = "another-model"
    (other / "manifest.json").write_text(json.dumps(manifest))
    install_bundle(other, target)  # another model is no downgrade
    with pytest.raises(BundleError, match="older than version 5 installed"):
        install_bundle(v1, target)  # nor is going back to the first name at an old version
    shutil.rmtree(Path(os.path.realpath(target)))  # the installed folder lost: a dangling link
    with pytest.raises(BundleError, match="older than version 5 installed"):
        install_bundle(v1, target)
    install_bundle(v1, target, allow_downgrade=True)
    assert Recommender.from_bundle(target).manifest.version == 1


def test_the_same_bundle_is_checked_again_with_pinned_keys(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    pytest.importorskip("cryptography")
    from pocketrec.export.sign import generate_key_pair, sign_bundle

    private, public, kid = generate_key_pair(tmp_path / "keys")
    target = tmp_path / "current"
    download = tmp_path / "download"
    shutil.copytree(tiny_bundle, download)
    install_bundle(download, target)  # unsigned, no keys pinned
    with pytest.raises(SignatureError, match="is not signed"):
        install_bundle(download, target, trusted_keys=[public])
    sign_bundle(download, private)  # the same manifest, now signed: installed with its signature
    install_bundle(download, target, trusted_keys=[public])
    assert Recommender.from_bundle(target, trusted_keys=[public]).signed_by == kid


def test_a_damaged_download_leaves_the_installed_bundle(tiny_bundle: Path, tmp_path: Path) -> None:
    target = tmp_path / "current"
    install_bundle(tiny_bundle, target)
    before = _versions(target)
    damaged = _version(tiny_bundle, 1, tmp_path / "v1")
    with open(damaged / "decoder.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="decoder.onnx does not match its sha256"):
        install_bundle(damaged, target)
    assert Recommender.from_bundle(target).manifest.version == 0
    assert _versions(target) == before  # no half-installed version left behind


def test_pinned_keys_refuse_an_unsigned_download(tiny_bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    from pocketrec.export.sign import generate_key_pair, sign_bundle

    private, public, kid = generate_key_pair(tmp_path / "keys")
    target = tmp_path / "current"
    unsigned = _version(tiny_bundle, 1, tmp_path / "v1")
    with pytest.raises(SignatureError, match="is not signed"):
        install_bundle(unsigned, target, trusted_keys=[public])
    assert not target.exists()
    sign_bundle(unsigned, private)
    install_bundle(unsigned, target, trusted_keys=[public])
    assert Recommender.from_bundle(target, trusted_keys=[public]).signed_by == kid  # copied too


def test_the_copy_is_checked_not_only_the_download(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that changes between the check of the download and the copy is caught."""
    target = tmp_path / "current"
    source = tmp_path / "download"
    shutil.copytree(tiny_bundle, source)
    copy = shutil.copyfile

    def corrupting_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> object:
        result = copy(src, dst)
        if Path(dst).name == "catalog.json":
            Path(dst).write_text(json.dumps({"items": []}))
        return result

    monkeypatch.setattr(shutil, "copyfile", corrupting_copy)
    with pytest.raises(BundleError, match="catalog.json does not match its sha256"):
        install_bundle(source, target)
    assert not target.exists() and _versions(target) == []


def test_a_crash_before_the_switch_keeps_the_old_bundle(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "current"
    install_bundle(tiny_bundle, target)
    v1 = _version(tiny_bundle, 1, tmp_path / "v1")

    def crash(*args: object) -> None:
        raise OSError("killed")

    with monkeypatch.context() as m:
        m.setattr(os, "replace", crash)
        with pytest.raises(OSError, match="killed"):
            install_bundle(v1, target)
    assert Recommender.from_bundle(target).manifest.version == 0
    install_bundle(v1, target)  # the next try cleans up and completes
    assert Recommender.from_bundle(target).manifest.version == 1
    assert len(_versions(target)) == 2  # v1 and the version before it
    assert not (tmp_path / ".current.link").exists()


def test_a_link_it_did_not_make_is_left_alone(tiny_bundle: Path, tmp_path: Path) -> None:
    target = tmp_path / "current"
    target.symlink_to(tiny_bundle, target_is_directory=True)
    with pytest.raises(BundleError, match="it was not made by install_bundle"):
        install_bundle(tiny_bundle, target)
    assert os.readlink(target) == str(tiny_bundle)


def test_file_names_that_leave_the_bundle_are_refused_before_any_copy(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    source = tmp_path / "download"
    shutil.copytree(tiny_bundle, source)
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["files"]["../escaped.onnx"] = manifest["files"]["decoder.onnx"]
    (source / "manifest.json").write_text(json.dumps(manifest))
    target = tmp_path / "app" / "current"
    with pytest.raises(BundleError, match="must be a relative path inside the bundle folder"):
        install_bundle(source, target)
    assert not (tmp_path / "app").exists() and not (tmp_path / "escaped.onnx").exists()


def test_a_folder_it_did_not_make_is_left_alone(tiny_bundle: Path, tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, target)
    with pytest.raises(BundleError, match="was not made by install_bundle"):
        install_bundle(tiny_bundle, target)
    assert (target / "manifest.json").is_file()
