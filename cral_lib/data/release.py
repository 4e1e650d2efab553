"""The readers of a ChestX-ray14 release's files (their names and headers are in ``files.py``).

The layout of a release folder is described in :mod:`cral_lib.data.nih`. Everything that reads
or writes these files takes their names and headers from :mod:`cral_lib.data.files`: the reader (:class:`cral_lib.data.ChestXray14`),
the image cache, the synthetic writer (:mod:`cral_lib.synthetic`) and the downloader
(:mod:`cral_lib.fetch`).
"""

from __future__ import annotations

import functools
import gzip
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import CLASSES, NO_FINDING
from ..errors import DataError
from .files import BOX_LABEL_ALIASES, CSV_COLUMNS, CSV_NAMES, DATA_ENTRY_HEADER

_REQUIRED_COLUMNS = 7

_CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}
_KNOWN_LABELS = ", ".join((*CLASSES, NO_FINDING))


def find_csv(root: str | os.PathLike) -> Path:
    """Return the metadata CSV of a release folder.

    Args:
        root: the release folder.

    Returns:
        ``ROOT/Data_Entry_2017_v2020.csv`` if present, else ``ROOT/Data_Entry_2017.csv``.

    Raises:
        DataError: neither file exists.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"data folder not found: {root}. Pass the folder of a ChestX-ray14 release "
            "(download it with `cral download`, or make a synthetic one with `cral synth --out DIR`)"
        )
    for name in CSV_NAMES:
        if (root / name).is_file():
            return root / name
    raise DataError(
        f"no {CSV_NAMES[1]} (or {CSV_NAMES[0]}) in {root}: it is the metadata file of the NIH "
        "release; put it in that folder (it ships next to the images_NNN archives) or point "
        "--data at the folder that holds it"
    )


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def read_data_entry(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``Data_Entry_2017.csv`` (or its v2020 copy) into a DataFrame.

    Handles the header whose bracketed pairs span two columns and an optional trailing
    empty column. Numbers are parsed (ages like ``058Y`` of old copies too).

    Args:
        path: the CSV file.

    Returns:
        A DataFrame with the columns of :data:`CSV_COLUMNS` that the file has, in file order,
        and a RangeIndex.

    Raises:
        DataError: the file is missing, empty, not this CSV, or a value cannot be parsed.
    """
    path = Path(path)
    return _read_data_entry_cached(*_file_key(path)).copy()


def _header_columns(header: str, path: Any) -> list[str]:
    """The column names of the metadata CSV's header (the bracketed pairs split in two, as :data:`CSV_COLUMNS`).

    Raises:
        DataError: a required column is missing (named), or a name appears twice.
    """
    tokens = [t.strip() for t in header.split(",")]
    columns: list[str] = []
    i = 0
    while i < len(tokens):
        pair = re.match(r"^(\w+)\[(\w+)$", tokens[i])
        end = re.match(r"^(\w+)\]$", tokens[i + 1]) if i + 1 < len(tokens) else None
        if pair and end:
            stem = pair.group(1)
            columns += [stem + pair.group(2)[:1].upper() + pair.group(2)[1:], stem + end.group(1)[:1].upper() + end.group(1)[1:]]
            i += 2
        else:
            columns.append(tokens[i] or f"(unnamed {i + 1})")
            i += 1
    if "Image Index" not in columns or "Finding Labels" not in columns:
        raise DataError(
            f"{path} does not look like Data_Entry_2017.csv: its header starts with "
            f"{header[:60]!r}, expected 'Image Index,Finding Labels,...'. Use the metadata CSV of "
            "the NIH release"
        )
    missing = [c for c in CSV_COLUMNS[:_REQUIRED_COLUMNS] if c not in columns]
    if missing:
        raise DataError(
            f"{path} has no column {', '.join(repr(c) for c in missing)} (its header: {header[:160]!r}; "
            f"expected {DATA_ENTRY_HEADER!r}): restore the file from the NIH release"
        )
    twice = sorted({c for c in columns if columns.count(c) > 1 and c in CSV_COLUMNS})
    if twice:
        raise DataError(f"{path} names the column {twice[0]!r} twice in its header: restore the file from the NIH release")
    return columns


