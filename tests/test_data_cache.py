"""Tests of the image cache (cral_lib/data/cache/): content, reuse, refusal, interruption, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import image_path

from cral_lib.data import (
    BatchLoader,
    CacheWriter,
    ChestXray14,
    ImageCache,
    build_cache,
    default_cache_dir,
    load_grey,
)
from cral_lib.data.cache import build as cache_mod
from cral_lib.data.images import resize_grey
from cral_lib.errors import DataError


def reference_rows(root: Path, size: int) -> np.ndarray:
    """What the cache must hold: PIL bilinear resize of load_grey, row by row, in CSV order."""
    ds = ChestXray14(root, "all")
    return np.stack([resize_grey(load_grey(p), size) for p in ds.frame["path"]])


@pytest.fixture
def count_loads(monkeypatch):
    """Count (and optionally slow down) the decodes of the in-process builder."""
    calls: list[int] = []
    original = cache_mod._load_resized

    def counting(task):
        calls.append(task[0])
        return original(task)

    monkeypatch.setattr(cache_mod, "_load_resized", counting)
    return calls


def test_build_content_and_files(make_release):
    root = make_release(n_images=20, size=24, layout="flat", modes=("L", "RGBA", "I;16", "LA"))
    path = build_cache(root, size=16, workers=0, progress=False)
    assert path == default_cache_dir(root, 16) == root / "cache" / "16"
    assert {p.name for p in path.iterdir()} >= {"images.npy", "index.csv", "cache.json"}
    assert not (path / "state.npy").exists()
    meta = json.loads((path / "cache.json").read_text())
    assert meta["complete"] is True and meta["count"] == 20 and meta["size"] == 16 and meta["version"] == 1
    cache = ImageCache.open(root, size=16)
    assert cache.images.shape == (20, 16, 16) and cache.images.dtype == np.uint8
    assert not cache.images.flags.writeable  # opened read-only (memmap mode "r")
    np.testing.assert_array_equal(cache.images, reference_rows(root, 16))
    assert list(cache.names) == list(ChestXray14(root, "all").frame["Image Index"])
    assert cache.original_sizes.tolist() == [[24, 24]] * 20
    assert cache.valid.all() and cache.size == 16 and len(cache) == 20
    ds = ChestXray14(root, "test")
    rows, labels = cache.select(ds)
    assert list(cache.names[rows]) == list(ds.frame["Image Index"])
    np.testing.assert_array_equal(labels, ds.labels)
    with pytest.raises(DataError, match="not in the cache"):
        cache.rows(["nope.png"])


def test_complete_cache_is_reused_without_decoding(make_release, count_loads):
    root = make_release(n_images=10, size=16)
    build_cache(root, size=8, workers=0, progress=False)
    assert len(count_loads) == 10
    start = time.perf_counter()
    build_cache(root, size=8, workers=0, progress=False)
    assert len(count_loads) == 10 and time.perf_counter() - start < 1.0


def test_cache_must_match_its_release(make_release):
    root = make_release(n_images=12, size=16)
    build_cache(root, size=8, workers=0, progress=False)
    with pytest.raises(DataError, match="8 px"):
        ImageCache.open(root, size=16, out=default_cache_dir(root, 8))
    with pytest.raises(DataError, match="no image cache"):
        ImageCache.open(root, size=16)
    # another release with more images
    other = make_release(n_images=15, size=16)
    with pytest.raises(DataError, match="holds 12 images but .* lists 15") as err:
        ImageCache.open(other, size=8, out=default_cache_dir(root, 8))
    assert "cral prepare" in str(err.value)
    # same count, another order
    csv = root / "Data_Entry_2017.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    with pytest.raises(DataError, match="fingerprint differs"):
        ImageCache.open(root, size=8)
    # building into it is refused without --overwrite, and replaces it with
    with pytest.raises(DataError, match="overwrite"):
        build_cache(root, size=8, workers=0, progress=False)
    build_cache(root, size=8, workers=0, progress=False, overwrite=True)
    ImageCache.open(root, size=8)


def test_abandoned_writer_is_resumed_not_used(make_release, count_loads):
    root = make_release(n_images=16, size=16, layout="flat")
    ds = ChestXray14(root, "all")
    out = root / "cache" / "8"
    writer = CacheWriter(out, ds.names, 8)
    for name, p in list(zip(ds.names, ds.frame["path"]))[:6]:
        writer.write(name, load_grey(p))
    writer.flush()
    writer.write(ds.names[6], load_grey(ds.frame["path"][6]))  # written, never flushed
    del writer  # abandoned without finalize (and without close)
    meta = json.loads((out / "cache.json").read_text())
    assert meta["complete"] is False
    with pytest.raises(DataError, match="incomplete"):
        ImageCache(out)
    with pytest.raises(DataError, match="incomplete"):
        ImageCache.open(root, size=8)
    resumed = CacheWriter(out, ds.names, 8)
    assert resumed.resumed and resumed.done >= 6
    assert resumed.missing() == list(ds.names[resumed.done :])
    resumed.close()
    build_cache(root, size=8, workers=0, progress=False)
    assert sorted(count_loads) == list(range(16 - len(count_loads), 16))  # none of the done rows again
    assert len(count_loads) <= 10
    np.testing.assert_array_equal(ImageCache.open(root, size=8).images, reference_rows(root, 8))


_KILLED_BUILD = """
import sys, time
from cral_lib.data.cache import build as cache
original = cache._load_resized
def slow(task):
    time.sleep(0.15)
    return original(task)
