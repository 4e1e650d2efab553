"""The real lung masks that ship in the torchxrayvision wheel.

The PyPI package ``torchxrayvision`` carries, in its ``data`` folder,
``semantic_masks_v7labs_lungs.zip``: 517 lung masks drawn on public chest radiographs (grey
PNGs of many sizes, some with a ``.jpg`` name; 255 marks lung, 127 marks other annotations;
82 of them are empty). This module reads them without importing torchxrayvision (its import
is heavy; see :mod:`cral_lib.data.wheel`). The phantoms of the
synthetic dataset take their lung shapes from these masks (:mod:`cral_lib.synthetic.templates`).

It needs numpy, Pillow and SciPy only (no pandas): the image workers of ``cral synth`` import it.
"""

from __future__ import annotations

import functools
import io
import zipfile
from typing import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from ..errors import ConfigError
from .wheel import LUNG_MASK_FILE, data_file, torchxrayvision_data_dir

# A mask pixel is lung when its grey value is at least this (lungs are 255, other marks 127).
_LUNG_THRESHOLD = 192


def _lung_mask_members() -> list[str]:
    return sorted(n for n in _archive().namelist() if not n.endswith("/"))


def _read_mask(archive: zipfile.ZipFile, name: str) -> np.ndarray | None:
    """Decode one mask file as a bool array at its own size; None when it has no lung."""
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
    with zipfile.ZipFile(data_file(LUNG_MASK_FILE)) as archive:
        for name in names if names is not None else _lung_mask_members():
            mask = _read_mask(archive, name)
            if mask is not None:
                yield name, mask


# Masks are kept in memory at most this many pixels on a side (grey, anti-aliased).
_REDUCED_SIDE = 256


@functools.lru_cache(maxsize=1)
def _archive() -> zipfile.ZipFile:
    return zipfile.ZipFile(data_file(LUNG_MASK_FILE))


@functools.lru_cache(maxsize=None)
def _reduced_mask(name: str) -> np.ndarray | None:
    """One mask, binarized then shrunk by an integer factor to at most 256 px (grey 0-255).

    Decoding is the slow part (the files are up to 3000 px wide); each file is decoded once
    per process, whoever asks first (:func:`lung_masks` or the phantom's lung templates).
    """
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
def _lung_masks_cached(size: int) -> np.ndarray:
    out = []
    for _, grey in reduced_lung_masks():
        resized = np.asarray(Image.fromarray(grey).resize((size, size), Image.BILINEAR)) >= 128
        out.append(ndimage.binary_fill_holes(resized))
    stacked = np.stack(out)
    stacked.flags.writeable = False
    return stacked


def lung_masks(size: int = 256, n: int | None = None) -> np.ndarray:
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


# LUNG_MASK_FILE, data_file and torchxrayvision_data_dir (wheel.py) are exported from here too.
__all__ = [
    "LUNG_MASK_FILE",
    "data_file",
    "iter_lung_masks",
    "lung_masks",
    "reduced_lung_masks",
    "torchxrayvision_data_dir",
]
