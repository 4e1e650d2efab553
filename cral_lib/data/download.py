"""``cral download``: ChestX-ray14 from NIH (or Kaggle), streamed straight into the image cache.

The NIH Clinical Center publishes the 112,120 images as 12 gzip-compressed tar archives behind
static Box links (:data:`NIH_ARCHIVES`, about 42 GB in all). The usual recipe (download all 12,
extract them, decode 112,120 PNGs every epoch) needs about 90 GB of disk and hours of CPU.
:func:`download` does better:

- **Streaming.** Each archive is decoded *while it downloads*: gzip, then tar, then every PNG is
  decoded, resized to ``S x S`` and written into the uint8 image cache
  (:class:`~cral_lib.data.cache.CacheWriter`, the same files ``cral prepare`` makes) on a few
  threads, overlapped with the download. With ``cache_only=True`` no PNG is ever written to
  disk and each archive is deleted once its images are in, so the peak disk need is the cache
  (about 7.3 GB at 256 px) plus one archive (about 4 GB): 12-13 GB. Without it, the release is
  written as NIH ships it (``images_NNN/images/*.png``, about 50 GB with one archive) and
  ``cral prepare`` builds the cache (7.3 GB more).
- **Resuming.** The bytes of the archive being fetched are appended to
  ``DIR/images_NNN.tar.gz.part`` before they are decoded. A cut connection is retried with
  back-off and an HTTP ``Range`` request from the byte reached (a server that ignores ``Range``
  answers with the whole file; its first bytes are then read and discarded, so the partial file
  stays valid). See "Resuming with --cache-only" below for an interrupted run.
- **Checking.** An archive counts as done only after all of it was read: its gzip CRC-32 and
  length, every tar header checksum, every PNG's chunk CRCs (and, for the cache, a full decode),
  and its image names: exactly the names of the release CSV that fall in the archive's range
  (NIH's archives hold consecutive image names: 4,999 in the first, 10,000 in each of the next
  ten, 7,121 in the last).
- **State.** ``DIR/.cral_download.json`` (written atomically) records, per archive, its size,
  the byte offset reached and where it is done (``layout`` and/or the cache folder). The files
  themselves stay the truth: an archive whose images are all in the cache (or on disk) is done.
- **Disk.** Free space is checked before anything is fetched; the message says how much is
  needed with and without ``--cache-only``.

Resuming with --cache-only (the design choice). A gzip stream cannot be decoded from the middle,
so a decoder cannot resume where an interrupted one stopped. Two designs keep resume correct:
(a) download the whole ``.gz`` with Range resume, then decode it from the file; (b) decode while
downloading, keep the bytes on disk, and after an interruption decode the partial file again from
its start (local disk, seconds), skipping images the cache already holds, then continue with the
network from the byte the file reached. This module does (b): the same peak disk as (a), but the
PNG decoding overlaps the download, within a run a cut connection costs nothing (the decoder
just waits for the retry), and across runs only gunzip of the partial file is repeated.

Trust. A cache row (or PNG file) is written only from an image that passed its own checks (tar
header checksum, PNG chunk CRCs and, for the cache, a complete decode), so rows written from an archive that later
fails (a bad byte near its end, a missing image) are kept, and the next run fetches the archive
afresh but does not decode those images again. A corrupt archive is reported by name, never
marked done, and its partial download is deleted (resuming it would keep the bad bytes).
Archives a user put into ``DIR`` (``images_001.tar.gz`` or NIH's own name ``images_01.tar.gz``)
are read from disk instead of downloaded, and never deleted.

Metadata. The archives hold only images. ``Data_Entry_2017_v2020.csv`` and
``BBox_List_2017.csv`` are written from the copies the torchxrayvision wheel carries
(:mod:`cral_lib.data.metadata`) when ``DIR`` has none. The official split lists
(``train_val_list.txt``, ``test_list.txt``) are not shipped anywhere offline; this module
never invents them and says where to get them (:data:`SPLIT_LISTS_HELP`). The cache needs only
the image names, so it can be built without them; training needs them.

Kaggle. ``source="kaggle"`` fetches the Kaggle copy (``nih-chest-xrays/data``, one 42 GB zip
with the images, both CSVs and the split lists) with the ``kaggle`` command line (``pip install
kaggle`` and an API token), then reads it like the NIH archives (streaming into the cache, or
extracting the NIH layout; images are assigned to ``images_NNN`` by name, as for NIH's archives)
and deletes the zip it downloaded. A zip cannot be read while it downloads, so the peak disk is
the zip plus the cache (about 50 GB) or plus the PNGs (about 85 GB). ``metadata_only=True`` fetches
just the four metadata files (``kaggle datasets download -d nih-chest-xrays/data -f FILE``),
the quickest way to the split lists. By hand, ``kaggle datasets download -d
nih-chest-xrays/data -p DIR --unzip`` gives the same layout (peak disk about 87 GB).

Subsets. ``archives=[1, 2]`` fetches only those archives. In ``cache_only`` mode the cache is
filled with their rows and stays incomplete (unusable) until the others are in; a later run
without ``archives`` fetches only what is missing. To train on a subset, use the layout mode
and ``cral prepare --lenient``: the images that are absent become invalid rows that training
leaves out, with a warning that counts them.

Example:
    >>> from cral_lib.data.download import download
    >>> result = download("/content/chestxray14", cache_only=True)  # doctest: +SKIP
"""

from __future__ import annotations

import bisect
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import zipfile
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from .._io import atomic_write_bytes, default_workers
from ..errors import ConfigError, DataError

# --------------------------------------------------------------------------- the archives

#: Where NIH's static links live; ``--base-url`` or ``CRAL_NIH_BASE_URL`` point elsewhere.
NIH_BASE_URL = "https://nihcc.box.com/shared/static"
BASE_URL_ENV = "CRAL_NIH_BASE_URL"
#: The NIH download page and the Kaggle copy of the dataset.
NIH_PAGE = "https://nihcc.app.box.com/v/ChestXray-NIHCC"
KAGGLE_PAGE = "https://www.kaggle.com/datasets/nih-chest-xrays/data"
KAGGLE_DATASET = "nih-chest-xrays/data"
#: The zip ``kaggle datasets download -d nih-chest-xrays/data`` writes.
KAGGLE_ZIP = "data.zip"
#: The state file of a download folder.
STATE_FILE = ".cral_download.json"
STATE_FORMAT = 1
SOURCES = ("nih", "kaggle")

#: Average bytes of one PNG in the archives (42 GB / 112,120), for size estimates.
_BYTES_PER_IMAGE = 380_000


