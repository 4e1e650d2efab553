"""Batches of cached images on the device, prefetched by a background thread.

:class:`BatchLoader` replaces a ``torch.utils.data.DataLoader`` over PNG files: a batch is
one numpy fancy-index of the cache's memory-mapped ``N x S x S`` uint8 array (indices sorted,
so that reads go forward through the file), written straight into pinned memory when the
device is a GPU and copied with ``non_blocking=True``. A background thread prepares the next
``prefetch`` batches while the model works on the current one; numpy releases the GIL while
it copies, so one thread is enough. The images stay uint8 until they reach the device, where
:mod:`cral_lib.data.augment` crops, flips and normalizes them.

Order and sharding follow ``torch.utils.data.DistributedSampler``: with ``shuffle=True`` the
order of an epoch is a permutation drawn from ``np.random.default_rng([seed, epoch])`` (the
same on every rank, and the same after a restart), padded by wrapping around to a multiple of
``world_size`` so that every rank gets the same number of samples; rank ``r`` takes every
``world_size``-th sample starting at ``r``. Evaluation loaders (``shuffle=False,
drop_last=False``) are not padded: every row is seen exactly once across the ranks (ranks may
then differ by one sample). ``iter_from(b)`` starts an epoch at batch ``b`` without reading
the batches before it, for a run resumed in the middle of an epoch.

Example:
    >>> cache = ImageCache.open("data/nih")                      # doctest: +SKIP
    >>> rows, labels = cache.select(ChestXray14("data/nih", "train"))  # doctest: +SKIP
    >>> loader = BatchLoader(cache, rows, labels, 64, shuffle=True, device="cuda")  # doctest: +SKIP
    >>> for epoch in range(30):                                  # doctest: +SKIP
    ...     loader.set_epoch(epoch)
    ...     for x, y, pos in loader:
    ...         logits = model(train_tf(x))
"""

from __future__ import annotations

import math
import queue
import threading
import weakref
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError

_END = object()


class BatchLoader:
    """Yields ``(x, y, pos)`` batches of cache rows on a device.

    Args:
        cache: an :class:`~cral_lib.data.ImageCache` (or an ``N x S x S`` uint8 array).
        rows: the cache rows of the samples (e.g. from :meth:`ImageCache.select`).
        labels: ``len(rows) x C`` float32 labels, aligned with ``rows``.
        batch_size: samples per batch (per rank).
        shuffle: draw a new order each epoch (from ``seed`` and the epoch, see :meth:`set_epoch`).
        drop_last: drop the last, incomplete batch of each rank.
        seed: seed of the shuffle.
        device: where batches go (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``).
        rank: this process's rank (0 without DDP).
        world_size: number of processes (1 without DDP).
        prefetch: batches prepared ahead by the background thread (0: none, no thread).
        pin_memory: stage batches in pinned memory; default: when ``device`` is CUDA.

    Yields:
        ``x``: uint8 ``(B, 1, S, S)`` on ``device``; ``y``: float32 ``(B, C)`` on ``device``;
        ``pos``: int64 ``(B,)`` CPU tensor, positions into ``rows`` (within a batch, samples are
        in cache-row order, so use ``pos`` to match outputs with samples).

    Raises:
        ConfigError: inconsistent sizes, batch size or rank.
        DataError: ``rows`` are outside the cache or were skipped when it was built.
    """

    def __init__(
        self,
        cache: Any,
        rows: Any,
        labels: Any,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
        prefetch: int = 2,
        pin_memory: bool | None = None,
    ) -> None:
        self.cache = cache
        self.images = cache.images if hasattr(cache, "images") else np.asarray(cache)
        if self.images.ndim != 3 or self.images.dtype != np.uint8:
            raise ConfigError(f"expected N x S x S uint8 images, got {self.images.dtype} {self.images.shape}")
        self.rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        self.labels = np.ascontiguousarray(labels, dtype=np.float32)
        if self.labels.ndim == 1:
            self.labels = self.labels[:, None]
        if len(self.labels) != len(self.rows):
            raise ConfigError(f"{len(self.rows)} rows but {len(self.labels)} label rows: they must be aligned")
        if len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= len(self.images)):
            raise DataError(
                f"rows must be in [0, {len(self.images)}) (the cache's size), got {self.rows.min()}..{self.rows.max()}: "
                "take them from ImageCache.rows() or ImageCache.select()"
            )
        valid = getattr(cache, "valid", None)
        if valid is not None and len(self.rows) and not valid[self.rows].all():
            raise DataError(
                f"{int((~valid[self.rows]).sum())} of the rows are images that the cache skipped (missing or "
                "corrupt files, lenient mode; their pixels are zero): take rows from ImageCache.select(dataset), "
                "which leaves them out"
            )
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be at least 1")
        if not 0 <= int(rank) < int(world_size):
            raise ConfigError(f"rank={rank!r} must be in [0, world_size={world_size!r})")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.prefetch = max(0, int(prefetch))
        self.pin_memory = (self.device.type == "cuda") if pin_memory is None else bool(pin_memory)
        self.epoch = 0

    # -- order

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration follows (a function of ``seed`` and ``epoch`` only)."""
        self.epoch = int(epoch)

    @property
    def _padded(self) -> bool:
        # Training loaders give every rank the same share (DDP needs equal batch counts).
        return self.world_size > 1 and (self.shuffle or self.drop_last)

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        n = len(self.rows)
        if self._padded:
            return math.ceil(n / self.world_size)
        return len(range(self.rank, n, self.world_size))

    def indices(self, epoch: int | None = None) -> np.ndarray:
        """Positions into ``rows`` that this rank visits in an epoch, in order.

        Args:
            epoch: the epoch (default: the one set by :meth:`set_epoch`).

        Returns:
            int64 positions, ``num_samples`` of them.
        """
        epoch = self.epoch if epoch is None else int(epoch)
        n = len(self.rows)
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(n)
        else:
            order = np.arange(n)
        if self._padded:
            total = self.num_samples * self.world_size
            if total > n:  # wrap around, as DistributedSampler does
                order = np.resize(order, total)
            return order[self.rank : total : self.world_size]
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        """Batches per epoch for this rank."""
        m = self.num_samples
        return m // self.batch_size if self.drop_last else math.ceil(m / self.batch_size)

    # -- iteration

    def __iter__(self) -> "_BatchIterator":
        return self.iter_from(0)

    def iter_from(self, batch_index: int) -> "_BatchIterator":
        """Iterate over this epoch from batch ``batch_index`` on, without reading the earlier ones.

        Args:
            batch_index: the first batch to yield (0 for a whole epoch; ``len(self)`` yields nothing).

        Returns:
            An iterator of ``(x, y, pos)``; ``close()`` it (or let it be garbage collected) to
            stop its thread early.
        """
        if not 0 <= int(batch_index) <= len(self):
            raise ConfigError(f"batch_index={batch_index!r} must be in [0, {len(self)}]")
        return _BatchIterator(self, self.indices(), int(batch_index))

    def _host_batch(self, pos: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gather one batch on the host: (x uint8 (B,1,S,S), y, pos), sorted by cache row."""
        rows = self.rows[pos]
        order = np.argsort(rows, kind="stable")
        rows, pos = rows[order], pos[order]
        x = torch.empty((len(rows), 1, *self.images.shape[1:]), dtype=torch.uint8, pin_memory=self.pin_memory)
        # One gather from the memmap straight into the (pinned) batch; rows were checked to be
        # in range, so mode="clip" spares numpy's bounds-checking copy.
        np.take(self.images, rows, axis=0, out=x.numpy()[:, 0], mode="clip")
        y = torch.from_numpy(self.labels[pos])
        if self.pin_memory:
            y = y.pin_memory()
        return x, y, torch.from_numpy(pos)

    def __repr__(self) -> str:
        return (
            f"BatchLoader(n={len(self.rows)}, batch_size={self.batch_size}, batches={len(self)}, "
            f"shuffle={self.shuffle}, device={str(self.device)!r}, rank={self.rank}/{self.world_size})"
        )


