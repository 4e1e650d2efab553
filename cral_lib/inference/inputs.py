"""The images given to a trained model: files found, read, resized as the cache does, and checked.

Each image takes the path the run's own images took, by the same functions:

1. decoded to one uint8 grey channel: PNG and JPEG by :func:`cral_lib.data.images.open_grey`
   (what ``cral prepare`` decodes every PNG with), DICOM by
   :func:`cral_lib.data.dicom.open_dicom_grey`;
2. resized to the run's ``cache_size`` by :func:`cral_lib.data.images.resize_grey` (the
   cache's resize);
3. then, in :class:`~cral_lib.inference.Predictor`, the run's test transform
   (:meth:`cral_lib.data.TestTransform.for_crop`).

:func:`check_image` refuses what the model cannot judge, where that is cheap to see: a
lateral film (DICOM ``ViewPosition``), a nearly constant image, or one whose grey levels lie
far outside those of the training images (:func:`intensity_reference`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image

from ..data.dicom import is_dicom, open_dicom_grey
from ..data.images import open_grey, resize_grey, to_grey
from ..errors import DataError

#: The files a folder is searched for (files without a suffix are taken when they are DICOM).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
DICOM_SUFFIXES = (".dcm", ".dicom")

#: DICOM view positions of a lateral film (the model was trained on frontal PA/AP films).
LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL", "LLD", "RLD")

#: How far an image's mean grey level may lie outside the training images' range, in standard
#: deviations of the training images' means; and the lowest contrast accepted, as a share of the
#: lowest training contrast.
MEAN_TOLERANCE_SD = 3.0
MIN_CONTRAST_SHARE = 0.25


@dataclass
class InputImage:
    """One image ready for the test transform.

    Attributes:
        name: how the image is called in the results (the path as given, or ``image_K``).
        cached: ``S x S`` uint8, the image as the run's cache would hold it.
        size: ``(width, height)`` of the decoded image.
        grey: the decoded grey image (mode ``L``), kept only when asked for (heatmaps).
        tags: what the file says about itself (DICOM tags; empty for PNG and JPEG).
    """

    name: str
    cached: np.ndarray
    size: tuple[int, int]
    grey: Image.Image | None = None
    tags: dict[str, Any] = field(default_factory=dict)


def find_images(items: Iterable[Any]) -> tuple[list[Any], list[Path]]:
    """Expand folders into the image files they hold (sorted, recursively).

    Args:
        items: paths of files or folders, or images in memory (arrays, PIL images), kept as they are.

    Returns:
        ``(inputs, ignored)``: the files and in-memory images to predict, in order, and the
        files of the folders that are neither of :data:`IMAGE_SUFFIXES` nor DICOM.
    """
    out: list[Any] = []
    ignored: list[Path] = []
    for item in items:
        if isinstance(item, (str, os.PathLike)) and Path(item).is_dir():
            for path in sorted(p for p in Path(item).rglob("*") if p.is_file()):
                if path.name.startswith("."):
                    continue
                if path.suffix.lower() in IMAGE_SUFFIXES or (not path.suffix and is_dicom(path)):
                    out.append(path)
                else:
                    ignored.append(path)
        else:
            out.append(item)
    return out, ignored


def _decode(item: Any) -> tuple[Image.Image, dict[str, Any]]:
    """Any accepted input -> (mode-``L`` image, tags)."""
    if isinstance(item, Image.Image):
        return to_grey(item), {}
    if isinstance(item, np.ndarray):
        return _from_array(item), {}
    if not isinstance(item, (str, os.PathLike)):
        raise DataError(f"cannot read {type(item).__name__!s} as an image: give a file path, a folder, a numpy "
                        "array or a PIL image")
    path = Path(item)
    if not path.exists():
        raise DataError("file not found")
    if path.suffix.lower() in DICOM_SUFFIXES or is_dicom(path):
        return open_dicom_grey(path)
    try:
        with Image.open(path) as probe:
            kind = probe.format
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        kind = None
    if kind is None:
        raise DataError("not an image (PNG, JPEG or DICOM): no image format recognized in the file")
    try:
        return open_grey(path), {}
    except DataError:
        raise DataError(f"cannot decode this {kind} file: it is damaged or truncated") from None


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.dtype == np.uint8:
        return to_grey(Image.fromarray(arr))
    if arr.ndim != 2:
        raise DataError(f"an array of shape {arr.shape} is not a grey image (H x W) or an RGB one (H x W x 3)")
    if arr.dtype == np.uint8:
        return Image.fromarray(arr, mode="L")
    if np.issubdtype(arr.dtype, np.integer):
        # 16-bit data: scaled by its effective bit depth, as a 16-bit PNG
        return to_grey(Image.fromarray(np.clip(arr, 0, 2**31 - 1).astype(np.int32), mode="I"))
    if np.issubdtype(arr.dtype, np.floating):
        return to_grey(Image.fromarray(arr.astype(np.float32), mode="F"))
    raise DataError(f"an array of dtype {arr.dtype} is not an image")


def read_image(item: Any, cache_size: int, name: str | None = None, keep_grey: bool = False) -> InputImage:
    """Decode one image and resize it as the run's cache does.

    Args:
        item: a file path (PNG, JPEG, DICOM), a numpy array or a PIL image.
        cache_size: the run's ``cache_size``.
        name: its name in the results (default: the path, or ``"image"``).
        keep_grey: keep the decoded image (for drawing maps over it).

    Raises:
        DataError: the input cannot be read as an image; the message says why.
    """
    grey, tags = _decode(item)
    label = name if name is not None else (str(item) if isinstance(item, (str, os.PathLike)) else "image")
    return InputImage(label, resize_grey(grey, int(cache_size)), grey.size, grey if keep_grey else None, tags)


def intensity_reference(images: np.ndarray) -> dict[str, float]:
    """What the training images' grey levels look like: the range of their means and contrasts.

    Args:
        images: ``(n, S, S)`` uint8 cached training images (a sample is enough).

    Returns:
        ``{"n", "mean_min", "mean_max", "mean_sd", "std_min"}`` over those images.
    """
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    means, stds = x.mean(axis=1), x.std(axis=1)
    return {"n": int(len(x)), "mean_min": float(means.min()), "mean_max": float(means.max()),
            "mean_sd": float(means.std()), "std_min": float(stds.min())}


def check_image(image: InputImage, reference: dict[str, float] | None) -> str | None:
    """Why the model should not judge this image, or None.

    Args:
        image: the image, as :func:`read_image` made it.
        reference: :func:`intensity_reference` of the training images (None: no intensity check).

    Returns:
        A reason, in words, or None when the image passes.
    """
    view = str(image.tags.get("ViewPosition") or "").strip().upper()
    if view in LATERAL_VIEWS:
        return (f"a lateral view (DICOM ViewPosition {view}): the model was trained on frontal (PA/AP) films only; "
                "use --no-checks to predict it anyway")
    x = image.cached.astype(np.float64)
    mean, std = float(x.mean()), float(x.std())
    if std < 1.0:
        return "a nearly constant image (grey-level spread below 1 of 255): nothing to judge"
    if reference:
        tol = MEAN_TOLERANCE_SD * max(reference["mean_sd"], 1.0)
        lo, hi = reference["mean_min"] - tol, reference["mean_max"] + tol
        if not lo <= mean <= hi:
            return (f"far from the training images' intensity range: mean grey level {mean:.0f}, the training "
                    f"images' lie in {reference['mean_min']:.0f}-{reference['mean_max']:.0f} (an inverted or "
                    "unwindowed film?); use --no-checks to predict it anyway")
        if std < MIN_CONTRAST_SHARE * reference["std_min"]:
            return (f"far from the training images' contrast: grey-level spread {std:.1f}, the lowest of the "
                    f"training images' is {reference['std_min']:.1f}; use --no-checks to predict it anyway")
    return None


__all__ = ["DICOM_SUFFIXES", "IMAGE_SUFFIXES", "InputImage", "LATERAL_VIEWS", "check_image", "find_images",
           "intensity_reference", "read_image"]
