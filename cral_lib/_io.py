"""Small helpers shared by the data and training code: atomic file writes, worker pools, folder
locks, byte counts.

Atomic writes go to a temporary file in the same folder, are flushed to disk and renamed
over the target (``os.replace``), so a reader (or a run resumed after a crash) sees the old
file or the new one, never half of one.

Worker processes die with the process that started them (:func:`worker_init`: Linux's
``PR_SET_PDEATHSIG``, and a check that the parent is still there), and they let go of the
folder locks they inherited, so that a ``kill -9`` of ``cral prepare`` or ``cral synth`` leaves
no process behind and no lock held: the next run takes the folder over and resumes.
"""

from __future__ import annotations

import ctypes
import errno
import multiprocessing
import os
import platform
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None


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


#: File descriptors of the folder locks this process holds; a forked worker closes its copies.
_LOCK_FDS: set[int] = set()
_PR_SET_PDEATHSIG = 1


def worker_init(initializer: Callable[..., Any] | None = None, *args: Any) -> None:
    """Start a worker process so that it dies with its parent, then run ``initializer(*args)``.

    On Linux the kernel sends the worker SIGKILL when the process that started it ends, however
    it ends (``kill -9`` included); a parent that ended before this ran is noticed at once. The
    copies of the parent's folder locks (see :class:`FolderLock`) that ``fork`` gave the worker
    are closed, so that the lock is the parent's alone. Pass it as a pool's ``initializer``.
    """
    if sys.platform.startswith("linux"):
        die_with_parent()
        parent = multiprocessing.parent_process()
        if parent is not None and os.getppid() != parent.pid:
            os._exit(1)  # the parent ended before the signal was asked for
    for fd in list(_LOCK_FDS):
        try:
            os.close(fd)
        except OSError:
            pass
    _LOCK_FDS.clear()
    if initializer is not None:
        initializer(*args)


def keep_from_workers(fd: int, keep: bool = True) -> None:
    """Have workers started with :func:`worker_init` close their copy of ``fd`` (a lock); ``keep=False`` undoes it."""
    (_LOCK_FDS.add if keep else _LOCK_FDS.discard)(fd)


def die_with_parent() -> None:
    """``preexec_fn`` of a child command (``subprocess``): SIGKILL it when this process ends (Linux)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover
            pass


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (and is not a zombie, where that can be told)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return True


class LockHeld(Exception):
    """Raised by :class:`FolderLock` when another live process holds the lock; ``pid`` is its id (0: unknown)."""

    def __init__(self, pid: int) -> None:
        super().__init__(pid)
        self.pid = pid


class FolderLock:
    """An exclusive lock on a folder, held by this process alone (POSIX ``flock`` on ``path``).

    The lock file names the process that holds it. The kernel frees the lock when that process
    ends, however it ends; workers started with :func:`worker_init` drop their inherited copy.
    A lock file that still names a process that no longer runs (killed, crashed) is taken
    over: :attr:`stale_pid` is then that process's id, for a message saying so.

    Args:
        path: the lock file (created if needed).
        wait: block until the lock is free instead of raising :class:`LockHeld`.

    Raises:
        LockHeld: another process holds the lock (and not ``wait``).
    """

    def __init__(self, path: str | os.PathLike, *, wait: bool = False) -> None:
        self.path = Path(path)
        self.stale_pid = 0
        self._fd: int | None = None
        self._owner = os.getpid()
        if fcntl is None:  # pragma: no cover - Windows
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                os.close(fd)  # a file system without locks (some network mounts): go on unlocked
                return
            if not wait:
                holder = self._read_pid(fd)
                os.close(fd)
                raise LockHeld(holder) from None
            fcntl.flock(fd, fcntl.LOCK_EX)
        old = self._read_pid(fd)
        if old and old != os.getpid():
            self.stale_pid = old  # it holds no lock, so it is gone (or a worker of it is, see worker_init)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        _LOCK_FDS.add(fd)

    def __del__(self) -> None:  # an abandoned lock is freed, as a closed file would free it
        try:
            self.release()
        except Exception:  # pragma: no cover - at interpreter shutdown
            pass

    @staticmethod
    def _read_pid(fd: int) -> int:
        try:
            return int(os.pread(fd, 32, 0).split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def release(self) -> None:
        """Free the lock (and say in its file that nobody holds it)."""
        if self._fd is None or os.getpid() != self._owner:
            return  # a forked worker's copy of this object: its descriptor was closed by worker_init
        _LOCK_FDS.discard(self._fd)
        try:
            os.ftruncate(self._fd, 0)
        except OSError:  # pragma: no cover
            pass
        os.close(self._fd)  # closing the last descriptor frees the lock
        self._fd = None


def remove_stale_temporaries(folder: str | os.PathLike, pattern: str = ".*.tmp") -> list[Path]:
    """Delete the temporary files (``pattern``) an interrupted atomic write left in ``folder``; returns them."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.glob(pattern):
        try:
            if path.is_file():
                path.unlink()
                removed.append(path)
        except OSError:  # pragma: no cover - another process removed it first
            pass
    return removed


def human(n: float) -> str:
    """A byte count for people: ``1.5 GB`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    raise AssertionError  # pragma: no cover


__all__ = ["FolderLock", "LockHeld", "atomic_write_bytes", "atomic_write_text", "default_workers", "die_with_parent",
           "human", "keep_from_workers", "pid_alive", "remove_stale_temporaries", "worker_context", "worker_init"]
