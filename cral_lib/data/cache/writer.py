"""Writing an image cache, resumably: :class:`CacheWriter` (used by ``cral prepare`` and ``cral download``)."""

from __future__ import annotations

import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..._io import FolderLock, LockHeld, atomic_write_bytes, pid_alive
from ...errors import DataError
from ..images import resize_grey
from .layout import (CACHE_VERSION, DEFAULT_SIZE, DONE, IMAGES_FILE, INDEX_FILE, LOCK_FILE, MAX_SIZE, META_FILE, SKIPPED,
                     STATE_FILE, TODO, describe, names_fingerprint, read_meta)


def state_from_index(path: Path, count: int) -> np.ndarray:
    """The (status, width, height) rows of a complete cache, from its ``index.csv``."""
    index = pd.read_csv(path / INDEX_FILE)
    if len(index) != count:
        raise DataError(f"{path / INDEX_FILE} has {len(index)} rows, cache.json says {count}")
    status = np.where(index["valid"].to_numpy(dtype=bool), DONE, SKIPPED)
    return np.stack([status, index["width"].to_numpy(), index["height"].to_numpy()], axis=1)


class _Lock:
    """The exclusive lock of a cache folder, held by the writing process alone (see :class:`FolderLock`)."""

    def __init__(self, path: Path) -> None:
        try:
            self._lock = FolderLock(path / LOCK_FILE)
        except LockHeld as held:
            who = f" (process {held.pid})" if held.pid and pid_alive(held.pid) else ""
            raise DataError(
                f"another process{who} is writing the cache in {path} (it holds {path / LOCK_FILE}): wait for it to finish, "
                "or stop it; an interrupted build resumes where it stopped"
            ) from None
        if self._lock.stale_pid:
            warnings.warn(
                f"the cache in {path} was being written by process {self._lock.stale_pid}, which no longer runs "
                "(killed or crashed); took over its lock and resuming where it stopped",
                stacklevel=3,
            )

    def release(self) -> None:
        self._lock.release()


