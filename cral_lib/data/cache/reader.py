"""Reading a complete image cache (memory-mapped), and the identity of the release it was built from."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ...errors import DataError
from ..release import find_csv, read_data_entry
from .layout import (CACHE_VERSION, DEFAULT_SIZE, IMAGES_FILE, INDEX_FILE, META_FILE, damage, default_cache_dir,
                     folder_bytes, names_fingerprint, prepare_command, read_meta)


def release_names(root: str | os.PathLike) -> np.ndarray:
    """Return the image names of a release's metadata CSV, in CSV order (the cache's rows).

    Args:
        root: the release folder.

    Returns:
        An object array of names.

    Raises:
        DataError: the CSV is missing or malformed.
    """
    return read_data_entry(find_csv(root))["Image Index"].to_numpy(dtype=object)


def release_fingerprint(root: str | os.PathLike) -> str:
    """Return :func:`names_fingerprint` of a release's CSV (what a cache of it must carry)."""
    return names_fingerprint(release_names(root))


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

    def __init__(self, path: str | os.PathLike, *, fix: str | None = None) -> None:
        self.path = Path(path)
        fix = fix or "cral prepare --data RELEASE_DIR --overwrite"
        meta = read_meta(self.path)
        if meta is None:
            raise DataError(
                f"no image cache in {self.path} (no {META_FILE}): build it with `{fix.replace(' --overwrite', '')}`"
            )
        if not meta:
            raise DataError(f"the cache in {self.path} is damaged ({META_FILE} is unreadable): rebuild it with `{fix}`")
        if meta.get("version") != CACHE_VERSION:
            raise DataError(
                f"the cache in {self.path} is of format version {meta.get('version')!r}, this cral_lib reads "
                f"{CACHE_VERSION}: rebuild it with `{fix}`"
            )
        if meta.get("complete") is not True:
            raise DataError(
                f"the cache in {self.path} is incomplete ({meta.get('done', '?')} of {meta.get('count', '?')} "
                f"images done; a build was interrupted): run `{fix.replace(' --overwrite', '')}` again, it resumes"
            )
        self.meta = meta
        problem = damage(self.path, meta)
        if problem:
            raise DataError(f"the cache in {self.path} is damaged ({problem}): rebuild it with `{fix}`")
        self.size = int(meta["size"])
        count = int(meta["count"])
        try:
            self.images = np.load(self.path / IMAGES_FILE, mmap_mode="r")
            index = pd.read_csv(self.path / INDEX_FILE, dtype={"Image Index": str})
        except (OSError, ValueError) as exc:
            raise DataError(f"the cache in {self.path} is damaged ({exc}): rebuild it with `{fix}`") from None
        if self.images.shape != (count, self.size, self.size) or self.images.dtype != np.uint8 or len(index) != count:
            raise DataError(
                f"the cache in {self.path} is damaged: {IMAGES_FILE} has shape {self.images.shape}, "
                f"{INDEX_FILE} {len(index)} rows, {META_FILE} says {count} x {self.size} x {self.size}; "
                f"rebuild it with `{fix}`"
            )
        self.names = index["Image Index"].to_numpy(dtype=object)
        self.original_sizes = index[["width", "height"]].to_numpy(dtype=np.int64)
        self.valid = index["valid"].to_numpy(dtype=bool)
        self.fingerprint = str(meta["fingerprint"])
        self._index = pd.Index(self.names)
        self._fix = fix

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
        cache = cls(path, fix=prepare_command(root, size, path))
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
        fix = f"rebuild it with `{prepare_command(root, self.size, self.path)}`"
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
        return folder_bytes(self.path)

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
                f"built from another release; rebuild it with `{self._fix}`"
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


__all__ = ["ImageCache", "release_fingerprint", "release_names"]
