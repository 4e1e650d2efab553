"""One map and one box: frames, upsampling, the peak, the pointing game, IoU, IoBB.

See :mod:`cral_lib.localize` for the measures and the frames.
"""


from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from ..data.files import BOX_LABEL_ALIASES as NIH_BOX_LABEL_ALIASES
from ..errors import ConfigError, DataError


#: Spellings of box labels that differ from :data:`cral_lib.CLASSES`: NIH's (``BBox_List_2017.csv``)
#: and the spelling with a space some copies use.
BOX_LABEL_ALIASES: dict[str, str] = {**NIH_BOX_LABEL_ALIASES, "Pleural Thickening": "Pleural_Thickening"}

#: The IoU thresholds of the T(IoU) accuracies (Wang et al. 2017 report 0.1 to 0.7).
IOU_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)


# ----------------------------------------------------------------------------- arrays and boxes


def _np(x: Any, name: str = "array") -> np.ndarray:
    """numpy float64 copy-free view of a numpy/torch/list input (torch moved to the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().float().numpy()
    arr = np.asarray(x, dtype=np.float64)
    return arr


def _size(size: Any, name: str) -> tuple[int, int]:
    try:
        w, h = (int(round(float(v))) for v in size)
    except Exception as exc:
        raise ConfigError(f"{name}={size!r}: give (width, height) in pixels.") from exc
    if w < 1 or h < 1:
        raise ConfigError(f"{name}={size!r}: width and height must be at least 1 pixel.")
    return w, h


def _box(box: Any) -> np.ndarray:
    b = _np(box, "box").reshape(-1)
    if b.shape != (4,) or not np.isfinite(b).all():
        raise DataError(f"box={box!r}: give one box as (x, y, w, h) with finite numbers.")
    if b[2] < 0 or b[3] < 0:
        raise DataError(f"box={box!r}: width and height must be non-negative.")
    return b


def scale_boxes(boxes_xywh: Any, from_size: Sequence[float], to_size: Sequence[float]) -> np.ndarray:
    """Rescale boxes ``(x, y, w, h)`` from an image of ``from_size`` to one of ``to_size``.

    x and w scale by ``to_w / from_w``, y and h by ``to_h / from_h`` (the resize of the
    test transform stretches each axis on its own).

    Args:
        boxes_xywh: one box ``(4,)`` or many ``(K, 4)``.
        from_size: ``(W, H)`` of the frame the boxes are in (1024 x 1024 for NIH).
        to_size: ``(w, h)`` of the target frame.

    Returns:
        Float boxes of the same shape.
    """
    b = _np(boxes_xywh, "boxes_xywh")
    if b.shape[-1:] != (4,):
        raise DataError(f"boxes_xywh has shape {b.shape}; give (4,) or (K, 4) boxes as (x, y, w, h).")
    (fw, fh), (tw, th) = _float_size(from_size, "from_size"), _float_size(to_size, "to_size")
    return b * np.array([tw / fw, th / fh, tw / fw, th / fh])


def _float_size(size: Any, name: str) -> tuple[float, float]:
    try:
        w, h = (float(v) for v in size)
    except Exception as exc:
        raise ConfigError(f"{name}={size!r}: give (width, height).") from exc
    if not (w > 0 and h > 0):
        raise ConfigError(f"{name}={size!r}: width and height must be positive.")
    return w, h


def center_crop_window(
    image_size: Sequence[float] = (1024, 1024), resize: int | Sequence[int] = 256, crop: int | Sequence[int] = 224
) -> tuple[float, float, float, float]:
    """The window of the original image that the test transform's input shows.

    The paper's test transform resizes the image to 256 x 256 and takes the central 224 x 224
    crop (Section 4.2), so the network sees ``(16 .. 240) / 256`` of each axis: the window
    ``(64, 64, 896, 896)`` of a 1024 x 1024 image.

    Args:
        image_size: ``(W, H)`` of the original image.
        resize: side (or ``(w, h)``) of the resized image.
        crop: side (or ``(w, h)``) of the center crop.

    Returns:
        ``(x0, y0, width, height)`` of the window, in original pixels.
    """
    W, H = _float_size(image_size, "image_size")
    rw, rh = (resize, resize) if np.isscalar(resize) else tuple(resize)
    cw, ch = (crop, crop) if np.isscalar(crop) else tuple(crop)
    if cw > rw or ch > rh:
        raise ConfigError(f"crop={crop!r} is larger than resize={resize!r}.")
    sx, sy = W / rw, H / rh
    # torchvision's CenterCrop rounds the offset: int(round((256 - 224) / 2)) = 16
    return (round((rw - cw) / 2.0) * sx, round((rh - ch) / 2.0) * sy, cw * sx, ch * sy)


def box_mask(box_xywh: Any, size: Sequence[float]) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the pixels whose centres lie inside a box.

    Pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``; it belongs to the box when its centre
    ``(j + 0.5, i + 0.5)`` lies in ``[x, x + w) x [y, y + h)``.

    Args:
        box_xywh: ``(x, y, w, h)`` in pixels of the frame.
        size: ``(W, H)`` of the frame.

    Returns:
        The mask, shape ``(H, W)``.
    """
    x, y, w, h = _box(box_xywh)
    W, H = _size(size, "size")
    cols = np.arange(W) + 0.5
    rows = np.arange(H) + 0.5
    return ((rows >= y) & (rows < y + h))[:, None] & ((cols >= x) & (cols < x + w))[None, :]