@functools.lru_cache(maxsize=4)
def _read_data_entry_cached(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    # Keyed on (path, mtime, size): reading train, val and test parses the file once.
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
            header = f.readline().strip()
        columns = _header_columns(header, path)
        raw = pd.read_csv(
            path, header=None, skiprows=1, dtype=str, keep_default_na=False, na_filter=False,
            encoding="utf-8-sig", skipinitialspace=True,
        )
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start} cannot be "
            "decoded): it is damaged or was saved in another encoding; restore the file from the NIH release"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} has a header but no rows: restore the file from the NIH release") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"cannot parse {path}: {exc}. Restore the file from the NIH release") from None
    # Drop trailing columns that are empty in every row (the "trailing comma" copies).
    while raw.shape[1] > len(columns) and (raw.iloc[:, -1] == "").all():
        raw = raw.iloc[:, :-1]
    if raw.shape[1] < len(columns):
        raise DataError(
            f"{path} has {raw.shape[1]} fields per row, but its header names {len(columns)} columns: "
            "restore the file from the NIH release"
        )
    # columns by header name, not position: a reordered file reads the same
    raw = raw.iloc[:, : len(columns)]
    raw.columns = columns
    raw = raw[[c for c in CSV_COLUMNS if c in columns]]
    frame = raw.reset_index(drop=True)

    names = frame["Image Index"].str.strip()
    if (names == "").any():
        row = int(np.flatnonzero((names == "").to_numpy())[0])
        raise DataError(f"{path}, data row {row + 1}: empty 'Image Index'. Restore the file from the NIH release")
    dup = names.duplicated()
    if dup.any():
        first = names[dup].iloc[0]
        raise DataError(
            f"{path} lists image {first!r} more than once ({int(dup.sum())} duplicate rows): "
            "each image must appear once; restore the file from the NIH release"
        )
    frame["Image Index"] = names
    frame["Finding Labels"] = frame["Finding Labels"].str.strip()
    frame["Patient ID"] = _to_int(frame["Patient ID"], "Patient ID", path)
    frame["Follow-up #"] = _to_int(frame["Follow-up #"], "Follow-up #", path)
    age = pd.to_numeric(frame["Patient Age"], errors="coerce")
    if age.isna().any():  # old copies write ages as "058Y"
        age = pd.to_numeric(frame["Patient Age"].str.extract(r"(\d+)", expand=False), errors="coerce")
    frame["Patient Age"] = age.astype("Int64")
    for col in CSV_COLUMNS[7:]:
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def _to_int(values: pd.Series, column: str, path: Any) -> pd.Series:
    parsed = pd.to_numeric(values, errors="coerce")
    bad = parsed.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{path}, data row {row + 1}: {column} {values.iloc[row]!r} is not a whole number. "
            "Restore the file from the NIH release"
        )
    return parsed.astype(np.int64)


def parse_labels(findings: pd.Series | np.ndarray | list[str], source: Any = "the CSV") -> np.ndarray:
    """Turn ``Finding Labels`` strings (``"Effusion|Mass"``) into a multi-hot matrix.

    Vectorized over the distinct strings (about 800 in the whole release), so 112,120 rows
    take milliseconds.

    Args:
        findings: one ``|``-joined label string per image.
        source: where the strings come from, for error messages.

    Returns:
        An ``N x 14`` float32 matrix in the order of :data:`cral_lib.CLASSES`;
        ``No Finding`` is a row of zeros.

    Raises:
        DataError: a label is not one of the 14 classes or ``No Finding``, or ``No Finding``
            is combined with a finding.
    """
    codes, uniques = pd.factorize(pd.Series(findings, dtype=object), use_na_sentinel=False)
    table = np.zeros((len(uniques), len(CLASSES)), dtype=np.float32)
    for u, text in enumerate(uniques):
        parts = [p.strip() for p in str(text).split("|")]
        for part in parts:
            if part == NO_FINDING:
                if len(parts) > 1:
                    raise DataError(
                        f"{source}: label {text!r} combines {NO_FINDING!r} with a finding "
                        f"(first at data row {_first_row(codes, u) + 1}); fix that row"
                    )
                continue
            j = _CLASS_INDEX.get(part)
            if j is None:
                raise DataError(
                    f"{source}: unknown label {part!r} in {text!r} (first at data row "
                    f"{_first_row(codes, u) + 1}); the known labels are {_KNOWN_LABELS}. "
                    "Fix the spelling in the CSV or restore it from the NIH release"
                )
            table[u, j] = 1.0
    return table[codes]


