"""How well a model's maps point at the lesions that NIH boxed.

ChestX-ray14 ships 984 bounding boxes (``BBox_List_2017.csv``) for 880 test images and 8 of
the 14 findings, in the frame of the 1024 x 1024 original image, as ``x, y, w, h`` (top-left
corner, width, height, in pixels). CRAL is trained with image labels only, so these boxes
measure what its attention maps (or a baseline's class activation maps) learned to look at.
Two measures are computed for every box:

- the **pointing game** (Zhang et al., "Top-down neural attention by excitation backprop",
  ECCV 2016): a hit when the maximum of the map, upsampled to the image, falls inside the
  box. Zhang et al. allow a tolerance of 15 pixels around the box; here the tolerance is a
  parameter, **0 by default** (the point must be inside the box itself);
- the **IoU at a threshold**: the map is scaled to [0, 1] (min-max over the area the network
  saw), binarised at ``threshold``, and compared with the box. Two variants:
  ``mode="mask"`` (default): IoU of the binary mask with the box's filled rectangle;
  ``mode="bbox"``: the bounding box of the largest connected component of the mask, compared
  with the ground-truth box, as in the box-generation step of Wang et al., "ChestX-ray8",
  CVPR 2017. Wang et al. report accuracy at T(IoU) and T(IoBB) (intersection over the
  *detected* box's area); :func:`localization_scores` gives all three numbers.

Frames. A map of h x w cells (7 x 7 for a 224 input) covers the network's input, which is
a window of the original image: the center crop of the test transform (resize to 256, crop
224: the window ``(64, 64, 896, 896)`` of a 1024 image, see :func:`center_crop_window`) or
the whole image. Boxes stay in the original frame; the map is upsampled (bilinear, as
``torch.nn.functional.interpolate(..., align_corners=False)``) onto its window, and the
part of a box outside the window counts as missed. Sizes are ``(width, height)`` throughout,
as in the NIH CSV and PIL; arrays are ``(..., height, width)``.

Everything works on numpy arrays and accepts torch tensors (moved to the CPU). This module
imports neither torch nor matplotlib (SciPy, a dependency of scikit-learn, finds the
connected components).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from . import CLASSES
from .data.files import BOX_LABEL_ALIASES as NIH_BOX_LABEL_ALIASES
from .errors import ConfigError, DataError

__all__ = [
    "BOX_LABEL_ALIASES",
    "IOU_THRESHOLDS",
    "box_from_map",
    "box_iou",
    "box_mask",
    "center_crop_window",
    "iobb",
    "iou_at_threshold",
    "localization_scores",
    "map_peak",
    "normalize_map",
    "pointing_game",
    "scale_boxes",
    "summarize_localization",
    "upsample_map",
]

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


# ----------------------------------------------------------------------------- a whole test set


def _canonical_label(label: str, classes: Sequence[str]) -> str:
    name = BOX_LABEL_ALIASES.get(str(label), str(label))
    if name in classes:
        return name
    folded = {c.lower().replace(" ", "_"): c for c in classes}
    key = name.lower().replace(" ", "_")
    if key in folded:
        return folded[key]
    raise DataError(
        f"box label {label!r} is not one of the classes ({', '.join(classes)}); "
        "pass the classes the maps were made for, or drop boxes of other findings."
    )


def _checked_maps_and_boxes(maps: Any, boxes: Any, classes: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """The maps as an ``(N, C or 1, h, w)`` array and the class names, after checking them and the boxes."""
    m = _np(maps, "maps")
    if m.ndim != 4:
        raise DataError(f"maps has shape {m.shape}; give (N images, C classes or 1, h, w).")
    classes = [str(c) for c in classes]
    if m.shape[1] not in (1, len(classes)):
        raise DataError(
            f"maps has {m.shape[1]} channels but there are {len(classes)} classes; give one map per "
            "class, or a single shared map (the no_category ablation)."
        )
    if not np.isfinite(m).all():
        raise DataError("maps hold NaN or infinite values; check the model's outputs.")
    if not isinstance(boxes, pd.DataFrame):
        raise DataError(f"boxes is a {type(boxes).__name__}; give a DataFrame with columns row, label, x, y, w, h.")
    missing = [c for c in ("row", "label", "x", "y", "w", "h") if c not in boxes.columns]
    if missing:
        raise DataError(
            f"boxes lacks the columns {missing} (it has {list(boxes.columns)}); give row, label, x, y, w, h."
        )
    return m, classes


def localization_scores(
    maps: Any,
    boxes: pd.DataFrame,
    image_size: Sequence[float] = (1024, 1024),
    classes: Sequence[str] = CLASSES,
    *,
    crop: Sequence[float] | None = None,
    threshold: float = 0.5,
    tolerance: float = 0.0,
    eval_size: int | None = 256,
) -> pd.DataFrame:
    """Pointing game and IoU of every ground-truth box against its class's map.

    Args:
        maps: ``(N, C, h, w)`` maps, one per image and class: CRAL's attention
            (``model(x, return_maps=True)["attention"]``) or a baseline's
            ``class_activation_maps``. ``(N, 1, h, w)`` (the ``no_category`` ablation's
            shared map) is used for every class.
        boxes: one row per box with columns ``row`` (index of the image along the first axis
            of ``maps``), ``label`` (class name; NIH's "Infiltrate" is accepted), and ``x``,
            ``y``, ``w``, ``h`` in pixels of the original image.
        image_size: ``(W, H)`` of the original image the boxes are in.
        classes: the class of each map channel.
        crop: ``(x0, y0, width, height)``: the window of the original image that the network's
            input showed (see :func:`center_crop_window`); None for the whole image.
        threshold: cut-off for the IoU measures (on the map normalised over the window).
        tolerance: pointing-game margin in original pixels (0: inside the box).
        eval_size: the longer side, in pixels, of the grid the measures are computed on
            (the original frame scaled down; 256 keeps it fast). None: the original size.

    Returns:
        A DataFrame, one row per box, with columns ``row``, ``label`` (as in
        :data:`cral_lib.CLASSES`), ``x``, ``y``, ``w``, ``h``, ``hit`` (pointing game),
        ``iou`` (mask IoU), ``iou_bbox`` (largest-component box IoU), ``iobb`` (intersection
        over that detected box's area) and ``visible`` (fraction of the box inside the window).
        ``attrs`` records the threshold, tolerance, crop and eval size.
    """
    m, classes = _checked_maps_and_boxes(maps, boxes, classes)
    _check_threshold(threshold)
    W, H = _float_size(image_size, "image_size")
    x0, y0, cw, ch = (0.0, 0.0, W, H) if crop is None else (float(v) for v in crop)
    if cw <= 0 or ch <= 0:
        raise ConfigError(f"crop={crop!r}: give (x0, y0, width, height) with a positive size.")
    s = 1.0 if eval_size is None else float(eval_size) / max(W, H)
    gw, gh = max(1, round(W * s)), max(1, round(H * s))
    # the window on the evaluation grid, in whole pixels, clipped to the image
    wx0, wy0 = round(x0 * s), round(y0 * s)
    ww, wh = max(1, round(cw * s)), max(1, round(ch * s))
    gx0, gy0, gx1, gy1 = max(wx0, 0), max(wy0, 0), min(wx0 + ww, gw), min(wy0 + wh, gh)
    if gx1 <= gx0 or gy1 <= gy0:
        raise ConfigError(f"crop={crop!r} does not overlap the image of size {image_size!r}.")
    valid = np.zeros((gh, gw), dtype=bool)
    valid[gy0:gy1, gx0:gx1] = True
    window = np.array([x0, y0, cw, ch])

    records = []
    cache: dict[tuple[int, int], np.ndarray] = {}
    for rec in boxes.itertuples(index=False):
        r = int(getattr(rec, "row"))
        if not (0 <= r < m.shape[0]):
            raise DataError(
                f"box row {r} is outside the {m.shape[0]} maps given; 'row' indexes the first axis of maps."
            )
        label = _canonical_label(getattr(rec, "label"), classes)
        c = 0 if m.shape[1] == 1 else classes.index(label)
        box = _box([getattr(rec, k) for k in ("x", "y", "w", "h")])
        key = (r, c)
        if key not in cache:
            up = upsample_map(m[r, c], (ww, wh))
            full = np.zeros((gh, gw))
            full[gy0:gy1, gx0:gx1] = up[gy0 - wy0 : gy1 - wy0, gx0 - wx0 : gx1 - wx0]
            cache[key] = full
        full = cache[key]
        gbox = box * s
        peak = map_peak(full, valid)
        hit = peak is not None and _point_in_box(peak[0], peak[1], gbox, float(tolerance) * s)
        binary = normalize_map(full, valid) >= threshold
        det = box_from_map(binary)
        area = float(box[2] * box[3])
        records.append(
            {
                "row": r,
                "label": label,
                "x": box[0],
                "y": box[1],
                "w": box[2],
                "h": box[3],
                "hit": bool(hit),
                "iou": _iou_of_binary(binary, gbox, "mask"),
                "iou_bbox": 0.0 if det is None else box_iou(det, gbox),
                "iobb": 0.0 if det is None else iobb(det, gbox),
                "visible": _intersection(box, window) / area if area > 0 else 0.0,
            }
        )
        if len(cache) > 256:
            cache.clear()
    columns = ["row", "label", "x", "y", "w", "h", "hit", "iou", "iou_bbox", "iobb", "visible"]
    out = pd.DataFrame.from_records(records, columns=columns)
    out.attrs.update(
        {
            "threshold": float(threshold),
            "tolerance": float(tolerance),
            "crop": None if crop is None else tuple(float(v) for v in crop),
            "eval_size": eval_size,
            "shared_map": m.shape[1] == 1,
        }
    )
    return out


def summarize_localization(
    df: pd.DataFrame, iou_column: str = "iou", thresholds: Sequence[float] = IOU_THRESHOLDS
) -> pd.DataFrame:
    """Per-class summary of :func:`localization_scores`.

    Args:
        df: the per-box table.
        iou_column: which overlap the accuracies use: ``"iou"`` (mask), ``"iou_bbox"`` or
            ``"iobb"`` (Wang et al.'s T(IoBB)).
        thresholds: the overlap thresholds T of the accuracies.

    Returns:
        A DataFrame indexed by class (in the order of :data:`cral_lib.CLASSES` when they are
        those names) plus ``"All boxes"``, with columns ``n_boxes``, ``pointing_acc``,
        ``mean_iou`` (mean of ``iou_column``) and ``acc@0.1`` ... ``acc@0.5`` (fraction of
        boxes whose overlap is at least T).
    """
    missing = [c for c in ("label", "hit", iou_column) if c not in df.columns]
    if missing:
        raise DataError(f"the table lacks the columns {missing}; pass the output of localization_scores.")
    order = [c for c in CLASSES if c in set(df["label"])] + sorted(set(df["label"]) - set(CLASSES))
    groups = [(name, df[df["label"] == name]) for name in order] + [("All boxes", df)]
    rows = []
    for name, g in groups:
        ov = g[iou_column].to_numpy(dtype=float)
        row = {
            "class": name,
            "n_boxes": len(g),
            "pointing_acc": float(g["hit"].mean()) if len(g) else math.nan,
            "mean_iou": float(ov.mean()) if len(g) else math.nan,
        }
        for t in thresholds:
            row[f"acc@{t:g}"] = float((ov >= t).mean()) if len(g) else math.nan
        rows.append(row)
    out = pd.DataFrame(rows).set_index("class")
    out.attrs["iou_column"] = iou_column
    return out
