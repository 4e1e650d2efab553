"""The fast image cache: every image of a release, resized once, in one uint8 array file.

Decoding a 1024 x 1024 PNG takes about 10 ms of a CPU core, so a training epoch that reads
the PNGs keeps the GPU waiting. ``cral prepare`` (:func:`build_cache`) decodes each PNG once,
resizes it to ``S x S`` with PIL's antialiased bilinear filter (the paper's "resize 256"),
and stores it as a row of one ``N x S x S`` uint8 array. Training then reads batches of rows
from that file (memory-mapped, :class:`ImageCache`) and crops, flips and normalizes them on
the device (:mod:`cral_lib.data.augment`).

Size on disk is ``N * S * S`` bytes: the 112,120 images of ChestX-ray14 take about 7.3 GB at
256 px (6.9 GiB), 2.4 GB at 146 px.

A cache is a folder (by default ``<release>/cache/<size>/``, see :func:`default_cache_dir`)::

    images.npy   uint8, N x S x S, rows in the order of the metadata CSV
    index.csv    row, Image Index, width, height (of the source PNG), valid
    cache.json   version, size, count, fingerprint (of the CSV's image names), complete, ...
    state.npy    while building: per row (status, width, height); removed once complete

``complete: true`` is written last, atomically (temporary file + ``os.replace``), after the
image rows, the progress state and the index are on disk. A folder without it is resumed by
the next ``cral prepare``, never used: :class:`ImageCache` refuses it. Work done before an
interruption is kept: progress is saved every few seconds (:meth:`CacheWriter.flush`).

:class:`CacheWriter` is the part that writes: :func:`build_cache` feeds it decoded PNGs from a
process pool; ``cral download --cache-only`` feeds it images straight from the NIH archives.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .._io import atomic_write_bytes, default_workers, worker_context
from ..errors import DataError
from .images import open_grey, resize_grey

#: Bumped when the file layout changes; a cache of another version is rebuilt.
CACHE_VERSION = 1
DEFAULT_SIZE = 256
IMAGES_FILE = "images.npy"
INDEX_FILE = "index.csv"
META_FILE = "cache.json"
STATE_FILE = "state.npy"
LOCK_FILE = ".lock"

# Row status in state.npy.
_TODO, _DONE, _SKIPPED = 0, 1, 2


def default_cache_dir(root: str | os.PathLike, size: int = DEFAULT_SIZE) -> Path:
    """Return where ``cral prepare`` puts the cache of a release by default.

    Args:
        root: the release folder.
        size: the side of the cached images.

    Returns:
        ``root / "cache" / str(size)``.
    """
    return Path(root) / "cache" / str(int(size))


def names_fingerprint(names: Iterable[str]) -> str:
    """Return the SHA-256 of image names in order: the identity of a cache's source.

    Args:
        names: the image names, in cache row order.

    Returns:
        A hex digest.
    """
    h = hashlib.sha256()
    for name in names:
        h.update(str(name).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def release_names(root: str | os.PathLike) -> np.ndarray:
    """Return the image names of a release's metadata CSV, in CSV order (the cache's rows).

    Args:
        root: the release folder.

    Returns:
        An object array of names.

    Raises:
        DataError: the CSV is missing or malformed.
    """
    from .nih import find_csv, read_data_entry

    return read_data_entry(find_csv(root))["Image Index"].to_numpy(dtype=object)


def release_fingerprint(root: str | os.PathLike) -> str:
    """Return :func:`names_fingerprint` of a release's CSV (what a cache of it must carry)."""
    return names_fingerprint(release_names(root))


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: treated as a foreign cache
    return meta if isinstance(meta, dict) else {}


