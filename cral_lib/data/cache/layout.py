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
import shlex
from pathlib import Path
from typing import Any, Iterable

import numpy as np


#: Bumped when the file layout changes; a cache of another version is rebuilt.
CACHE_VERSION = 1
DEFAULT_SIZE = 256
#: The largest side a cache may have: NIH's PNGs are 1024 px, `cral synth` draws up to 4096.
MAX_SIZE = 4096
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


def source_fingerprint(paths: Iterable[str | os.PathLike | None]) -> str | None:
    """A cheap fingerprint of the image files a cache is built from: their sizes and modification times.

    A rebuilt, re-downloaded or edited release changes it without a byte being read. Files that
    are not there (None, or removed) are left out; None when none is there at all (a
    ``cral download --cache-only`` folder, or PNGs deleted once the cache was built).

    Args:
        paths: the image files, in cache row order.

    Returns:
        A hex digest, or None.
    """
    h = hashlib.sha256()
    found = 0
    for path in paths:
        if path is None or (isinstance(path, float) and path != path):
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        found += 1
        h.update(f"{os.path.basename(path)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode("utf-8"))
    return h.hexdigest() if found else None


def prepare_command(root: str | os.PathLike, size: int, path: str | os.PathLike | None = None, *,
                    overwrite: bool = True) -> str:
    """The ``cral prepare`` command line that (re)builds the cache of ``root`` at ``size`` in ``path``.

    ``--out`` is named only when ``path`` is not :func:`default_cache_dir`; the command is meant
    to be copied from a message, so paths are quoted for the shell.
    """
    words = ["cral", "prepare", "--data", shlex.quote(str(root)), "--size", str(int(size))]
    if path is not None and Path(path).resolve() != default_cache_dir(root, size).resolve():
        words += ["--out", shlex.quote(str(path))]
    if overwrite:
        words.append("--overwrite")
    return " ".join(words)


def damage(path: Path, meta: dict[str, Any]) -> str | None:
    """What is wrong with the files of a cache that ``cache.json`` calls complete; None when they look whole.

    Cheap: reads the header of ``images.npy``, its length, and counts the lines of ``index.csv``.
    """
    count, size = int(meta.get("count", -1)), int(meta.get("size", -1))
    images = path / IMAGES_FILE
    try:
        total = images.stat().st_size
        if total == 0:
            return f"{IMAGES_FILE} is empty (0 bytes)"
        with open(images, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(fh)
            offset = fh.tell()
    except FileNotFoundError:
        return f"{IMAGES_FILE} is missing"
    except (OSError, ValueError, SyntaxError) as exc:
        return f"{IMAGES_FILE} is unreadable ({exc})"
    if tuple(shape) != (count, size, size) or np.dtype(dtype) != np.uint8:
        return f"{IMAGES_FILE} holds {dtype} {tuple(shape)}, cache.json says uint8 {(count, size, size)}"
    want = offset + count * size * size
    if total < want:
        return f"{IMAGES_FILE} is truncated ({total:,} of {want:,} bytes)"
    try:
        data = (path / INDEX_FILE).read_bytes()
    except FileNotFoundError:
        return f"{INDEX_FILE} is missing"
    except OSError as exc:
        return f"{INDEX_FILE} is unreadable ({exc})"
    lines = data.count(b"\n")
    if lines != count + 1 or not data.endswith(b"\n"):
        return f"{INDEX_FILE} is truncated ({max(lines - 1, 0)} of {count} rows)"
    return None


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
    "MAX_SIZE",
    "META_FILE",
    "SKIPPED",
    "STATE_FILE",
    "TODO",
    "damage",
    "default_cache_dir",
    "describe",
    "folder_bytes",
    "is_complete_cache",
    "names_fingerprint",
    "prepare_command",
    "read_meta",
    "source_fingerprint",
]
