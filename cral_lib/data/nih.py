"""The ChestX-ray14 release reader: CSV, official split lists, bounding boxes, images.

ChestX-ray14 (Wang et al., "ChestX-ray8: Hospital-scale chest X-ray database and benchmarks
on weakly-supervised classification and localization of common thorax diseases", CVPR 2017)
has 112,120 frontal chest X-rays of 30,805 patients, each labelled with any of 14 findings
(or ``No Finding``) mined from the radiology reports, and 984 hand-drawn boxes on 880 images.
It is distributed by the NIH Clinical Center (https://nihcc.app.box.com/v/ChestXray-NIHCC)
and mirrored on Kaggle and elsewhere.

:class:`ChestXray14` reads a release folder as NIH ships it or as mirrors flatten it::

    ROOT/
      Data_Entry_2017.csv  (or Data_Entry_2017_v2020.csv; either may end in an empty column)
      train_val_list.txt   86,524 names: the official training + validation images
      test_list.txt        25,596 names: the official test images (patient-disjoint)
      BBox_List_2017.csv   boxes; its label ``Infiltrate`` is the class ``Infiltration``
      images_001/images/*.png ... images_012/images/*.png   (or one flat ROOT/images/)

The files' names and headers live in :mod:`cral_lib.data.files`, their readers in
:mod:`cral_lib.data.release` (both importable from here too). The validation split is carved out of ``train_val`` by *patient*, with a local generator
(``np.random.default_rng(seed)``), so that no patient has images in two splits.
:meth:`ChestXray14.split_report` counts images and patients per split and their overlaps.

Example:
    >>> ds = ChestXray14("data/nih", split="train")   # doctest: +SKIP
    >>> ds.labels.shape, ds.pathologies[:2]           # doctest: +SKIP
    ((78000, 14), ['Atelectasis', 'Cardiomegaly'])
    >>> sample = ds[0]; sample["img"].shape, sample["lab"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .. import CLASSES, NO_FINDING
from ..errors import ConfigError, DataError
from .cache.layout import is_complete_cache
from .images import load_grey
from .files import BBOX_CSV, BOX_LABEL_ALIASES, CSV_COLUMNS, CSV_NAMES, IMAGE_FOLDER_RE, TEST_LIST, TRAIN_VAL_LIST
from .release import find_csv, parse_labels, read_boxes, read_data_entry, read_list, scan_images

#: The splits :class:`ChestXray14` can read. ``all`` is every CSV row in CSV order.
SPLITS: tuple[str, ...] = ("train", "val", "test", "train_val", "all")

_SPLIT_NAMES = ("train", "val", "test")


def looks_like_release(folder: str | os.PathLike) -> bool:
    """Tell whether a folder has a ChestX-ray14 release's ``Data_Entry`` CSV and its images.

    The images may be PNGs or only the image cache: a ``cral download --cache-only`` folder
    holds the CSVs, the lists and ``cache/<size>/`` without a single PNG.

    Args:
        folder: the folder.

    Returns:
        True when it holds ``Data_Entry_2017.csv`` or ``Data_Entry_2017_v2020.csv`` and an
        ``images_NNN/`` or ``images/`` folder, or a complete cache under ``cache/``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return False
    has_csv = any((folder / name).is_file() for name in CSV_NAMES)
    has_images = (folder / "images").is_dir() or any(
        p.is_dir() and IMAGE_FOLDER_RE.match(p.name) for p in folder.iterdir()
    )
    has_cache = any(is_complete_cache(p) for p in (folder / "cache").glob("*") if p.is_dir())
    return has_csv and (has_images or has_cache)


# --------------------------------------------------------------------------- splits