def is_complete_cache(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a cache whose build finished (``complete: true`` in its cache.json)."""
    meta = _read_meta(Path(path))
    return bool(meta and meta.get("complete"))


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())


class _Lock:
    """An exclusive advisory lock on a cache folder (POSIX only; a no-op elsewhere)."""

    def __init__(self, path: Path) -> None:
        self._file = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return
        self._file = open(path / LOCK_FILE, "a+")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._file.close()
            self._file = None
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                return  # a file system without locks (some network mounts): go on unlocked
            raise DataError(
                f"another process is writing the cache in {path} (it holds {path / LOCK_FILE}): wait for "
                "it to finish, or stop it; an interrupted build resumes where it stopped"
            ) from None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases the lock
            self._file = None


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
    ) -> None:
        self.path = Path(path)
        self.size = int(size)
        if self.size < 1:
            raise DataError(f"cache size {size!r} must be a positive number of pixels (256 is the paper's)")
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
        meta = _read_meta(self.path)
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
            raise DataError(
                f"{self.path} holds another cache ({_describe(meta)}; wanted {len(self.names)} images at "
                f"{self.size} px of this release): choose another --out, delete that folder, or pass "
                "--overwrite (overwrite=True) to replace it"
            )
        try:
            images = np.load(self.path / IMAGES_FILE, mmap_mode="r+")
            if meta.get("complete"):
                state = _state_from_index(self.path, len(self.names))
            else:
                state = np.load(self.path / STATE_FILE)
        except (OSError, ValueError, DataError) as exc:
            warnings.warn(f"cache in {self.path} is unreadable ({exc}); building it again", stacklevel=3)
            return False
        if images.shape != (len(self.names), self.size, self.size) or state.shape != (len(self.names), 3):
            warnings.warn(f"cache in {self.path} has unexpected shapes; building it again", stacklevel=3)
            return False
        state = np.array(state, dtype=np.int64)
        state[state[:, 0] == _SKIPPED] = (_TODO, 0, 0)  # retry what a lenient run skipped
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
        self._state[row] = (_DONE, int(original_size[0]), int(original_size[1]))
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
        self._state[row] = (_SKIPPED, 0, 0)
        self.skipped[name] = str(reason)
        self._dirty = True

    def is_done(self, name: str) -> bool:
        """Whether the image's row was written (in this session or a previous, flushed one)."""
        return bool(self._state[self.row(name), 0] == _DONE)

    def done_mask(self) -> np.ndarray:
        """Boolean mask of the rows written so far."""
        return self._state[:, 0] == _DONE

    def missing(self) -> list[str]:
        """Names neither written nor skipped yet, in row order."""
        return list(self.names[self._state[:, 0] == _TODO])

    @property
    def done(self) -> int:
        """How many rows are written."""
        return int((self._state[:, 0] == _DONE).sum())

    # -- persisting

    def flush(self) -> None:
        """Make written rows and the done-mask durable (rows first, then the mask)."""
        self._images.flush()
        self._write_state()
        self._write_meta(complete=False)
        self._last_flush = time.monotonic()
        self._dirty = False

    def finalize(self, fingerprint: str | None = None) -> Path:
        """Mark the cache complete, once every row is written or skipped.

        Writes ``index.csv`` and then, last and atomically, ``cache.json`` with
        ``complete: true``; removes ``state.npy``; releases the lock.

        Args:
            fingerprint: the source's fingerprint (:func:`release_fingerprint`), checked against
                the names this writer was made with; None skips the check.

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
        import pandas as pd

        index = pd.DataFrame(
            {
                "row": np.arange(len(self.names)),
                "Image Index": self.names,
                "width": self._state[:, 1],
                "height": self._state[:, 2],
                "valid": self._state[:, 0] == _DONE,
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
            "complete": bool(complete),  # the last key, and the file is replaced atomically
        }
        atomic_write_bytes(self.path / META_FILE, json.dumps(meta, indent=1).encode("utf-8"))


def _describe(meta: dict[str, Any]) -> str:
    if not meta:
        return "an unreadable cache.json"
    parts = [f"{meta.get('count', '?')} images at {meta.get('size', '?')} px"]
    if meta.get("version") != CACHE_VERSION:
        parts.append(f"format version {meta.get('version')!r}, this cral_lib writes {CACHE_VERSION}")
    if not meta.get("complete"):
        parts.append(f"incomplete, {meta.get('done', '?')} done")
    return ", ".join(parts)


def _state_from_index(path: Path, count: int) -> np.ndarray:
    import pandas as pd

    index = pd.read_csv(path / INDEX_FILE)
    if len(index) != count:
        raise DataError(f"{path / INDEX_FILE} has {len(index)} rows, cache.json says {count}")
    status = np.where(index["valid"].to_numpy(dtype=bool), _DONE, _SKIPPED)
    return np.stack([status, index["width"].to_numpy(), index["height"].to_numpy()], axis=1)


class ImageCache:
    """A complete image cache, opened read-only (memory-mapped).

    Args:
        path: the cache folder (see the module docstring).

    Attributes:
        path: the folder.
        images: ``N x S x S`` uint8 memmap, rows in the order of the release's CSV.
        names: the image name of each row.
        size: ``S``.
        original_sizes: ``N x 2`` int64 ``(width, height)`` of the source PNGs (to scale boxes:
            ``x * size / width``).
        valid: bool mask, False for rows that lenient mode skipped (their pixels are zero).
        fingerprint: :func:`names_fingerprint` of :attr:`names`.

    Raises:
        DataError: there is no cache, it is incomplete, of another format version, or damaged;
            the message says to run ``cral prepare``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        import pandas as pd

        self.path = Path(path)
        meta = _read_meta(self.path)
        if meta is None:
            raise DataError(
                f"no image cache in {self.path} (no {META_FILE}): build it with `cral prepare --data "
                "RELEASE_DIR` (add --out DIR if it should live elsewhere)"
            )
        if meta.get("version") != CACHE_VERSION:
            raise DataError(
                f"the cache in {self.path} is of format version {meta.get('version')!r}, this cral_lib reads "
                f"{CACHE_VERSION}: rebuild it with `cral prepare --data RELEASE_DIR --overwrite`"
            )
        if meta.get("complete") is not True:
            raise DataError(
                f"the cache in {self.path} is incomplete ({meta.get('done', '?')} of {meta.get('count', '?')} "
                "images done; a build was interrupted): run `cral prepare --data RELEASE_DIR` again, it resumes"
            )
        self.meta = meta
        self.size = int(meta["size"])
        count = int(meta["count"])
        try:
            self.images = np.load(self.path / IMAGES_FILE, mmap_mode="r")
            index = pd.read_csv(self.path / INDEX_FILE, dtype={"Image Index": str})
        except (OSError, ValueError) as exc:
            raise DataError(
                f"the cache in {self.path} is damaged ({exc}): rebuild it with `cral prepare --data "
                "RELEASE_DIR --overwrite`"
            ) from None
        if self.images.shape != (count, self.size, self.size) or self.images.dtype != np.uint8 or len(index) != count:
            raise DataError(
                f"the cache in {self.path} is damaged: {IMAGES_FILE} has shape {self.images.shape}, "
                f"{INDEX_FILE} {len(index)} rows, {META_FILE} says {count} x {self.size} x {self.size}; "
                "rebuild it with `cral prepare --data RELEASE_DIR --overwrite`"
            )
        self.names = index["Image Index"].to_numpy(dtype=object)
        self.original_sizes = index[["width", "height"]].to_numpy(dtype=np.int64)
        self.valid = index["valid"].to_numpy(dtype=bool)
        self.fingerprint = str(meta["fingerprint"])
        self._index = pd.Index(self.names)

    @classmethod
    def open(
        cls, root: str | os.PathLike, size: int = DEFAULT_SIZE, out: str | os.PathLike | None = None
    ) -> "ImageCache":
        """Open the cache of a release folder and check that it matches the release.

        Args:
            root: the release folder.
            size: the cached image side.
            out: the cache folder, if not :func:`default_cache_dir`.

        Returns:
            The opened cache.

        Raises:
            DataError: missing, incomplete, or made from another release or size.
        """
        path = Path(out) if out is not None else default_cache_dir(root, size)
        cache = cls(path)
        if cache.size != int(size):
            raise DataError(
                f"the cache in {path} holds {cache.size} px images, {size} px were asked for: run "
                f"`cral prepare --data {root} --size {size}` (add --out for another folder)"
            )
        cache.check_source(root)
        return cache

    def check_source(self, root: str | os.PathLike) -> None:
        """Raise unless this cache was built from the release in ``root`` (same names, same order).

        Raises:
            DataError: the image count or the index differs; says to rerun ``cral prepare``.
        """
        names = release_names(root)
        fix = f"rebuild it with `cral prepare --data {root} --size {self.size} --out {self.path} --overwrite`"
        if len(names) != len(self.names):
            raise DataError(
                f"the cache in {self.path} holds {len(self.names)} images but {root} lists {len(names)}: "
                f"it was built from another release; {fix}"
            )
        if names_fingerprint(names) != self.fingerprint:
            raise DataError(
                f"the cache in {self.path} has {len(names)} images like {root}, but other names or another "
                f"order (index fingerprint differs): {fix}"
            )

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"ImageCache({str(self.path)!r}, n={len(self)}, size={self.size})"

    @property
    def nbytes_on_disk(self) -> int:
        """Bytes of the cache folder's files."""
        return _folder_bytes(self.path)

    def rows(self, names: Iterable[str]) -> np.ndarray:
        """Return the row of each image name.

        Args:
            names: image names (e.g. ``dataset.frame["Image Index"]``).

        Returns:
            int64 positions into :attr:`images`.

        Raises:
            DataError: a name is not in the cache.
        """
        names = np.asarray(list(names) if not isinstance(names, np.ndarray) else names, dtype=object)
        rows = self._index.get_indexer(names)
        if (rows < 0).any():
            bad = names[rows < 0]
            raise DataError(
                f"{len(bad)} images are not in the cache in {self.path} (e.g. {bad[0]!r}): the cache was "
                "built from another release; rebuild it with `cral prepare --overwrite`"
            )
        return rows.astype(np.int64)

    def select(self, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
        """Rows and labels of a :class:`~cral_lib.data.ChestXray14` split, without skipped images.

        Images that lenient mode could not read (``valid`` False) are left out with a warning
        that gives their number, never silently.

        Args:
            dataset: a ChestXray14 (anything with ``names`` and ``labels``).

        Returns:
            ``(rows, labels)``: int64 cache rows and the float32 ``N x 14`` labels aligned with them.
        """
        rows = self.rows(dataset.names)
        keep = self.valid[rows]
        labels = np.asarray(dataset.labels, dtype=np.float32)
        if not keep.all():
            warnings.warn(
                f"{int((~keep).sum())} of {len(rows)} {getattr(dataset, 'split', '')} images are left out: "
                f"the cache in {self.path} skipped them (missing or corrupt files, lenient mode)",
                stacklevel=2,
            )
            rows, labels = rows[keep], labels[keep]
        return rows, labels


# --------------------------------------------------------------------------- building


def _load_resized(task: tuple[int, str, int]) -> tuple[int, np.ndarray | None, int, int, str | None]:
    """Decode and resize one PNG (runs in a worker process)."""
    row, path, size = task
    try:
        image = open_grey(path)
    except DataError as exc:
        return row, None, 0, 0, str(exc)
    width, height = image.size
    return row, resize_grey(image, size), width, height, None


def build_cache(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    size: int = DEFAULT_SIZE,
    *,
    workers: int | None = None,
    lenient: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    flush_seconds: float = 2.0,
) -> Path:
    """Build (or finish, or reuse) the uint8 image cache of a release folder.

    Every image of the metadata CSV is decoded once (any PNG mode, see
    :func:`~cral_lib.data.load_grey`), resized to ``size x size`` (PIL bilinear, antialiased)
    and stored in CSV order. Work is spread over ``workers`` processes and shown with tqdm.
    A complete cache of the same release and size is reused at once; an interrupted one is
    resumed without redoing its finished rows. The full ChestX-ray14 (112,120 images) takes
    about 7.3 GB at 256 px.

    Args:
        root: the release folder.
        out: the cache folder; :func:`default_cache_dir` when None.
        size: the side ``S`` of the cached images (256 is the paper's resize).
        workers: processes decoding PNGs; all CPU cores when None, in-process when 0 or 1.
        lenient: skip missing or corrupt images (warning and count; their rows are marked
            invalid) instead of raising.
        progress: show a tqdm progress bar.
        overwrite: replace a cache of another release, size or format found in ``out``.
        flush_seconds: how often progress is saved while building.

    Returns:
        The cache folder (open it with :class:`ImageCache` or :meth:`ImageCache.open`).

    Raises:
        DataError: the release is malformed, an image is missing or corrupt (unless
            ``lenient``), or ``out`` holds another cache (unless ``overwrite``).
    """
    from .nih import ChestXray14

    root = Path(root)
    path = Path(out) if out is not None else default_cache_dir(root, size)
    names = release_names(root)
    meta = _read_meta(path)
    if (
        meta
        and meta.get("complete") is True
        and meta.get("version") == CACHE_VERSION
        and meta.get("size") == int(size)
        and meta.get("count") == len(names)
        and meta.get("fingerprint") == names_fingerprint(names)
    ):
        skipped = meta.get("skipped") or {}
        if skipped and not lenient:
            first = next(iter(skipped))
            warnings.warn(
                f"the cache in {path} was built in lenient mode and leaves out {len(skipped)} images "
                f"(e.g. {first}: {skipped[first]}); to include them, fix the files and rebuild with "
                "`cral prepare --overwrite`",
                stacklevel=2,
            )
        return path  # complete and matching: nothing to do

    with warnings.catch_warnings():
        # The reader's lenient warning is repeated below with the decode failures, as one count.
        warnings.simplefilter("ignore")
        dataset = ChestXray14(root, "all", lenient=lenient)
    with CacheWriter(path, names, size, overwrite=overwrite, flush_seconds=flush_seconds) as writer:
        for name, reason in zip(dataset.skipped["Image Index"], dataset.skipped["reason"]):
            writer.skip(name, reason)
        done = writer.done_mask()
        tasks = [
            (row, path_, writer.size)
            for row, path_ in zip(map(writer.row, dataset.names), dataset.frame["path"])
            if not done[row]
        ]
        n_workers = default_workers() if workers is None else int(workers)
        # Starting a worker costs about as much as decoding 50 PNGs: small jobs stay in-process.
        n_workers = max(1, min(n_workers, len(tasks) // 64 or 1))
        already = writer.done + len(writer.skipped)
        _run_tasks(writer, tasks, n_workers, lenient=lenient, progress=progress, already=already)
        if writer.skipped:
            first = next(iter(writer.skipped))
            warnings.warn(
                f"cral prepare: skipped {len(writer.skipped)} of {len(names)} images (lenient mode), e.g. "
                f"{first}: {writer.skipped[first]}; their rows are marked invalid in {path / INDEX_FILE}",
                stacklevel=2,
            )
        writer.finalize()
    return path


def _run_tasks(
    writer: CacheWriter,
    tasks: list[tuple[int, str, int]],
    workers: int,
    *,
    lenient: bool,
    progress: bool,
    already: int,
) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(writer.names), initial=already, disable=not progress, unit="img",
        desc=f"cral prepare {writer.size}px", smoothing=0.05,
    )
    executor = None
    try:
        if workers <= 1:
            results: Iterable = map(_load_resized, tasks)
        else:
            executor, results = _pool_results(tasks, workers)
        for row, image, width, height, error in results:
            name = writer.names[row]
            if error is not None:
                if not lenient:
                    raise DataError(
                        f"{error}. The {writer.done} images done so far are kept in {writer.path}; the next "
                        "`cral prepare` resumes from there"
                    )
                writer.skip(name, error)
            else:
                writer.write(name, image, original_size=(width, height))
            bar.update(1)
    finally:
        if executor is not None:
            # Queued chunks are dropped; running ones (a few images each) end by themselves.
            executor.shutdown(wait=False, cancel_futures=True)
        bar.close()


def _load_chunk(tasks: list[tuple[int, str, int]]) -> list[tuple[int, np.ndarray | None, int, int, str | None]]:
    return [_load_resized(task) for task in tasks]


def _pool_results(tasks: list[tuple[int, str, int]], workers: int, chunk: int = 8):
    """Run :func:`_load_resized` over ``tasks`` in ``workers`` processes; yield results as they come."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # fork on Linux, spawn elsewhere (see worker_context); the workers use only numpy and PIL.
    # A broken pool raises instead of hanging.
    executor = ProcessPoolExecutor(workers, mp_context=worker_context())
    futures = [executor.submit(_load_chunk, tasks[i : i + chunk]) for i in range(0, len(tasks), chunk)]

    def results():
        try:
            for future in as_completed(futures):
                yield from future.result()
        except BrokenProcessPool:
            raise DataError(
                "the worker processes of cral prepare stopped (out of memory, or they could not start: a "
                "script that calls build_cache() needs `if __name__ == \"__main__\":`); run it again with "
                "--workers 0 (workers=0) to decode in one process; finished images are kept"
            ) from None

    return executor, results()


__all__ = [
    "CACHE_VERSION",
    "CacheWriter",
    "DEFAULT_SIZE",
    "ImageCache",
    "build_cache",
    "default_cache_dir",
    "is_complete_cache",
    "names_fingerprint",
    "release_fingerprint",
    "release_names",
]
