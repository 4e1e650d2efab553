"""``cral download``: one run of the download, from the archives (or the Kaggle zip) to the cache.

:func:`download` checks its options and hands them to a :class:`Run`, whose steps fetch each
archive (:mod:`~cral_lib.fetch.http_range`), read it as it arrives (:mod:`~cral_lib.fetch.stream`,
:mod:`~cral_lib.fetch.archive`) and put its images into a sink (:mod:`~cral_lib.fetch.sinks`),
keeping the state file (:mod:`~cral_lib.fetch.state`) and checking the disk
(:mod:`~cral_lib.fetch.disk`) on the way. The design is described in :mod:`cral_lib.fetch`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from .._io import default_workers, human
from ..data.cache import (CacheWriter, ImageCache, default_cache_dir, names_fingerprint, release_fingerprint,
                          release_names)
from ..errors import ConfigError, DataError
from ..data.cache.layout import MAX_SIZE
from .archive import read_tar
from .disk import MARGIN, SLACK, UNKNOWN_SIZE_ALLOWANCE, DiskPlan, allocated, check_disk_space
from .http_range import Fetcher, NetworkFailure, RemoteChanged
from .kaggle import fetch_kaggle
from .nih import (NIH_ARCHIVES, SOURCES, SPLIT_LISTS_HELP, Archive, MetadataReport, archive_names, ensure_metadata,
                  parse_archives, resolve_base_url)
from .sinks import CacheSink, LayoutSink, cache_target
from .state import State, now
from .stream import ArchiveSource, Corrupt

_STATE_SAVE_SECONDS = 5.0  # how often the offset reached goes into the state file


@dataclass
class DownloadResult:
    """What :func:`download` did.

    Attributes:
        out: the release folder.
        done: archives (``images_NNN``) done for this run's target (all of those selected, on success).
        fetched: archives read in this run (the others were done before).
        failed: archive -> why it failed (corrupt archives; the run goes on with the others).
        cache: the cache folder (cache mode), else None.
        cache_complete: the cache holds every image of the release (usable by training).
        cache_done: cache rows written so far, of ``cache_total``.
        cache_total: images of the release.
        metadata: what :func:`ensure_metadata` found and wrote.
        messages: notes for the user (incomplete cache, missing split lists, ...).
    """

    out: Path
    done: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    cache: Path | None = None
    cache_complete: bool = False
    cache_done: int = 0
    cache_total: int = 0
    metadata: MetadataReport = field(default_factory=MetadataReport)
    messages: list[str] = field(default_factory=list)


def local_archive(out: Path, archive: Archive) -> Path | None:
    """A complete archive a user put into ``out`` (our name or NIH's own ``images_01.tar.gz``)."""
    for name in (archive.file_name, f"images_{archive.number:02d}.tar.gz"):
        if (out / name).is_file():
            return out / name
    return None


def open_cache_writer(path: Path, names: Sequence[str], size: int, overwrite: bool) -> CacheWriter:
    """A writer into the cache (resuming an unfinished one of the same names and size)."""
    return CacheWriter(path, names, size, overwrite=overwrite)


def complete_cache(path: Path, names: Sequence[str], size: int) -> bool:
    """Whether ``path`` holds a complete, fully valid cache of these names at this size."""
    try:
        cache = ImageCache(path)
    except DataError:
        return False
    return cache.size == int(size) and cache.fingerprint == names_fingerprint(names) and bool(cache.valid.all())


def download(
    out: str | os.PathLike,
    *,
    source: str = "nih",
    cache_only: bool = False,
    archives: str | Sequence[int] | None = None,
    size: int = 256,
    cache: str | os.PathLike | None = None,
    base_url: str | None = None,
    retries: int = 5,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
    workers: int | None = None,
    keep_archives: bool = False,
    metadata_only: bool = False,
    space_check: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> DownloadResult:
    """Fetch ChestX-ray14 into ``out``: into the image cache (``cache_only``) or the NIH layout.

    See the module documentation for how archives are streamed, checked and resumed. Running
    it again after an interruption (or an error) resumes; running it when everything is done
    returns at once.

    Args:
        out: the release folder (created if needed). Metadata CSVs and the state file go here,
            and, without ``cache_only``, ``images_NNN/images/*.png``.
        source: ``"nih"`` (the 12 archives from NIH's Box links) or ``"kaggle"`` (the Kaggle
            copy through the ``kaggle`` command line).
        cache_only: write images only into the cache (no PNG on disk); else write the NIH layout.
        archives: which archives (numbers, or text like ``"1-3,5"``); all when None. With
            ``cache_only`` the cache stays incomplete until all are in.
        size: side of the cached images (256 is the paper's).
        cache: the cache folder; ``default_cache_dir(out, size)`` (where ``cral prepare`` and
            ``cral train --data out`` look) when None.
        base_url: where the archives are (``<base_url>/<box_id>.gz``); ``CRAL_NIH_BASE_URL`` or
            NIH's when None.
        retries: attempts after a failed request or a cut connection, per archive, before giving
            up (the count restarts once bytes flow again).
        retry_wait: seconds before the first retry; doubled each time (at most 60).
        timeout: seconds without data before a connection counts as failed.
        workers: threads decoding PNGs (cache mode); all CPU cores when None, 0 decodes on the
            calling thread.
        keep_archives: keep each verified archive as ``out/images_NNN.tar.gz`` instead of
            deleting it.
        metadata_only: only write (NIH) or fetch (Kaggle) the metadata files.
        space_check: check free disk space before fetching anything.
        overwrite: replace a cache of another release or size found in the cache folder.
        progress: show tqdm progress bars (bytes, images, rate, time left).
        log: where notes go (default: ``tqdm.write`` when ``progress``, else ``print``).

    Returns:
        A :class:`DownloadResult`.

    Raises:
        ConfigError: an option is out of range.
        DataError: not enough disk space, the network failed past the retries, a server refused,
            archives failed verification (named, after the others were done), or the folder holds
            something this must not overwrite. What was fetched or cached is kept; the message
            says how to go on.
    """
    if source not in SOURCES:
        raise ConfigError(f"--source {source!r} is not one of {', '.join(SOURCES)}")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
        raise ConfigError(f"--size {size!r} must be from 1 to {MAX_SIZE} pixels (256 is the paper's)")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"--retries {retries!r} must be 0 or more")
    if not 0 <= retry_wait < math.inf:
        raise ConfigError(f"--retry-wait {retry_wait!r} must be 0 or more seconds (a finite number)")
    if not 0 < timeout < math.inf:
        raise ConfigError(f"--timeout {timeout!r} must be more than 0 seconds (a finite number)")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"--workers {workers!r} must be 0 or more")
    table = NIH_ARCHIVES
    selected = parse_archives(archives, table)
    base = resolve_base_url(base_url)
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file, not a folder: choose a folder for the release")
    out.mkdir(parents=True, exist_ok=True)
    if log is None:
        if progress:
            log = tqdm.write
        else:
            log = print
    run = Run(
        out=out, table=table, selected=selected, cache_only=cache_only, size=size,
        cache_dir=Path(cache).expanduser().absolute() if cache is not None else None,
        base_url=base, retries=retries, retry_wait=float(retry_wait), timeout=float(timeout),
        workers=default_workers() if workers is None else workers, keep_archives=keep_archives,
        space_check=space_check, overwrite=overwrite, progress=progress, log=log,
    )
    if source == "kaggle":
        return run.kaggle(metadata_only=metadata_only)
    return run.nih(metadata_only=metadata_only)