def assign_splits(
    frame: pd.DataFrame,
    train_val: np.ndarray,
    test: np.ndarray,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    source: Any = "the release",
) -> np.ndarray:
    """Give every CSV row a split: ``train``, ``val``, ``test`` or ``""`` (in no list).

    ``val`` is a seeded random share of the *patients* of ``train_val``
    (``round(val_fraction * n_patients)`` of them, at least one when ``val_fraction > 0``).

    Args:
        frame: the metadata (columns ``Image Index`` and ``Patient ID``).
        train_val: the names of ``train_val_list.txt``.
        test: the names of ``test_list.txt``.
        val_fraction: the share of train_val patients that form the validation split.
        seed: seed of the local generator that picks them.
        source: the release folder, for error messages.

    Returns:
        An array of split names, row-aligned with ``frame``.

    Raises:
        ConfigError: ``val_fraction`` is outside ``[0, 1)``.
        DataError: the lists share images or patients, or name images the CSV lacks.
    """
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ConfigError(f"val_fraction={val_fraction!r} must be in [0, 1) (0.1 holds out a tenth of the patients)")
    names = frame["Image Index"]
    in_tv = names.isin(train_val).to_numpy()
    in_test = names.isin(test).to_numpy()
    both = in_tv & in_test
    if both.any():
        raise DataError(
            f"{source}: {int(both.sum())} images are in both {TRAIN_VAL_LIST} and {TEST_LIST} "
            f"(e.g. {names[both].iloc[0]!r}); restore the official lists"
        )
    for list_name, listed, found in ((TRAIN_VAL_LIST, train_val, in_tv), (TEST_LIST, test, in_test)):
        if int(found.sum()) != len(listed):
            known = set(names)
            missing = [n for n in listed if n not in known]
            raise DataError(
                f"{source}: {list_name} names {len(missing)} images that the CSV does not list "
                f"(e.g. {missing[0]!r}); use the list and the CSV of the same release"
            )
    patients = frame["Patient ID"].to_numpy()
    shared = np.intersect1d(patients[in_tv], patients[in_test])
    if shared.size:
        raise DataError(
            f"{source}: {shared.size} patients have images in both {TRAIN_VAL_LIST} and {TEST_LIST} "
            f"(e.g. patient {int(shared[0])}); the official lists are patient-disjoint: restore them"
        )
    tv_patients = np.unique(patients[in_tv])
    n_val = int(round(float(val_fraction) * tv_patients.size))
    if val_fraction > 0 and n_val == 0 and tv_patients.size > 1:
        n_val = 1
    n_val = min(n_val, max(tv_patients.size - 1, 0))
    rng = np.random.default_rng(seed)
    val_patients = rng.permutation(tv_patients)[:n_val]
    is_val = in_tv & np.isin(patients, val_patients)
    split = np.full(len(frame), "", dtype=object)
    split[in_tv] = "train"
    split[is_val] = "val"
    split[in_test] = "test"
    return split


def _overlap_report(frame: pd.DataFrame, split: np.ndarray) -> dict[str, dict[str, int]]:
    patients = frame["Patient ID"].to_numpy()
    names = frame["Image Index"].to_numpy()
    members = {s: split == s for s in _SPLIT_NAMES}
    report: dict[str, dict[str, int]] = {
        "images": {s: int(m.sum()) for s, m in members.items()},
        "patients": {s: int(np.unique(patients[m]).size) for s, m in members.items()},
        "patient_overlap": {},
        "image_overlap": {},
    }
    report["images"]["unlisted"] = int((split == "").sum())
    for a_i, a in enumerate(_SPLIT_NAMES):
        for b in _SPLIT_NAMES[a_i + 1 :]:
            key = f"{a}/{b}"
            report["patient_overlap"][key] = int(
                np.intersect1d(patients[members[a]], patients[members[b]]).size
            )
            report["image_overlap"][key] = int(np.intersect1d(names[members[a]], names[members[b]]).size)
    return report


# --------------------------------------------------------------------------- the dataset