@dataclass(frozen=True)
class Archive:
    """One image archive of the release.

    Attributes:
        number: 1 to 12.
        box_id: the id of NIH's static Box link (``<base>/<box_id>.gz``).
        images: how many images it holds.
        last: its last image name; an archive holds the names after the previous archive's
            ``last`` up to its own, in sorted order.
        approx_bytes: its approximate size (``images`` x 380 kB; the server's
            ``Content-Length`` replaces it once known).
    """

    number: int
    box_id: str
    images: int
    last: str
    approx_bytes: int

    @property
    def name(self) -> str:
        """``images_001`` ... ``images_012``: the folder it extracts to (``name/images/*.png``)."""
        return f"images_{self.number:03d}"

    @property
    def file_name(self) -> str:
        """``images_001.tar.gz``: the archive's file name."""
        return f"{self.name}.tar.gz"

    def url(self, base_url: str) -> str:
        """The archive's URL under ``base_url``."""
        return f"{base_url.rstrip('/')}/{self.box_id}.gz"


def _archive(number: int, box_id: str, images: int, last: str) -> Archive:
    return Archive(number, box_id, images, last, images * _BYTES_PER_IMAGE)


#: NIH's 12 archives (static links published on the NIH page and in its batch_download_zips.py).
#: The ``last`` names split the sorted image names of Data_Entry_2017(_v2020).csv into
#: 4,999 + 10 x 10,000 + 7,121 images.
NIH_ARCHIVES: tuple[Archive, ...] = (
    _archive(1, "vfk49d74nhbxq3nqjg0900w5nvkorp5c", 4999, "00001335_006.png"),
    _archive(2, "i28rlmbvmfjbl8p2n3ril0pptcmcu9d1", 10000, "00003923_013.png"),
    _archive(3, "f1t00wrtdk94satdfb9olcolqx20z2jp", 10000, "00006585_006.png"),
    _archive(4, "0aowwzs5lhjrceb3qp67ahp0rd1l1etg", 10000, "00009232_003.png"),
    _archive(5, "v5e3goj22zr6h8tzualxfsqlqaygfbsn", 10000, "00011558_007.png"),
    _archive(6, "asi7ikud9jwnkrnkj99jnpfkjdes7l6l", 10000, "00013774_025.png"),
    _archive(7, "jn1b4mw4n6lnh74ovmcjb8y48h8xj07n", 10000, "00016051_009.png"),
    _archive(8, "tvpxmn7qyrgl0w8wfh9kqfjskv6nmm1j", 10000, "00018387_034.png"),
    _archive(9, "upyy3ml7qdumlgk2rfcvlb9k6gvqq2pj", 10000, "00020945_049.png"),
    _archive(10, "l6nilvfa9cg3s28tqv1qc1olm3gnz54p", 10000, "00024717_000.png"),
    _archive(11, "hhq8fkdgvcari67vfhs7ppg2w6ni4jze", 10000, "00028173_002.png"),
    _archive(12, "ioqwiy20ihqwyr8pf4c24eazhh281pbu", 7121, "00030805_000.png"),
)

#: What to do about the split lists, which no archive and no package carries.
SPLIT_LISTS_HELP = (
    "the official split lists train_val_list.txt and test_list.txt are not in {out} and are not "
    "inside the image archives; training needs them (cral does not make up an 'official' split). "
    f"Download both from the NIH page {NIH_PAGE} or from the Kaggle copy {KAGGLE_PAGE} (with a "
    "Kaggle API token: `cral download --out {out} --source kaggle --metadata-only`) and put them "
    "into {out}. The image cache does not need them"
)

DATA_ENTRY = "Data_Entry_2017_v2020.csv"
DATA_ENTRY_2017 = "Data_Entry_2017.csv"
BBOX_LIST = "BBox_List_2017.csv"
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"

_MEMBER_RE = re.compile(r"^(?:\./)?images/(\d{8}_\d{3}\.png)$")
_ZIP_MEMBER_RE = re.compile(r"^(?:images_\d{3}/)?images/(\d{8}_\d{3}\.png)$")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_CHUNK = 1 << 18
_STATE_SAVE_SECONDS = 5.0
_MAX_WAIT = 60.0
_MARGIN = 1.05  # 5% on top of the size estimates
_UNKNOWN_SIZE_ALLOWANCE = 1.2  # an archive whose size the server has not given yet
_SLACK = 200_000_000  # and 200 MB for the small files


# --------------------------------------------------------------------------- parsing options


def parse_archives(spec: str | Sequence[int] | None, archives: Sequence[Archive] | None = None) -> tuple[int, ...]:
    """Turn ``--archives`` (``"1-12"``, ``"1,3,5"``, ``"2-4,7"``) into archive numbers.

    Args:
        spec: the text, a sequence of numbers, or None (all archives).
        archives: the archive table (default :data:`NIH_ARCHIVES`).

    Returns:
        The sorted, distinct archive numbers.

    Raises:
        ConfigError: not numbers or ranges, or a number that is not an archive.
    """
    archives = NIH_ARCHIVES if archives is None else archives
    known = [a.number for a in archives]
    lo, hi = min(known), max(known)
    hint = f"give archive numbers from {lo} to {hi} as a list or ranges, e.g. --archives 1-{hi} or 1,3,5"
    if spec is None:
        return tuple(known)
    numbers: list[int] = []
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",")]
        if not spec.strip() or any(not p for p in parts):
            raise ConfigError(f"--archives {spec!r} is empty or has an empty item: {hint}")
        for part in parts:
            m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
            if m is None:
                raise ConfigError(f"--archives {spec!r}: {part!r} is not a number or a range: {hint}")
            a, b = int(m.group(1)), int(m.group(2) or m.group(1))
            if a > b:
                raise ConfigError(f"--archives {spec!r}: the range {part!r} runs backwards: {hint}")
            numbers.extend(range(a, b + 1))
    else:
        for value in spec:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"archives={list(spec)!r}: {value!r} is not an archive number: {hint}")
            numbers.append(int(value))
        if not numbers:
            raise ConfigError(f"archives={list(spec)!r} is empty: {hint}")
    bad = sorted(set(numbers) - set(known))
    if bad:
        raise ConfigError(f"--archives {spec!r}: there is no archive {bad[0]} (NIH ships {len(known)}): {hint}")
    return tuple(sorted(set(numbers)))


def resolve_base_url(base_url: str | None = None) -> str:
    """Return the base URL of the archives: the argument, ``CRAL_NIH_BASE_URL``, or NIH's.

    Raises:
        ConfigError: the URL is not http(s).
    """
    for value, origin in ((base_url, "--base-url"), (os.environ.get(BASE_URL_ENV), BASE_URL_ENV)):
        if value is None or not str(value).strip():
            continue
        value = str(value).strip()
        if not re.match(r"^https?://[^/\s]+", value):
            raise ConfigError(
                f"{origin} {value!r} is not an http(s) URL: give the folder that holds the <id>.gz archives, "
                f"e.g. {NIH_BASE_URL}"
            )
        return value.rstrip("/")
    return NIH_BASE_URL


