"""``cral prepare``: build (or finish, or reuse) the image cache of a release folder from its PNGs."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm.auto import tqdm

from ..._io import default_workers, worker_context, worker_init
from ...errors import DataError
from ..images import open_grey, resize_grey
from ..nih import ChestXray14
from ..release import scan_images
from .layout import (CACHE_VERSION, DEFAULT_SIZE, INDEX_FILE, META_FILE, damage, default_cache_dir, names_fingerprint,
                     prepare_command, read_meta, source_fingerprint)
from .reader import release_names
from .writer import CacheWriter


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
    root = Path(root)
    path = Path(out) if out is not None else default_cache_dir(root, size)
    names = release_names(root)
    fix = prepare_command(root, size, path)
    meta = read_meta(path)
    if (
        meta
        and meta.get("complete") is True
        and meta.get("version") == CACHE_VERSION
        and meta.get("size") == int(size)
        and meta.get("count") == len(names)
        and meta.get("fingerprint") == names_fingerprint(names)
    ):
        reuse = _check_complete(root, path, meta, names, overwrite=overwrite, fix=fix)
        if reuse:
            skipped = meta.get("skipped") or {}
            if skipped and not lenient:
                first = next(iter(skipped))
                warnings.warn(
                    f"the cache in {path} was built in lenient mode and leaves out {len(skipped)} images "
                    f"(e.g. {first}: {skipped[first]}); to include them, fix the files and rebuild with "
                    f"`{fix}`",
                    stacklevel=2,
                )
            return path  # complete and matching: nothing to do

    with warnings.catch_warnings():
        # The reader's lenient warning is repeated below with the decode failures, as one count.
        warnings.simplefilter("ignore")
        dataset = ChestXray14(root, "all", lenient=lenient)
    with CacheWriter(path, names, size, overwrite=overwrite, flush_seconds=flush_seconds, fix=fix) as writer:
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
        writer.finalize(source=source_fingerprint(dataset.frame["path"]))
    return path


def _check_complete(root: Path, path: Path, meta: dict, names, *, overwrite: bool, fix: str) -> bool:
    """Whether a complete cache of these names can be reused; False: build it again (its cache.json is gone).

    A damaged cache (truncated or empty files) is built again, with a warning; one whose source
    images changed since (sizes or modification times, see :func:`source_fingerprint`) is
    refused unless ``overwrite``.
    """
    problem = damage(path, meta)
    if problem is None and meta.get("source"):
        paths, _ = scan_images(root)
        now = source_fingerprint(paths.get(name) for name in names)
        if now is not None and now != meta["source"]:
            if not overwrite:
                raise DataError(
                    f"the images of {root} changed since the cache in {path} was built from them (their sizes "
                    f"or modification times differ: a rebuilt, re-downloaded or edited release): rebuild it with "
                    f"`{fix}`"
                )
            problem = "its source images changed"
    if problem is None:
        return True
    if not overwrite:
        warnings.warn(f"the cache in {path} is damaged ({problem}); building it again", stacklevel=3)
    (path / META_FILE).unlink(missing_ok=True)  # the writer starts afresh
    return False


def _run_tasks(
    writer: CacheWriter,
    tasks: list[tuple[int, str, int]],
    workers: int,
    *,
    lenient: bool,
    progress: bool,
    already: int,
) -> None:
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
    # fork on Linux, spawn elsewhere (see worker_context); the workers use only numpy and PIL.
    # A broken pool raises instead of hanging.
    # Workers die with this process (worker_init), so a kill -9 leaves none behind holding the lock.
    executor = ProcessPoolExecutor(workers, mp_context=worker_context(), initializer=worker_init)
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


__all__ = ["build_cache"]