class ChestXray14:
    """A split of a ChestX-ray14 release folder (real or synthetic), as a map-style dataset.

    Reading 112,120 CSV rows, the two split lists and a folder scan takes well under a
    second: the CSV is parsed once per process (cached by path, size and time), labels are
    parsed per distinct string, and each image folder is listed once with ``os.scandir``.
    Images are decoded only in :meth:`__getitem__` (training reads the uint8 cache of
    ``cral prepare`` instead, see :mod:`cral_lib.data.cache`).

    Args:
        root: the release folder (layout in the module docstring).
        split: one of :data:`SPLITS`: ``train`` and ``val`` (carved out of the official
            ``train_val`` list by patient), ``test`` (the official test list), ``train_val``
            (both), or ``all`` (every CSV row in CSV order; needs no split list).
        val_fraction: share of the train_val *patients* held out as ``val``.
        seed: seed of the local generator that picks the validation patients.
        lenient: skip images that are listed but absent, with a warning and a count
            (:attr:`skipped`), instead of raising :class:`~cral_lib.errors.DataError`.
        transform: applied to the uint8 ``H x W`` image in :meth:`__getitem__`.
        require_images: when False, images are not looked for (for work on the metadata
            alone, e.g. the real CSV without images); ``path`` is then ``""`` where absent.

    Attributes:
        root: the release folder, as a Path.
        split: the split name.
        pathologies: ``list(cral_lib.CLASSES)``, the column order of :attr:`labels`.
        labels: ``N x 14`` float32 multi-hot matrix (``No Finding`` is all zeros).
        frame: DataFrame row-aligned with :attr:`labels`: the CSV columns plus ``path``
            (image file) and ``split``.
        skipped: DataFrame (``Image Index``, ``reason``) of what lenient mode dropped.
        csv_path: the metadata CSV that was read.

    Raises:
        DataError: a missing CSV or list, an unknown label, a listed image that is absent
            (unless ``lenient``), lists that share images or patients. Every message names
            the file or value and what to do.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        val_fraction: float = 0.1,
        seed: int = 0,
        lenient: bool = False,
        transform: Callable[[np.ndarray], Any] | None = None,
        require_images: bool = True,
    ) -> None:
        if split not in SPLITS:
            raise ConfigError(f"split={split!r} is not one of {', '.join(SPLITS)}")
        self.root = Path(root)
        self.split = split
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.lenient = bool(lenient)
        self.transform = transform
        self.pathologies: list[str] = list(CLASSES)
        self.csv_path = find_csv(self.root)

        full = read_data_entry(self.csv_path)
        self._all_names = full["Image Index"]
        has_lists = (self.root / TRAIN_VAL_LIST).is_file() and (self.root / TEST_LIST).is_file()
        if split != "all" or has_lists:
            full["split"] = assign_splits(
                full,
                read_list(self.root / TRAIN_VAL_LIST),
                read_list(self.root / TEST_LIST),
                val_fraction=self.val_fraction,
                seed=self.seed,
                source=self.root,
            )
        else:
            full["split"] = ""
        if split == "all":
            keep = np.ones(len(full), dtype=bool)
        elif split == "train_val":
            keep = full["split"].isin(("train", "val")).to_numpy()
        else:
            keep = (full["split"] == split).to_numpy()
        frame = full[keep].reset_index(drop=True)
        labels = parse_labels(frame["Finding Labels"], source=self.csv_path)

        self.skipped = pd.DataFrame({"Image Index": pd.Series(dtype=object), "reason": pd.Series(dtype=object)})
        paths, folders = scan_images(self.root)
        frame["path"] = frame["Image Index"].map(paths).astype(object)
        absent = frame["path"].isna().to_numpy()
        if absent.any() and require_images:
            where = ", ".join(str(f.relative_to(self.root)) for f in folders) or "no image folder"
            if not self.lenient:
                first = ", ".join(frame["Image Index"][absent].iloc[:3])
                raise DataError(
                    f"{int(absent.sum())} of {len(frame)} {split} images listed in {self.csv_path.name} "
                    f"are not in {self.root} (looked in: {where}); e.g. {first}. Extract the missing "
                    "images_NNN archives there (or `cral download`), or pass lenient=True / "
                    "`--lenient` to skip them"
                )
            self.skipped = pd.DataFrame(
                {"Image Index": frame["Image Index"][absent].to_numpy(), "reason": "image file not found"}
            )
            warnings.warn(
                f"ChestXray14({self.root}, {split!r}): skipped {int(absent.sum())} of {len(frame)} images "
                f"whose file is missing (lenient mode; see .skipped)",
                stacklevel=2,
            )
            frame = frame[~absent].reset_index(drop=True)
            labels = labels[~absent]
        frame["path"] = frame["path"].fillna("")
        self.frame: pd.DataFrame = frame
        self.labels: np.ndarray = np.ascontiguousarray(labels, dtype=np.float32)
        self._paths = frame["path"].to_numpy()
        self._names = frame["Image Index"].to_numpy()
        self._boxes: pd.DataFrame | None = None

    # -- the dataset protocol

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Return sample ``i`` as ``{"img", "lab", "idx", "name"}``.

        ``img`` is the uint8 ``H x W`` image (or ``transform(img)``), ``lab`` the float32
        14-vector, ``idx`` the position ``i`` and ``name`` the image file name.

        Raises:
            IndexError: ``i`` is out of range.
            DataError: the image file is missing or cannot be decoded.
        """
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} {self.split} images")
        i = int(i) % n
        path = self._paths[i]
        if not path:
            raise DataError(
                f"image {self._names[i]} was not found under {self.root} (the dataset was made with "
                "require_images=False): extract the images there"
            )
        img = load_grey(path)
        if self.transform is not None:
            img = self.transform(img)
        return {"img": img, "lab": self.labels[i], "idx": i, "name": self._names[i]}

    def __repr__(self) -> str:
        return f"ChestXray14(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"

    # -- extras

    @property
    def names(self) -> np.ndarray:
        """The image names of this split, row-aligned with :attr:`labels`."""
        return self._names

    @property
    def boxes(self) -> pd.DataFrame:
        """The boxes of this split's images, read from ``BBox_List_2017.csv`` on first use.

        Columns: ``Image Index``, ``label`` (a :data:`cral_lib.CLASSES` name; ``Infiltrate``
        becomes ``Infiltration``), ``x``, ``y``, ``w``, ``h`` (in the PNG's pixel frame,
        1024 x 1024 for the real release) and ``row`` (position in :attr:`frame`).

        Raises:
            DataError: the file is missing or malformed, or names an image the CSV lacks.
        """
        if self._boxes is None:
            path = self.root / BBOX_CSV
            boxes = read_boxes(path)
            unknown = ~boxes["Image Index"].isin(self._all_names)
            if unknown.any():
                raise DataError(
                    f"{path} has boxes on {int(unknown.sum())} images that {self.csv_path.name} does not "
                    f"list (e.g. {boxes['Image Index'][unknown].iloc[0]!r}); use files of the same release"
                )
            rows = pd.Index(self._names).get_indexer(boxes["Image Index"])
            boxes = boxes[rows >= 0].copy()
            boxes["row"] = rows[rows >= 0].astype(np.int64)
            self._boxes = boxes.reset_index(drop=True)
        return self._boxes

    def label_counts(self) -> pd.Series:
        """Images per class in this split (and ``No Finding``), as a Series."""
        counts = pd.Series(self.labels.sum(axis=0).astype(np.int64), index=self.pathologies)
        counts[NO_FINDING] = int((self.labels.sum(axis=1) == 0).sum())
        return counts

    @classmethod
    def split_report(
        cls, root: str | os.PathLike, val_fraction: float = 0.1, seed: int = 0
    ) -> dict[str, dict[str, int]]:
        """Count images and patients per split and the overlaps between splits.

        Needs only the CSV and the two lists (no images). The overlaps are zero by
        construction; tests and notebooks assert it.

        Args:
            root: the release folder.
            val_fraction: as for :class:`ChestXray14`.
            seed: as for :class:`ChestXray14`.

        Returns:
            ``{"images": {"train", "val", "test", "unlisted"}, "patients": {"train", "val",
            "test"}, "patient_overlap": {"train/val", "train/test", "val/test"},
            "image_overlap": {...}}``, all ints.
        """
        root = Path(root)
        frame = read_data_entry(find_csv(root))
        split = assign_splits(
            frame,
            read_list(root / TRAIN_VAL_LIST),
            read_list(root / TEST_LIST),
            val_fraction=val_fraction,
            seed=seed,
            source=root,
        )
        return _overlap_report(frame, split)


# The file readers moved to release.py; they are importable from here still.
__all__ = [
    "BBOX_CSV",
    "BOX_LABEL_ALIASES",
    "CSV_COLUMNS",
    "CSV_NAMES",
    "ChestXray14",
    "SPLITS",
    "TEST_LIST",
    "TRAIN_VAL_LIST",
    "assign_splits",
    "find_csv",
    "looks_like_release",
    "parse_labels",
    "read_boxes",
    "read_data_entry",
    "read_list",
    "scan_images",
]