class _Prefetcher:
    """The background thread of one pass and what it shares with the consumer.

    Kept apart from :class:`_BatchIterator` so that the thread holds no reference to the
    iterator: dropping the iterator (a ``break`` out of a for loop) lets it be collected,
    and its finalizer stops the thread.
    """

    def __init__(self, loader: BatchLoader, slices: list[np.ndarray]) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=loader.prefetch)
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self._produce, args=(loader, slices), name="cral-batch-prefetch", daemon=True
        )
        self.thread.start()

    def _produce(self, loader: BatchLoader, slices: list[np.ndarray]) -> None:
        try:
            for pos in slices:
                if self.stop.is_set() or not self._put(loader._host_batch(pos)):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        self.stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        if self.thread is not threading.current_thread():
            self.thread.join()


class _BatchIterator:
    """One pass over a :class:`BatchLoader`."""

    def __init__(self, loader: BatchLoader, order: np.ndarray, start: int) -> None:
        self._loader = loader
        bs = loader.batch_size
        self._slices = [order[b * bs : (b + 1) * bs] for b in range(start, len(loader))]
        self._next = 0
        self._done = False
        self._prefetcher: _Prefetcher | None = None
        self._finalizer = None
        if loader.prefetch > 0 and self._slices:
            self._prefetcher = _Prefetcher(loader, self._slices)
            self._finalizer = weakref.finalize(self, self._prefetcher.close)

    def __iter__(self) -> "_BatchIterator":
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._done:
            raise StopIteration
        if self._prefetcher is None:
            if self._next >= len(self._slices):
                self._done = True
                raise StopIteration
            item = self._loader._host_batch(self._slices[self._next])
        else:
            item = self._prefetcher.queue.get()
            if item is _END:
                self.close()
                raise StopIteration
            if isinstance(item, BaseException):
                self.close()
                raise item
        self._next += 1
        x, y, pos = item
        device, non_blocking = self._loader.device, self._loader.pin_memory
        return x.to(device, non_blocking=non_blocking), y.to(device, non_blocking=non_blocking), pos

    def __len__(self) -> int:
        return len(self._slices) - self._next

    def close(self) -> None:
        """Stop the prefetch thread (if any) and wait for it; further ``next()`` raises StopIteration."""
        self._done = True
        if self._finalizer is not None:
            self._finalizer()  # runs _Prefetcher.close once
            self._finalizer = None
            self._prefetcher = None

    def __enter__(self) -> "_BatchIterator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["BatchLoader"]
