"""NIH's release of ChestX-ray14: its 12 image archives, their links, and the metadata files.

This module imports nothing heavy, so that ``cral download --help`` can show its facts.

The table of archives (:data:`NIH_ARCHIVES`) says which image names each holds; the metadata
CSVs that no archive holds are written from the copies the torchxrayvision wheel carries
(:func:`ensure_metadata`); the official split lists are not shipped anywhere offline, and
:data:`SPLIT_LISTS_HELP` says where to get them.
"""

from __future__ import annotations

import bisect
import gzip
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .._io import atomic_write_bytes
from ..data.files import BBOX_CSV, CSV_NAMES, DATA_ENTRY, TEST_LIST, TRAIN_VAL_LIST
from ..data.wheel import BBOX_FILE, METADATA_FILE, torchxrayvision_data_dir
from ..errors import ConfigError, DataError

#: Where NIH's static links live; ``--base-url`` or ``CRAL_NIH_BASE_URL`` point elsewhere.
NIH_BASE_URL = "https://nihcc.box.com/shared/static"
BASE_URL_ENV = "CRAL_NIH_BASE_URL"
#: The NIH download page and the Kaggle copy of the dataset.
NIH_PAGE = "https://nihcc.app.box.com/v/ChestXray-NIHCC"
KAGGLE_PAGE = "https://www.kaggle.com/datasets/nih-chest-xrays/data"
KAGGLE_DATASET = "nih-chest-xrays/data"
#: The zip ``kaggle datasets download -d nih-chest-xrays/data`` writes.
KAGGLE_ZIP = "data.zip"
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

#: The metadata files of a release folder (names from :mod:`cral_lib.data.files`).
DATA_ENTRY_2017 = CSV_NAMES[1]
BBOX_LIST = BBOX_CSV


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


def has_csv(out: Path) -> str | None:
    """The metadata CSV a folder already holds (its name), or None."""
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
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = MetadataReport()
    csv = has_csv(out)
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




__all__ = [
    "Archive",
    "BASE_URL_ENV",
    "KAGGLE_DATASET",
    "KAGGLE_PAGE",
    "KAGGLE_ZIP",
    "MetadataReport",
    "NIH_ARCHIVES",
    "NIH_BASE_URL",
    "NIH_PAGE",
    "SOURCES",
    "SPLIT_LISTS_HELP",
    "archive_names",
    "ensure_metadata",
    "has_csv",
    "parse_archives",
    "resolve_base_url",
]
