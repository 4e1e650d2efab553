"""The layout of an image cache folder: its files, its format version and its ``cache.json``.

A cache is a folder (by default ``<release>/cache/<size>/``, see :func:`default_cache_dir`)::

    images.npy   uint8, N x S x S, rows in the order of the metadata CSV
    index.csv    row, Image Index, width, height (of the source PNG), valid
    cache.json   version, size, count, fingerprint (of the CSV's image names), complete, ...
    state.npy    while building: per row (status, width, height); removed once complete

This module only names those files and reads ``cache.json``; the reader
(:mod:`~cral_lib.data.cache.reader`), the writer (:mod:`~cral_lib.data.cache.writer`) and the
builder (:mod:`~cral_lib.data.cache.build`) do the work.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable


#: Bumped when the file layout changes; a cache of another version is rebuilt.
CACHE_VERSION = 1
DEFAULT_SIZE = 256
IMAGES_FILE = "images.npy"
INDEX_FILE = "index.csv"
META_FILE = "cache.json"
STATE_FILE = "state.npy"
LOCK_FILE = ".lock"

#: Row status in state.npy.
TODO, DONE, SKIPPED = 0, 1, 2


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


def read_meta(path: Path) -> dict[str, Any] | None:
    """A cache folder's ``cache.json``: None when there is none, ``{}`` when unreadable (a foreign cache)."""
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: treated as a foreign cache
    return meta if isinstance(meta, dict) else {}


def is_complete_cache(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a cache whose build finished (``complete: true`` in its cache.json)."""
    meta = read_meta(Path(path))
    return bool(meta and meta.get("complete"))


def folder_bytes(path: Path) -> int:
    """Bytes of the files in a folder."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())


def describe(meta: dict[str, Any]) -> str:
    """A few words on the cache a ``cache.json`` describes (for messages)."""
    if not meta:
        return "an unreadable cache.json"
    parts = [f"{meta.get('count', '?')} images at {meta.get('size', '?')} px"]
    if meta.get("version") != CACHE_VERSION:
        parts.append(f"format version {meta.get('version')!r}, this cral_lib writes {CACHE_VERSION}")
    if not meta.get("complete"):
        parts.append(f"incomplete, {meta.get('done', '?')} done")
    return ", ".join(parts)


__all__ = [
    "CACHE_VERSION",
    "DEFAULT_SIZE",
    "DONE",
    "IMAGES_FILE",
    "INDEX_FILE",
    "LOCK_FILE",
    "META_FILE",
    "SKIPPED",
    "STATE_FILE",
    "TODO",
    "default_cache_dir",
    "describe",
    "folder_bytes",
    "is_complete_cache",
    "names_fingerprint",
    "read_meta",
]
