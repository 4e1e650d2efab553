"""A whole test set: every box against its class's map, the summary per class, the ceiling.

See :mod:`cral_lib.localize` for the measures and the frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import CLASSES
from ..errors import ConfigError, DataError
from .maps import (
    IOU_THRESHOLDS, BOX_LABEL_ALIASES, _box, _float_size, _intersection, _iou_of_binary, _check_threshold,
    _np, _point_in_box, box_from_map, box_iou, iobb, map_peak, normalize_map, upsample_map,
)



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


class _EvalGrid:
    """The grid the measures are computed on: the original frame scaled to ``eval_size``, with the
    crop window on it in whole pixels, clipped to the image."""

    def __init__(self, image_size: Any, crop: Sequence[float] | None, eval_size: int | None) -> None:
        W, H = _float_size(image_size, "image_size")
        x0, y0, cw, ch = (0.0, 0.0, W, H) if crop is None else (float(v) for v in crop)
        if cw <= 0 or ch <= 0:
            raise ConfigError(f"crop={crop!r}: give (x0, y0, width, height) with a positive size.")
        s = 1.0 if eval_size is None else float(eval_size) / max(W, H)
        self.scale = s
        self.gw, self.gh = max(1, round(W * s)), max(1, round(H * s))
        self.wx0, self.wy0 = round(x0 * s), round(y0 * s)
        self.ww, self.wh = max(1, round(cw * s)), max(1, round(ch * s))
        self.gx0, self.gy0 = max(self.wx0, 0), max(self.wy0, 0)
        self.gx1, self.gy1 = min(self.wx0 + self.ww, self.gw), min(self.wy0 + self.wh, self.gh)
        if self.gx1 <= self.gx0 or self.gy1 <= self.gy0:
            raise ConfigError(f"crop={crop!r} does not overlap the image of size {image_size!r}.")
        self.valid = np.zeros((self.gh, self.gw), dtype=bool)
        self.valid[self.gy0 : self.gy1, self.gx0 : self.gx1] = True
        self.window = np.array([x0, y0, cw, ch])

    def place(self, map_hw: np.ndarray) -> np.ndarray:
        """The map upsampled onto the window, inside a zero grid of the whole frame."""
        up = upsample_map(map_hw, (self.ww, self.wh))
        full = np.zeros((self.gh, self.gw))
        full[self.gy0 : self.gy1, self.gx0 : self.gx1] = up[self.gy0 - self.wy0 : self.gy1 - self.wy0,
                                                            self.gx0 - self.wx0 : self.gx1 - self.wx0]
        return full


def pointing_ceiling(
    map_size: Sequence[int],
    boxes: pd.DataFrame,
    image_size: Sequence[float] = (1024, 1024),
    *,
    crop: Sequence[float] | None = None,
    tolerance: float = 0.0,
    eval_size: int | None = 256,
) -> np.ndarray:
    """For each box: could *any* map of ``map_size`` cells hit it in the pointing game?

    An ``h x w`` map upsampled bilinearly peaks at the centre of its top cell (or, at the border,
    at the centre of the clamped plateau), so it can point at only ``h w`` places of the window.
    A box that holds none of them is missed by every such map. The mean of the returned array is
    the *ceiling* of the pointing accuracy at that resolution: what a perfect map of that size
    would score on these boxes (each place is found as :func:`localization_scores` finds a peak:
    a map that is 1 in one cell and 0 elsewhere, on the same grid).

    Args:
        map_size: ``(h, w)`` cells of the map.
        boxes: the boxes (columns ``x``, ``y``, ``w``, ``h`` in pixels of the original image).
        image_size, crop, tolerance, eval_size: as in :func:`localization_scores`.

    Returns:
        One bool per box (in the order of ``boxes``).
    """
    h, w = (int(v) for v in map_size)
    if h < 1 or w < 1:
        raise ConfigError(f"map_size={map_size!r}: give (h, w) of at least one cell each.")
    grid = _EvalGrid(image_size, crop, eval_size)
    points = []
    for i in range(h):
        for j in range(w):
            one = np.zeros((h, w))
            one[i, j] = 1.0
            points.append(map_peak(grid.place(one), grid.valid))
    points = [p for p in points if p is not None]
    t = float(tolerance) * grid.scale
    return np.array([any(_point_in_box(px, py, _box(b) * grid.scale, t) for px, py in points)
                     for b in boxes[["x", "y", "w", "h"]].to_numpy(dtype=float)], dtype=bool)


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
    grid = _EvalGrid(image_size, crop, eval_size)
    s, valid = grid.scale, grid.valid
    window = grid.window

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
            cache[key] = grid.place(m[r, c])
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
