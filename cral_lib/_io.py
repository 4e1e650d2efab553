"""Small helpers shared by the data and training code: atomic file writes, worker pools, byte counts.

Atomic writes go to a temporary file in the same folder, are flushed to disk and renamed
over the target (``os.replace``), so a reader (or a run resumed after a crash) sees the old
file or the new one, never half of one.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import tempfile
from pathlib import Path


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - not possible on every platform
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Text version of :func:`atomic_write_bytes` (UTF-8, newlines as given)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def default_workers() -> int:
    """The number of CPU cores this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def worker_context():
    """The multiprocessing context of the image workers (drawing, decoding).

    ``fork`` on Linux (as PyTorch's DataLoader): workers start at once, and a script or a
    function that calls :func:`cral_lib.data.make_synthetic` or :func:`cral_lib.data.build_cache`
    without an ``if __name__ == "__main__":`` guard still works. ``spawn`` elsewhere (macOS,
    Windows), where such a script needs the guard. The workers use numpy, Pillow and SciPy
    only, never torch, so forking a process that has imported torch is safe.
    """
    return multiprocessing.get_context("fork" if platform.system() == "Linux" else "spawn")


def human(n: float) -> str:
    """A byte count for people: ``1.5 GB`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    raise AssertionError  # pragma: no cover


__all__ = ["atomic_write_bytes", "atomic_write_text", "default_workers", "human", "worker_context"]
