"""Reading a DICOM radiograph as one uint8 grey channel, the way the cache stores a PNG.

ChestX-ray14 ships 8-bit PNGs; a radiograph from elsewhere often comes as DICOM. Reading one
needs ``pydicom`` (the optional extra: ``pip install "cral-lib[dicom]"``) and these steps, in
the order of the DICOM standard (PS3.3 C.11):

1. the stored values, through the modality LUT (``RescaleSlope`` / ``RescaleIntercept``);
2. the VOI transform when the file carries one: a VOI LUT Sequence (applied by pydicom), or
   ``WindowCenter`` / ``WindowWidth`` (the linear window of C.11.2.1.2), mapped to 0..255;
   without either, the values are scaled to 8 bits by their effective bit depth, exactly as a
   16-bit PNG is (:func:`cral_lib.data.images.open_grey`: 4095 is white for 12-bit data);
3. ``MONOCHROME1`` (white is 0) is inverted, so that bone is bright as in the training films;
4. colour images (``SamplesPerPixel`` 3) become ITU-R 601 luma, as PIL converts RGB PNGs.

:func:`open_dicom_grey` returns a mode-``L`` PIL image, which then goes through the same
resize as the cache (:func:`cral_lib.data.images.resize_grey`), and the tags a caller checks
(``ViewPosition``: the model was trained on frontal films).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import DataError
from .images import to_grey

#: How ``pip`` installs the reader.
INSTALL_HINT = 'pip install "cral-lib[dicom]" (or: pip install pydicom)'


def is_dicom(path: str | os.PathLike) -> bool:
    """True when a file starts like a DICOM file (the ``DICM`` marker at byte 128)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _pydicom() -> Any:
    # optional: only DICOM input needs it (the `dicom` extra)
    try:
        import pydicom
    except ImportError:
        raise DataError(f"reading DICOM files needs pydicom, which is not installed: {INSTALL_HINT}") from None
    return pydicom


def _first(value: Any) -> float | None:
    """A number from a tag that may hold several (multi-valued WindowCenter, say)."""
    if value is None:
        return None
    try:
        return float(value[0] if hasattr(value, "__len__") and not isinstance(value, str) else value)
    except (TypeError, ValueError, IndexError):
        return None


def _window(arr: np.ndarray, center: float, width: float) -> np.ndarray:
    """The linear VOI window of PS3.3 C.11.2.1.2, to 0..255."""
    width = max(width, 1.0)
    out = ((arr - (center - 0.5)) / (width - 1.0) + 0.5) if width > 1 else (arr >= center).astype(np.float64)
    return np.clip(out, 0.0, 1.0) * 255.0


def _voi_lut(ds: Any, arr: np.ndarray) -> np.ndarray | None:
    """The VOI LUT Sequence applied and mapped to 0..255, or None when the file has none."""
    seq = getattr(ds, "VOILUTSequence", None)
    if not seq:
        return None
    try:
        from pydicom.pixels import apply_voi_lut  # pydicom >= 3
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_voi_lut
    # a LUT is indexed by the (integer) modality values
    out = np.asarray(apply_voi_lut(np.rint(arr).astype(np.int64), ds, prefer_lut=True), dtype=np.float64)
    descriptor = seq[0].get("LUTDescriptor")
    bits = int(descriptor[2]) if descriptor is not None and len(descriptor) == 3 and descriptor[2] else 0
    top = float(2**bits - 1) if bits else float(out.max() or 1.0)
    return np.clip(out / top, 0.0, 1.0) * 255.0


def _modality(ds: Any, arr: np.ndarray) -> np.ndarray:
    slope = _first(getattr(ds, "RescaleSlope", None))
    intercept = _first(getattr(ds, "RescaleIntercept", None))
    out = arr.astype(np.float64)
    if slope is not None and slope != 1.0:
        out = out * slope
    if intercept:
        out = out + intercept
    return out


def _pixels(ds: Any, label: str) -> np.ndarray:
    if "PixelData" not in ds:
        raise DataError(f"{label} is a DICOM file without an image (no PixelData): is it a report or a structured "
                        "document?")
    try:
        arr = ds.pixel_array
    except Exception as exc:  # compressed without a decoder, damaged pixel data, ...
        raise DataError(f"cannot decode the pixels of DICOM file {label} ({type(exc).__name__}: {exc}); "
                        "a compressed transfer syntax may need pylibjpeg or gdcm") from None
    arr = np.asarray(arr)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[0]  # a multi-frame file: its first frame
    if samples == 3 and arr.ndim == 3:
        rgb = np.clip(arr, 0, 255).astype(np.uint8)
        return np.asarray(Image.fromarray(rgb, mode="RGB").convert("L"), dtype=np.float64)
    if arr.ndim != 2:
        raise DataError(f"DICOM file {label} holds pixels of shape {arr.shape}, not one grey image")
    return arr