def _first_row(codes: np.ndarray, code: int) -> int:
    return int(np.flatnonzero(codes == code)[0])


def read_list(path: str | os.PathLike) -> np.ndarray:
    """Read an official split list (one image name per line).

    Args:
        path: ``train_val_list.txt`` or ``test_list.txt``.

    Returns:
        The names, as an array of str, in file order.

    Raises:
        DataError: the file is missing or names an image twice.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"split list not found: {path}. It ships with the NIH release (train_val_list.txt and "
            "test_list.txt define the official patient-disjoint split): copy it into the data folder"
        )
    names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    arr = np.array([n for n in names if n], dtype=object)
    uniq, counts = np.unique(arr.astype(str), return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{path} lists {uniq[counts > 1][0]!r} more than once: restore it from the NIH release")
    return arr


def read_boxes(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``BBox_List_2017.csv``.

    Its header is ``Image Index,Finding Label,Bbox [x,y,w,h],,,``: the four numbers are split
    over four columns, with empty trailing columns in some copies. ``Infiltrate`` is mapped to
    the class ``Infiltration``.

    Args:
        path: the CSV file.

    Returns:
        A DataFrame with columns ``Image Index``, ``label`` (a :data:`cral_lib.CLASSES` name),
        ``x``, ``y``, ``w``, ``h`` (float, in the PNG's pixel frame).

    Raises:
        DataError: the file is missing or malformed, or a label is unknown.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"box list not found: {path}. BBox_List_2017.csv ships with the NIH release; copy it "
            "into the data folder (boxes are needed only for localization figures and scores)"
        )
    cols = ["Image Index", "label", "x", "y", "w", "h"]
    try:
        frame = pd.read_csv(
            path, header=None, skiprows=1, usecols=range(6), names=cols, dtype=str,
            keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True,
        )
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot parse {path}: {exc}. Restore it from the NIH release") from None
    frame["Image Index"] = frame["Image Index"].str.strip()
    labels = frame["label"].str.strip().replace(BOX_LABEL_ALIASES)
    bad = ~labels.isin(CLASSES)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{path}, data row {row + 1}: unknown box label {frame['label'].iloc[row]!r}; known: "
            f"{', '.join(CLASSES)} (and 'Infiltrate' for Infiltration). Fix the row or restore the file"
        )
    frame["label"] = labels
    for c in "xywh":
        num = pd.to_numeric(frame[c], errors="coerce")
        if num.isna().any():
            row = int(np.flatnonzero(num.isna().to_numpy())[0])
            raise DataError(
                f"{path}, data row {row + 1}: box coordinate {c}={frame[c].iloc[row]!r} is not a number. "
                "Fix the row or restore the file"
            )
        frame[c] = num.astype(np.float64)
    return frame.reset_index(drop=True)


def scan_images(root: str | os.PathLike) -> tuple[dict[str, str], list[Path]]:
    """Find every PNG of a release folder with one ``os.scandir`` pass per image folder.

    Looks in ``ROOT/images/``, ``ROOT/images_NNN/images/`` and ``ROOT/images_NNN/``.

    Args:
        root: the release folder.

    Returns:
        ``(paths, folders)``: image name -> file path, and the folders that were scanned.
    """
    root = Path(root)
    folders: list[Path] = []
    if (root / "images").is_dir():
        folders.append(root / "images")
    with os.scandir(root) as it:
        parts = sorted(e.name for e in it if e.name.startswith("images_") and e.is_dir())
    for name in parts:
        inner = root / name / "images"
        folders.append(inner if inner.is_dir() else root / name)
    paths: dict[str, str] = {}
    for folder in folders:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.lower().endswith(".png"):
                    paths.setdefault(entry.name, entry.path)
    return paths, folders


__all__ = [
    "find_csv",
    "parse_labels",
    "read_boxes",
    "read_data_entry",
    "read_list",
    "scan_images",
]
