"""Downloads against a real local HTTP server: resume, checksum refusal, clean cache."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from pocketrec.distill.data import _download as dl
from pocketrec.distill.errors import ChecksumError, DataError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[str | None]] = []
    cut_after: int | None = None  # drop the connection after this many bytes (first request)

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        type(self).requests.append(self.headers.get("Range"))
        if body is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if type(self).cut_after is not None:
            self.wfile.write(chunk[: type(self).cut_after])
            type(self).cut_after = None
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(chunk)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    _Handler.files = {"/data.bin": PAYLOAD}
    _Handler.requests = []
    _Handler.cut_after = None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _remote(url: str, **sums: str) -> dl.RemoteFile:
    return dl.RemoteFile(url=f"{url}/data.bin", filename="data.bin", **sums)


def test_download_verifies_and_renames(server: str, tmp_path: Path) -> None:
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    path = dl.download_file(_remote(server, sha256=sha), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "data.bin.part").exists()
    # A second call finds the verified file and does not download again.
    dl.download_file(_remote(server, sha256=sha), tmp_path)
    assert len(_Handler.requests) == 1


def test_checksum_mismatch_keeps_cache_clean(server: str, tmp_path: Path) -> None:
    with pytest.raises(ChecksumError, match="nothing was cached"):
        dl.download_file(_remote(server, md5="0" * 32), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_resumes_with_range(server: str, tmp_path: Path) -> None:
    _Handler.cut_after = 300_000
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    with pytest.raises((DataError, ChecksumError, OSError)):
        dl.download_file(_remote(server, md5=md5), tmp_path)
    part = tmp_path / "data.bin.part"
    if not part.exists():  # the checksum refused a short file: nothing kept, restart cleanly
        pytest.fail("an interrupted download must keep its partial file for resuming")
    assert part.stat().st_size == 300_000
    path = dl.download_file(_remote(server, md5=md5), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert _Handler.requests[-1] == "bytes=300000-"


def test_unreachable_server_explains_resume(tmp_path: Path) -> None:
    remote = dl.RemoteFile(url="http://127.0.0.1:9/none", filename="none.bin")
    with pytest.raises(DataError, match="run the same command"):
        dl.download_file(remote, tmp_path, timeout=2)


def test_first_download_sha256_is_recorded_and_enforced(tmp_path: Path) -> None:
    f = tmp_path / "file.gz"
    f.write_bytes(b"one")
    dl._record_or_check_sha256(tmp_path, f, "http://x/file.gz")
    dl._record_or_check_sha256(tmp_path, f, "http://x/file.gz")  # same bytes: fine
    f.write_bytes(b"two")
    with pytest.raises(ChecksumError, match="when first downloaded"):
        dl._record_or_check_sha256(tmp_path, f, "http://x/file.gz")
    assert not f.exists()


def test_ml_1m_members_are_verified(tmp_path: Path) -> None:
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ml-1m/ratings.dat", "1::1::5::1\n")
        z.writestr("ml-1m/movies.dat", "1::A (1999)::Drama\n")
        z.writestr("ml-1m/users.dat", "1::F::1::10::48067\n")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ChecksumError, match=r"ratings\.dat"):
        dl._extract_ml_1m(archive, out)
    assert not any(out.iterdir())


def test_git_blob_sha1_matches_git(tmp_path: Path) -> None:
    f = tmp_path / "hello.txt"
    f.write_bytes(b"hello\n")
    # `git hash-object hello.txt`
    assert dl.git_blob_sha1(f) == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_amazon_category_names() -> None:
    assert dl.amazon_category("beauty") == "Beauty"
    assert dl.amazon_category("amazon2014_sports") == "Sports_and_Outdoors"
    assert dl.amazon_category("Cell_Phones_and_Accessories") == "Cell_Phones_and_Accessories"
    with pytest.raises(DataError, match="Video_Games"):
        dl.amazon_category("gardening")


def test_download_dataset_amazon_layout(server: str, tmp_path: Path, monkeypatch) -> None:
    reviews = gzip.compress(b'{"reviewerID": "U", "asin": "B", "unixReviewTime": 1}\n')
    _Handler.files = {
        "/reviews_Baby_5.json.gz": reviews,
        "/meta_Baby.json.gz": gzip.compress(b"{'asin': 'B', 'title': 'Bib'}\n"),
        "/reviews_Sports_and_Outdoors_5.json.gz": reviews,
        "/meta_Sports_and_Outdoors.json.gz": gzip.compress(b"{'asin': 'B'}\n"),
    }
    monkeypatch.setattr(dl, "_AMAZON_BASE", server)
    folder = dl.download_dataset("amazon2014_baby", tmp_path)
    assert folder == tmp_path / "datasets" / "amazon2014_baby"
    assert (folder / "reviews_Baby_5.json.gz").read_bytes() == reviews
    assert (tmp_path / "datasets" / "checksums.json").exists()
    # the folder load_dataset("sports") reads, not amazon2014_sports_and_outdoors
    from pocketrec.distill.data._registry import dataset_folder

    sports = dl.download_dataset("sports", tmp_path)
    assert sports == dataset_folder("sports", root=tmp_path / "datasets")


def test_a_gz_cut_short_without_a_length_is_resumed_not_kept(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = gzip.compress(PAYLOAD * 2)
    _Handler.files = {"/data.json.gz": whole}
    _Handler.cut_after = len(whole) // 3
    monkeypatch.setattr(_Handler, "send_header", _no_length(_Handler.send_header))
    remote = dl.RemoteFile(url=f"{server}/data.json.gz", filename="data.json.gz")
    with pytest.raises(DataError, match="stops early .*resumes"):
        dl.download_file(remote, tmp_path)
    assert not (tmp_path / "data.json.gz").exists() and (tmp_path / "data.json.gz.part").exists()
    assert dl.download_file(remote, tmp_path).read_bytes() == whole  # resumed


def test_an_error_page_instead_of_a_gz_is_refused(server: str, tmp_path: Path) -> None:
    _Handler.files = {"/data.json.gz": b"<html>Service unavailable</html>"}
    remote = dl.RemoteFile(url=f"{server}/data.json.gz", filename="data.json.gz")
    with pytest.raises(ChecksumError, match="did not download as gzip"):
        dl.download_file(remote, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_whole_part_left_by_a_kill_before_the_rename_is_finished(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)

    def range_not_satisfiable(self: _Handler) -> None:  # what servers answer past the end
        type(self).requests.append(self.headers.get("Range"))
        self.send_error(416)

    monkeypatch.setattr(_Handler, "do_GET", range_not_satisfiable)
    path = dl.download_file(_remote(server, sha256=sha), tmp_path)
    assert path.read_bytes() == PAYLOAD and _Handler.requests == [f"bytes={len(PAYLOAD)}-"]


def test_a_malformed_http_answer_is_a_data_error(tmp_path: Path) -> None:
    import http.client

    def broken(*args: object, **kwargs: object) -> object:
        raise http.client.BadStatusLine("garbage")

    with pytest.raises(DataError, match="could not download"):
        dl.download_file(
            dl.RemoteFile(url="http://x/d.bin", filename="d.bin"), tmp_path, opener=broken
        )


def _no_length(send_header):  # type: ignore[no-untyped-def]
    def send(self, name: str, value: str) -> None:  # type: ignore[no-untyped-def]
        if name != "Content-Length":
            send_header(self, name, value)

    return send


def test_a_bare_name_skips_a_working_folder_that_holds_no_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pocketrec distill ml-1m` after `--out ml-1m`: the run folder in the working directory
    must not hide the data root's ml-1m; a folder that holds a dataset is still taken."""
    from pocketrec.distill.data._registry import dataset_folder

    root = tmp_path / "datasets"
    (root / "movielens_1m").mkdir(parents=True)
    work = tmp_path / "work"
    (work / "ml-1m").mkdir(parents=True)
    (work / "ml-1m" / "metrics.json").write_text("{}")
    monkeypatch.chdir(work)
    assert dataset_folder("ml-1m", root=root) == root / "movielens_1m"
    (work / "ml-1m" / "interactions.csv").write_text("user,item\n")
    assert dataset_folder("ml-1m", root=root) == Path("ml-1m")
    assert dataset_folder("ml-1m", root=tmp_path / "nowhere") == Path("ml-1m")
    # a name written as a path is only ever that path, never the data root's folder
    (root / "shop").mkdir()
    (work / "shop").mkdir()
    assert dataset_folder("shop", root=root) == root / "shop"
    assert dataset_folder("./shop", root=root) == Path("shop")
    with pytest.raises(DataError, match="not a folder"):
        dataset_folder("./nothing", root=root)
    (root / "nothing").mkdir()
    with pytest.raises(DataError, match="not a folder"):
        dataset_folder("./nothing", root=root)
