"""Tests of the batch loader (cral_lib/data/loader.py): content, order, sharding, resume, threads."""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest
import torch

from cral_lib.data import BatchLoader, ImageCache, build_cache
from cral_lib.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from conftest import write_release

    root = write_release(tmp_path_factory.mktemp("loader") / "release", n_images=45, size=16, layout="flat")
    return ImageCache(build_cache(root, size=8, workers=0, progress=False))


def make(cache, **kwargs):
    rows = np.arange(3, 40)  # 37 samples: not a multiple of anything used below
    labels = np.random.default_rng(0).random((len(rows), 14)).astype(np.float32)
    kwargs.setdefault("batch_size", 5)
    return BatchLoader(cache, rows, labels, **kwargs), rows, labels


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cral-batch-prefetch"]


@pytest.mark.parametrize("prefetch", [0, 2])
def test_batches_hold_the_right_rows(cache, prefetch):
    loader, rows, labels = make(cache, prefetch=prefetch)
    seen = []
    for x, y, pos in loader:
        assert x.dtype == torch.uint8 and x.shape[1:] == (1, 8, 8) and x.shape[0] <= 5
        assert y.dtype == torch.float32 and y.shape == (x.shape[0], 14)
        assert pos.dtype == torch.int64
        np.testing.assert_array_equal(x[:, 0].numpy(), cache.images[rows[pos.numpy()]])
        np.testing.assert_array_equal(y.numpy(), labels[pos.numpy()])
        assert (np.diff(rows[pos.numpy()]) > 0).all()  # sorted by cache row within a batch
        seen.extend(pos.tolist())
    assert sorted(seen) == list(range(37)) and len(loader) == 8


def test_shuffle_is_a_function_of_seed_and_epoch(cache):
    loader, _, _ = make(cache, shuffle=True, seed=3)
    order = lambda: [p for _, _, pos in loader for p in sorted(pos.tolist())]  # noqa: E731
    loader.set_epoch(0)
    e0 = order()
    loader.set_epoch(1)
    e1 = order()
    loader.set_epoch(0)
    assert order() == e0 != e1
    assert sorted(e0) == sorted(e1) == list(range(37))
    other, _, _ = make(cache, shuffle=True, seed=4)
    assert [p for p in other.indices(0)] != list(loader.indices(0))
    fresh, _, _ = make(cache, shuffle=True, seed=3)  # a new process after a restart
    np.testing.assert_array_equal(fresh.indices(1), loader.indices(1))


def test_drop_last(cache):
    loader, _, _ = make(cache, drop_last=True)
    batches = [len(pos) for _, _, pos in loader]
    assert batches == [5] * 7 and len(loader) == 7


@pytest.mark.parametrize("shuffle", [True, False])
def test_ddp_sharding(cache, shuffle):
    world = 3
    shards = [make(cache, shuffle=shuffle, rank=r, world_size=world)[0] for r in range(world)]
    for s in shards:
        s.set_epoch(2)
    got = [[p for _, _, pos in s for p in pos.tolist()] for s in shards]
    assert [len(g) for g in got] == [s.num_samples for s in shards]
    assert [len(s) for s in shards] == [len(range(0, s.num_samples, 5)) for s in shards]
    everything = sorted(p for g in got for p in g)
    if shuffle:  # training: equal shares, padded by wrapping around
        assert [len(g) for g in got] == [13, 13, 13]
        assert set(everything) == set(range(37)) and len(everything) == 39
        assert len({len(s) for s in shards}) == 1  # equal batch counts: no DDP hang
    else:  # evaluation: every row exactly once
        assert everything == list(range(37))
        assert [len(g) for g in got] == [13, 12, 12]


def test_iter_from_skips_without_reading(cache, monkeypatch):
    loader, _, _ = make(cache, shuffle=True, prefetch=0)
    loader.set_epoch(5)
    full = [pos.tolist() for _, _, pos in loader]
    read = []
    original = BatchLoader._host_batch

    def spy(self, pos):
        read.append(sorted(pos.tolist()))
        return original(self, pos)

    monkeypatch.setattr(BatchLoader, "_host_batch", spy)
    resumed = [pos.tolist() for _, _, pos in loader.iter_from(3)]
    assert resumed == full[3:]
    assert read == [sorted(p) for p in full[3:]]  # batches 0..2 were never gathered
    assert list(loader.iter_from(len(loader))) == []
    with pytest.raises(ConfigError):
        loader.iter_from(len(loader) + 1)


def test_early_stop_ends_the_thread(cache):
    before = len(prefetch_threads())
    loader, _, _ = make(cache, prefetch=2, batch_size=2)
    for _ in loader:
        break  # the iterator is dropped here
    gc.collect()
    deadline = time.monotonic() + 5
    while len(prefetch_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(prefetch_threads()) == before
    it = iter(loader)
    next(it)
    assert len(prefetch_threads()) == before + 1
    it.close()
    assert len(prefetch_threads()) == before
    with pytest.raises(StopIteration):
        next(it)
    with loader.iter_from(1) as it2:
        next(it2)
    assert len(prefetch_threads()) == before


def test_errors_in_the_thread_reach_the_caller(cache, monkeypatch):
    loader, _, _ = make(cache, prefetch=2)

    def broken(self, pos):
        raise OSError("disk gone")

    monkeypatch.setattr(BatchLoader, "_host_batch", broken)
    with pytest.raises(OSError, match="disk gone"):
        next(iter(loader))
    gc.collect()
    assert not prefetch_threads()


def test_bad_arguments(cache):
    with pytest.raises(ConfigError, match="aligned"):
        BatchLoader(cache, np.arange(5), np.zeros((4, 14)), 2)
    with pytest.raises(DataError, match="rows must be in"):
        BatchLoader(cache, np.array([0, 45]), np.zeros((2, 14)), 2)
    with pytest.raises(ConfigError, match="batch_size"):
        BatchLoader(cache, np.arange(5), np.zeros((5, 14)), 0)
    with pytest.raises(ConfigError, match="rank"):
        BatchLoader(cache, np.arange(5), np.zeros((5, 14)), 2, rank=2, world_size=2)


def test_plain_array_and_augmentation_together(cache):
    from cral_lib.data import TrainTransform

    images = np.asarray(cache.images)
    loader = BatchLoader(images, np.arange(10), np.zeros((10, 14)), 4)
    tf = TrainTransform(6)
    g = torch.Generator().manual_seed(0)
    shapes = [tuple(tf(x, generator=g).shape) for x, _, _ in loader]
    assert shapes == [(4, 3, 6, 6), (4, 3, 6, 6), (2, 3, 6, 6)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_pinned_batches(cache):
    loader, rows, labels = make(cache, device="cuda")
    assert loader.pin_memory
    for x, y, pos in loader:
        assert x.is_cuda and y.is_cuda and not pos.is_cuda
        np.testing.assert_array_equal(x[:, 0].cpu().numpy(), cache.images[rows[pos.numpy()]])
