"""The real ChestX-ray14 metadata and lung masks, read offline from the torchxrayvision wheel.

The 42 GB of NIH images cannot ship with this project, but their metadata can: the PyPI
package ``torchxrayvision`` carries, inside its wheel (folder ``torchxrayvision/data``),

- ``Data_Entry_2017_v2020.csv.gz``: all 112,120 rows of the release's ``Data_Entry`` table
  (30,805 patients; labels, follow-up number, age, sex, view, original size and pixel spacing);
- ``BBox_List_2017.csv.gz``: the 984 expert boxes on 880 images (8 classes);
- ``semantic_masks_v7labs_lungs.zip``: 517 lung masks drawn on public chest radiographs
  (grey PNGs of many sizes, some with a ``.jpg`` name; 255 marks lung, 127 marks other
  annotations; 82 of them are empty).

This module reads them without importing torchxrayvision (its import is heavy): the folder is
found with :func:`importlib.util.find_spec`. The dataset exploration chapter uses the tables
directly; the synthetic generator (:mod:`cral_lib.data.synth`) samples real patients from them
and :mod:`cral_lib.data.phantom` takes its lung shapes from the masks.

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
import importlib.util
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .. import CLASSES, NO_FINDING
from ..errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import numpy as np
    import pandas as pd

#: The columns of a Data_Entry table as this library names them (release order; the
#: release reader's names).
from .nih import CSV_COLUMNS as DATA_ENTRY_COLUMNS  # noqa: E402

#: The header line of ``Data_Entry_2017_v2020.csv`` exactly as NIH writes it.
DATA_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)

#: The header line of ``BBox_List_2017.csv`` exactly as NIH writes it (9 fields, 3 empty).
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"

#: Spellings of the box file that differ from the class names.
BOX_LABEL_ALIASES = {"Infiltrate": "Infiltration"}

#: The lung-mask archive, the metadata and the boxes inside torchxrayvision's ``data`` folder.
METADATA_FILE = "Data_Entry_2017_v2020.csv.gz"
BBOX_FILE = "BBox_List_2017.csv.gz"
LUNG_MASK_FILE = "semantic_masks_v7labs_lungs.zip"

# A mask pixel is lung when its grey value is at least this (lungs are 255, other marks 127).
_LUNG_THRESHOLD = 192


def torchxrayvision_data_dir() -> Path:
    """Return the ``data`` folder inside the installed torchxrayvision package.

    The package is located without being imported.

    Returns:
        The folder that holds the metadata tables and the lung-mask archive.

    Raises:
        DataError: torchxrayvision is not installed, or its ``data`` folder is missing.
    """
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the real NIH metadata ships inside the torchxrayvision package, which is not "
            "installed; run: pip install torchxrayvision"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    if not folder.is_dir():
        raise DataError(
            f"torchxrayvision is installed but has no data folder at {folder}; "
            "reinstall it: pip install --force-reinstall torchxrayvision"
        )
    return folder


def _data_file(name: str) -> Path:
    path = torchxrayvision_data_dir() / name
    if not path.is_file():
        raise DataError(
            f"{path} is missing from the torchxrayvision package; reinstall it: "
            "pip install --force-reinstall torchxrayvision"
        )
    return path


def read_data_entry(path: str | Path) -> "pd.DataFrame":
    """Read a ChestX-ray14 ``Data_Entry_2017*.csv`` (plain or gzipped) into a DataFrame.

    The same reader as the release reader's (:func:`cral_lib.data.nih.read_data_entry`): the
    2017 copy (with its trailing empty column) and the v2020 copy; the two bracketed header
    pairs become the four columns named in :data:`DATA_ENTRY_COLUMNS`.

    Raises:
        DataError: the file does not have the release's columns.
    """
    from .nih import read_data_entry as _read

    return _read(path)


def read_bbox_list(path: str | Path) -> "pd.DataFrame":
    """Read a ChestX-ray14 ``BBox_List_2017.csv`` (plain or gzipped).

    The same reader as the release reader's (:func:`cral_lib.data.nih.read_boxes`): columns
    ``Image Index``, ``label`` (a class of :data:`cral_lib.CLASSES`; NIH's ``Infiltrate`` becomes
    ``Infiltration``), ``x``, ``y``, ``w``, ``h`` (floats, in the pixel frame of the image file:
    1024 x 1024 for the real release).

    Raises:
        DataError: the file is malformed, or a label is not a class.
    """
    from .nih import read_boxes

    return read_boxes(path)


@functools.lru_cache(maxsize=1)
def _nih_metadata_cached() -> "pd.DataFrame":
    return read_data_entry(_data_file(METADATA_FILE))


@functools.lru_cache(maxsize=1)
def _nih_boxes_cached() -> "pd.DataFrame":
    return read_bbox_list(_data_file(BBOX_FILE))


def nih_metadata() -> "pd.DataFrame":
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


def nih_boxes() -> "pd.DataFrame":
    """Return the real ChestX-ray14 boxes: the 984 rows of ``BBox_List_2017.csv``.

    Returns:
        A new DataFrame with ``Image Index``, ``label`` (``Infiltrate`` spelled
        ``Infiltration``, as in :data:`cral_lib.CLASSES`) and ``x``, ``y``, ``w``, ``h``: the box's
        top-left corner, width and height in the 1024 x 1024 pixel frame.

    Raises:
        DataError: torchxrayvision (which carries the file) is not installed.
    """
    return _nih_boxes_cached().copy()


def _lung_mask_members() -> list[str]:
    return sorted(n for n in _archive().namelist() if not n.endswith("/"))


def _read_mask(archive: zipfile.ZipFile, name: str) -> "np.ndarray | None":
    """Decode one mask file as a bool array at its own size; None when it has no lung."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(archive.read(name))) as image:
        grey = np.asarray(image.convert("L"))
    mask = grey >= _LUNG_THRESHOLD
    return mask if mask.any() else None


