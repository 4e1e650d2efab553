"""The real ChestX-ray14 metadata and lung masks, read offline from the torchxrayvision wheel.

The 42 GB of NIH images cannot ship with this project, but their metadata can: the PyPI
package ``torchxrayvision`` carries, inside its wheel (folder ``torchxrayvision/data``),

- ``Data_Entry_2017_v2020.csv.gz``: all 112,120 rows of the release's ``Data_Entry`` table
  (30,805 patients; labels, follow-up number, age, sex, view, original size and pixel spacing);
- ``BBox_List_2017.csv.gz``: the 984 expert boxes on 880 images (8 classes);
- ``semantic_masks_v7labs_lungs.zip``: 517 lung masks drawn on public chest radiographs
  (read by :mod:`cral_lib.data.masks`, whose names this module re-exports).

This module reads them without importing torchxrayvision (its import is heavy): the folder is
found with :func:`importlib.util.find_spec`. The dataset exploration chapter uses the tables
directly; the synthetic generator (:mod:`cral_lib.synthetic`) samples real patients from them
and takes its lung shapes from the masks.

Column names. The release header writes two pairs in brackets,
``OriginalImage[Width,Height]`` and ``OriginalImagePixelSpacing[x,y]``, which are two CSV
columns each. :func:`read_data_entry` (and so :func:`nih_metadata`) names them
``OriginalImageWidth``, ``OriginalImageHeight``, ``OriginalImagePixelSpacingX`` and
``OriginalImagePixelSpacingY`` (see :data:`DATA_ENTRY_COLUMNS`). They describe the scanner's
original image, before NIH resized every image to 1024 x 1024; boxes are in the 1024 frame.

Label statistics. :func:`label_matrix` turns a ``Finding Labels`` column (labels joined with
``|``; ``No Finding`` when none) into an N x 14 matrix in the paper's class order, and
:func:`label_stats` summarises any frame, real or synthetic: images per class, prevalence,
the number of labels per image and the co-occurrence counts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .. import CLASSES, NO_FINDING
from ..errors import DataError
from .files import BBOX_HEADER, BOX_LABEL_ALIASES, DATA_ENTRY_HEADER
from .files import CSV_COLUMNS as DATA_ENTRY_COLUMNS
from .masks import iter_lung_masks, lung_masks, reduced_lung_masks
from .release import read_boxes as read_bbox_list
from .release import read_data_entry
from .wheel import BBOX_FILE, LUNG_MASK_FILE, METADATA_FILE, data_file, torchxrayvision_data_dir


@functools.lru_cache(maxsize=1)
def _nih_metadata_cached() -> pd.DataFrame:
    return read_data_entry(data_file(METADATA_FILE))


@functools.lru_cache(maxsize=1)
def _nih_boxes_cached() -> pd.DataFrame:
    return read_bbox_list(data_file(BBOX_FILE))


def nih_metadata() -> pd.DataFrame:
    """Return the real ChestX-ray14 metadata: all 112,120 rows of ``Data_Entry_2017_v2020.csv``.

    Read from the torchxrayvision wheel (no download); parsed once per process.

    Returns:
        A new DataFrame (yours to modify) with the columns of :data:`DATA_ENTRY_COLUMNS`:
        ``Image Index`` (``PPPPPPPP_FFF.png``), ``Finding Labels`` (``|``-joined, or
        ``No Finding``), ``Follow-up #``, ``Patient ID`` (int), ``Patient Age`` (years),
        ``Patient Gender`` (``M``/``F``), ``View Position`` (``PA``/``AP``),
        ``OriginalImageWidth``/``OriginalImageHeight`` (pixels of the scanner's image) and
        ``OriginalImagePixelSpacingX``/``Y`` (mm per pixel of that image).

    Raises:
        DataError: torchxrayvision (which carries the file) is not installed.
    """
    return _nih_metadata_cached().copy()


def nih_boxes() -> pd.DataFrame:
    """Return the real ChestX-ray14 boxes: the 984 rows of ``BBox_List_2017.csv``.

    Returns:
        A new DataFrame with ``Image Index``, ``label`` (``Infiltrate`` spelled
        ``Infiltration``, as in :data:`cral_lib.CLASSES`) and ``x``, ``y``, ``w``, ``h``: the box's
        top-left corner, width and height in the 1024 x 1024 pixel frame.

    Raises:
        DataError: torchxrayvision (which carries the file) is not installed.
    """
    return _nih_boxes_cached().copy()


def label_matrix(frame: Any, classes: Sequence[str] = CLASSES) -> np.ndarray:
    """Return the N x C label matrix of a frame with a ``Finding Labels`` column.

    Args:
        frame: a DataFrame with a ``Finding Labels`` column (labels joined with ``|``,
            ``No Finding`` for none), or that column itself as a Series or sequence.
        classes: the class order of the columns (default: the paper's 14 classes).

    Returns:
        A float32 array of shape ``(N, len(classes))`` with 1 where the image carries the class.

    Raises:
        DataError: the column is missing, or holds a label that is not one of ``classes``
            (nor ``No Finding``).
    """
    if isinstance(frame, pd.DataFrame):
        if "Finding Labels" not in frame.columns:
            raise DataError(
                f"label_matrix needs a 'Finding Labels' column; the frame has {list(frame.columns)}"
            )
        column = frame["Finding Labels"]
    else:
        column = pd.Series(frame, dtype=object)
    column = column.fillna(NO_FINDING).astype(str)
    dummies = column.str.get_dummies(sep="|")
    unknown = sorted(set(dummies.columns) - set(classes) - {NO_FINDING})
    if unknown:
        raise DataError(
            f"'Finding Labels' holds labels that are not among the classes: {unknown}; "
            f"expected some of {list(classes)} or {NO_FINDING!r}"
        )
    dummies = dummies.reindex(columns=list(classes), fill_value=0)
    return dummies.to_numpy(dtype=np.float32)


@dataclass(frozen=True)
class LabelStats:
    """Label statistics of a set of images (see :func:`label_stats`).

    Attributes:
        n_images: number of images.
        n_patients: number of distinct patients (None when the frame has no ``Patient ID``).
        counts: images per class (a Series indexed by class, in class order).
        prevalence: fraction of images per class.
        no_finding: images that carry none of the classes.
        labels_per_image: images with 0, 1, 2, ... labels (a Series indexed by the count).
        multi_label_fraction: fraction of images with more than one label.
        cooccurrence: C x C DataFrame; entry (a, b) counts images that carry both a and b
            (the diagonal equals ``counts``).
    """

    n_images: int
    n_patients: int | None
    counts: pd.Series
    prevalence: pd.Series
    no_finding: int
    labels_per_image: pd.Series
    multi_label_fraction: float
    cooccurrence: pd.DataFrame

    def table(self) -> pd.DataFrame:
        """Return one row per class: ``images`` and ``prevalence``, in class order."""
    
        return pd.DataFrame({"images": self.counts, "prevalence": self.prevalence})


def label_stats(frame: Any, classes: Sequence[str] = CLASSES) -> LabelStats:
    """Summarise the labels of a frame: prevalence, labels per image and co-occurrence.

    Works the same on the real metadata (:func:`nih_metadata`), a synthetic release's
    ``Data_Entry`` table, or a reader's ``.frame``.

    Args:
        frame: a DataFrame with a ``Finding Labels`` column (and optionally ``Patient ID``),
            or an N x C label matrix.
        classes: the class order (default: the paper's 14 classes).

    Returns:
        A :class:`LabelStats`.

    Raises:
        DataError: as :func:`label_matrix`, or a matrix whose width is not ``len(classes)``.
    """
    n_patients = None
    if isinstance(frame, pd.DataFrame):
        y = label_matrix(frame, classes)
        if "Patient ID" in frame.columns:
            n_patients = int(frame["Patient ID"].nunique())
    else:
        y = np.asarray(frame, dtype=np.float32)
        if y.ndim != 2 or y.shape[1] != len(classes):
            raise DataError(
                f"label_stats expects an N x {len(classes)} label matrix, got shape {y.shape}"
            )
    y = (y > 0.5).astype(np.int64)
    n = int(y.shape[0])
    counts = pd.Series(y.sum(axis=0), index=list(classes), name="images")
    per_image = y.sum(axis=1)
    labels_per_image = pd.Series(
        np.bincount(per_image, minlength=1), name="images"
    ).rename_axis("labels")
    co = pd.DataFrame(y.T @ y, index=list(classes), columns=list(classes))
    return LabelStats(
        n_images=n,
        n_patients=n_patients,
        counts=counts,
        prevalence=(counts / max(n, 1)).rename("prevalence"),
        no_finding=int((per_image == 0).sum()),
        labels_per_image=labels_per_image,
        multi_label_fraction=float((per_image > 1).mean()) if n else 0.0,
        cooccurrence=co,
    )


# Besides its own names, this module re-exports the readers, headers and masks it builds on.
__all__ = [
    "BBOX_HEADER",
    "BBOX_FILE",
    "BOX_LABEL_ALIASES",
    "DATA_ENTRY_COLUMNS",
    "DATA_ENTRY_HEADER",
    "LUNG_MASK_FILE",
    "LabelStats",
    "METADATA_FILE",
    "iter_lung_masks",
    "label_matrix",
    "label_stats",
    "lung_masks",
    "nih_boxes",
    "nih_metadata",
    "read_bbox_list",
    "read_data_entry",
    "reduced_lung_masks",
    "torchxrayvision_data_dir",
]
