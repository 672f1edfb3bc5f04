"""Installing a downloaded bundle on the device: checked first, switched in at once, no downgrade.

A bundle that arrives over the air (a new federated version, a catalogue update) should replace
the one an app runs only when all of it is present and checked, and a crash at any moment must
leave the app with one whole bundle, old or new. `install_bundle` copies the new bundle into a
version folder beside the install path, checks the copy, and then points the install path (a
symbolic link) at it with one atomic rename, the usual way to switch versions on POSIX file
systems. The app always opens the install path with `Recommender.from_bundle`.

    bundles/
    ├── current -> .current.versions/beauty-student-seed0-int8-v3-1a2b3c4d
    └── .current.versions/
        └── beauty-student-seed0-int8-v3-1a2b3c4d/   manifest.json, graphs, tables
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from pocketrec._bundle import open_bundle
from pocketrec._errors import BundleError
from pocketrec._manifest import SIGNATURE_FILE, read_manifest, read_manifest_bytes

__all__ = ["install_bundle"]


def _versions_folder(target: Path) -> Path:
    return target.parent / f".{target.name}.versions"


def install_bundle(
    source: str | Path,
    target: str | Path,
    *,
    trusted_keys: Sequence[str | bytes | Path] | None = None,
    allow_downgrade: bool = False,
) -> Path:
    """Check the bundle in `source` and make it the one at `target`, all at once.

    The bundle is opened as an app would (every file's sha256, the signature when
    `trusted_keys` are given, the tables, the graphs), copied next to `target`, checked again
    there, and switched in by replacing the link at `target` atomically. Until that rename the
    previous bundle stays installed; after it the previous version's folder is removed.
    Installing the bundle that is already installed changes nothing. Run one install at a time
    per `target`.

    Args:
        source: the downloaded bundle folder (left as it is).
        target: the install path the app opens (`Recommender.from_bundle(target)`): a path that
            does not exist yet, or one an earlier `install_bundle` made.
        trusted_keys: publisher public keys; when given, an unsigned bundle or one signed by
            another key is refused, as `Recommender.from_bundle` refuses it.
        allow_downgrade: install a lower `manifest.version` of the installed bundle's name
            (refused by default: an older, signed version may be one the publisher replaced).

    Returns:
        `target`.

    Raises:
        BundleError: the source is not a usable bundle, it would downgrade the installed one,
            or `target` is something `install_bundle` did not make.
        SignatureError: with `trusted_keys`, the source is not signed by one of them.
    """
    source, target = Path(source), Path(target)
    if target.exists() and not target.is_symlink():
        raise BundleError(
            f"{target} exists and was not made by install_bundle (it is not a link to an "
            "installed version); install to a new path, or remove it first"
        )
    installed = target / "manifest.json" if target.is_symlink() else None
    if installed is not None and installed.is_file():  # a link to a version it installed
        if installed.read_bytes() == read_manifest_bytes(source):
            return target  # already installed (and checked when it was)
    else:
        installed = None  # nothing installed yet, or a link whose version was removed
    downloaded = open_bundle(source, trusted_keys=trusted_keys).manifest  # fail early, clearly
    versions = _versions_folder(target)
    versions.mkdir(parents=True, exist_ok=True)
    staging = versions / f".incoming-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        names = ["manifest.json", *downloaded.files]
        names += [SIGNATURE_FILE] if (source / SIGNATURE_FILE).is_file() else []
        for name in names:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, staging / name)
        # The copy is what the app will run: check it whole, signature included.
        new = open_bundle(staging, trusted_keys=trusted_keys).manifest
        if installed is not None:
            old = read_manifest(target)
            if old.name == new.name and new.version < old.version and not allow_downgrade:
                raise BundleError(
                    f"{source} is version {new.version} of {new.name}, older than the "
                    f"installed version {old.version}; refused as a downgrade (pass "
                    "allow_downgrade=True to roll back on purpose)"
                )
        label = re.sub(r"[^A-Za-z0-9._-]", "_", new.name)
        digest = hashlib.sha256(read_manifest_bytes(staging)).hexdigest()[:8]
        folder = versions / f"{label}-v{new.version}-{digest}"
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    link = target.with_name(f".{target.name}.link")
    link.unlink(missing_ok=True)
    try:
        link.symlink_to(folder.relative_to(target.parent), target_is_directory=True)
    except OSError as e:  # some file systems (FAT, Windows without the privilege) have none
        raise BundleError(
            f"cannot make a symbolic link in {target.parent} ({e}); install_bundle needs a file "
            "system with symbolic links (app-private storage on Android, iOS, Linux and macOS)"
        ) from e
    os.replace(link, target)  # the switch: atomic, so the app sees the old or the new bundle
    for stale in versions.iterdir():
        if stale != folder:
            shutil.rmtree(stale, ignore_errors=True)
    return target
