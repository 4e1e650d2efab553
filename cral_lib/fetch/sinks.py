"""Where a download's images go: the image cache (decoded on threads) or the NIH layout on disk.

Both sinks answer the same questions (which images they still want, whether an archive is all
in) and take the same calls (:meth:`put` per image, :meth:`finish`, :meth:`drop`, :meth:`close`).
A row of the cache (or a PNG file) is written only from an image that passed its own checks.
"""

from __future__ import annotations

import io
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from ..data.images import open_grey, resize_grey
from ..errors import DataError
from .archive import check_png
from .nih import Archive
from .stream import Corrupt


def decode(data: bytes, label: str, size: int):
    """Check and decode one PNG of an archive: (the image resized to ``size``, its original size)."""
    check_png(data, label)
    try:
        image = open_grey(io.BytesIO(data), name=label)
    except DataError as exc:
        raise Corrupt(str(exc)) from None
    return resize_grey(image, size), image.size


def cache_target(size: int, path: Path) -> str:
    """How the state file names a cache an archive is done in."""
    return f"cache {int(size)} {Path(path).absolute()}"


class CacheSink:
    """Decodes PNGs on threads and writes their rows into a :class:`CacheWriter` (on this thread)."""

    kind = "cache"

    def __init__(self, writer: Any, workers: int) -> None:
        self.writer = writer
        self.workers = max(0, int(workers))
        self._pool = None
        self._pending: deque = deque()
        if self.workers > 0:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="cral-decode")

    def target(self) -> str:
        return cache_target(self.writer.size, self.writer.path)

    def wants(self, archive: Archive, name: str, size: int) -> bool:
        return not self.writer.is_done(name)

    def todo(self, archive: Archive, names: Sequence[str]) -> int:
        return sum(1 for n in names if not self.writer.is_done(n))

    def has_all(self, archive: Archive, names: Sequence[str]) -> bool:
        return self.todo(archive, names) == 0

    def put(self, archive: Archive, name: str, data: bytes, label: str) -> None:
        if self._pool is None:
            image, original = decode(data, label, self.writer.size)
            self.writer.write(name, image, original_size=original)
            return
        self._pending.append((name, self._pool.submit(decode, data, label, self.writer.size)))
        while len(self._pending) > 2 * self.workers:
            self._take()

    def _take(self) -> None:
        name, future = self._pending.popleft()
        image, original = future.result()
        self.writer.write(name, image, original_size=original)

    def finish(self) -> None:
        """Write every decoded image; raise the first decoding error after writing the others."""
        error = None
        while self._pending:
            try:
                self._take()
            except Corrupt as exc:
                error = error or exc
        if error is not None:
            raise error

    def drop(self) -> None:
        """After an error: keep the images decoded so far, forget the rest."""
        try:
            self.finish()
        except Corrupt:
            pass

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class LayoutSink:
    """Writes PNGs as NIH ships them: ``DIR/images_NNN/images/NAME``, each file atomically."""

    kind = "layout"

    def __init__(self, out: Path) -> None:
        self.out = out

    def target(self) -> str:
        return "layout"

    def folder(self, archive: Archive) -> Path:
        return self.out / archive.name / "images"

    def wants(self, archive: Archive, name: str, size: int) -> bool:
        path = self.folder(archive) / name
        try:
            have = path.stat().st_size
        except FileNotFoundError:
            return True
        if have != size:
            raise DataError(
                f"{path} exists with {have} bytes but {archive.file_name} holds {size} for it: it was not "
                "written by cral download (which writes whole files only); move it away, then run again"
            )
        return False

    def todo(self, archive: Archive, names: Sequence[str]) -> int:
        folder = self.folder(archive)
        return sum(1 for n in names if not (folder / n).is_file())

    def has_all(self, archive: Archive, names: Sequence[str]) -> bool:
        return self.todo(archive, names) == 0

    def put(self, archive: Archive, name: str, data: bytes, label: str) -> None:
        check_png(data, label)
        folder = self.folder(archive)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.cral-tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, folder / name)

    def finish(self) -> None:
        pass

    def drop(self) -> None:
        pass

    def close(self) -> None:
        pass




__all__ = ["CacheSink", "LayoutSink", "cache_target", "decode"]