# --------------------------------------------------------------------------- small helpers


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    raise AssertionError  # pragma: no cover


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _existing_ancestor(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _free_bytes(path: Path) -> int:
    return int(shutil.disk_usage(_existing_ancestor(path)).free)


def _same_disk(a: Path, b: Path) -> bool:
    try:
        return _existing_ancestor(a).stat().st_dev == _existing_ancestor(b).stat().st_dev
    except OSError:  # pragma: no cover
        return True


# --------------------------------------------------------------------------- metadata


@dataclass
class MetadataReport:
    """What :func:`ensure_metadata` found and wrote.

    Attributes:
        written: files written now (from the torchxrayvision wheel or Kaggle).
        present: metadata files that were already there (left untouched).
        missing_lists: split lists still missing (``train_val_list.txt``, ``test_list.txt``).
    """

    written: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    missing_lists: list[str] = field(default_factory=list)


def _has_csv(out: Path) -> str | None:
    for name in (DATA_ENTRY, DATA_ENTRY_2017):
        if (out / name).is_file():
            return name
    return None


def ensure_metadata(out: str | os.PathLike) -> MetadataReport:
    """Write the release CSVs that ``out`` lacks from the torchxrayvision wheel; report the lists.

    ``Data_Entry_2017_v2020.csv`` is written when neither it nor ``Data_Entry_2017.csv`` is
    there, and ``BBox_List_2017.csv`` when it is missing, both byte for byte as the wheel
    carries them (NIH's header format). Files already in ``out`` are never replaced. The split
    lists are only looked for: see :data:`SPLIT_LISTS_HELP`.

    Args:
        out: the release folder (created if needed).

    Returns:
        A :class:`MetadataReport`.

    Raises:
        DataError: torchxrayvision (which carries the metadata) is not installed.
    """
    from .metadata import BBOX_FILE, METADATA_FILE, torchxrayvision_data_dir

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = MetadataReport()
    csv = _has_csv(out)
    if csv:
        report.present.append(csv)
    if (out / BBOX_LIST).is_file():
        report.present.append(BBOX_LIST)
    todo = [(target, source) for target, source in ((DATA_ENTRY, METADATA_FILE), (BBOX_LIST, BBOX_FILE))
            if not (target == DATA_ENTRY and csv) and not (target == BBOX_LIST and (out / BBOX_LIST).is_file())]
    if todo:
        folder = torchxrayvision_data_dir()
        for target, source in todo:
            path = folder / source
            if not path.is_file():
                raise DataError(
                    f"{path} is missing from the torchxrayvision package; reinstall it "
                    f"(pip install --force-reinstall torchxrayvision) or put NIH's {target} into {out}"
                )
            atomic_write_bytes(out / target, gzip.decompress(path.read_bytes()))
            report.written.append(target)
    for name in (TRAIN_VAL_LIST, TEST_LIST):
        if (out / name).is_file():
            report.present.append(name)
        else:
            report.missing_lists.append(name)
    return report


def archive_names(names: Iterable[str], archives: Sequence[Archive] | None = None) -> dict[int, list[str]]:
    """Split the release's image names into the archives that hold them.

    Args:
        names: the image names of the release CSV.
        archives: the archive table (default :data:`NIH_ARCHIVES`).

    Returns:
        Archive number -> its image names, sorted.

    Raises:
        DataError: a name falls after the last archive (the CSV is not ChestX-ray14's).
    """
    archives = NIH_ARCHIVES if archives is None else archives
    lasts = [a.last for a in archives]
    out: dict[int, list[str]] = {a.number: [] for a in archives}
    outside = []
    for name in sorted(str(n) for n in names):
        i = bisect.bisect_left(lasts, name)
        if i == len(lasts):
            outside.append(name)
        else:
            out[archives[i].number].append(name)
    if outside:
        raise DataError(
            f"{len(outside)} image names of the release CSV fall in none of the {len(archives)} archives "
            f"(e.g. {outside[0]!r}; the last archive ends with {lasts[-1]!r}): the CSV is not ChestX-ray14's "
            "(a synthetic release?); download into a folder without it, or move it away"
        )
    return out


# --------------------------------------------------------------------------- state file


class _State:
    """``DIR/.cral_download.json``: per archive, its size, the offset reached and where it is done."""

    def __init__(self, out: Path) -> None:
        self.path = out / STATE_FILE
        self.data: dict[str, Any] = {"format": STATE_FORMAT, "archives": {}}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT or not isinstance(
            data.get("archives"), dict
        ):
            # Unreadable or foreign: start a new one (the files on disk are the truth anyway).
            return
        self.data = data

    def entry(self, name: str) -> dict[str, Any]:
        return self.data["archives"].setdefault(name, {})

    def done_in(self, name: str) -> dict[str, str]:
        return self.entry(name).setdefault("done", {})

    def save(self) -> None:
        self.data["updated"] = _now()
        atomic_write_bytes(self.path, (json.dumps(self.data, indent=1, sort_keys=True) + "\n").encode("utf-8"))


# --------------------------------------------------------------------------- HTTP


class _Corrupt(Exception):
    """The archive's bytes are not a valid archive of the expected images."""


class _RemoteChanged(Exception):
    """The server's file is not the one the partial download came from."""


class _NetworkFailure(Exception):
    """Retries are exhausted (or the server refuses for good); the message says what to do."""


class _Retryable(Exception):
    pass


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/1000`` -> (100, 1000); ``bytes */1000`` -> (None, 1000)."""
    m = re.match(r"^\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*$", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


class _Fetcher:
    """Streams one URL from a byte offset; retries with back-off; resumes with Range."""

    def __init__(
        self,
        url: str,
        label: str,
        part: Path,
        *,
        total: int | None,
        retries: int,
        retry_wait: float,
        timeout: float,
        on_total: Callable[[int], None],
        log: Callable[[str], None],
    ) -> None:
        self.url = url
        self.label = label
        self.part = part
        self.total = total
        self.retries = retries
        self.retry_wait = retry_wait
        self.timeout = timeout
        self.on_total = on_total
        self.log = log
        self.range_ignored = False

    def _headers(self, offset: int) -> dict[str, str]:
        from .._version import __version__

        headers = {"User-Agent": f"cral_lib/{__version__} (cral download)", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        return headers

    def _open(self, offset: int):
        """Return ``(response, skip)``, or ``(None, 0)`` when the file is complete at ``offset``."""
        import http.client
        import urllib.error
        import urllib.request

        request = urllib.request.Request(self.url, headers=self._headers(offset))
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310 - http(s) only
        except urllib.error.HTTPError as exc:
            code = exc.code
            content_range = exc.headers.get("Content-Range") if exc.headers else None
            exc.close()
            if code == 416:
                _, total = _parse_content_range(content_range)
                if total is not None and total == offset:
                    self._set_total(total)
                    return None, 0
                raise _RemoteChanged(f"the server has {total} bytes, the partial download {offset}")
            if code in (408, 425, 429) or code >= 500:
                raise _Retryable(f"HTTP {code} {exc.reason}") from None
            raise _NetworkFailure(
                f"{self.url} answered HTTP {code} ({exc.reason}) for {self.label}: the link may have moved. "
                f"Check the NIH page {NIH_PAGE}, point --base-url (or {BASE_URL_ENV}) at a mirror, or use "
                "--source kaggle"
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise _Retryable(f"{type(exc).__name__}: {reason}") from None
        status = getattr(response, "status", 200)
        ctype = (response.headers.get("Content-Type") or "").lower()
        if ctype.startswith("text/html"):
            response.close()
            raise _Retryable(
                "the server sent a web page, not the archive (Box shows one when it limits downloads or a "
                "link has moved)"
            )
        skip = 0
        if status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                response.close()
                raise _Retryable(f"the server sent bytes from {start}, {offset} were asked for")
        elif status == 200:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if offset:
                skip = offset  # the server ignored Range: read the first bytes again and drop them
                if not self.range_ignored:
                    self.log(f"{self.label}: the server ignores Range requests; re-reading the first "
                             f"{_human(offset)} and discarding them")
                self.range_ignored = True
        else:
            response.close()
            raise _Retryable(f"unexpected HTTP status {status}")
        if total is not None:
            if self.total is not None and total != self.total:
                response.close()
                raise _RemoteChanged(f"the file on the server has {total} bytes, it had {self.total}")
            self._set_total(total)
        return response, skip

    def _set_total(self, total: int) -> None:
        if self.total != total:
            self.total = total
            self.on_total(total)

    def _wait(self, failures: int, offset: int, reason: str) -> None:
        if failures > self.retries:
            kept = (
                f"the {_human(offset)} received are kept in {self.part}: run the same command again to resume "
                "from there" if offset else "run the same command again later"
            )
            raise _NetworkFailure(
                f"downloading {self.label} from {self.url} failed: {failures} attempt(s) in a row ({reason}); "
                f"{kept} (--retries and --retry-wait give more patience)"
            )
        delay = min(_MAX_WAIT, self.retry_wait * 2 ** (failures - 1))
        self.log(f"{self.label}: {reason}; retry {failures} of {self.retries} in {delay:.1f} s")
        time.sleep(delay)

    def stream(self, offset: int) -> Iterator[bytes]:
        """Yield the bytes of the file from ``offset`` to its end, across retries."""
        import http.client

        failures = 0
        while True:
            if self.total is not None and offset >= self.total:
                if offset > self.total:
                    raise _RemoteChanged(f"the partial download has {offset} bytes, the file {self.total}")
                return
            try:
                response, skip = self._open(offset)
            except _Retryable as exc:
                failures += 1
                self._wait(failures, offset, str(exc))
                continue
            if response is None:
                return
            got = 0
            reason = None
            try:
                with response:
                    while skip:
                        dropped = response.read(min(skip, _CHUNK))
                        if not dropped:
                            break
                        skip -= len(dropped)
                    if skip:
                        reason = "the connection closed before the point of resumption"
                    else:
                        while True:
                            chunk = response.read(_CHUNK)
                            if not chunk:
                                break
                            offset += len(chunk)
                            got += len(chunk)
                            yield chunk
            except (OSError, http.client.HTTPException) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if reason is None:
                if self.total is None:
                    self._set_total(offset)  # no length given: the end of the body is the end
                    return
                if offset == self.total:
                    return
                reason = f"the connection closed after {_human(offset)} of {_human(self.total)}"
            if got:
                failures = 0  # progress was made: a fresh series of retries
            failures += 1
            self._wait(failures, offset, reason)


# --------------------------------------------------------------------------- byte sources


class _ArchiveSource(io.RawIOBase):
    """The bytes of one archive: the file on disk first, then the network (appended to the file).

    With ``fetcher=None`` the file is read as it is (a complete archive).
    """

    def __init__(self, path: Path, fetcher: _Fetcher | None, on_network: Callable[[int], None]) -> None:
        super().__init__()
        self._file = open(path, "r+b" if path.exists() else "w+b")
        self._pos = 0
        self._local = True
        self._fetcher = fetcher
        self._network: Iterator[bytes] | None = None
        self._on_network = on_network

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        size = _CHUNK if size is None or size < 0 else size
        if self._local:
            self._file.seek(self._pos)
            data = self._file.read(size)
            if data:
                self._pos += len(data)
                return data
            self._local = False
        if self._fetcher is None:
            return b""
        if self._network is None:
            self._file.seek(0, os.SEEK_END)
            self._network = self._fetcher.stream(self._pos)
        chunk = next(self._network, b"")
        if chunk:
            self._file.write(chunk)  # on disk before it is decoded
            self._pos += len(chunk)
            self._on_network(len(chunk))
        return chunk

    @property
    def position(self) -> int:
        return self._pos

    def close(self) -> None:
        if self._network is not None:
            self._network.close()
            self._network = None
        if not self._file.closed:
            self._file.flush()
            self._file.close()
        super().close()


class _Gunzip(io.RawIOBase):
    """Decompresses a gzip stream, checking each member's CRC-32 and length (tarfile's own
    ``r|gz`` does not check the CRC when reading). Output is produced in bounded steps."""

    def __init__(self, raw: Any, label: str) -> None:
        super().__init__()
        self._raw = raw
        self._label = label
        self._d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._buf = bytearray()
        self._input = b""  # compressed bytes read but not yet decompressed
        self._start = True
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._buf and not self._done:
            self._fill()
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        del self._buf[:n]
        return n

    def _more(self) -> bytes:
        data = self._raw.read(_CHUNK)
        if data and self._start:
            self._start = False
            if not data.startswith(b"\x1f\x8b"):
                what = "a web page" if data.lstrip()[:1] == b"<" else "not gzip data"
                raise _Corrupt(f"it is {what}, not a gzip-compressed tar (it starts with {data[:16]!r})")
        return data

    def _fill(self) -> None:
        data, self._input = self._input, b""
        if not data:
            data = self._more()
            if not data:
                if self._d.eof:
                    self._done = True
                    return
                raise _Corrupt("it is empty" if self._start else "it ends early (the gzip stream is truncated)")
        if self._d.eof:  # after a complete member: another member, zero padding, or garbage
            while len(data) < 2 and (more := self._more()):
                data += more
            if data.startswith(b"\x1f\x8b"):
                self._d = zlib.decompressobj(zlib.MAX_WBITS | 16)
            elif not data.strip(b"\0"):
                return  # zero padding after the last member
            else:
                raise _Corrupt("it has trailing bytes after the gzip stream")
        try:
            self._buf += self._d.decompress(data, 4 * _CHUNK)
        except zlib.error as exc:
            raise _Corrupt(f"its gzip data is damaged ({exc})") from None
        self._input = self._d.unused_data if self._d.eof else self._d.unconsumed_tail


def _check_png(data: bytes, label: str) -> None:
    """Raise :class:`_Corrupt` unless ``data`` is a whole PNG whose every chunk CRC is right."""
    if not data.startswith(_PNG_MAGIC):
        raise _Corrupt(f"{label} is not a PNG")
    pos, end = len(_PNG_MAGIC), len(data)
    first = True
    while pos + 12 <= end:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        stop = pos + 8 + length
        if stop + 4 > end:
            break
        if first and kind != b"IHDR":
            raise _Corrupt(f"{label} is a damaged PNG (no IHDR chunk first)")
        first = False
        crc = int.from_bytes(data[stop : stop + 4], "big")
        if zlib.crc32(data[pos + 4 : stop]) != crc:
            raise _Corrupt(f"{label} is a damaged PNG (CRC error in a {kind.decode('latin-1')} chunk)")
        pos = stop + 4
        if kind == b"IEND":
            return
    raise _Corrupt(f"{label} is a truncated PNG (no IEND chunk)")


# --------------------------------------------------------------------------- where images go


def _decode(data: bytes, label: str, size: int):
    from .images import open_grey, resize_grey

    _check_png(data, label)
    try:
        image = open_grey(io.BytesIO(data), name=label)
    except DataError as exc:
        raise _Corrupt(str(exc)) from None
    return resize_grey(image, size), image.size


def _cache_target(size: int, path: Path) -> str:
    """How the state file names a cache an archive is done in."""
    return f"cache {int(size)} {Path(path).absolute()}"


class _CacheSink:
    """Decodes PNGs on threads and writes their rows into a :class:`CacheWriter` (on this thread)."""

    kind = "cache"

    def __init__(self, writer: Any, workers: int) -> None:
        self.writer = writer
        self.workers = max(0, int(workers))
        self._pool = None
        self._pending: deque = deque()
        if self.workers > 0:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="cral-decode")

    def target(self) -> str:
        return _cache_target(self.writer.size, self.writer.path)

    def wants(self, archive: Archive, name: str, size: int) -> bool:
        return not self.writer.is_done(name)

    def todo(self, archive: Archive, names: Sequence[str]) -> int:
        return sum(1 for n in names if not self.writer.is_done(n))

    def has_all(self, archive: Archive, names: Sequence[str]) -> bool:
        return self.todo(archive, names) == 0

    def put(self, archive: Archive, name: str, data: bytes, label: str) -> None:
        if self._pool is None:
            image, original = _decode(data, label, self.writer.size)
            self.writer.write(name, image, original_size=original)
            return
        self._pending.append((name, self._pool.submit(_decode, data, label, self.writer.size)))
        while len(self._pending) > 2 * self.workers:
            self._take()

    def _take(self) -> None:
        name, future = self._pending.popleft()
        image, original = future.result()
        self.writer.write(name, image, original_size=original)

    def finish(self) -> None:
        """Write every decoded image; raise the first decoding error after writing the others."""
        error = None
        while self._pending:
            try:
                self._take()
            except _Corrupt as exc:
                error = error or exc
        if error is not None:
            raise error

    def drop(self) -> None:
        """After an error: keep the images decoded so far, forget the rest."""
        try:
            self.finish()
        except _Corrupt:
            pass

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class _LayoutSink:
    """Writes PNGs as NIH ships them: ``DIR/images_NNN/images/NAME``, each file atomically."""

    kind = "layout"

    def __init__(self, out: Path) -> None:
        self.out = out

    def target(self) -> str:
        return "layout"

    def folder(self, archive: Archive) -> Path:
        return self.out / archive.name / "images"

    def wants(self, archive: Archive, name: str, size: int) -> bool:
        path = self.folder(archive) / name
        try:
            have = path.stat().st_size
        except FileNotFoundError:
            return True
        if have != size:
            raise DataError(
                f"{path} exists with {have} bytes but {archive.file_name} holds {size} for it: it was not "
                "written by cral download (which writes whole files only); move it away, then run again"
            )
        return False

    def todo(self, archive: Archive, names: Sequence[str]) -> int:
        folder = self.folder(archive)
        return sum(1 for n in names if not (folder / n).is_file())

    def has_all(self, archive: Archive, names: Sequence[str]) -> bool:
        return self.todo(archive, names) == 0

    def put(self, archive: Archive, name: str, data: bytes, label: str) -> None:
        _check_png(data, label)
        folder = self.folder(archive)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.cral-tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, folder / name)

    def finish(self) -> None:
        pass

    def drop(self) -> None:
        pass

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- reading archives


def _read_tar(stream: Any, archive: Archive, expected: set[str], sink: Any, bar: Any, label: str) -> int:
    """Read a gzip tar stream into ``sink``; check names, count, gzip CRC. Returns images read."""
    seen: set[str] = set()
    gz = io.BufferedReader(_Gunzip(stream, label), buffer_size=_CHUNK)
    try:
        with tarfile.open(fileobj=gz, mode="r|") as tar:
            for member in tar:
                if member.isdir():
                    continue
                m = _MEMBER_RE.match(member.name)
                if not member.isfile() or m is None:
                    raise _Corrupt(f"it holds {member.name!r}, not an image images/NNNNNNNN_NNN.png")
                name = m.group(1)
                if name not in expected:
                    raise _Corrupt(
                        f"it holds {name}, which is not one of the {len(expected)} images of {archive.name} "
                        "listed in the release CSV (another archive served under this name?)"
                    )
                if name in seen:
                    raise _Corrupt(f"it holds {name} twice")
                seen.add(name)
                if sink.wants(archive, name, member.size):
                    data = tar.extractfile(member).read()
                    sink.put(archive, name, data, f"{label}:{member.name}")
                    bar.update(1)
        while gz.read(_CHUNK):
            pass  # to the end of the gzip stream: checks its CRC-32 and length
    except tarfile.TarError as exc:
        raise _Corrupt(f"its tar data is damaged ({exc})") from None
    except EOFError as exc:  # pragma: no cover - tarfile raises it for some truncations
        raise _Corrupt(f"it ends early ({exc})") from None
    sink.finish()
    if len(seen) != len(expected):
        missing = sorted(expected - seen)
        raise _Corrupt(f"it holds {len(seen)} of the {len(expected)} expected images (e.g. {missing[0]} is missing)")
    return len(seen)


# --------------------------------------------------------------------------- disk space


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


def _allocated(path: Path) -> int:
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
    parts_out = [f"{_human(plan.archive_bytes)} for the archive being fetched"]
    if plan.image_bytes:
        parts_out.append(f"{_human(plan.image_bytes)} of PNGs")
    if plan.cache_bytes and cache_dir is not None:
        if _same_disk(out, cache_dir):
            in_out += plan.cache_bytes
            parts_out.append(f"{_human(plan.cache_bytes)} of cache")
        else:
            needs.append((cache_dir, int(plan.cache_bytes * _MARGIN) + _SLACK, f"{_human(plan.cache_bytes)} of cache"))
    needs.insert(0, (out, int(in_out * _MARGIN) + _SLACK, " + ".join(parts_out)))
    for folder, need, what in needs:
        free = _free_bytes(folder)
        if need > free:
            other = (
                f"with --cache-only it would need about {_human(plan.cache_only_bytes)}"
                if not cache_only
                else f"without --cache-only it would need about {_human(plan.layout_bytes)}"
            )
            raise DataError(
                f"not enough free disk space in {_existing_ancestor(folder)}: this download needs about "
                f"{_human(need)} more ({what}, plus 5%) and {_human(free)} is free ({other}). Free some space, "
                "put the cache on another disk with --cache DIR, fetch fewer archives at a time with --archives, "
                "or skip this check with --no-space-check"
            )


# --------------------------------------------------------------------------- results


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


# --------------------------------------------------------------------------- the download


def _local_archive(out: Path, archive: Archive) -> Path | None:
    """A complete archive a user put into ``out`` (our name or NIH's own ``images_01.tar.gz``)."""
    for name in (archive.file_name, f"images_{archive.number:02d}.tar.gz"):
        if (out / name).is_file():
            return out / name
    return None


def _open_cache_writer(path: Path, names: Sequence[str], size: int, overwrite: bool):
    from .cache import CacheWriter

    return CacheWriter(path, names, size, overwrite=overwrite)


def _complete_cache(path: Path, names: Sequence[str], size: int) -> bool:
    from .cache import ImageCache, names_fingerprint

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
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"--size {size!r} must be a positive number of pixels (256 is the paper's)")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"--retries {retries!r} must be 0 or more")
    if not retry_wait >= 0:
        raise ConfigError(f"--retry-wait {retry_wait!r} must be 0 or more seconds")
    if not timeout > 0:
        raise ConfigError(f"--timeout {timeout!r} must be more than 0 seconds")
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
            from tqdm.auto import tqdm

            log = tqdm.write
        else:
            log = print
    run = _Run(
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
class _Run:
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

    def _cache_path(self) -> Path:
        from .cache import default_cache_dir

        return self.cache_dir if self.cache_dir is not None else default_cache_dir(self.out, self.size)

    def _names(self) -> tuple[list[str], dict[int, list[str]]]:
        from .cache import release_names

        names = [str(n) for n in release_names(self.out)]
        return names, archive_names(names, self.table)

    def _archives(self) -> list[Archive]:
        return [a for a in self.table if a.number in self.selected]

    def _sink(self, names: Sequence[str], result: DownloadResult) -> Any:
        """Where images go: the NIH layout, a cache writer, or None (the cache is complete)."""
        if not self.cache_only:
            return _LayoutSink(self.out)
        path = self._cache_path()
        result.cache = path
        result.cache_total = len(names)
        if _complete_cache(path, names, self.size):
            return None
        return _CacheSink(_open_cache_writer(path, names, self.size, self.overwrite), self.workers)

    def _plan(self, pending: list[tuple[Archive, int, int]], state: _State, names: Sequence[str]) -> DiskPlan:
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
            if _local_archive(self.out, archive) is not None:
                total = have = 0
            # One archive may be well above the average size: allow 20% until the server says.
            remaining.append(max(0, (total if known else int(total * _UNKNOWN_SIZE_ALLOWANCE)) - have))
        plan.archive_bytes = (sum(remaining) if self.keep_archives else max(remaining, default=0))
        cache_full = len(names) * self.size * self.size
        cache_file = self._cache_path() / "images.npy"
        cache_todo = max(0, cache_full - _allocated(cache_file))
        plan.cache_only_bytes = int((plan.archive_bytes + cache_todo) * _MARGIN) + _SLACK
        plan.layout_bytes = int((plan.archive_bytes + plan.image_bytes) * _MARGIN) + _SLACK
        if self.cache_only:
            plan.image_bytes = 0
            plan.cache_bytes = cache_todo
        return plan

    def _report_lists(self, result: DownloadResult) -> None:
        if result.metadata.missing_lists:
            result.messages.append(SPLIT_LISTS_HELP.format(out=self.out))

    def _finish_cache(self, sink: Any, result: DownloadResult) -> None:
        from .cache import release_fingerprint

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
            f"`{self._command()}` (without --archives) to fetch only what is missing. "
            "To train on a subset instead, download without --cache-only and build the cache with "
            f"`cral prepare --data {self.out} --lenient`"
        )

    def _command(self) -> str:
        """The command that fetches everything into the same place."""
        words = ["cral", "download", "--out", str(self.out), "--cache-only"]
        if self.size != 256:
            words += ["--size", str(self.size)]
        if self.cache_dir is not None:
            words += ["--cache", str(self.cache_dir)]
        return " ".join(words)

    def _bars(self, total_images: int, done_images: int):
        from tqdm.auto import tqdm

        images = tqdm(total=total_images, initial=done_images, unit="img", desc="images", position=0,
                      disable=not self.progress, dynamic_ncols=True, smoothing=0.05)
        return images

    # -- NIH

    def nih(self, *, metadata_only: bool) -> DownloadResult:
        result = DownloadResult(out=self.out)
        result.metadata = ensure_metadata(self.out)
        for name in result.metadata.written:
            self.log(f"wrote {self.out / name} (from the NIH metadata the torchxrayvision package carries)")
        if metadata_only:
            self._report_lists(result)
            return result
        names, per_archive = self._names()
        state = _State(self.out)
        self._precheck(names, per_archive, state)  # before anything is created
        sink = self._sink(names, result)
        try:
            self._nih_archives(names, per_archive, state, sink, result)
        finally:
            if sink is not None:
                sink.close()
                if sink.kind == "cache":
                    sink.writer.close()
        if self.cache_only and sink is None:
            result.cache_complete = True
            result.cache_done = len(names)
        self._report_lists(result)
        return result

    def _precheck(self, names: Sequence[str], per_archive: dict[int, list[str]], state: _State) -> None:
        """Say what will be fetched and check free disk space (estimates from the files and the state)."""
        if self.cache_only:
            if _complete_cache(self._cache_path(), names, self.size):
                return
            target = _cache_target(self.size, self._cache_path())
            pending = [
                (a, len(per_archive[a.number]), len(per_archive[a.number])) for a in self._archives()
                if target not in state.data["archives"].get(a.name, {}).get("done", {})
            ]
        else:
            layout = _LayoutSink(self.out)
            pending = [(a, layout.todo(a, per_archive[a.number]), len(per_archive[a.number])) for a in self._archives()]
            pending = [p for p in pending if p[1]]
        if not pending:
            return
        plan = self._plan(pending, state, names)
        need, other = (
            (plan.cache_only_bytes, plan.layout_bytes) if self.cache_only else (plan.layout_bytes, plan.cache_only_bytes)
        )
        self.log(
            f"cral download: {len(pending)} archive(s) to fetch from {self.base_url} "
            f"({', '.join(p[0].name for p in pending)}); "
            + (f"cache {self._cache_path()} ({self.size} px); " if self.cache_only else f"PNGs into {self.out}; ")
            + f"about {_human(need)} of free disk needed ({'without' if self.cache_only else 'with'} "
            f"--cache-only: about {_human(other)})"
        )
        if self.space_check:
            cache_dir = self._cache_path() if self.cache_only else None
            check_disk_space(plan, self.out, cache_dir, cache_only=self.cache_only)

    def _nih_archives(self, names: list[str], per_archive: dict[int, list[str]], state: _State, sink: Any,
                      result: DownloadResult) -> None:
        target = sink.target() if sink is not None else None
        pending: list[tuple[Archive, int, int]] = []
        for archive in self._archives():
            expected = per_archive[archive.number]
            if sink is None or sink.has_all(archive, expected):
                result.done.append(archive.name)
                if sink is not None and target not in state.done_in(archive.name):
                    state.done_in(archive.name)[target] = _now()
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
                self._finish_cache(sink, result)
            return
        total_images = sum(len(per_archive[a.number]) for a in self._archives())
        todo_images = sum(p[1] for p in pending)
        bar = self._bars(total_images, total_images - todo_images)
        try:
            for archive, _, _ in pending:
                try:
                    self._one_archive(archive, set(per_archive[archive.number]), state, sink, bar)
                except _Corrupt as exc:
                    result.failed[archive.name] = str(exc)
                    continue
                except _NetworkFailure as exc:
                    raise DataError(str(exc) + self._kept_note(result)) from None
                result.done.append(archive.name)
                result.fetched.append(archive.name)
        finally:
            bar.close()
            state.save()
        if sink.kind == "cache":
            self._finish_cache(sink, result)
        if result.failed:
            lines = "; ".join(f"{name}: {why}" for name, why in result.failed.items())
            raise DataError(
                f"{len(result.failed)} archive(s) failed verification and were not marked done ({lines}). Their "
                "downloads were deleted: run the same command again to fetch them afresh "
                f"({len(result.done)} archive(s) are done and stay done" + (
                    "; images already in the cache are kept)" if self.cache_only else ")")
            )
        self.log(f"all {len(self._archives())} archive(s) asked for are in")
        if not self.cache_only:
            result.messages.append(
                f"the PNGs are in {self.out}/images_NNN/images/; build the image cache with "
                f"`cral prepare --data {self.out}`" + (" --lenient (some archives are not in)"
                                                       if len(self._archives()) < len(self.table) else "")
            )

    def _kept_note(self, result: DownloadResult) -> str:
        if not result.done:
            return ""
        return f" ({', '.join(result.done)} are done and stay done)"

    def _drop_part(self, archive: Archive, state: _State) -> None:
        part = self.out / f"{archive.file_name}.part"
        if part.exists():
            part.unlink()
        entry = state.entry(archive.name)
        entry.pop("offset", None)

    def _one_archive(self, archive: Archive, expected: set[str], state: _State, sink: Any, bar: Any) -> None:
        """Fetch (or read from disk), check and store one archive; mark it done. Raises :class:`_Corrupt`."""
        local = _local_archive(self.out, archive)
        part = self.out / f"{archive.file_name}.part"
        entry = state.entry(archive.name)
        for attempt in range(2):  # a second time only when the file on the server changed
            try:
                self._read_archive(archive, expected, local, part, entry, state, sink, bar)
                break
            except _RemoteChanged as exc:
                part.unlink(missing_ok=True)
                entry.pop("total", None)
                entry.pop("offset", None)
                if attempt == 0:
                    self.log(f"{archive.name}: {exc}; the partial download does not fit it: starting it again")
                    continue
                raise _Corrupt(f"{exc}; its partial download was deleted") from None
            except _Corrupt as exc:
                if local is not None:
                    raise _Corrupt(f"{local} is damaged: {exc}. It was left as it is: delete or replace it "
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
        state.done_in(archive.name)[sink.target()] = _now()
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
                      entry: dict[str, Any], state: _State, sink: Any, bar: Any) -> None:
        """One pass over an archive: the file on disk, then (unless ``local``) the network."""
        from tqdm.auto import tqdm

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
            fetcher = _Fetcher(url, archive.file_name, part, total=total, retries=self.retries,
                               retry_wait=self.retry_wait, timeout=self.timeout, on_total=on_total, log=self.log)
        source = _ArchiveSource(local if local is not None else part, fetcher, on_network)
        try:
            _read_tar(source, archive, expected, sink, bar, archive.file_name)
        except BaseException:
            sink.drop()  # images decoded before the error passed their own checks: keep them
            raise
        finally:
            source.close()
            byte_bar.close()

    # -- Kaggle

    def kaggle(self, *, metadata_only: bool) -> DownloadResult:
        result = DownloadResult(out=self.out)
        exe = _kaggle_executable()
        _check_kaggle_token()
        if metadata_only:
            result.metadata = self._kaggle_metadata(exe)
            self._report_lists(result)
            return result
        state = _State(self.out)
        zip_path = self.out / KAGGLE_ZIP
        kaggle_entry = state.data.setdefault("kaggle", {})
        ours = bool(kaggle_entry.get("downloaded_by_cral"))
        if self.space_check:
            # Estimates: the zip (unless there), then the PNGs or the cache (less what is there).
            total = sum(a.approx_bytes for a in self.table)
            zip_bytes = 0 if zip_path.exists() else total
            cache_full = self.size * self.size * sum(a.images for a in self.table)
            cache_todo = max(0, cache_full - _allocated(self._cache_path() / "images.npy"))
            plan = DiskPlan(archive_bytes=zip_bytes, image_bytes=0 if self.cache_only else total,
                            cache_bytes=cache_todo if self.cache_only else 0)
            plan.cache_only_bytes = int((zip_bytes + cache_todo) * _MARGIN) + _SLACK
            plan.layout_bytes = int((zip_bytes + total) * _MARGIN) + _SLACK
            check_disk_space(plan, self.out, self._cache_path() if self.cache_only else None,
                             cache_only=self.cache_only)
        if not zip_path.exists():
            self.log(f"cral download: fetching the Kaggle copy ({KAGGLE_DATASET}, about 42 GB) with the kaggle "
                     "command line")
            _run_kaggle(exe, ["datasets", "download", "-d", KAGGLE_DATASET, "-p", str(self.out)])
            if not zip_path.is_file():
                raise DataError(
                    f"the kaggle command line finished but {zip_path} is not there: check its messages above; run "
                    f"`kaggle datasets download -d {KAGGLE_DATASET} -p {self.out}` by hand to see them"
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
            result.metadata = self._zip_metadata(archive_zip)
            names, per_archive = self._names()
            sink = self._sink(names, result)
            try:
                self._zip_archives(archive_zip, per_archive, state, sink, result)
            finally:
                if sink is not None:
                    sink.close()
                    if sink.kind == "cache":
                        sink.writer.close()
            if self.cache_only and sink is None:
                result.cache_complete = True
                result.cache_done = len(names)
        state.save()
        all_done = len(result.done) == len(self.table) and not result.failed
        if ours and all_done and not self.keep_archives:
            zip_path.unlink()
            state.data.pop("kaggle", None)
            state.save()
            self.log(f"deleted {zip_path} (every image is in)")
        self._report_lists(result)
        if result.failed:
            lines = "; ".join(f"{name}: {why}" for name, why in result.failed.items())
            raise DataError(
                f"{len(result.failed)} folder(s) of {zip_path} failed verification ({lines}); delete {zip_path} "
                "and run again to download it afresh (finished folders stay done)"
            )
        return result

    def _kaggle_metadata(self, exe: str) -> MetadataReport:
        report = MetadataReport()
        wanted = []
        if _has_csv(self.out):
            report.present.append(_has_csv(self.out))
        else:
            wanted.append(DATA_ENTRY_2017)
        for name in (BBOX_LIST, TRAIN_VAL_LIST, TEST_LIST):
            (report.present if (self.out / name).is_file() else wanted).append(name)
        for name in wanted:
            _run_kaggle(exe, ["datasets", "download", "-d", KAGGLE_DATASET, "-f", name, "-p", str(self.out)])
            zipped = self.out / f"{name}.zip"
            if zipped.is_file():
                with zipfile.ZipFile(zipped) as z:
                    members = [m for m in z.namelist() if Path(m).name == name]
                    if not members:
                        raise DataError(f"{zipped} (from kaggle) does not hold {name}: delete it and run again")
                    atomic_write_bytes(self.out / name, z.read(members[0]))
                zipped.unlink()
            if not (self.out / name).is_file():
                raise DataError(
                    f"the kaggle command line did not write {self.out / name}: run `kaggle datasets download -d "
                    f"{KAGGLE_DATASET} -f {name} -p {self.out}` by hand to see why"
                )
            report.written.append(name)
            self.log(f"wrote {self.out / name} (from Kaggle)")
        report.missing_lists = [n for n in (TRAIN_VAL_LIST, TEST_LIST) if not (self.out / n).is_file()]
        return report

    def _zip_metadata(self, archive_zip: zipfile.ZipFile) -> MetadataReport:
        report = MetadataReport()
        by_name = {Path(m).name: m for m in archive_zip.namelist() if "/" not in m.strip("/")}
        targets = [BBOX_LIST, TRAIN_VAL_LIST, TEST_LIST]
        csv = _has_csv(self.out)
        if csv:
            report.present.append(csv)
        else:
            targets.insert(0, DATA_ENTRY if DATA_ENTRY in by_name else DATA_ENTRY_2017)
        for name in targets:
            if (self.out / name).is_file():
                report.present.append(name)
            elif name in by_name:
                atomic_write_bytes(self.out / name, archive_zip.read(by_name[name]))
                report.written.append(name)
        if not _has_csv(self.out):
            report.written.extend(ensure_metadata(self.out).written)
        report.missing_lists = [n for n in (TRAIN_VAL_LIST, TEST_LIST) if not (self.out / n).is_file()]
        return report

    def _zip_archives(self, archive_zip: zipfile.ZipFile, per_archive: dict[int, list[str]], state: _State,
                      sink: Any, result: DownloadResult) -> None:
        """Read the zip's images archive by archive (by name: the zip's own folders are not relied on)."""
        infos: dict[str, zipfile.ZipInfo] = {}
        for info in archive_zip.infolist():
            m = _ZIP_MEMBER_RE.match(info.filename)
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
                f"{unknown[0]}): use the CSV of the same copy (move the CSV in {self.out} away and run again)"
            )
        total_images = sum(len(per_archive[a.number]) for a in self._archives())
        todo = 0 if sink is None else sum(sink.todo(a, per_archive[a.number]) for a in self._archives())
        bar = self._bars(total_images, total_images - todo)
        try:
            for archive in self._archives():
                expected = per_archive[archive.number]
                if sink is None or sink.has_all(archive, expected):
                    result.done.append(archive.name)
                    continue
                try:
                    self._zip_images(archive_zip, archive, expected, infos, sink, bar)
                except _Corrupt as exc:
                    sink.drop()
                    result.failed[archive.name] = str(exc)
                    continue
                state.done_in(archive.name)[sink.target()] = _now()
                state.save()
                result.done.append(archive.name)
                result.fetched.append(archive.name)
        finally:
            bar.close()
        if sink is not None and sink.kind == "cache":
            self._finish_cache(sink, result)

    def _zip_images(self, archive_zip: zipfile.ZipFile, archive: Archive, expected: list[str],
                    infos: dict[str, zipfile.ZipInfo], sink: Any, bar: Any) -> None:
        missing = [n for n in expected if n not in infos]
        if missing:
            raise _Corrupt(f"the zip holds {len(expected) - len(missing)} of its {len(expected)} images "
                           f"(e.g. {missing[0]} is missing)")
        for name in expected:
            info = infos[name]
            if sink.wants(archive, name, info.file_size):
                try:
                    data = archive_zip.read(info)  # checks the member's CRC-32
                except (zipfile.BadZipFile, zlib.error, OSError) as exc:
                    raise _Corrupt(f"{info.filename} is damaged ({exc})") from None
                sink.put(archive, name, data, f"{KAGGLE_ZIP}:{info.filename}")
                bar.update(1)
        sink.finish()