def iter_lung_masks(names: Sequence[str] | None = None):
    """Yield ``(name, mask)`` for the real lung masks, decoded at their own size.

    Masks without any lung pixel (82 of the 517 files) are skipped.

    Args:
        names: the archive members to read (default: all, sorted by name).

    Yields:
        The member name and a bool array (height x width) that is True on lung.
    """
    with zipfile.ZipFile(_data_file(LUNG_MASK_FILE)) as archive:
        for name in names if names is not None else _lung_mask_members():
            mask = _read_mask(archive, name)
            if mask is not None:
                yield name, mask


# Masks are kept in memory at most this many pixels on a side (grey, anti-aliased).
_REDUCED_SIDE = 256


@functools.lru_cache(maxsize=1)
def _archive() -> zipfile.ZipFile:
    return zipfile.ZipFile(_data_file(LUNG_MASK_FILE))


@functools.lru_cache(maxsize=None)
def _reduced_mask(name: str) -> "np.ndarray | None":
    """One mask, binarized then shrunk by an integer factor to at most 256 px (grey 0-255).

    Decoding is the slow part (the files are up to 3000 px wide); each file is decoded once
    per process, whoever asks first (:func:`lung_masks` or the phantom's lung templates).
    """
    import numpy as np
    from PIL import Image

    mask = _read_mask(_archive(), name)
    if mask is None:
        return None
    factor = max(1, -(-max(mask.shape) // _REDUCED_SIDE))
    grey = Image.fromarray(mask.astype(np.uint8) * 255)
    out = np.asarray(grey.reduce(factor) if factor > 1 else grey)
    out.flags.writeable = False
    return out


def reduced_lung_masks(names: Sequence[str] | None = None):
    """Yield ``(name, grey)`` for the non-empty real lung masks, at most 256 px on a side.

    ``grey`` is uint8: 255 on lung, 0 outside, intermediate on the edges (the binary mask
    shrunk by an integer factor, keeping its aspect ratio). Cached per process.

    Args:
        names: the archive members to read (default: all, in name order).

    Yields:
        The member name and its read-only grey mask.
    """
    for name in names if names is not None else _lung_mask_members():
        grey = _reduced_mask(name)
        if grey is not None:
            yield name, grey


@functools.lru_cache(maxsize=4)
def _lung_masks_cached(size: int) -> "np.ndarray":
    import numpy as np
    from PIL import Image
    from scipy import ndimage

    out = []
    for _, grey in reduced_lung_masks():
        resized = np.asarray(Image.fromarray(grey).resize((size, size), Image.BILINEAR)) >= 128
        out.append(ndimage.binary_fill_holes(resized))
    stacked = np.stack(out)
    stacked.flags.writeable = False
    return stacked


def lung_masks(size: int = 256, n: int | None = None) -> "np.ndarray":
    """Return the real lung masks shipped with torchxrayvision, as square bool images.

    Each file is decoded, binarized (lung = grey value 255; the 127-valued marks some files
    carry are not lung), shrunk to at most 256 px on a side, resized to ``size x size`` (the
    whole frame, so a non-square original is stretched) and its holes are filled (marks drawn
    over a lung, such as a device, leave a hole in it). Empty masks are dropped, which leaves
    435 of the 517 files. The decoding is cached (:func:`functools.lru_cache`): only the
    first call in a process pays it (several seconds); other sizes are resized from the cache.

    Args:
        size: the side of the returned masks in pixels (at least 8).
        n: return only the first ``n`` masks (in the archive's name order); all when None.

    Returns:
        A new bool array of shape ``(M, size, size)``, True on lung.

    Raises:
        ConfigError: ``size`` or ``n`` is out of range.
        DataError: torchxrayvision (which carries the masks) is not installed.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise ConfigError(f"lung_masks: size must be an integer >= 8, got {size!r}")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ConfigError(f"lung_masks: n must be None or an integer >= 1, got {n!r}")
    masks = _lung_masks_cached(size)
    return masks[:n].copy()


def label_matrix(frame: Any, classes: Sequence[str] = CLASSES) -> "np.ndarray":
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
    import numpy as np
    import pandas as pd

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
    counts: "pd.Series"
    prevalence: "pd.Series"
    no_finding: int
    labels_per_image: "pd.Series"
    multi_label_fraction: float
    cooccurrence: "pd.DataFrame"

    def table(self) -> "pd.DataFrame":
        """Return one row per class: ``images`` and ``prevalence``, in class order."""
        import pandas as pd

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
    import numpy as np
    import pandas as pd

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


__all__ = [
    "BBOX_HEADER",
    "DATA_ENTRY_COLUMNS",
    "DATA_ENTRY_HEADER",
    "LabelStats",
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
