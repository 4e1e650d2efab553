"""The Kaggle copy of ChestX-ray14 (``cral download --source kaggle``): one zip, fetched with the
``kaggle`` command line, then read like NIH's archives (into the cache, or the NIH layout).

A zip cannot be read while it downloads, so the peak disk is the zip plus the cache (about 50
GB) or plus the PNGs (about 85 GB). ``metadata_only`` fetches just the four metadata files,
the quickest way to the official split lists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import atomic_write_bytes, die_with_parent
from ..errors import DataError
from .archive import ZIP_MEMBER_RE, check_member_size, read_member
from .disk import MARGIN, SLACK, DiskPlan, allocated, check_disk_space
from .nih import (BBOX_LIST, DATA_ENTRY, DATA_ENTRY_2017, KAGGLE_DATASET, KAGGLE_PAGE, KAGGLE_ZIP, TEST_LIST,
                  TRAIN_VAL_LIST, Archive, MetadataReport, ensure_metadata, has_csv)
from .state import State, now
from .stream import Corrupt

if TYPE_CHECKING:  # pragma: no cover - for type checkers only (run.py imports this module)
    from .run import DownloadResult, Run


def fetch_kaggle(run: "Run", *, metadata_only: bool) -> "DownloadResult":
    """The Kaggle copy: one zip (fetched with the ``kaggle`` command line), read like the archives."""
    result = run.new_result()
    exe = kaggle_executable()
    check_kaggle_token()
    if metadata_only:
        result.metadata = _kaggle_metadata(run, exe)
        run.report_lists(result)
        return result
    state = State(run.out)
    zip_path = run.out / KAGGLE_ZIP
    kaggle_entry = state.data.setdefault("kaggle", {})
    ours = bool(kaggle_entry.get("downloaded_by_cral"))
    if run.space_check:
        # Estimates: the zip (unless there), then the PNGs or the cache (less what is there).
        total = sum(a.approx_bytes for a in run.table)
        zip_bytes = 0 if zip_path.exists() else total
        cache_full = run.size * run.size * sum(a.images for a in run.table)
        cache_todo = max(0, cache_full - allocated(run.cache_path() / "images.npy"))
        plan = DiskPlan(archive_bytes=zip_bytes, image_bytes=0 if run.cache_only else total,
                        cache_bytes=cache_todo if run.cache_only else 0)
        plan.cache_only_bytes = int((zip_bytes + cache_todo) * MARGIN) + SLACK
        plan.layout_bytes = int((zip_bytes + total) * MARGIN) + SLACK
        check_disk_space(plan, run.out, run.cache_path() if run.cache_only else None,
                         cache_only=run.cache_only)
    if not zip_path.exists():
        run.log(f"cral download: fetching the Kaggle copy ({KAGGLE_DATASET}, about 42 GB) with the kaggle "
                 "command line")
        run_kaggle(exe, ["datasets", "download", "-d", KAGGLE_DATASET, "-p", str(run.out)])
        if not zip_path.is_file():
            raise DataError(
                f"the kaggle command line finished but {zip_path} is not there: check its messages above; run "
                f"`kaggle datasets download -d {KAGGLE_DATASET} -p {run.out}` by hand to see them"
            )
        kaggle_entry["downloaded_by_cral"] = ours = True
        state.save()
    try:
        archive_zip = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(
            f"{zip_path} is not a readable zip ({exc}): delete it and run again to download it afresh"
        ) from None
    with archive_zip:
        result.metadata = _zip_metadata(run, archive_zip)
        names, per_archive = run.names()
        sink = run.sink(names, result)
        run.fill(sink, names, result, lambda: _zip_archives(run, archive_zip, per_archive, state, sink, result))
    state.save()
    all_done = len(result.done) == len(run.table) and not result.failed
    if ours and all_done and not run.keep_archives:
        zip_path.unlink()
        state.data.pop("kaggle", None)
        state.save()
        run.log(f"deleted {zip_path} (every image is in)")
    run.report_lists(result)
    if result.failed:
        lines = "; ".join(f"{name}: {why}" for name, why in result.failed.items())
        raise DataError(
            f"{len(result.failed)} folder(s) of {zip_path} failed verification ({lines}); delete {zip_path} "
            "and run again to download it afresh (finished folders stay done)"
        )
    return result

def _kaggle_metadata(run: "Run", exe: str) -> MetadataReport:
    report = MetadataReport()
    wanted = []
    if has_csv(run.out):
        report.present.append(has_csv(run.out))
    else:
        wanted.append(DATA_ENTRY_2017)
    for name in (BBOX_LIST, TRAIN_VAL_LIST, TEST_LIST):
        (report.present if (run.out / name).is_file() else wanted).append(name)
    for name in wanted:
        run_kaggle(exe, ["datasets", "download", "-d", KAGGLE_DATASET, "-f", name, "-p", str(run.out)])
        zipped = run.out / f"{name}.zip"
        if zipped.is_file():
            with zipfile.ZipFile(zipped) as z:
                members = [m for m in z.namelist() if Path(m).name == name]
                if not members:
                    raise DataError(f"{zipped} (from kaggle) does not hold {name}: delete it and run again")
                atomic_write_bytes(run.out / name, z.read(members[0]))
            zipped.unlink()
        if not (run.out / name).is_file():
            raise DataError(
                f"the kaggle command line did not write {run.out / name}: run `kaggle datasets download -d "
                f"{KAGGLE_DATASET} -f {name} -p {run.out}` by hand to see why"
            )
        report.written.append(name)
        run.log(f"wrote {run.out / name} (from Kaggle)")
    report.missing_lists = [n for n in (TRAIN_VAL_LIST, TEST_LIST) if not (run.out / n).is_file()]
    return report

def _zip_metadata(run: "Run", archive_zip: zipfile.ZipFile) -> MetadataReport:
    report = MetadataReport()
    by_name = {Path(m).name: m for m in archive_zip.namelist() if "/" not in m.strip("/")}
    targets = [BBOX_LIST, TRAIN_VAL_LIST, TEST_LIST]
    csv = has_csv(run.out)
    if csv:
        report.present.append(csv)
    else:
        targets.insert(0, DATA_ENTRY if DATA_ENTRY in by_name else DATA_ENTRY_2017)
    for name in targets:
        if (run.out / name).is_file():
            report.present.append(name)
        elif name in by_name:
            atomic_write_bytes(run.out / name, archive_zip.read(by_name[name]))
            report.written.append(name)
    if not has_csv(run.out):
        report.written.extend(ensure_metadata(run.out).written)
    report.missing_lists = [n for n in (TRAIN_VAL_LIST, TEST_LIST) if not (run.out / n).is_file()]
    return report

def _zip_archives(run: "Run", archive_zip: zipfile.ZipFile, per_archive: dict[int, list[str]], state: State,
                  sink: Any, result: DownloadResult) -> None:
    """Read the zip's images archive by archive (by name: the zip's own folders are not relied on)."""
    infos: dict[str, zipfile.ZipInfo] = {}
    for info in archive_zip.infolist():
        m = ZIP_MEMBER_RE.match(info.filename)
        if m is None:
            continue
        if m.group(1) in infos:
            raise DataError(f"{archive_zip.filename} holds {m.group(1)} twice: delete it and run again")
        infos[m.group(1)] = info
    known = {n for names in per_archive.values() for n in names}
    unknown = sorted(set(infos) - known)
    if unknown:
        raise DataError(
            f"{archive_zip.filename} holds {len(unknown)} images that the release CSV does not list (e.g. "
            f"{unknown[0]}): use the CSV of the same copy (move the CSV in {run.out} away and run again)"
        )
    total_images = sum(len(per_archive[a.number]) for a in run.archives())
    todo = 0 if sink is None else sum(sink.todo(a, per_archive[a.number]) for a in run.archives())
    bar = run.bars(total_images, total_images - todo)
    try:
        for archive in run.archives():
            expected = per_archive[archive.number]
            if sink is None or sink.has_all(archive, expected):
                result.done.append(archive.name)
                continue
            try:
                _zip_images(run, archive_zip, archive, expected, infos, sink, bar)
            except Corrupt as exc:
                sink.drop()
                result.failed[archive.name] = str(exc)
                continue
            state.done_in(archive.name)[sink.target()] = now()
            state.save()
            result.done.append(archive.name)
            result.fetched.append(archive.name)
    finally:
        bar.close()
    if sink is not None and sink.kind == "cache":
        run.finish_cache(sink, result)

def _zip_images(run: "Run", archive_zip: zipfile.ZipFile, archive: Archive, expected: list[str],
                infos: dict[str, zipfile.ZipInfo], sink: Any, bar: Any) -> None:
    missing = [n for n in expected if n not in infos]
    if missing:
        raise Corrupt(f"the zip holds {len(expected) - len(missing)} of its {len(expected)} images "
                       f"(e.g. {missing[0]} is missing)")
    for name in expected:
        info = infos[name]
        check_member_size(info.file_size, f"{KAGGLE_ZIP}:{info.filename}")
        if sink.wants(archive, name, info.file_size):
            try:
                with archive_zip.open(info) as member:  # checks the member's CRC-32 at its end
                    data = read_member(member, info.file_size, f"{KAGGLE_ZIP}:{info.filename}")
            except (zipfile.BadZipFile, zlib.error, OSError) as exc:
                raise Corrupt(f"{info.filename} is damaged ({exc})") from None
            sink.put(archive, name, data, f"{KAGGLE_ZIP}:{info.filename}")
            bar.update(1)
    sink.finish()


# --------------------------------------------------------------------------- the kaggle command line

_KAGGLE_INSTALL = (
    "install it with `pip install kaggle` and put an API token (kaggle.com -> Settings -> API -> Create New Token) "
    "into ~/.kaggle/kaggle.json (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY"
)


def kaggle_executable() -> str:
    exe = shutil.which("kaggle")
    if exe is None:
        raise DataError(f"--source kaggle needs the `kaggle` command line, which is not on PATH: {_KAGGLE_INSTALL}")
    return exe


def check_kaggle_token() -> None:
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return
    if os.environ.get("KAGGLE_API_TOKEN"):
        return
    folders = [Path(os.environ["KAGGLE_CONFIG_DIR"])] if os.environ.get("KAGGLE_CONFIG_DIR") else []
    folders += [Path.home() / ".kaggle", Path.home() / ".config" / "kaggle"]
    for folder in folders:
        if (folder / "kaggle.json").is_file() or (folder / "access_token").is_file():
            return
    raise DataError(
        f"--source kaggle needs a Kaggle API token and none was found (looked for KAGGLE_USERNAME/KAGGLE_KEY and "
        f"{', '.join(str(f / 'kaggle.json') for f in folders)}): {_KAGGLE_INSTALL}"
    )


def run_kaggle(exe: str, args: list[str]) -> None:
    try:
        # the kaggle command ends with this process (a kill -9 of cral download leaves it not running)
        proc = subprocess.run([exe, *args], check=False, preexec_fn=die_with_parent)
    except OSError as exc:
        raise DataError(f"cannot run {exe} ({exc}): {_KAGGLE_INSTALL}") from None
    if proc.returncode != 0:
        raise DataError(
            f"`kaggle {' '.join(args)}` failed with status {proc.returncode} (see its message above). Common causes: "
            f"no or an expired API token, or the dataset's terms not accepted on {KAGGLE_PAGE}"
        )




__all__ = ["check_kaggle_token", "fetch_kaggle", "kaggle_executable", "run_kaggle"]
