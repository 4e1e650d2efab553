"""Disk space: what a download still needs, checked before anything is fetched; sizes for people."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .._io import human
from ..errors import DataError

MARGIN = 1.05  # 5% on top of the size estimates
UNKNOWN_SIZE_ALLOWANCE = 1.2  # an archive whose size the server has not given yet
SLACK = 200_000_000  # and 200 MB for the small files


def existing_ancestor(path: Path) -> Path:
    """The nearest folder above ``path`` (or itself) that exists."""
    path = Path(path).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Free bytes on the disk that holds (or will hold) ``path``."""
    return int(shutil.disk_usage(existing_ancestor(path)).free)


def same_disk(a: Path, b: Path) -> bool:
    """Whether two paths (existing or not yet) are on the same file system."""
    try:
        return existing_ancestor(a).stat().st_dev == existing_ancestor(b).stat().st_dev
    except OSError:  # pragma: no cover
        return True


@dataclass
class DiskPlan:
    """Bytes a download still needs (estimates until the server gives sizes).

    Attributes:
        archive_bytes: peak bytes of archives on disk in ``DIR`` at one time (one archive, or all
            of them with ``keep_archives``).
        image_bytes: PNGs still to be written (layout mode).
        cache_bytes: cache rows still to be written (cache mode).
        cache_only_bytes: what the same download would need with ``--cache-only``.
        layout_bytes: what it would need without ``--cache-only`` (PNGs + one archive; ``cral
            prepare`` then needs the cache's size on top).
    """

    archive_bytes: int = 0
    image_bytes: int = 0
    cache_bytes: int = 0
    cache_only_bytes: int = 0
    layout_bytes: int = 0


def allocated(path: Path) -> int:
    """Bytes a (possibly sparse) file takes on the disk; 0 when it does not exist."""
    try:
        st = path.stat()
    except OSError:
        return 0
    return int(getattr(st, "st_blocks", 0) * 512) or int(st.st_size)


def check_disk_space(plan: DiskPlan, out: Path, cache_dir: Path | None, *, cache_only: bool) -> None:
    """Raise unless the disks of ``out`` and ``cache_dir`` have room for ``plan``.

    Raises:
        DataError: not enough free space; says how much is needed with and without
            ``--cache-only`` and how much is free.
    """
    needs: list[tuple[Path, int, str]] = []
    in_out = plan.archive_bytes + plan.image_bytes
    parts_out = [f"{human(plan.archive_bytes)} for the archive being fetched"]
    if plan.image_bytes:
        parts_out.append(f"{human(plan.image_bytes)} of PNGs")
    if plan.cache_bytes and cache_dir is not None:
        if same_disk(out, cache_dir):
            in_out += plan.cache_bytes
            parts_out.append(f"{human(plan.cache_bytes)} of cache")
        else:
            needs.append((cache_dir, int(plan.cache_bytes * MARGIN) + SLACK, f"{human(plan.cache_bytes)} of cache"))
    needs.insert(0, (out, int(in_out * MARGIN) + SLACK, " + ".join(parts_out)))
    for folder, need, what in needs:
        free = free_bytes(folder)
        if need > free:
            other = (
                f"with --cache-only it would need about {human(plan.cache_only_bytes)}"
                if not cache_only
                else f"without --cache-only it would need about {human(plan.layout_bytes)}"
            )
            raise DataError(
                f"not enough free disk space in {existing_ancestor(folder)}: this download needs about "
                f"{human(need)} more ({what}, plus 5%) and {human(free)} is free ({other}). Free some space, "
                "put the cache on another disk with --cache DIR, fetch fewer archives at a time with --archives, "
                "or skip this check with --no-space-check"
            )




__all__ = ["DiskPlan", "MARGIN", "SLACK", "UNKNOWN_SIZE_ALLOWANCE", "allocated", "check_disk_space", "existing_ancestor",
           "free_bytes", "same_disk"]