cache._load_resized = slow
cache.build_cache(sys.argv[1], size=8, workers=0, progress=False, flush_seconds=0)
print("finished", flush=True)
"""


def test_killed_build_keeps_finished_work(make_release, count_loads, tmp_path):
    """A build killed with SIGKILL leaves an incomplete cache that is refused, then resumed."""
    root = make_release(n_images=60, size=16, layout="flat")
    out = root / "cache" / "8"
    script = tmp_path / "build.py"
    script.write_text(textwrap.dedent(_KILLED_BUILD))
    proc = subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        done = 0
        while time.monotonic() < deadline:
            meta_file = out / "cache.json"
            if meta_file.exists():
                try:
                    done = json.loads(meta_file.read_text())["done"]
                except (ValueError, KeyError):
                    done = 0
                if done >= 8:
                    break
            time.sleep(0.05)
        assert done >= 8, "the build did not make progress"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert b"finished" not in proc.stdout.read()
    meta = json.loads((out / "cache.json").read_text())
    assert meta["complete"] is False and 8 <= meta["done"] < 60
    with pytest.raises(DataError, match="incomplete"):
        ImageCache.open(root, size=8)
    state = np.load(out / "state.npy")
    persisted = int((state[:, 0] == 1).sum())
    build_cache(root, size=8, workers=0, progress=False)
    assert len(count_loads) == 60 - persisted  # finished rows are not decoded again
    assert not set(count_loads) & set(np.flatnonzero(state[:, 0] == 1).tolist())
    np.testing.assert_array_equal(ImageCache.open(root, size=8).images, reference_rows(root, 8))


def test_strict_build_stops_on_a_corrupt_png_and_keeps_the_rest(make_release):
    root = make_release(n_images=12, size=16, layout="flat")
    corrupt = image_path(root, "00000003_001.png")
    corrupt.write_bytes(corrupt.read_bytes()[:50])
    with pytest.raises(DataError, match="00000003_001.png") as err:
        build_cache(root, size=8, workers=0, progress=False)
    assert "resumes" in str(err.value) and "lenient" in str(err.value)
    meta = json.loads((root / "cache" / "8" / "cache.json").read_text())
    assert meta["complete"] is False and meta["done"] == 7  # the rows before it (0..6) are kept


def test_lenient_skips_missing_and_corrupt(make_release):
    root = make_release(n_images=12, size=16, layout="flat")
    image_path(root, "00000002_000.png").unlink()
    corrupt = image_path(root, "00000003_001.png")
    corrupt.write_bytes(corrupt.read_bytes()[:50])
    with pytest.raises(DataError, match="00000002_000.png"):
        build_cache(root, size=8, workers=0, progress=False)
    with pytest.warns(UserWarning, match="skipped 2 of 12"):
        path = build_cache(root, size=8, workers=0, progress=False, lenient=True)
    cache = ImageCache(path)
    assert cache.valid.sum() == 10
    assert set(cache.names[~cache.valid]) == {"00000002_000.png", "00000003_001.png"}
    assert not cache.images[~cache.valid].any()
    meta = json.loads((path / "cache.json").read_text())
    assert set(meta["skipped"]) == {"00000002_000.png", "00000003_001.png"}
    assert "not found" in meta["skipped"]["00000002_000.png"]
    assert "cannot decode" in meta["skipped"]["00000003_001.png"]
    # reusing it: a strict build says what it leaves out; a lenient one reuses it quietly
    with pytest.warns(UserWarning, match="leaves out 2 images"):
        assert build_cache(root, size=8, workers=0, progress=False) == path
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_cache(root, size=8, workers=0, progress=False, lenient=True)

    # using it: skipped rows are left out with a warning, and the loader refuses them
    class AllImages:  # what select() needs of a dataset, the skipped images included
        names = cache.names
        labels = np.zeros((12, 14), np.float32)
        split = "all"

    with pytest.warns(UserWarning, match="2 of 12"):
        rows, labels = cache.select(AllImages)
    assert len(rows) == len(labels) == 10 and cache.valid[rows].all()
    with pytest.raises(DataError, match="skipped"):
        BatchLoader(cache, np.arange(12), np.zeros((12, 14)), 4)


def test_writer_contract(tmp_path):
    names = [f"{i:08d}_000.png" for i in range(5)]
    out = tmp_path / "c"
    writer = CacheWriter(out, names, 8, flush_seconds=1e9)
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (30, 20), dtype=np.uint8)
    writer.write(names[2], big)
    assert writer.is_done(names[2]) and not writer.is_done(names[0])
    assert writer.missing() == [names[0], names[1], names[3], names[4]]
    with pytest.raises(DataError, match="not one of"):
        writer.write("other.png", big)
    with pytest.raises(DataError, match="not written yet"):
        writer.finalize()
    with pytest.raises(DataError, match="another process"):
        CacheWriter(out, names, 8)  # the folder is locked while a writer is open
    for name in names:
        if not writer.is_done(name):
            writer.write(name, np.full((8, 8), 7, np.uint8), original_size=(1024, 1024))
    with pytest.raises(DataError, match="fingerprint"):
        writer.finalize("0" * 64)
    writer.finalize(cache_mod.names_fingerprint(names))
    cache = ImageCache(out)
    np.testing.assert_array_equal(cache.images[2], resize_grey(big, 8))
    assert cache.original_sizes.tolist() == [[1024, 1024]] * 2 + [[20, 30]] + [[1024, 1024]] * 2
    assert (cache.images[0] == 7).all()
    with pytest.raises(DataError, match="closed"):
        writer.write(names[0], big)
    # another set of names in the same folder: refused unless overwrite
    with pytest.raises(DataError, match="another cache"):
        CacheWriter(out, names[:4], 8)
    with pytest.raises(DataError, match="another cache"):
        CacheWriter(out, names, 16)
    CacheWriter(out, names[:4], 8, overwrite=True).close()
    with pytest.raises(DataError, match="incomplete"):
        ImageCache(out)


def test_process_pool_gives_the_same_cache(make_release):
    root = make_release(n_images=130, size=16, layout="nested")
    a = build_cache(root, out=root / "serial", size=8, workers=0, progress=False)
    b = build_cache(root, out=root / "pool", size=8, workers=2, progress=False)
    np.testing.assert_array_equal(ImageCache(a).images, ImageCache(b).images)
    np.testing.assert_array_equal(ImageCache(a).original_sizes, ImageCache(b).original_sizes)
