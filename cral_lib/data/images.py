"""Reading one ChestX-ray14 PNG as a single uint8 grey channel.

The NIH release is mostly 1024 x 1024 8-bit grey PNGs (mode ``L``), but a few files are
stored as ``RGBA``, and other copies of chest X-rays come as ``LA``, ``RGB``, palette or
16-bit (``I;16``, ``I``) PNGs. :func:`load_grey` turns every one of them into the same
thing: a ``H x W`` ``numpy.uint8`` array, so that everything downstream sees one format.

16-bit images are scaled to 8 bits by their *effective bit depth*: an image whose largest
value needs ``b`` bits (at least 8) is multiplied by ``255 / (2**b - 1)``. A full-range
16-bit image is therefore divided by 257 (65535 -> 255), and a 12-bit image stored in a
16-bit container (values up to 4095, common for X-rays) by about 16, instead of coming out
nearly black. The scale is a power of two per image, never a per-image contrast stretch, so
relative intensities are kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

_CORRUPT_HINT = (
    "the file is damaged or not a PNG: extract it again from its NIH archive "
    "(or delete it and run `cral download` again), or skip bad images with lenient=True "
    "/ `--lenient`"
)


def to_grey(image: Image.Image) -> Image.Image:
    """Return a mode-``L`` copy of an opened PIL image (see the module docstring)."""
    mode = image.mode
    if mode == "L":
        return image
    if mode in ("LA", "La"):
        # The alpha channel of X-rays saved with transparency is opaque (or meaningless):
        # keep the grey values as they are.
        return image.getchannel("L")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image)
        if mode == "F":
            arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        arr = np.clip(arr, 0, None)
        top = float(arr.max()) if arr.size else 0.0
        if mode == "F" and top <= 1.0:
            scale = 255.0  # a float image in [0, 1]
        else:
            bits = max(8, int(np.ceil(top)).bit_length())
            scale = 255.0 / float(2**bits - 1)
        grey = np.rint(arr.astype(np.float64) * scale).clip(0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L")
    # RGB, RGBA, palette, 1-bit, ...: ITU-R 601-2 luma, as PIL computes it; alpha is ignored.
    return image.convert("L")


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_SIGNATURES = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x1f\x8b", "gzip data"),
    (b"PK\x03\x04", "a zip archive"),
    (b"DICM", "a DICOM file"),
)


def describe_content(head: bytes) -> str:
    """What the first bytes of a file say it is: ``"empty (0 bytes)"``, ``"a JPEG image"``, ``"text"``, ..."""
    if not head:
        return "empty (0 bytes)"
    if head.startswith(_PNG_MAGIC):
        return "a PNG"
    if head[128:132] == b"DICM":
        return "a DICOM file"
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            return what
    sample = head[:256]
    if all(32 <= b < 127 or b in b"\t\r\n" for b in sample):
        kind = "an HTML page" if sample.lstrip().lower().startswith((b"<!doctype html", b"<html")) else "text"
        return f"{kind} ({sample[:40].decode('ascii', 'replace').strip()!r}...)"
    return f"not an image format cral_lib knows (first bytes {head[:8].hex(' ')})"


def _check_png_content(path: Path | BinaryIO, label: Any) -> None:
    """Raise :class:`DataError` naming what a ``.png`` file holds when it is not a PNG."""
    if isinstance(path, Path):
        with open(path, "rb") as fh:
            head = fh.read(256)
    else:
        try:
            pos = path.tell()
            head = path.read(256)
            path.seek(pos)
        except (OSError, AttributeError, ValueError):
            return  # a stream that cannot go back: PIL's own check stays
    if not head.startswith(_PNG_MAGIC):
        raise DataError(f"cannot decode image {label}: it is not a PNG, it is {describe_content(head)}; {_CORRUPT_HINT}")


def open_grey(path: str | os.PathLike | BinaryIO, name: str | None = None) -> Image.Image:
    """Decode a PNG (or any image PIL reads) into a mode-``L`` PIL image.

    Args:
        path: the image file, or a binary file object (e.g. a member of a tar stream).
        name: how to call the image in error messages (default: the path).

    Returns:
        A fully decoded PIL image of mode ``L`` (8-bit grey).

    Raises:
        DataError: the file is missing, truncated or not an image; the message names the
            file and says what to do.
    """
    if isinstance(path, (str, os.PathLike)):
        path = Path(path)
    label = name or (path if isinstance(path, Path) else getattr(path, "name", "image"))
    try:
        if str(label).lower().endswith(".png"):
            _check_png_content(path, label)
        with Image.open(path) as image:
            image.load()
            grey = to_grey(image)
            # Closing the file invalidates the image itself: return a copy of it.
            return grey.copy() if grey is image else grey
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(
            f"image not found: {label}. The CSV lists it but the file is not there: extract "
            "the missing NIH archive (images_NNN.tar.gz), or skip missing images with "
            "lenient=True / `--lenient`"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {label} ({type(exc).__name__}: {exc}); {_CORRUPT_HINT}") from None


def load_grey(path: str | os.PathLike | BinaryIO) -> np.ndarray:
    """Read an image of any PNG mode as one uint8 grey channel.

    ``L`` is kept as it is; ``LA`` keeps its grey channel; ``RGB``/``RGBA``/palette images
    become ITU-R 601 luma (what PIL's ``convert("L")`` computes); 16-bit ``I;16``/``I``
    images are scaled by their effective bit depth (see the module docstring).

    Args:
        path: the image file (or a binary file object).

    Returns:
        A ``H x W`` array of dtype ``uint8``.

    Raises:
        DataError: the file is missing or cannot be decoded (the message names the file
            and the fix).
    """
    return np.asarray(open_grey(path))


def resize_grey(image, size: int) -> np.ndarray:
    """Resize a grey image to ``size x size`` with PIL's antialiased bilinear filter.

    This is the "resize 256 x 256" of the paper's recipe and the resampling of the image
    cache. An image that already has that shape is returned unchanged (as an array).

    Args:
        image: a ``H x W`` uint8 array or a mode-``L`` PIL image.
        size: the side of the square output.

    Returns:
        A ``size x size`` uint8 array.
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 2:
            raise DataError(f"expected a grey H x W image, got an array of shape {image.shape}")
        if image.shape == (size, size) and image.dtype == np.uint8:
            return image
        if image.dtype != np.uint8:
            raise DataError(f"expected a uint8 grey image, got dtype {image.dtype}: convert it with load_grey()")
        image = Image.fromarray(image, mode="L")
    if image.size == (size, size):
        return np.asarray(image)
    return np.asarray(image.resize((size, size), Image.BILINEAR))


_to_grey = to_grey  # its name before the DICOM reader shared it

__all__ = ["load_grey", "open_grey", "resize_grey", "to_grey"]