@dataclass
class Run:
    """One call of :func:`download`: its options, and the steps for each source."""

    out: Path
    table: Sequence[Archive]
    selected: tuple[int, ...]
    cache_only: bool
    size: int
    cache_dir: Path | None
    base_url: str
    retries: int
    retry_wait: float
    timeout: float
    workers: int
    keep_archives: bool
    space_check: bool
    overwrite: bool
    progress: bool
    log: Callable[[str], None]

    # -- shared steps

    def cache_path(self) -> Path:
        """The cache folder: ``--cache``, or where ``cral prepare`` and ``cral train`` look."""
        return self.cache_dir if self.cache_dir is not None else default_cache_dir(self.out, self.size)

    def names(self) -> tuple[list[str], dict[int, list[str]]]:
        """The release CSV's image names, and those of each archive."""
        names = [str(n) for n in release_names(self.out)]
        return names, archive_names(names, self.table)

    def archives(self) -> list[Archive]:
        """The archives this run was asked for."""
        return [a for a in self.table if a.number in self.selected]

    def sink(self, names: Sequence[str], result: DownloadResult) -> Any:
        """Where images go: the NIH layout, a cache writer, or None (the cache is complete)."""
        if not self.cache_only:
            return LayoutSink(self.out)
        path = self.cache_path()
        result.cache = path
        result.cache_total = len(names)
        if complete_cache(path, names, self.size):
            return None
        return CacheSink(open_cache_writer(path, names, self.size, self.overwrite), self.workers)

    def plan(self, pending: list[tuple[Archive, int, int]], state: State, names: Sequence[str]) -> DiskPlan:
        """Estimate the bytes still needed; ``pending``: (archive, images to do, images in it)."""
        plan = DiskPlan()
        remaining = []
        for archive, todo, count in pending:
            entry = state.data["archives"].get(archive.name, {})
            known = entry.get("total")
            total = int(known or archive.approx_bytes)
            part = self.out / f"{archive.file_name}.part"
            have = part.stat().st_size if part.exists() else 0
            plan.image_bytes += int(total * todo / max(1, count))
            if local_archive(self.out, archive) is not None:
                total = have = 0
            # One archive may be well above the average size: allow 20% until the server says.
            remaining.append(max(0, (total if known else int(total * UNKNOWN_SIZE_ALLOWANCE)) - have))
        plan.archive_bytes = (sum(remaining) if self.keep_archives else max(remaining, default=0))
        cache_full = len(names) * self.size * self.size
        cache_file = self.cache_path() / "images.npy"
        cache_todo = max(0, cache_full - allocated(cache_file))
        plan.cache_only_bytes = int((plan.archive_bytes + cache_todo) * MARGIN) + SLACK
        plan.layout_bytes = int((plan.archive_bytes + plan.image_bytes) * MARGIN) + SLACK
        if self.cache_only:
            plan.image_bytes = 0
            plan.cache_bytes = cache_todo
        return plan

    def fill(self, sink: Any, names: Sequence[str], result: DownloadResult, work: Callable[[], None]) -> None:
        """Run ``work`` (which puts images into ``sink``), then close the sink and its cache writer
        whatever happens; a cache that was complete before (no sink) counts as complete."""
        try:
            work()
        finally:
            if sink is not None:
                sink.close()
                if sink.kind == "cache":
                    sink.writer.close()
        if self.cache_only and sink is None:
            result.cache_complete = True
            result.cache_done = len(names)

    def report_lists(self, result: DownloadResult) -> None:
        """Say where to get the split lists when the folder lacks them."""
        if result.metadata.missing_lists:
            result.messages.append(SPLIT_LISTS_HELP.format(out=self.out))

    def finish_cache(self, sink: Any, result: DownloadResult) -> None:
        """Finalize the cache when every image is in; else say what is missing and how to go on."""
        writer = sink.writer
        result.cache_done = writer.done
        missing = writer.missing()
        if not missing:
            writer.finalize(fingerprint=release_fingerprint(self.out))
            result.cache_complete = True
            return
        others = [a.name for a in self.table if a.name not in result.done]
        result.messages.append(
            f"the cache in {writer.path} holds {writer.done:,} of {len(writer.names):,} images and stays incomplete "
            f"(training refuses it) until {', '.join(others) or 'the missing archives'} are in: run "
            f"`{self.command()}` (without --archives) to fetch only what is missing. "
            "To train on a subset instead, download without --cache-only and build the cache with "
            f"`cral prepare --data {self.out} --lenient`"
        )

    def command(self) -> str:
        """The command that fetches everything into the same place."""
        words = ["cral", "download", "--out", str(self.out), "--cache-only"]
        if self.size != 256:
            words += ["--size", str(self.size)]
        if self.cache_dir is not None:
            words += ["--cache", str(self.cache_dir)]
        return " ".join(words)

    def bars(self, total_images: int, done_images: int):
        """The progress bar of the images."""
        images = tqdm(total=total_images, initial=done_images, unit="img", desc="images", position=0,
                      disable=not self.progress, dynamic_ncols=True, smoothing=0.05)
        return images

    # -- NIH

    def nih(self, *, metadata_only: bool) -> DownloadResult:
        """NIH's archives, from its Box links (or a mirror), or from archives already in the folder."""
        result = self.new_result()
        result.metadata = ensure_metadata(self.out)
        for name in result.metadata.written:
            self.log(f"wrote {self.out / name} (from the NIH metadata the torchxrayvision package carries)")
        if metadata_only:
            self.report_lists(result)
            return result
        names, per_archive = self.names()
        state = State(self.out)
        self._precheck(names, per_archive, state)  # before anything is created
        sink = self.sink(names, result)
        self.fill(sink, names, result, lambda: self._nih_archives(names, per_archive, state, sink, result))
        self.report_lists(result)
        return result

    def _precheck(self, names: Sequence[str], per_archive: dict[int, list[str]], state: State) -> None:
        """Say what will be fetched and check free disk space (estimates from the files and the state)."""
        if self.cache_only:
            if complete_cache(self.cache_path(), names, self.size):
                return
            target = cache_target(self.size, self.cache_path())
            pending = [
                (a, len(per_archive[a.number]), len(per_archive[a.number])) for a in self.archives()
                if target not in state.data["archives"].get(a.name, {}).get("done", {})
            ]
        else:
            layout = LayoutSink(self.out)
            pending = [(a, layout.todo(a, per_archive[a.number]), len(per_archive[a.number])) for a in self.archives()]
            pending = [p for p in pending if p[1]]
        if not pending:
            return
        plan = self.plan(pending, state, names)
        need, other = (
            (plan.cache_only_bytes, plan.layout_bytes) if self.cache_only else (plan.layout_bytes, plan.cache_only_bytes)
        )
        self.log(
            f"cral download: {len(pending)} archive(s) to fetch from {self.base_url} "
            f"({', '.join(p[0].name for p in pending)}); "
            + (f"cache {self.cache_path()} ({self.size} px); " if self.cache_only else f"PNGs into {self.out}; ")
            + f"about {human(need)} of free disk needed ({'without' if self.cache_only else 'with'} "
            f"--cache-only: about {human(other)})"
        )
        if self.space_check:
            cache_dir = self.cache_path() if self.cache_only else None
            check_disk_space(plan, self.out, cache_dir, cache_only=self.cache_only)

    def _nih_archives(self, names: list[str], per_archive: dict[int, list[str]], state: State, sink: Any,
                      result: DownloadResult) -> None:
        target = sink.target() if sink is not None else None
        pending: list[tuple[Archive, int, int]] = []
        for archive in self.archives():
            expected = per_archive[archive.number]
            if sink is None or sink.has_all(archive, expected):
                result.done.append(archive.name)
                if sink is not None and target not in state.done_in(archive.name):
                    state.done_in(archive.name)[target] = now()
                if sink is not None and (self.out / f"{archive.file_name}.part").exists():
                    self.log(f"{archive.name}: all its images are in; deleting its partial download")
                    self._drop_part(archive, state)
                continue
            if target in state.done_in(archive.name):
                self.log(f"{archive.name} was done before but some of its images are missing now: fetching it again")
                del state.done_in(archive.name)[target]
            pending.append((archive, sink.todo(archive, expected), len(expected)))
        if sink is not None:
            state.save()
        if not pending:
            if sink is not None and sink.kind == "cache":
                self.finish_cache(sink, result)
            return
        total_images = sum(len(per_archive[a.number]) for a in self.archives())
        todo_images = sum(p[1] for p in pending)
        bar = self.bars(total_images, total_images - todo_images)
        try:
            for archive, _, _ in pending:
                try:
                    self._one_archive(archive, set(per_archive[archive.number]), state, sink, bar)
                except Corrupt as exc:
                    result.failed[archive.name] = str(exc)
                    continue
                except NetworkFailure as exc:
                    raise DataError(str(exc) + self._kept_note(result)) from None
                result.done.append(archive.name)
                result.fetched.append(archive.name)
        finally:
            bar.close()
            state.save()
        if sink.kind == "cache":
            self.finish_cache(sink, result)
        if result.failed:
            lines = "; ".join(f"{name}: {why}" for name, why in result.failed.items())
            raise DataError(
                f"{len(result.failed)} archive(s) failed verification and were not marked done ({lines}). Their "
                "downloads were deleted: run the same command again to fetch them afresh "
                f"({len(result.done)} archive(s) are done and stay done" + (
                    "; images already in the cache are kept)" if self.cache_only else ")")
            )
        self.log(f"all {len(self.archives())} archive(s) asked for are in")
        if not self.cache_only:
            result.messages.append(
                f"the PNGs are in {self.out}/images_NNN/images/; build the image cache with "
                f"`cral prepare --data {self.out}`" + (" --lenient (some archives are not in)"
                                                       if len(self.archives()) < len(self.table) else "")
            )

    def _kept_note(self, result: DownloadResult) -> str:
        if not result.done:
            return ""
        return f" ({', '.join(result.done)} are done and stay done)"

    def _drop_part(self, archive: Archive, state: State) -> None:
        part = self.out / f"{archive.file_name}.part"
        if part.exists():
            part.unlink()
        entry = state.entry(archive.name)
        entry.pop("offset", None)

    def _one_archive(self, archive: Archive, expected: set[str], state: State, sink: Any, bar: Any) -> None:
        """Fetch (or read from disk), check and store one archive; mark it done. Raises :class:`Corrupt`."""
        local = local_archive(self.out, archive)
        part = self.out / f"{archive.file_name}.part"
        entry = state.entry(archive.name)
        for attempt in range(2):  # a second time only when the file on the server changed
            try:
                self._read_archive(archive, expected, local, part, entry, state, sink, bar)
                break
            except RemoteChanged as exc:
                part.unlink(missing_ok=True)
                entry.pop("total", None)
                entry.pop("offset", None)
                if attempt == 0:
                    self.log(f"{archive.name}: {exc}; the partial download does not fit it: starting it again")
                    continue
                raise Corrupt(f"{exc}; its partial download was deleted") from None
            except Corrupt as exc:
                if local is not None:
                    raise Corrupt(f"{local} is damaged: {exc}. It was left as it is: delete or replace it "
                                   "(without it, the archive is downloaded)") from None
                part.unlink(missing_ok=True)  # resuming would keep the bad bytes
                entry.pop("total", None)
                entry.pop("offset", None)
                raise
            except BaseException:
                if local is None and part.exists():
                    entry["offset"] = part.stat().st_size
                    if not entry["offset"]:
                        part.unlink()  # nothing received: leave no empty file behind
                raise
        # Checked: mark it done, then drop (or keep) the download.
        state.done_in(archive.name)[sink.target()] = now()
        if local is None:
            entry["offset"] = entry.get("total")
            if self.keep_archives:
                os.replace(part, self.out / archive.file_name)
            else:
                part.unlink(missing_ok=True)
        state.save()
        self.log(f"{archive.name}: {len(expected):,} images checked and in" + (
            f"; kept {self.out / archive.file_name}" if self.keep_archives and local is None else ""))

    def _read_archive(self, archive: Archive, expected: set[str], local: Path | None, part: Path,
                      entry: dict[str, Any], state: State, sink: Any, bar: Any) -> None:
        """One pass over an archive: the file on disk, then (unless ``local``) the network."""
        have = 0 if local is not None or not part.exists() else part.stat().st_size
        total = None if local is not None else entry.get("total")
        byte_bar = tqdm(
            total=total or archive.approx_bytes, initial=have, unit="B", unit_scale=True, unit_divisor=1000,
            desc=archive.name, position=1, leave=False, disable=not self.progress or local is not None,
            dynamic_ncols=True, smoothing=0.05,
        )
        last_save = time.monotonic()

        def on_total(value: int) -> None:
            entry["total"] = int(value)
            byte_bar.total = int(value)
            byte_bar.refresh()
            state.save()

        def on_network(n: int) -> None:
            nonlocal last_save
            byte_bar.update(n)
            if time.monotonic() - last_save >= _STATE_SAVE_SECONDS:
                entry["offset"] = source.position
                state.save()
                last_save = time.monotonic()

        fetcher = None
        if local is not None:
            self.log(f"{archive.name}: reading {local} (already on disk)")
        else:
            url = archive.url(self.base_url)
            entry.update(url=url, offset=have)
            state.save()
            if have:
                self.log(f"{archive.name}: resuming at byte {have:,} ({part.name})")
            fetcher = Fetcher(url, archive.file_name, part, total=total, retries=self.retries,
                               retry_wait=self.retry_wait, timeout=self.timeout, on_total=on_total, log=self.log)
        source = ArchiveSource(local if local is not None else part, fetcher, on_network)
        try:
            read_tar(source, archive, expected, sink, bar, archive.file_name)
        except BaseException:
            sink.drop()  # images decoded before the error passed their own checks: keep them
            raise
        finally:
            source.close()
            byte_bar.close()

    def new_result(self) -> DownloadResult:
        """An empty :class:`DownloadResult` of this run's folder."""
        return DownloadResult(out=self.out)

    def kaggle(self, *, metadata_only: bool) -> DownloadResult:
        """The Kaggle copy, through the ``kaggle`` command line (:mod:`cral_lib.fetch.kaggle`)."""
        return fetch_kaggle(self, metadata_only=metadata_only)


__all__ = ["DownloadResult", "Run", "download"]