# --------------------------------------------------------------------------- the kaggle command line

_KAGGLE_INSTALL = (
    "install it with `pip install kaggle` and put an API token (kaggle.com -> Settings -> API -> Create New Token) "
    "into ~/.kaggle/kaggle.json (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY"
)


def _kaggle_executable() -> str:
    exe = shutil.which("kaggle")
    if exe is None:
        raise DataError(f"--source kaggle needs the `kaggle` command line, which is not on PATH: {_KAGGLE_INSTALL}")
    return exe


def _check_kaggle_token() -> None:
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


def _run_kaggle(exe: str, args: list[str]) -> None:
    try:
        proc = subprocess.run([exe, *args], check=False)
    except OSError as exc:
        raise DataError(f"cannot run {exe} ({exc}): {_KAGGLE_INSTALL}") from None
    if proc.returncode != 0:
        raise DataError(
            f"`kaggle {' '.join(args)}` failed with status {proc.returncode} (see its message above). Common causes: "
            f"no or an expired API token, or the dataset's terms not accepted on {KAGGLE_PAGE}"
        )


__all__ = [
    "Archive",
    "BASE_URL_ENV",
    "DiskPlan",
    "DownloadResult",
    "KAGGLE_DATASET",
    "KAGGLE_PAGE",
    "MetadataReport",
    "NIH_ARCHIVES",
    "NIH_BASE_URL",
    "NIH_PAGE",
    "SPLIT_LISTS_HELP",
    "STATE_FILE",
    "archive_names",
    "check_disk_space",
    "download",
    "ensure_metadata",
    "parse_archives",
    "resolve_base_url",
]