def open_dicom_grey(path: str | os.PathLike) -> tuple[Image.Image, dict[str, Any]]:
    """Read a DICOM radiograph as a mode-``L`` PIL image (see the module docstring).

    Args:
        path: the DICOM file.

    Returns:
        ``(image, tags)``: the 8-bit grey image, and the tags that say what it shows
        (``ViewPosition``, ``PhotometricInterpretation``, ``Modality``, ``BodyPartExamined``,
        ``BitsStored``; absent ones are None) plus ``voi``: which VOI step was applied.

    Raises:
        DataError: pydicom is missing, or the file is not a readable DICOM image.
    """
    pydicom = _pydicom()
    label = str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warnings on a damaged file: the error below says it
            ds = pydicom.dcmread(Path(path))
    except Exception as exc:  # InvalidDicomError, truncated files, ...
        raise DataError(f"cannot read DICOM file {label} ({type(exc).__name__}: {exc})") from None
    arr = _modality(ds, _pixels(ds, label))
    voi_out = _voi_lut(ds, arr)
    center, width = _first(getattr(ds, "WindowCenter", None)), _first(getattr(ds, "WindowWidth", None))
    if voi_out is not None:
        grey, voi = np.rint(voi_out).astype(np.uint8), "VOI LUT"
    elif center is not None and width is not None:
        grey, voi = np.rint(_window(arr, center, width)).astype(np.uint8), f"window {center:g}/{width:g}"
    else:
        # no VOI: as a 16-bit PNG, by the effective bit depth (to_grey of an "I" image)
        clipped = np.clip(np.nan_to_num(arr), 0, 2**31 - 1).astype(np.int32)
        grey, voi = np.asarray(to_grey(Image.fromarray(clipped, mode="I"))), "bit depth"
    photometric = str(getattr(ds, "PhotometricInterpretation", "") or "").upper()
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    tags = {k: (str(getattr(ds, k)) if getattr(ds, k, None) not in (None, "") else None)
            for k in ("ViewPosition", "PhotometricInterpretation", "Modality", "BodyPartExamined", "BitsStored")}
    tags["voi"] = voi
    return Image.fromarray(np.ascontiguousarray(grey), mode="L"), tags


def write_dicom(path: str | os.PathLike, grey: np.ndarray, *, bits: int = 12, photometric: str = "MONOCHROME2",
                window: tuple[float, float] | None = None, view: str | None = "PA") -> Path:
    """Write a grey image as a DICOM radiograph (uncompressed): for the book and the tests.

    The 8-bit image is scaled to ``bits`` bits (``x * (2**bits - 1) / 255``), inverted for
    ``MONOCHROME1``, and stored in 16-bit words; ``window`` adds a VOI window (center, width) in
    those stored units.

    Args:
        path: the file to write.
        grey: ``H x W`` uint8 image.
        bits: bits stored (8 to 16).
        photometric: ``MONOCHROME2`` (0 is black) or ``MONOCHROME1`` (0 is white).
        window: optional ``(WindowCenter, WindowWidth)``.
        view: the ``ViewPosition`` tag (``PA``, ``AP``, ``LL``, ...), None for none.

    Returns:
        The path written.
    """
    pydicom = _pydicom()
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    grey = np.asarray(grey)
    if grey.ndim != 2 or grey.dtype != np.uint8:
        raise DataError(f"write_dicom takes an H x W uint8 image, not {grey.dtype} of shape {grey.shape}")
    if not 8 <= int(bits) <= 16:
        raise DataError(f"bits={bits} must be between 8 and 16")
    top = 2 ** int(bits) - 1
    values = np.rint(grey.astype(np.float64) * top / 255.0)
    if photometric == "MONOCHROME1":
        values = top - values
    elif photometric != "MONOCHROME2":
        raise DataError(f"photometric={photometric!r} is not MONOCHROME1 or MONOCHROME2")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.BodyPartExamined = "DX", "CHEST"
    if view:
        ds.ViewPosition = view
    ds.Rows, ds.Columns = grey.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, int(bits), int(bits) - 1, 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = float(window[0]), float(window[1])
    ds.PixelData = values.astype("<u2").tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        ds.save_as(path, enforce_file_format=True)  # pydicom >= 3
    except TypeError:  # pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return path


__all__ = ["INSTALL_HINT", "is_dicom", "open_dicom_grey", "write_dicom"]
