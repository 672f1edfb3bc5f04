"""Download the official dataset files into a cache, resumably, and verify them.

Writes go to `<name>.part` and are renamed into place only after the checksum matches, so the
cache never holds a half-written or wrong file under its final name. An interrupted download
resumes from the `.part` file with an HTTP Range request.

Checksums: GroupLens publishes an MD5 for `ml-1m.zip` (pinned below), and the files inside the
zip are pinned by the sha256 / git blob ids recorded for the staged copies. The McAuley lab
publishes no checksums for the Amazon 2014 files; for them pocketrec pins the counts the parsed
5-core data must have (known categories), checks that each `.gz` decompresses to its end before
it takes its name (a connection that drops without a Content-Length otherwise looks complete),
and records each file's sha256 on first download in `<cache>/datasets/checksums.json` so that a
later download of the same file must match it.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import shutil
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketrec.distill.errors import ChecksumError, DataError

__all__ = [
    "AMAZON_2014_CATEGORIES",
    "AMAZON_2014_KNOWN_COUNTS",
    "AMAZON_SHORT_NAMES",
    "ML_1M",
    "default_cache_dir",
    "download_dataset",
    "download_file",
    "git_blob_sha1",
]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: where from, where to, and what its bytes must hash to."""

    url: str
    filename: str
    md5: str | None = None
    sha256: str | None = None


ML_1M = RemoteFile(
    url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    filename="ml-1m.zip",
    md5="c4d9eecfca2ab87c1945afe126590906",  # published as ml-1m.zip.md5 by GroupLens
)
# Members of ml-1m.zip, pinned independently of the zip.
ML_1M_MEMBERS = {
    "ratings.dat": ("git-blob", "77a7c4b150f588c23bb9e1f068aa996c0b413695"),
    "movies.dat": ("sha256", "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9"),
    "users.dat": ("sha256", "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3"),
}

_AMAZON_BASE = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
# The 24 categories of the 2014 release that have 5-core review files, by their file names.
AMAZON_2014_CATEGORIES = (
    "Amazon_Instant_Video",
    "Apps_for_Android",
    "Automotive",
    "Baby",
    "Beauty",
    "Books",
    "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories",
    "Clothing_Shoes_and_Jewelry",
    "Digital_Music",
    "Electronics",
    "Grocery_and_Gourmet_Food",
    "Health_and_Personal_Care",
    "Home_and_Kitchen",
    "Kindle_Store",
    "Movies_and_TV",
    "Musical_Instruments",
    "Office_Products",
    "Patio_Lawn_and_Garden",
    "Pet_Supplies",
    "Sports_and_Outdoors",
    "Tools_and_Home_Improvement",
    "Toys_and_Games",
    "Video_Games",
)
# (users, items, interactions) of the 5-core files, as published with P5 / S3Rec / TIGER.
AMAZON_2014_KNOWN_COUNTS = {
    "Beauty": (22_363, 12_101, 198_502),
    "Sports_and_Outdoors": (35_598, 18_357, 296_337),
    "Toys_and_Games": (19_412, 11_924, 167_597),
}