class CacheWriter:
    """Writes images into a cache folder, resumably; the cache is usable only after :meth:`finalize`.

    Opening a folder that holds an unfinished cache of the same names and size resumes it:
    rows written and flushed before stay written (:meth:`is_done`, :meth:`missing`).
    Rows are written into a memory-mapped ``images.npy``; :meth:`flush` (also called every
    ``flush_seconds`` by :meth:`write`) makes them and the done-mask durable, so an
    interruption loses at most that much work. The writer holds an exclusive lock on the
    folder until :meth:`close` (or :meth:`finalize`).

    The contract for other producers (``cral download --cache-only``): create the writer with
    the release's names in CSV order (:func:`release_names`); call :meth:`write` once per
    image, in any order, with the decoded grey image of any size (a uint8 array or a mode-``L``
    PIL image, e.g. from :func:`~cral_lib.data.images.open_grey` on a file object of the tar
    stream), skipping names that :meth:`is_done` reports; :meth:`skip` what cannot be decoded
    (lenient mode only); then :meth:`finalize` (optionally with :func:`release_fingerprint`).
    Until then the folder is an incomplete cache that :class:`ImageCache` refuses and the next
    writer (or ``cral prepare``) resumes; rows skipped in an earlier session are tried again
    (:meth:`missing` lists them). Use it as a context manager so that an error still flushes
    and unlocks.

    Args:
        path: the cache folder (created if needed).
        names: the image names, one per row, in the order of the release's CSV.
        size: the side ``S`` of the stored images.
        overwrite: replace a cache of other names, size or version found in ``path``
            (otherwise that is a :class:`~cral_lib.errors.DataError`).
        flush_seconds: :meth:`write` flushes when this long has passed since the last flush.
        fix: the command a message names to replace another cache found in ``path`` (the
            ``cral prepare ... --overwrite`` that :func:`build_cache` passes); None: the flags
            of ``cral download``.

    Raises:
        DataError: ``path`` holds another cache (and not ``overwrite``) or another process
            is writing it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        names: Sequence[str],
        size: int = DEFAULT_SIZE,
        *,
        overwrite: bool = False,
        flush_seconds: float = 2.0,
        fix: str | None = None,
    ) -> None:
        self.path = Path(path)
        self._fix = fix
        self._source: str | None = None
        self.size = int(size)
        if not 1 <= self.size <= MAX_SIZE:
            raise DataError(f"cache size {size!r} must be from 1 to {MAX_SIZE} pixels (256 is the paper's)")
        self.names = np.asarray(list(names), dtype=object)
        if len(self.names) == 0:
            raise DataError(f"cannot make a cache of zero images in {self.path}: the release lists none")
        self.fingerprint = names_fingerprint(self.names)
        self.flush_seconds = float(flush_seconds)
        self._row = {name: i for i, name in enumerate(self.names)}
        if len(self._row) != len(self.names):
            raise DataError(f"the names given for the cache in {self.path} contain duplicates")
        self.skipped: dict[str, str] = {}
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = _Lock(self.path)
        try:
            self.resumed = self._open_existing(overwrite)
            if not self.resumed:
                self._create()
        except BaseException:
            self._lock.release()
            raise
        self._last_flush = time.monotonic()
        self._dirty = False
        self._closed = False

    # -- opening

    def _open_existing(self, overwrite: bool) -> bool:
        meta = read_meta(self.path)
        if meta is None:
            return False  # nothing there (or a creation that never finished): start over
        same = (
            meta.get("version") == CACHE_VERSION
            and meta.get("size") == self.size
            and meta.get("count") == len(self.names)
            and meta.get("fingerprint") == self.fingerprint
        )
        if not same:
            if overwrite:
                return False
            how = (f"replace it with `{self._fix}`" if self._fix
                   else "choose another --out, delete that folder, or pass --overwrite (overwrite=True) to replace it")
            raise DataError(
                f"{self.path} holds another cache ({describe(meta)}; wanted {len(self.names)} images at "
                f"{self.size} px of this release): {how}"
            )
        try:
            images = np.load(self.path / IMAGES_FILE, mmap_mode="r+")
            if meta.get("complete"):
                state = state_from_index(self.path, len(self.names))
            else:
                state = np.load(self.path / STATE_FILE)
        except (OSError, ValueError, DataError) as exc:
            warnings.warn(f"cache in {self.path} is unreadable ({exc}); building it again", stacklevel=3)
            return False
        if images.shape != (len(self.names), self.size, self.size) or state.shape != (len(self.names), 3):
            warnings.warn(f"cache in {self.path} has unexpected shapes; building it again", stacklevel=3)
            return False
        state = np.array(state, dtype=np.int64)
        state[state[:, 0] == SKIPPED] = (TODO, 0, 0)  # retry what a lenient run skipped
        self._images = images
        self._state = state
        return True

    def _create(self) -> None:
        # cache.json goes first and last: without it, a half-created folder is never resumed.
        (self.path / META_FILE).unlink(missing_ok=True)
        (self.path / STATE_FILE).unlink(missing_ok=True)
        n = len(self.names)
        self._images = np.lib.format.open_memmap(
            self.path / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=(n, self.size, self.size)
        )
        self._state = np.zeros((n, 3), dtype=np.int64)
        self._write_state()
        self._write_index()
        self._write_meta(complete=False)

    # -- writing

    def _check_open(self) -> None:
        if self._closed:
            raise DataError(f"the cache writer for {self.path} is closed: open a new CacheWriter to go on")

    def row(self, name: str) -> int:
        """The cache row of an image name.

        Raises:
            DataError: the name is not one of the cache's images.
        """
        try:
            return self._row[name]
        except KeyError:
            raise DataError(
                f"image {name!r} is not one of the {len(self.names)} images of the cache in {self.path} "
                "(the release's CSV does not list it)"
            ) from None

    def write(self, name: str, image: Any, original_size: tuple[int, int] | None = None) -> None:
        """Store one image (resized to ``S x S`` with PIL bilinear, antialiased) in its row.

        Args:
            name: the image name (a row of the cache).
            image: the grey image: a ``H x W`` uint8 array of any size, or a mode-``L`` PIL image.
                An ``S x S`` array is stored as it is (already resized).
            original_size: ``(width, height)`` of the source PNG; defaults to the image's own.

        Raises:
            DataError: the name is not in the cache, or the image is not grey uint8.
        """
        self._check_open()
        row = self.row(name)
        if original_size is None:
            original_size = image.size if hasattr(image, "mode") else (image.shape[1], image.shape[0])
        self._images[row] = resize_grey(image, self.size)
        self._state[row] = (DONE, int(original_size[0]), int(original_size[1]))
        self.skipped.pop(name, None)
        self._dirty = True
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def skip(self, name: str, reason: str) -> None:
        """Mark an image that cannot be read (lenient mode): its row stays zero and invalid.

        Args:
            name: the image name.
            reason: why, for the report (kept in ``cache.json``).
        """
        self._check_open()
        row = self.row(name)
        self._state[row] = (SKIPPED, 0, 0)
        self.skipped[name] = str(reason)
        self._dirty = True

    def is_done(self, name: str) -> bool:
        """Whether the image's row was written (in this session or a previous, flushed one)."""
        return bool(self._state[self.row(name), 0] == DONE)

    def done_mask(self) -> np.ndarray:
        """Boolean mask of the rows written so far."""
        return self._state[:, 0] == DONE

    def missing(self) -> list[str]:
        """Names neither written nor skipped yet, in row order."""
        return list(self.names[self._state[:, 0] == TODO])

    @property
    def done(self) -> int:
        """How many rows are written."""
        return int((self._state[:, 0] == DONE).sum())

    # -- persisting

    def flush(self) -> None:
        """Make written rows and the done-mask durable (rows first, then the mask)."""
        self._images.flush()
        self._write_state()
        self._write_meta(complete=False)
        self._last_flush = time.monotonic()
        self._dirty = False

    def finalize(self, fingerprint: str | None = None, source: str | None = None) -> Path:
        """Mark the cache complete, once every row is written or skipped.

        Writes ``index.csv`` and then, last and atomically, ``cache.json`` with
        ``complete: true``; removes ``state.npy``; releases the lock.

        Args:
            fingerprint: the source's fingerprint (:func:`release_fingerprint`), checked against
                the names this writer was made with; None skips the check.
            source: the fingerprint of the source image files
                (:func:`~cral_lib.data.cache.layout.source_fingerprint`), kept in ``cache.json`` so
                that a later change of them is noticed; None when there are no files (a stream).

        Returns:
            The cache folder.

        Raises:
            DataError: rows are still missing, or the fingerprint is not this cache's.
        """
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise DataError(
                f"fingerprint {fingerprint[:12]}... is not that of the names this cache in {self.path} "
                f"was made with ({self.fingerprint[:12]}...): the writer was opened for another release"
            )
        missing = self.missing()
        if missing:
            raise DataError(
                f"cannot finalize the cache in {self.path}: {len(missing)} of {len(self.names)} images "
                f"are not written yet (e.g. {missing[0]!r}); write or skip them first"
            )
        self._source = source
        self._images.flush()
        self._write_state()
        self._write_index()
        self._write_meta(complete=True)
        (self.path / STATE_FILE).unlink(missing_ok=True)
        self._dirty = False
        self.close()
        return self.path

    def close(self) -> None:
        """Flush what is not yet durable and release the folder.

        A closed, unfinished cache is resumed by the next writer (or ``cral prepare``).
        """
        if self._closed:
            return
        try:
            if self._dirty:
                self.flush()
        finally:
            self._closed = True
            self._images = None
            self._lock.release()

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _write_state(self) -> None:
        buf = io.BytesIO()
        np.save(buf, self._state)
        atomic_write_bytes(self.path / STATE_FILE, buf.getvalue())

    def _write_index(self) -> None:
        index = pd.DataFrame(
            {
                "row": np.arange(len(self.names)),
                "Image Index": self.names,
                "width": self._state[:, 1],
                "height": self._state[:, 2],
                "valid": self._state[:, 0] == DONE,
            }
        )
        atomic_write_bytes(self.path / INDEX_FILE, index.to_csv(index=False).encode("utf-8"))

    def _write_meta(self, *, complete: bool) -> None:
        meta = {
            "version": CACHE_VERSION,
            "size": self.size,
            "count": len(self.names),
            "fingerprint": self.fingerprint,
            "done": self.done,
            "skipped": dict(self.skipped),
            "bytes": int(len(self.names) * self.size * self.size),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **({"source": self._source} if self._source else {}),
            "complete": bool(complete),  # the last key, and the file is replaced atomically
        }
        atomic_write_bytes(self.path / META_FILE, json.dumps(meta, indent=1).encode("utf-8"))


__all__ = ["CacheWriter"]