def _resize_axis(a: np.ndarray, out: int, axis: int) -> np.ndarray:
    n = a.shape[axis]
    if n == out:
        return a
    scale = n / out
    src = np.maximum((np.arange(out) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    lam = src - i0
    shape = [1] * a.ndim
    shape[axis] = out
    lam = lam.reshape(shape)
    return np.take(a, i0, axis=axis) * (1.0 - lam) + np.take(a, i1, axis=axis) * lam


def upsample_map(map_hw: Any, size: Sequence[float]) -> np.ndarray:
    """Bilinear resize of a map (or a stack of maps) to ``size = (W, H)``.

    Matches ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``: each
    of the h x w cells is a square of the target image whose centre carries the cell's value.

    Args:
        map_hw: ``(h, w)`` or ``(..., h, w)`` map(s).
        size: ``(W, H)`` of the output (width first, as image sizes in this module).

    Returns:
        float64 array ``(..., H, W)``.
    """
    m = _np(map_hw, "map_hw")
    if m.ndim < 2:
        raise DataError(f"map_hw has shape {m.shape}; give an (h, w) map or a stack (..., h, w).")
    W, H = _size(size, "size")
    return _resize_axis(_resize_axis(m, H, m.ndim - 2), W, m.ndim - 1)


def normalize_map(map_hw: Any, valid: np.ndarray | None = None) -> np.ndarray:
    """Scale a map to [0, 1] by its minimum and maximum (over ``valid`` pixels if given).

    A constant map has no peak: it becomes all zeros (nothing is selected at any threshold
    above 0, so its IoU is 0).

    Args:
        map_hw: the map.
        valid: optional boolean mask of the pixels to take the minimum/maximum over.

    Returns:
        float64 array of the map's shape; pixels outside ``valid`` are 0.
    """
    m = _np(map_hw, "map_hw")
    if not np.isfinite(m).all():
        raise DataError("the map holds NaN or infinite values; check the model's outputs.")
    vals = m if valid is None else m[valid]
    if vals.size == 0:
        return np.zeros_like(m)
    lo, hi = float(vals.min()), float(vals.max())
    out = np.zeros_like(m) if hi <= lo else (m - lo) / (hi - lo)
    if valid is not None:
        out = np.where(valid, out, 0.0)
    return out


def map_peak(map_hw: Any, valid: np.ndarray | None = None) -> tuple[float, float] | None:
    """The ``(x, y)`` point a map points at: the centre of its maximum.

    Bilinear upsampling by an even factor, or the clamped border, turns one peak cell into a
    small plateau of equal pixels; the point is then the centroid of the plateau (the
    connected set of maximal pixels that holds the first maximum in row-major order), not
    its top-left pixel.

    Args:
        map_hw: ``(H, W)`` map.
        valid: optional boolean mask of the pixels that may hold the peak.

    Returns:
        ``(x, y)`` in pixel coordinates (pixel ``(i, j)`` has its centre at ``(j + 0.5,
        i + 0.5)``), or None when the map is flat (no peak to point with).
    """
    m = _np(map_hw, "map_hw")
    vals = m if valid is None else m[valid]
    if vals.size == 0:
        return None
    top, bottom = float(vals.max()), float(vals.min())
    if top <= bottom:
        return None
    tied = m >= top - 1e-12 * max(1.0, abs(top))
    if valid is not None:
        tied &= valid
    i, j = np.unravel_index(int(np.argmax(tied)), tied.shape)
    if np.count_nonzero(tied) > 1:
        labels, _ = ndimage.label(tied, structure=np.ones((3, 3), dtype=int))
        rows, cols = np.nonzero(labels == labels[i, j])
        return float(cols.mean()) + 0.5, float(rows.mean()) + 0.5
    return float(j) + 0.5, float(i) + 0.5


def _point_in_box(px: float, py: float, box: np.ndarray, tolerance: float) -> bool:
    x, y, w, h = box
    dx = max(x - px, 0.0, px - (x + w))
    dy = max(y - py, 0.0, py - (y + h))
    if tolerance <= 0:
        return dx == 0.0 and dy == 0.0
    return math.hypot(dx, dy) <= tolerance


def pointing_game(
    map_hw: Any, box_xywh: Any, size: Sequence[float] | None = None, tolerance: float = 0.0
) -> bool:
    """Whether the maximum of the (upsampled) map lies inside the box.

    The pointing game of Zhang et al. (2016). The map is upsampled bilinearly to ``size``
    (the frame of the box), its maximum located (:func:`map_peak`: the centre of the peak
    pixel, or of the plateau of equal maxima that upsampling makes) and a hit counted when
    that point is in the box, or within ``tolerance`` pixels of it (Euclidean distance to the
    rectangle; Zhang et al. used 15 pixels). Default 0: inside. A flat map points nowhere:
    a miss.

    Args:
        map_hw: ``(h, w)`` map covering the whole frame of the box.
        box_xywh: ``(x, y, w, h)`` in pixels of that frame.
        size: ``(W, H)`` of the frame; None when the map already has the frame's size.
        tolerance: margin in pixels.

    Returns:
        True for a hit.
    """
    m = _np(map_hw, "map_hw")
    if m.ndim != 2:
        raise DataError(f"map_hw has shape {m.shape}; give one (h, w) map.")
    if size is not None:
        m = upsample_map(m, size)
    peak = map_peak(m)
    return peak is not None and _point_in_box(peak[0], peak[1], _box(box_xywh), float(tolerance))


def box_iou(a: Any, b: Any) -> float:
    """IoU of two boxes ``(x, y, w, h)`` (continuous coordinates)."""
    a, b = _box(a), _box(b)
    inter = _intersection(a, b)
    union = float(a[2] * a[3]) + float(b[2] * b[3]) - inter
    return inter / union if union > 0 else 0.0


def iobb(detected: Any, truth: Any) -> float:
    """Intersection over the *detected* box's area (Wang et al. 2017's IoBB)."""
    d = _box(detected)
    area = float(d[2] * d[3])
    return _intersection(d, _box(truth)) / area if area > 0 else 0.0


def _intersection(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return float(max(w, 0.0) * max(h, 0.0))


def box_from_map(binary: np.ndarray) -> tuple[float, float, float, float] | None:
    """Bounding box ``(x, y, w, h)`` of the largest 8-connected component of a binary mask.

    Args:
        binary: boolean ``(H, W)`` mask.

    Returns:
        The box in pixels (covering whole pixels), or None when the mask is empty.
    """
    binary = np.asarray(binary, dtype=bool)
    labels, n = ndimage.label(binary, structure=np.ones((3, 3), dtype=int))
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    biggest = int(np.argmax(sizes)) + 1
    rows, cols = np.nonzero(labels == biggest)
    x0, y0 = int(cols.min()), int(rows.min())
    return float(x0), float(y0), float(cols.max() - x0 + 1), float(rows.max() - y0 + 1)


def iou_at_threshold(
    map_hw: Any,
    box_xywh: Any,
    threshold: float = 0.5,
    size: Sequence[float] | None = None,
    mode: str = "mask",
) -> float:
    """IoU between a map, normalised to [0, 1] and binarised at ``threshold``, and a box.

    Args:
        map_hw: ``(h, w)`` map covering the whole frame of the box.
        box_xywh: ``(x, y, w, h)`` in pixels of that frame.
        threshold: cut-off on the min-max normalised map (pixels ``>= threshold`` are in).
        size: ``(W, H)`` of the frame; None when the map already has the frame's size.
        mode: ``"mask"``: IoU of the binary mask with the box's filled rectangle (pixel
            counts). ``"bbox"``: IoU of the bounding box of the mask's largest connected
            component with the box (the box-generation step of Wang et al. 2017).

    Returns:
        The IoU in [0, 1]; 0 when nothing is above the threshold.
    """
    m = _np(map_hw, "map_hw")
    if m.ndim != 2:
        raise DataError(f"map_hw has shape {m.shape}; give one (h, w) map.")
    if size is not None:
        m = upsample_map(m, size)
    _check_threshold(threshold)
    binary = normalize_map(m) >= threshold
    return _iou_of_binary(binary, _box(box_xywh), mode)


def _check_threshold(threshold: float) -> None:
    if not (0.0 < float(threshold) <= 1.0):
        raise ConfigError(f"threshold={threshold!r}: give a cut-off in (0, 1] on the normalised map.")


def _iou_of_binary(binary: np.ndarray, box: np.ndarray, mode: str) -> float:
    H, W = binary.shape
    if mode == "mask":
        truth = box_mask(box, (W, H))
        union = np.count_nonzero(binary | truth)
        return np.count_nonzero(binary & truth) / union if union else 0.0
    if mode == "bbox":
        det = box_from_map(binary)
        return 0.0 if det is None else box_iou(det, box)
    raise ConfigError(f"mode={mode!r}: use 'mask' or 'bbox'.")


