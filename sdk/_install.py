"""Installing a downloaded bundle on the device: checked first, switched in at once, no downgrade.

A bundle that arrives over the air (a new federated version, a catalogue update) should replace
the one an app runs only when all of it is present and checked, and a crash must leave the app
with one whole bundle, old or new. `install_bundle` copies the new bundle into a version folder
beside the install path, flushes and checks the copy, and then points the install path (a
symbolic link) at it with one atomic rename, the usual way to switch versions on POSIX file
systems. The app always opens the install path with `Recommender.from_bundle`, which reads
every file through the folder the link points to when it opens.

    bundles/
    ├── current -> .current.versions/beauty-student-seed0-int8-v3-<sha256 of its manifest>
    └── .current.versions/
        ├── beauty-student-seed0-int8-v3-.../   the installed version
        ├── beauty-student-seed0-int8-v2-.../   the one before (kept until the next install,
        │                                       for apps that opened it a moment ago)
        ├── highest_versions.json               the highest version installed per name
        └── .lock
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from pocketrec._bundle import check_bundle
from pocketrec._errors import BundleError
from pocketrec._files import fsync
from pocketrec._manifest import SIGNATURE_FILE, read_manifest, read_manifest_bytes

__all__ = ["install_bundle"]

HIGHEST = "highest_versions.json"


@contextlib.contextmanager
def _locked(versions: Path) -> Iterator[None]:
    """One install per install path at a time, across processes (POSIX advisory lock)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; installs must not overlap
        yield
        return
    with open(versions / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _installed(target: Path, versions: Path) -> Path | None:
    """The version folder `target` links to, or None when nothing is installed there.

    Raises:
        BundleError: `target` is a folder, a file, or a link that install_bundle did not make.
    """
    if not target.is_symlink():
        if target.exists():
            raise BundleError(
                f"{target} exists and was not made by install_bundle (it is not a link to an "
                "installed version); install to a new path, or remove it first"
            )
        return None
    pointed = (target.parent / os.readlink(target)).resolve()
    if pointed.parent != versions:
        raise BundleError(
            f"{target} links to {pointed}, outside {versions}: it was not made by "
            "install_bundle; install to a new path, or remove the link first"
        )
    return pointed if (pointed / "manifest.json").is_file() else None


def install_bundle(
    source: str | Path,
    target: str | Path,
    *,
    trusted_keys: Sequence[str | bytes | Path] | None = None,
    allow_downgrade: bool = False,
) -> Path:
    """Check the bundle in `source` and make it the one at `target`, all at once.

    The download is checked as `Recommender.from_bundle` checks a bundle (every file's sha256,
    the signature when `trusted_keys` are given, the runtime version, the tables), copied next
    to `target`, flushed to the disk and checked again there, and switched in by replacing the
    link at `target` atomically. Until that rename the previous bundle stays installed; a
    killed process, or a power loss on a file system that honours fsync (Linux, Android), leaves
    the old bundle or the new one. The version before is kept until the next install, for an
    app that opened it just before the switch. Installing what is installed changes nothing.

    Args:
        source: the downloaded bundle folder (left as it is).
        target: the install path the app opens (`Recommender.from_bundle(target)`): a path that
            does not exist yet, or one an earlier `install_bundle` made.
        trusted_keys: publisher public keys; when given, an unsigned bundle or one signed by
            another key is refused, as `Recommender.from_bundle` refuses it.
        allow_downgrade: install a version of a bundle name lower than the highest version of
            that name ever installed at `target` (refused by default: an older, signed version
            may be one the publisher replaced, and switching to another name and back does not
            reset the count).

    Returns:
        `target`.

    Raises:
        BundleError: the source is not a usable bundle, it would downgrade, or `target` is
            something `install_bundle` did not make.
        SignatureError: with `trusted_keys`, the source is not signed by one of them.
        IncompatibleRuntimeError: this onnxruntime is older than the bundle needs.
    """
    source, target = Path(source), Path(target)
    # Resolved, so that version folders compare equal to where the link is found to point.
    versions = target.parent.resolve() / f".{target.name}.versions"
    _installed(target, versions)  # a target it did not make is refused before any work
    downloaded = check_bundle(source, trusted_keys=trusted_keys)[0]  # a bad download, too
    versions.mkdir(parents=True, exist_ok=True)
    with _locked(versions):
        current = _installed(target, versions)
        staging = versions / f".incoming-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            # File names from the checked manifest, whose reader keeps them inside the folder.
            names = ["manifest.json", *downloaded.files]
            names += [SIGNATURE_FILE] if (source / SIGNATURE_FILE).is_file() else []
            for name in names:
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name, staging / name)
                fsync(staging / name)
            # The copy is what the app will run: check it whole, signature included.
            new = check_bundle(staging, trusted_keys=trusted_keys)[0]
            data = read_manifest_bytes(staging)
            label = re.sub(r"[^A-Za-z0-9._-]", "_", new.name)
            folder = versions / f"{label}-v{new.version}-{hashlib.sha256(data).hexdigest()}"
            if current == folder and _signature(folder) == _signature(staging):
                return target  # already installed
            highest = _highest(versions)
            if current is not None:  # in case a crash came between a switch and its record
                installed = read_manifest(current)
                highest[installed.name] = max(installed.version, highest.get(installed.name, -1))
            if new.version < highest.get(new.name, -1) and not allow_downgrade:
                raise BundleError(
                    f"{source} is version {new.version} of {new.name}, older than version "
                    f"{highest[new.name]} installed at {target} before; refused as a "
                    "downgrade (pass allow_downgrade=True to roll back on purpose)"
                )
            if folder == current:  # the same manifest, newly signed: a fresh folder name
                folder = folder.with_name(f"{folder.name}-{os.getpid()}")
            shutil.rmtree(folder, ignore_errors=True)
            fsync(staging)
            staging.rename(folder)
            fsync(versions)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _switch(target, folder)
        highest[new.name] = max(new.version, highest.get(new.name, -1))
        _write_json(versions / HIGHEST, highest)
        keep = {folder, current, versions / HIGHEST, versions / ".lock"}
        for stale in versions.iterdir():
            if stale not in keep:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    return target


def _switch(target: Path, folder: Path) -> None:
    """Point the link `target` at `folder` with one rename, and make the rename durable."""
    link = target.with_name(f".{target.name}.link")
    link.unlink(missing_ok=True)
    try:
        # Relative (the versions folder is a sibling): the install folder can move as a whole.
        link.symlink_to(Path(folder.parent.name) / folder.name, target_is_directory=True)
    except OSError as e:  # some file systems (FAT, Windows without the privilege) have none
        raise BundleError(
            f"cannot make a symbolic link in {target.parent} ({e}); install_bundle needs a file "
            "system with symbolic links (app-private storage on Android, iOS, Linux and macOS)"
        ) from e
    os.replace(link, target)  # the switch: atomic, so the app sees the old or the new bundle
    fsync(target.parent)


def _signature(folder: Path) -> bytes | None:
    path = folder / SIGNATURE_FILE
    return path.read_bytes() if path.is_file() else None


def _highest(versions: Path) -> dict[str, int]:
    try:
        found = json.loads((versions / HIGHEST).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in found.items() if isinstance(v, int)} if isinstance(found, dict) else {}


def _write_json(path: Path, obj: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    fsync(tmp)
    os.replace(tmp, path)
