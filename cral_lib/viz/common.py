"""What the figures share: colours, image and label handling, boxes, axes, and pyplot on first use."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from ..metrics.paper import ABBREVIATIONS

# matplotlib (and seaborn, ipywidgets where used) is imported inside the functions that draw:
# `import cral_lib.viz` must not load it or choose its backend (tests/test_viz.py checks both).

#: Colour of a true label the model ranks among its top predictions (red, as in Fig. 6).
TRUE_COLOR = "#d62728"
#: Colour of a true label the model misses (blue, as in Fig. 6).
MISS_COLOR = "#1f77b4"
#: Colour of the ground-truth boxes.
BOX_COLOR = "#00e000"



def pyplot():
    """matplotlib.pyplot, imported on first use."""
    import matplotlib.pyplot as plt

    return plt


def to_numpy(x: Any) -> np.ndarray:
    """A numpy array of an array-like or a torch tensor (on the CPU, in float)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x)


def fig_ax(ax: Any = None, figsize: tuple[float, float] = (6, 5)):
    """The figure of ``ax``, or a new figure and axes."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = pyplot().subplots(figsize=figsize)
    return fig, ax


def grid(n: int, ncols: int, panel: tuple[float, float] = (3.0, 3.0), fig: Any = None, **kw):
    """A figure with ``n`` axes in rows of ``ncols``; the unused cells are removed."""
    ncols = max(1, min(int(ncols), n))
    nrows = math.ceil(n / ncols)
    if fig is None:
        fig = pyplot().figure(figsize=(panel[0] * ncols, panel[1] * nrows), **kw)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]
    return fig, axes


def grey(image: Any) -> np.ndarray:
    """One image as a 2-D float array in [0, 1] for display."""
    img = to_numpy(image).astype(np.float64)
    if img.ndim == 3:
        if img.shape[0] in (1, 3):
            img = img.mean(axis=0)
        elif img.shape[-1] in (1, 3, 4):
            img = img[..., :3].mean(axis=-1)
    if img.ndim != 2:
        raise DataError(f"image has shape {to_numpy(image).shape}; give (H, W), (1 or 3, H, W) or (H, W, 3).")
    lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
    return np.zeros_like(img) if hi <= lo else (img - lo) / (hi - lo)


def batch(images: Any) -> list[np.ndarray]:
    """A batch of images as a list of 2-D float arrays in [0, 1]."""
    arr = to_numpy(images) if not isinstance(images, (list, tuple)) else None
    if arr is not None and arr.ndim in (3, 4):
        return [grey(a) for a in arr]
    if isinstance(images, (list, tuple)):
        return [grey(a) for a in images]
    raise DataError(f"images has shape {None if arr is None else arr.shape}; give (B, H, W) or (B, C, H, W).")


def label_names(labels: Any, classes: Sequence[str], n: int) -> list[list[str]]:
    """Per-image lists of class names from a (B, C) 0/1 matrix or lists of names."""
    if labels is None:
        return [[] for _ in range(n)]
    if isinstance(labels, (list, tuple)) and (len(labels) == 0 or not np.isscalar(labels[0])):
        if labels and all(isinstance(x, (list, tuple, set)) for x in labels):
            return [[str(c) for c in x] for x in labels]
    mat = to_numpy(labels)
    if mat.ndim == 1 and n == 1:
        mat = mat[None]
    if mat.ndim != 2 or mat.shape != (n, len(classes)):
        raise DataError(f"labels has shape {mat.shape}; give ({n}, {len(classes)}) 0/1 labels or lists of names.")
    return [[classes[c] for c in np.flatnonzero(row > 0.5)] for row in mat]


def one_label_set(labels: Any, classes: Sequence[str]) -> set[str]:
    """The class names of one image from a (C,) 0/1 vector or a list of names."""
    if labels is None:
        return set()
    if isinstance(labels, str):
        return {labels}
    if isinstance(labels, (list, tuple, set)) and all(isinstance(x, str) for x in labels):
        return {str(x) for x in labels}
    vec = to_numpy(labels).reshape(-1)
    if vec.shape[0] != len(classes):
        raise DataError(f"labels has {vec.shape[0]} values for {len(classes)} classes; give (C,) 0/1 labels.")
    return {classes[c] for c in np.flatnonzero(vec > 0.5)}


def box_list(boxes: Any, index: int | None = None) -> list[tuple[str, np.ndarray]]:
    """Boxes as a list of (label, xywh): from a DataFrame (row/label/x/y/w/h), arrays or pairs."""
    if boxes is None:
        return []
    if isinstance(boxes, pd.DataFrame):
        df = boxes
        if index is not None and "row" in df.columns:
            df = df[df["row"] == index]
        missing = [c for c in ("x", "y", "w", "h") if c not in df.columns]
        if missing:
            raise DataError(f"boxes lacks the columns {missing}; give x, y, w, h (and label, row).")
        labels = df["label"].astype(str).tolist() if "label" in df.columns else [""] * len(df)
        return [(lab, df.iloc[i][["x", "y", "w", "h"]].to_numpy(dtype=float)) for i, lab in enumerate(labels)]
    out = []
    for item in boxes:
        if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str):
            out.append((item[0], np.asarray(item[1], dtype=float).reshape(4)))
        else:
            out.append(("", np.asarray(to_numpy(item), dtype=float).reshape(4)))
    return out


def per_image_boxes(boxes: Any, n: int) -> list[list[tuple[str, np.ndarray]]]:
    """One list of (label, xywh) boxes per image of a batch."""
    if boxes is None:
        return [[] for _ in range(n)]
    if isinstance(boxes, pd.DataFrame):
        if "row" not in boxes.columns:
            raise DataError("boxes for several images need a 'row' column (the image's index in the batch).")
        return [box_list(boxes, i) for i in range(n)]
    if isinstance(boxes, Mapping):
        return [box_list(boxes.get(i)) for i in range(n)]
    if len(boxes) != n:
        raise DataError(f"boxes has {len(boxes)} entries for {n} images; give one list of boxes per image.")
    return [box_list(b) for b in boxes]


def rescale_boxes(boxes: list[tuple[str, np.ndarray]], frame: Any, shape: tuple[int, int]):
    """Boxes given in a ``frame`` of (W, H) pixels, in pixels of an image of ``shape`` (H, W)."""
    if frame is None:
        return boxes
    fw, fh = (float(v) for v in frame)
    h, w = shape
    f = np.array([w / fw, h / fh, w / fw, h / fh])
    return [(lab, b * f) for lab, b in boxes]


def draw_boxes(ax: Any, boxes: list[tuple[str, np.ndarray]], color: str = BOX_COLOR, fontsize: float = 8) -> None:
    """Draw labelled boxes onto an image axis."""
    from matplotlib.patches import Rectangle

    for lab, (x, y, w, h) in boxes:
        ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=color, linewidth=1.5))
        if lab:
            ax.text(x, y - 2, lab, color=color, fontsize=fontsize, va="bottom", ha="left",
                    bbox=dict(facecolor="black", alpha=0.5, pad=1, linewidth=0))


def abbr(name: str) -> str:
    """The paper's abbreviation of a class name (the name itself when it has none)."""
    return ABBREVIATIONS.get(name, name)


def frame_axis(ax: Any, color: str, width: float = 3.0) -> None:
    """A coloured frame around an axis (a hit or a miss)."""
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(color)
        spine.set_linewidth(width)


def image_axis(ax: Any) -> None:
    """An axis for an image: no ticks."""
    ax.set_xticks([])
    ax.set_yticks([])


__all__ = ["BOX_COLOR", "MISS_COLOR", "TRUE_COLOR", "abbr", "batch", "box_list", "draw_boxes", "fig_ax", "frame_axis",
           "grey", "grid", "image_axis", "label_names", "one_label_set", "per_image_boxes", "pyplot", "rescale_boxes",
           "to_numpy"]
