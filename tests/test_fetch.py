"""Tests of `cral download` (cral_lib/fetch/, cral_lib/cli/download.py).

A fake NIH: one small synthetic release (make_synthetic, 45 images of 32 px) whose PNGs are
packed, in sorted name order, into 3 gzip tar archives of 15 images (``images/<name>.png``
members, as NIH's), served by a real HTTP server on 127.0.0.1 (http.server in a thread) that
supports Range requests and injects faults: a connection cut after N bytes, HTTP errors, a
server that ignores Range, a web page instead of the archive. The downloader's archive table is
swapped for the fake one (3 archives, last names taken from the synthetic CSV). Nothing here
touches the network.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import threading
import zipfile
from collections import Counter, namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from cral_lib import fetch as dl
from cral_lib.cli import main
from cral_lib.data.cache import ImageCache, build_cache
from cral_lib.fetch import run as fetch_run
from cral_lib.fetch import sinks, stream
from cral_lib.errors import ConfigError, DataError

N_IMAGES, PER_ARCHIVE, SIZE = 45, 15, 16
META_FILES = ("Data_Entry_2017_v2020.csv", "train_val_list.txt", "test_list.txt", "BBox_List_2017.csv")


# --------------------------------------------------------------------------- the fake NIH


def tar_gz(members: list[tuple[str, bytes]], level: int = 9) -> bytes:
    """A gzip tar with an ``images/`` folder entry and ``images/<name>`` files, as NIH's."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=level) as tar:
        folder = tarfile.TarInfo("images")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in members:
            info = tarfile.TarInfo(f"images/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


Fake = namedtuple("Fake", "root names pngs table blobs")


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> Fake:
    """The synthetic release, its archive table and the archive bytes (built once per module)."""
    from cral_lib.synthetic import make_synthetic

    root = make_synthetic(tmp_path_factory.mktemp("synthetic") / "release", N_IMAGES, 32, seed=3,
                          workers=1, progress=False)
    names = sorted(p.name for p in (root / "images_001" / "images").glob("*.png"))
    assert len(names) == N_IMAGES
    pngs = {n: (root / "images_001" / "images" / n).read_bytes() for n in names}
    table, blobs = [], {}
    for k in range(N_IMAGES // PER_ARCHIVE):
        chunk = names[k * PER_ARCHIVE:(k + 1) * PER_ARCHIVE]
        blob = tar_gz([(n, pngs[n]) for n in chunk])
        archive = dl.Archive(k + 1, f"fakeid{k + 1:03d}", len(chunk), chunk[-1], len(blob))
        table.append(archive)
        blobs[f"/{archive.box_id}.gz"] = blob
    return Fake(root, names, pngs, tuple(table), blobs)


class FakeServer:
    """http.server in a thread: serves ``files`` with Range support and injected faults."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None, int]] = []  # (path, Range header, status sent)
        self.cut_once: dict[str, int] = {}  # path -> body bytes sent before the connection is cut (once)
        self.errors: dict[str, list[int]] = {}  # path -> statuses to answer first, one per request
        self.html: set[str] = set()  # paths answered with a web page
        self.ignore_range = False
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path, rng = self.path, self.headers.get("Range")
                with server.lock:
                    queued = server.errors.get(path)
                    status = queued.pop(0) if queued else None
                    cut = None
                data = server.files.get(path)
                if status is None and data is None:
                    status = 404
                if status is not None:
                    server.requests.append((path, rng, status))
                    return self._send(status, b"error", {"Content-Type": "text/plain"})
                if path in server.html:
                    server.requests.append((path, rng, 200))
                    return self._send(200, b"<!DOCTYPE html><html>limit</html>", {"Content-Type": "text/html"})
                start, status, headers = 0, 200, {"Content-Type": "application/octet-stream"}
                if rng and not server.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                    if start >= len(data):
                        server.requests.append((path, rng, 416))
                        return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                body = data[start:]
                with server.lock:
                    cut = server.cut_once.pop(path, None)
                    server.requests.append((path, rng, status))
                if cut is None:
                    return self._send(status, body, headers)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def hits(self, path: str) -> list[tuple[str | None, int]]:
        return [(r, s) for p, r, s in self.requests if p == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def _server():
    server = FakeServer()
    yield server
    server.close()


@pytest.fixture
def server(_server, fake, monkeypatch) -> FakeServer:
    """The fake NIH, reset for each test, with the downloader pointed at it."""
    _server.files = dict(fake.blobs)
    _server.requests.clear()
    _server.cut_once.clear()
    _server.errors.clear()
    _server.html.clear()
    _server.ignore_range = False
    monkeypatch.setattr(fetch_run, "NIH_ARCHIVES", fake.table)
    monkeypatch.setenv(dl.BASE_URL_ENV, _server.url)
    return _server


@pytest.fixture
def out(tmp_path, fake) -> Path:
    """A download folder that already holds the synthetic release's metadata (as a user would)."""
    folder = tmp_path / "nih"
    folder.mkdir()
    for name in META_FILES:
        shutil.copy(fake.root / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def reference(fake, tmp_path_factory) -> ImageCache:
    """What `cral prepare` builds from the synthetic release's PNGs."""
    return ImageCache(build_cache(fake.root, out=tmp_path_factory.mktemp("ref") / "cache", size=SIZE,
                                  workers=0, progress=False))


@pytest.fixture
def decodes(monkeypatch) -> Counter:
    """Count the PNG decodes of the cache sink, by image label."""
    seen: Counter = Counter()
    original = sinks.decode

    def counting(data, label, size):
        seen[label.rsplit("/", 1)[-1]] += 1
        return original(data, label, size)

    monkeypatch.setattr(sinks, "decode", counting)
    return seen


def fetch(out: Path, **kwargs) -> dl.DownloadResult:
    options = dict(cache_only=True, size=SIZE, retries=2, retry_wait=0.01, timeout=5, workers=2, progress=False)
    options.update(kwargs)
    return dl.download(out, **options)


def assert_same_cache(out: Path, reference: ImageCache) -> None:
    cache = ImageCache.open(out, size=SIZE)
    np.testing.assert_array_equal(cache.names, reference.names)
    np.testing.assert_array_equal(np.asarray(cache.images), np.asarray(reference.images))
    np.testing.assert_array_equal(cache.original_sizes, reference.original_sizes)
    assert cache.valid.all()


def state(out: Path) -> dict:
    return json.loads((out / dl.STATE_FILE).read_text())


# --------------------------------------------------------------------------- the archive table, options


def test_archive_table_matches_the_real_metadata():
    from cral_lib.data.metadata import nih_metadata

    assert [a.name for a in dl.NIH_ARCHIVES] == [f"images_{k:03d}" for k in range(1, 13)]
    assert dl.NIH_ARCHIVES[0].url(dl.NIH_BASE_URL) == (
        "https://nihcc.box.com/shared/static/vfk49d74nhbxq3nqjg0900w5nvkorp5c.gz")
    per_archive = dl.archive_names(nih_metadata()["Image Index"])
    assert [len(per_archive[a.number]) for a in dl.NIH_ARCHIVES] == [a.images for a in dl.NIH_ARCHIVES]
    assert [a.images for a in dl.NIH_ARCHIVES] == [4999] + [10000] * 10 + [7121]
    assert per_archive[2][0] == "00001336_000.png" and per_archive[12][-1] == "00030805_000.png"
    assert 40e9 < sum(a.approx_bytes for a in dl.NIH_ARCHIVES) < 46e9


def test_parse_archives_and_base_url(monkeypatch):
    assert dl.parse_archives(None) == tuple(range(1, 13))
    assert dl.parse_archives("1-12") == tuple(range(1, 13))
    assert dl.parse_archives("3, 1,5-6,5") == (1, 3, 5, 6)
    assert dl.parse_archives([2, 1]) == (1, 2)
    for bad, match in (("13", "no archive 13"), ("x", "'x' is not a number"), ("0", "no archive 0"),
                       ("3-1", "runs backwards"), ("", "empty"), ("1,,2", "empty")):
        with pytest.raises(ConfigError, match=match):
            dl.parse_archives(bad)
    monkeypatch.delenv(dl.BASE_URL_ENV, raising=False)
    assert dl.resolve_base_url() == dl.NIH_BASE_URL
    monkeypatch.setenv(dl.BASE_URL_ENV, "http://127.0.0.1:9/nih/")
    assert dl.resolve_base_url() == "http://127.0.0.1:9/nih"
    assert dl.resolve_base_url("https://mirror.example/x") == "https://mirror.example/x"
    with pytest.raises(ConfigError, match="ftp://x.*not an http"):
        dl.resolve_base_url("ftp://x")


# --------------------------------------------------------------------------- both modes


def test_cache_only_streams_into_the_cache_that_prepare_builds(server, out, reference, decodes, fake):
    result = fetch(out)
    assert result.cache_complete and result.cache == out / "cache" / str(SIZE)
    assert result.done == result.fetched == ["images_001", "images_002", "images_003"]
    assert_same_cache(out, reference)
    # no PNG and no archive on disk; each image decoded once
    assert not list(out.rglob("*.png")) and not list(out.glob("*.part")) and not list(out.glob("*.tar.gz"))
    assert sorted(decodes) == fake.names and set(decodes.values()) == {1}
    archives = state(out)["archives"]
    assert all(f"cache {SIZE} {out / 'cache' / str(SIZE)}" in archives[a.name]["done"] for a in fake.table)
    assert archives["images_002"]["total"] == len(fake.blobs["/fakeid002.gz"])
    assert not result.metadata.missing_lists and not result.messages
    # a second run has nothing to do and sends no request
    before = len(server.requests)
    again = fetch(out)
    assert again.cache_complete and again.fetched == [] and len(server.requests) == before


def test_layout_mode_writes_the_nih_layout_and_prepare_builds_the_same_cache(server, out, reference, fake):
    result = fetch(out, cache_only=False)
    assert result.cache is None and result.done == ["images_001", "images_002", "images_003"]
    for archive in fake.table:
        folder = out / archive.name / "images"
        written = sorted(p.name for p in folder.iterdir())
        assert len(written) == PER_ARCHIVE and written[-1] == archive.last
        assert all((folder / n).read_bytes() == fake.pngs[n] for n in written)
    assert not list(out.glob("*.part")) and not list(out.rglob("*.cral-tmp"))
    assert any("cral prepare --data" in m for m in result.messages)
    build_cache(out, size=SIZE, workers=0, progress=False)
    assert_same_cache(out, reference)
    assert state(out)["archives"]["images_003"]["done"].keys() == {"layout"}


def test_layout_keeps_archives_reads_user_archives_and_never_overwrites_user_files(server, out, fake):
    # a user put NIH's own file name for archive 1 into the folder: it is read, not downloaded, not deleted
    (out / "images_01.tar.gz").write_bytes(fake.blobs["/fakeid001.gz"])
    # a file of the user's where archive 3 wants to write: refused, left alone
    (out / "images_003" / "images").mkdir(parents=True)
    mine = out / "images_003" / "images" / fake.table[2].last
    mine.write_bytes(b"mine")
    with pytest.raises(DataError, match=f"{mine.name} exists with 4 bytes.*move it away"):
        fetch(out, cache_only=False, keep_archives=True)
    assert mine.read_bytes() == b"mine"
    assert not server.hits("/fakeid001.gz") and (out / "images_01.tar.gz").is_file()
    assert (out / "images_002.tar.gz").read_bytes() == fake.blobs["/fakeid002.gz"]  # kept, verified
    mine.unlink()
    result = fetch(out, cache_only=False, keep_archives=True)
    assert result.fetched == ["images_003"] and len(server.hits("/fakeid002.gz")) == 1
    assert (out / "images_01.tar.gz").is_file() and (out / "images_003.tar.gz").is_file()


def test_subset_in_cache_only_mode_stays_incomplete_until_the_rest_is_in(server, out, reference):
    result = fetch(out, archives="1,3")
    assert result.done == ["images_001", "images_003"] and not result.cache_complete
    assert result.cache_done == 2 * PER_ARCHIVE and result.cache_total == N_IMAGES
    assert any("stays incomplete" in m and "images_002" in m and "--lenient" in m for m in result.messages)
    with pytest.raises(DataError, match="incomplete"):
        ImageCache.open(out, size=SIZE)
    result = fetch(out)
    assert result.fetched == ["images_002"] and result.cache_complete
    assert_same_cache(out, reference)


# --------------------------------------------------------------------------- faults


@pytest.fixture(params=["256 kB reads", "777 B reads"])
def chunk(request, monkeypatch) -> None:
    """Run with the real read size and with tiny reads (every boundary inside gzip, tar and PNGs)."""
    if request.param.startswith("777"):
        monkeypatch.setattr(stream, "CHUNK", 777)


def test_cut_connection_next_run_resumes_from_the_byte_reached(server, out, reference, decodes, chunk):
    blob = server.files["/fakeid002.gz"]
    cut = len(blob) * 3 // 5
    server.cut_once["/fakeid002.gz"] = cut
    with pytest.raises(DataError, match=r"images_002.tar.gz .*failed: 1 attempt\(s\) in a row.*"
                       r"kept in .*images_002.tar.gz.part.*resume"):
        fetch(out, retries=0)
    part = out / "images_002.tar.gz.part"
    assert part.read_bytes() == blob[:cut]  # nothing received is lost
    assert state(out)["archives"]["images_002"]["offset"] == cut
    first = sum(decodes.values())
    assert PER_ARCHIVE < first < 2 * PER_ARCHIVE  # archive 1 and the images complete before the cut
    result = fetch(out)
    assert server.hits("/fakeid002.gz")[-1] == (f"bytes={cut}-", 206)
    assert server.hits("/fakeid001.gz") == [(None, 200)]  # done archives are not fetched again
    assert result.fetched == ["images_002", "images_003"] and result.cache_complete
    assert set(decodes.values()) == {1} and sum(decodes.values()) == N_IMAGES  # no image decoded twice
    assert_same_cache(out, reference)
    assert not part.exists()


def test_cut_connection_is_retried_within_a_run_with_range(server, out, reference):
    blob = server.files["/fakeid001.gz"]
    server.cut_once["/fakeid001.gz"] = 1000
    result = fetch(out)
    assert server.hits("/fakeid001.gz") == [(None, 200), ("bytes=1000-", 206)]
    assert result.cache_complete and len(blob) > 1000
    assert_same_cache(out, reference)


def test_server_that_ignores_range_restarts_cleanly(server, out, reference, chunk):
    server.ignore_range = True
    server.cut_once["/fakeid003.gz"] = 2000
    with pytest.raises(DataError, match="resume"):
        fetch(out, retries=0)
    result = fetch(out)
    assert server.hits("/fakeid003.gz") == [(None, 200), ("bytes=2000-", 200)]
    assert result.cache_complete
    assert_same_cache(out, reference)


def test_archive_changed_on_the_server_restarts_from_zero(server, out, reference, fake):
    server.cut_once["/fakeid001.gz"] = 3000
    with pytest.raises(DataError, match="resume"):
        fetch(out, retries=0)
    chunk = fake.names[:PER_ARCHIVE]
    other = tar_gz([(n, fake.pngs[n]) for n in chunk], level=0)  # the same images, other bytes and size
    assert len(other) != len(server.files["/fakeid001.gz"])
    server.files["/fakeid001.gz"] = other
    result = fetch(out)
    assert server.hits("/fakeid001.gz") == [(None, 200), ("bytes=3000-", 206), (None, 200)]
    assert result.cache_complete and state(out)["archives"]["images_001"]["total"] == len(other)
    assert_same_cache(out, reference)


def test_a_complete_partial_file_is_not_downloaded_again(server, out, reference):
    blob = server.files["/fakeid002.gz"]
    (out / "images_002.tar.gz.part").write_bytes(blob)  # e.g. the state file was lost
    result = fetch(out, cache_only=False)
    assert server.hits("/fakeid002.gz") == [(f"bytes={len(blob)}-", 416)]
    assert result.done == ["images_001", "images_002", "images_003"]
    assert len(list((out / "images_002" / "images").glob("*.png"))) == PER_ARCHIVE


def test_corrupt_archive_is_named_not_marked_done_and_fetched_afresh(server, out, reference, fake):
    good = server.files["/fakeid002.gz"]
    bad = bytearray(good)
    bad[len(bad) * 4 // 5] ^= 0xFF
    server.files["/fakeid002.gz"] = bytes(bad)
    with pytest.raises(DataError, match=r"1 archive\(s\) failed verification.*images_002: .*damaged"):
        fetch(out)
    archives = state(out)["archives"]
    assert archives["images_001"]["done"] and archives["images_003"]["done"]
    assert not archives["images_002"].get("done")
    assert not (out / "images_002.tar.gz.part").exists()  # not resumed: its bytes are bad
    meta = json.loads((out / "cache" / str(SIZE) / "cache.json").read_text())
    assert meta["complete"] is False and meta["done"] >= 2 * PER_ARCHIVE  # archives 1 and 3 kept
    server.files["/fakeid002.gz"] = good
    result = fetch(out)
    assert result.fetched == ["images_002"] and result.cache_complete
    assert_same_cache(out, reference)


def test_wrong_or_truncated_archive_fails_verification(server, out, fake):
    server.files["/fakeid002.gz"] = fake.blobs["/fakeid003.gz"]  # another archive under this link
    server.files["/fakeid003.gz"] = fake.blobs["/fakeid003.gz"][:-30]  # the gzip trailer is cut
    with pytest.raises(DataError) as info:
        fetch(out, cache_only=False)
    message = str(info.value)
    assert "2 archive(s) failed" in message
    assert re.search(r"images_002: it holds \S+\.png, which is not one of the 15 images of images_002", message)
    assert re.search(r"images_003: .*(truncated|ends early|holds \d+ of the 15)", message)
    assert state(out)["archives"]["images_001"]["done"].keys() == {"layout"}


def test_server_errors_are_retried_then_reported_clearly(server, out, reference):
    server.errors["/fakeid001.gz"] = [503, 500]
    result = fetch(out)
    assert [s for _, s in server.hits("/fakeid001.gz")] == [503, 500, 200]
    assert result.cache_complete

    other = out.parent / "other"
    shutil.copytree(out, other, ignore=shutil.ignore_patterns("cache", dl.STATE_FILE))
    server.errors["/fakeid002.gz"] = [500] * 5
    with pytest.raises(DataError, match=r"failed: 2 attempt\(s\) in a row \(HTTP 500.*"
                       r"run the same command again later.*images_001 are done and stay done"):
        fetch(other, retries=1)
    assert state(other)["archives"]["images_001"]["done"] and not (other / "images_002.tar.gz.part").exists()
    server.errors.clear()
    server.html.add("/fakeid002.gz")
    with pytest.raises(DataError, match="web page"):
        fetch(other, retries=0)
    server.html.clear()
    del server.files["/fakeid002.gz"]
    with pytest.raises(DataError, match="HTTP 404.*--base-url"):
        fetch(other, retries=3)
    assert [s for _, s in server.hits("/fakeid002.gz")][-1] == 404  # not retried


def test_full_disk_is_detected_before_anything_is_fetched(server, out, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(DataError, match=r"not enough free disk space.*needs about .*with --cache-only it would need"):
        fetch(out, cache_only=False)
    with pytest.raises(DataError, match=r"not enough free disk space.*without --cache-only it would need"):
        fetch(out)
    assert server.requests == []
    assert sorted(p.name for p in out.iterdir()) == sorted(META_FILES)  # nothing made, nothing lost
    fetch(out, space_check=False)  # the check can be skipped


# --------------------------------------------------------------------------- metadata


def test_metadata_comes_from_the_wheel_and_the_split_lists_are_not_invented(tmp_path, monkeypatch):
    from cral_lib.data.nih import ChestXray14, read_boxes

    out = tmp_path / "empty"
    result = dl.download(out, metadata_only=True, progress=False)
    assert result.metadata.written == ["Data_Entry_2017_v2020.csv", "BBox_List_2017.csv"]
    assert result.metadata.missing_lists == ["train_val_list.txt", "test_list.txt"]
    ds = ChestXray14(out, "all", require_images=False)
    assert len(ds) == 112_120
    assert len(read_boxes(out / "BBox_List_2017.csv")) == 984
    assert not (out / "train_val_list.txt").exists() and not (out / "test_list.txt").exists()
    (note,) = result.messages
    assert dl.NIH_PAGE in note and dl.KAGGLE_PAGE in note and "training needs them" in note
    # files already there are never replaced
    (out / "BBox_List_2017.csv").write_text("mine")
    assert dl.download(out, metadata_only=True, progress=False).metadata.written == []
    assert (out / "BBox_List_2017.csv").read_text() == "mine"


def test_a_csv_that_is_not_chestxray14_is_refused(out):
    # the real archive table (no fake server): synthetic names fall after the last NIH archive
    with pytest.raises(DataError, match="fall in none of the 12 archives.*not ChestX-ray14's"):
        dl.download(out, cache_only=True, progress=False)


# --------------------------------------------------------------------------- command line


def test_cli_help_and_bad_input(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["download", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--cache-only", "--archives", "--size", "--cache", "--base-url", "--retries", "--source",
                   "--metadata-only", "--keep-archives", "--no-space-check", "CRAL_NIH_BASE_URL", "12-13 GB"):
        assert option in text
    for argv, match in ((["--archives", "13"], "no archive 13"), (["--archives", "x"], "'x' is not a number"),
                        (["--size", "0"], "--size 0"), (["--base-url", "ftp://h"], "not an http"),
                        (["--retries", "-1"], "--retries -1")):
        assert main(["download", "--out", str(tmp_path / "o"), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("cral download: error:") and match in err[0]
    assert not (tmp_path / "o").exists()


def test_cli_cache_only_against_the_fake_server(server, out, capsys, reference):
    server.cut_once["/fakeid002.gz"] = 5000  # with progress bars on, through a retry
    argv = ["download", "--out", str(out), "--cache-only", "--size", str(SIZE), "--base-url", server.url,
            "--workers", "0", "--retry-wait", "0"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert f"cache: {out / 'cache' / str(SIZE)} (45 of 45 images, complete)" in captured.out
    assert "images: 100%" in captured.err and "retry 1 of 5" in captured.out + captured.err
    assert_same_cache(out, reference)


# --------------------------------------------------------------------------- Kaggle


FAKE_KAGGLE = """#!{python}
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ["FAKE_KAGGLE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
src, dest = os.environ["FAKE_KAGGLE_SRC"], args[args.index("-p") + 1]
name = args[args.index("-f") + 1] + ".zip" if "-f" in args else "data.zip"
if not os.path.exists(os.path.join(src, name)):
    name = name[:-4]
shutil.copy(os.path.join(src, name), dest)
"""


@pytest.fixture
def fake_kaggle(tmp_path, fake, monkeypatch):
    """A `kaggle` executable first on PATH that copies prepared files and records its arguments."""
    bin_dir, src = tmp_path / "bin", tmp_path / "kaggle-src"
    bin_dir.mkdir()
    src.mkdir()
    exe = bin_dir / "kaggle"
    exe.write_text(FAKE_KAGGLE.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    with zipfile.ZipFile(src / "data.zip", "w") as z:  # the Kaggle copy's layout
        z.writestr("Data_Entry_2017.csv", (fake.root / "Data_Entry_2017_v2020.csv").read_bytes())
        for name in META_FILES[1:]:
            z.writestr(name, (fake.root / name).read_bytes())
        for archive in fake.table:
            for name in dl.archive_names(fake.names, fake.table)[archive.number]:
                z.writestr(f"{archive.name}/images/{name}", fake.pngs[name])
    with zipfile.ZipFile(src / "Data_Entry_2017.csv.zip", "w") as z:  # kaggle zips some single files
        z.writestr("Data_Entry_2017.csv", (fake.root / "Data_Entry_2017_v2020.csv").read_bytes())
    for name in META_FILES[1:]:
        shutil.copy(fake.root / name, src / name)
    log = tmp_path / "kaggle-args.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_KAGGLE_LOG", str(log))
    monkeypatch.setenv("FAKE_KAGGLE_SRC", str(src))
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    monkeypatch.setattr(fetch_run, "NIH_ARCHIVES", fake.table)
    return lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("mode", ["--cache-only", "layout"])
def test_kaggle_source_reads_the_zip_into_the_cache_or_the_layout(fake_kaggle, tmp_path, reference, capsys, mode):
    out = tmp_path / "k"
    argv = ["download", "--out", str(out), "--source", "kaggle", "--size", str(SIZE), "--no-progress"]
    assert main(argv + ([mode] if mode.startswith("--") else [])) == 0
    assert fake_kaggle() == [["datasets", "download", "-d", "nih-chest-xrays/data", "-p", str(out)]]
    assert not (out / "data.zip").exists()  # our zip is deleted once every image is in
    assert (out / "train_val_list.txt").is_file() and (out / "Data_Entry_2017.csv").is_file()
    if mode == "layout":
        assert len(list(out.glob("images_00?/images/*.png"))) == N_IMAGES
        build_cache(out, size=SIZE, workers=0, progress=False)
    else:
        assert "45 of 45 images, complete" in capsys.readouterr().out and not list(out.rglob("*.png"))
    assert_same_cache(out, reference)


def test_kaggle_metadata_only_fetches_files_one_by_one(fake_kaggle, tmp_path):
    out = tmp_path / "k"
    result = dl.download(out, source="kaggle", metadata_only=True, progress=False)
    calls = fake_kaggle()
    assert [c[c.index("-f") + 1] for c in calls] == [
        "Data_Entry_2017.csv", "BBox_List_2017.csv", "train_val_list.txt", "test_list.txt"]
    assert all(c[:4] == ["datasets", "download", "-d", "nih-chest-xrays/data"] for c in calls)
    assert result.metadata.missing_lists == [] and not result.messages
    assert not (out / "Data_Entry_2017.csv.zip").exists() and (out / "Data_Entry_2017.csv").is_file()


def test_kaggle_missing_executable_or_token_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no kaggle here
    assert main(["download", "--out", str(tmp_path / "k"), "--source", "kaggle"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install kaggle" in err[0] and "KAGGLE_USERNAME" in err[0]
    exe = tmp_path / "kaggle"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert main(["download", "--out", str(tmp_path / "k"), "--source", "kaggle"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "API token" in err[0] and "kaggle.json" in err[0] and "KAGGLE_KEY" in err[0]