def default_cache_dir() -> Path:
    """`$POCKETREC_CACHE`, else `~/.cache/pocketrec`."""
    env = os.environ.get("POCKETREC_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "pocketrec"


def git_blob_sha1(path: Path) -> str:
    """The id `git hash-object` prints for a file (sha1 of a 'blob <size>\\0' header + bytes)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _progress(total: int | None, initial: int, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the base install has no tqdm; downloads still work, silently
        return None
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=desc)


def download_file(
    remote: RemoteFile,
    dest_dir: Path,
    *,
    opener: Callable[..., Any] = urllib.request.urlopen,
    timeout: float = 60.0,
) -> Path:
    """Fetch one file into `dest_dir`, resuming a previous partial download, then verify it.

    Args:
        remote: URL, target file name and expected checksums.
        dest_dir: cache folder; created if missing.
        opener: how to open a request (tests pass a local server's opener).
        timeout: socket timeout in seconds.

    Returns:
        The verified file's path.

    Raises:
        ChecksumError: the bytes do not match; the partial file is deleted, nothing is cached.
        DataError: the server could not be reached; the partial file is kept for a resume.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / remote.filename
    if final.exists() and _verify(final, remote, raise_on_mismatch=False):
        return final
    part = dest_dir / (remote.filename + ".part")
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(remote.url, headers={"User-Agent": "pocketrec"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = opener(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the .part already holds every byte: killed before its rename
            e.close()
            if _complete(part, remote):
                os.replace(part, final)
                return final
            part.unlink()  # longer than the file, or wrong: start over
            return download_file(remote, dest_dir, opener=opener, timeout=timeout)
        raise DataError(
            f"could not download {remote.url}: HTTP {e.code} {e.reason}. Check the address "
            "and the network, then run the same command again."
        ) from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DataError(
            f"could not download {remote.url}: {e}. Check the network and run the same command "
            f"again; it resumes from {part} ({start} bytes so far)."
        ) from e
    with response as r:
        status = getattr(r, "status", 200)
        if start and status != 206:  # the server ignored the Range header: start over
            start = 0
        length = r.headers.get("Content-Length")
        total = int(length) + start if length is not None else None
        bar = _progress(total, start, remote.filename)
        try:
            with open(part, "ab" if start else "wb") as out:
                try:
                    for chunk in iter(lambda: r.read(_CHUNK), b""):
                        out.write(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                except http.client.IncompleteRead as e:  # keep what arrived, for the resume
                    out.write(e.partial)
                    raise
            if total is not None and part.stat().st_size != total:
                raise http.client.IncompleteRead(b"", total - part.stat().st_size)
        except (http.client.HTTPException, OSError) as e:
            raise DataError(
                f"the download of {remote.url} broke off ({e!r}). Run the same command again; "
                f"it resumes from {part} ({part.stat().st_size} bytes so far)."
            ) from e
        finally:
            if bar is not None:
                bar.close()
    try:
        _verify(part, remote, raise_on_mismatch=True)
        _check_gzip(part, remote)
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, final)
    return final


def _check_gzip(path: Path, remote: RemoteFile) -> None:
    """A `.gz` must decompress to its end: a short one resumes, one that is not gzip is wrong.

    Raises:
        DataError: the file stops early (kept, so the next run resumes it).
        ChecksumError: the bytes are not gzip at all (an error page, a proxy's answer).
    """
    if not remote.filename.endswith(".gz"):
        return
    try:
        with gzip.open(path, "rb") as f:
            while f.read(_CHUNK):
                pass
    except EOFError as e:
        raise DataError(
            f"the download of {remote.url} stops early ({path.stat().st_size} bytes: {e}). Run "
            f"the same command again; it resumes from {path}."
        ) from e
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        raise ChecksumError(
            f"{remote.url} did not download as gzip ({e}); the file was deleted. Check that "
            "the address answers with the file (not an error page), then run the command again."
        ) from e


def _complete(path: Path, remote: RemoteFile) -> bool:
    """Whether a `.part` the server says is whole passes every check a download gets."""
    if not _verify(path, remote, raise_on_mismatch=False):
        return False
    try:
        _check_gzip(path, remote)
    except DataError:  # ChecksumError is a DataError too
        return False
    return True


def _verify(path: Path, remote: RemoteFile, *, raise_on_mismatch: bool) -> bool:
    for algorithm, expected in (("md5", remote.md5), ("sha256", remote.sha256)):
        if expected is None:
            continue
        actual = _file_digest(path, algorithm)
        if actual != expected:
            if raise_on_mismatch:
                raise ChecksumError(
                    f"{remote.url} downloaded with {algorithm} {actual}, expected {expected}. "
                    "The file was deleted and nothing was cached; the download was corrupted "
                    "or the publisher changed the file. Run the command again."
                )
            return False
    return True


def _record_or_check_sha256(cache: Path, path: Path, url: str) -> None:
    """Trust on first use for files with no published checksum."""
    ledger_path = cache / "checksums.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {}
    digest = _file_digest(path, "sha256")
    if url in ledger and ledger[url] != digest:
        path.unlink()
        raise ChecksumError(
            f"{url} now has sha256 {digest}, but it was {ledger[url]} when first downloaded "
            f"(recorded in {ledger_path}). The file was deleted. If the publisher really changed "
            "it, remove its entry from that file and download again."
        )
    ledger[url] = digest
    tmp = ledger_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ledger, indent=2, sort_keys=True))
    os.replace(tmp, ledger_path)


def _extract_ml_1m(archive: Path, dest: Path) -> None:
    """Unzip ratings/movies/users.dat into `dest`, verifying each before it takes its name."""
    with zipfile.ZipFile(archive) as z:
        for member, (kind, expected) in ML_1M_MEMBERS.items():
            target = dest / member
            if target.exists():
                continue
            tmp = dest / (member + ".part")
            with z.open(f"ml-1m/{member}") as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
            actual = git_blob_sha1(tmp) if kind == "git-blob" else _file_digest(tmp, "sha256")
            if actual != expected:
                tmp.unlink()
                raise ChecksumError(f"{archive}:{member} has {kind} {actual}, expected {expected}")
            os.replace(tmp, target)


# Short names of long categories, as datasets are named and their folders are called.
AMAZON_SHORT_NAMES = {"sports": "sports_and_outdoors", "toys": "toys_and_games"}
_AMAZON_FOLDER_NAMES = {long: short for short, long in AMAZON_SHORT_NAMES.items()}


def amazon_category(name: str) -> str:
    """The 2014 file name of a category given as `beauty`, `amazon2014_sports`, `Baby`, ..."""
    key = name.lower().removeprefix("amazon2014_")
    key = AMAZON_SHORT_NAMES.get(key, key)
    for category in AMAZON_2014_CATEGORIES:
        if category.lower() == key:
            return category
    raise DataError(
        f"unknown Amazon 2014 category {name!r}; the 5-core release has: "
        + ", ".join(AMAZON_2014_CATEGORIES)
    )


def download_dataset(
    name: str,
    cache: Path | None = None,
    *,
    opener: Callable[..., Any] = urllib.request.urlopen,
) -> Path:
    """Download a dataset's official files into `<cache>/datasets/<folder>` and verify them.

    Args:
        name: "ml-1m", or an Amazon 2014 category ("beauty", "sports", "amazon2014_baby", ...).
        cache: cache root (default `default_cache_dir()`).
        opener: request opener (tests use a local server).

    Returns:
        The dataset folder; point POCKETREC_DATA at its parent to load it by name.
    """
    root = (cache or default_cache_dir()) / "datasets"
    if name.lower() in ("ml-1m", "movielens_1m", "movielens-1m"):
        folder = root / "movielens_1m"
        archive = download_file(ML_1M, root / "_downloads", opener=opener)
        folder.mkdir(parents=True, exist_ok=True)
        _extract_ml_1m(archive, folder)
        return folder
    category = amazon_category(name)
    # the folder `load_dataset` looks in for this category ("sports": amazon2014_sports)
    short = _AMAZON_FOLDER_NAMES.get(category.lower(), category.lower())
    folder = root / f"amazon2014_{short}"
    for prefix in ("reviews", "meta"):
        suffix = "_5.json.gz" if prefix == "reviews" else ".json.gz"
        remote = RemoteFile(
            f"{_AMAZON_BASE}/{prefix}_{category}{suffix}", f"{prefix}_{category}{suffix}"
        )
        path = download_file(remote, folder, opener=opener)
        _record_or_check_sha256(root, path, remote.url)
    return folder
