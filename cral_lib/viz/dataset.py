"""Example images with their labels (Fig. 3) and the co-occurrence of the labels."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import CLASSES
from ..errors import ConfigError, DataError
from .common import (abbr, batch, draw_boxes, fig_ax, grid, image_axis, label_names, per_image_boxes, rescale_boxes,
                     to_numpy)

# matplotlib (and seaborn, ipywidgets where used) is imported inside the functions that draw:
# `import cral_lib.viz` must not load it or choose its backend (tests/test_viz.py checks both).


def plot_examples(
    images: Any,
    labels: Any,
    boxes: Any = None,
    classes: Sequence[str] = CLASSES,
    ncols: int = 4,
    *,
    boxes_frame: Sequence[float] | None = None,
    titles: Sequence[str] | None = None,
    fig: Any = None,
) -> Any:
    """A grid of example images with their labels and boxes (the paper's Fig. 3).

    Args:
        images: ``(B, H, W)`` or ``(B, C, H, W)`` images, or a list of images.
        labels: ``(B, C)`` 0/1 labels or a list of lists of class names.
        boxes: optional: a DataFrame with ``row, label, x, y, w, h`` (``row`` = index in the
            batch), or one list of ``(label, box)`` pairs per image.
        classes: class names of the label columns.
        ncols: images per row.
        boxes_frame: ``(W, H)`` of the boxes' frame when it is not the images'.
        titles: optional extra first line per image (e.g. the file name).
        fig: an existing figure to draw into.

    Returns:
        The Figure, one axes per image.
    """
    classes = [str(c) for c in classes]
    imgs = batch(images)
    names = label_names(labels, classes, len(imgs))
    per_box = per_image_boxes(boxes, len(imgs))
    fig, axes = grid(len(imgs), ncols, (3.0, 3.3), fig=fig)
    for i, ax in enumerate(axes):
        ax.imshow(imgs[i], cmap="gray", vmin=0, vmax=1)
        draw_boxes(ax, rescale_boxes(per_box[i], boxes_frame, imgs[i].shape), fontsize=6)
        image_axis(ax)
        text = "\n".join(_wrap(", ".join(names[i]) or "No Finding", 34))
        if titles is not None:
            text = f"{titles[i]}\n{text}"
        ax.set_title(text, fontsize=8)
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width) or [""]


def plot_cooccurrence(
    label_matrix: Any,
    classes: Sequence[str] = CLASSES,
    normalize: str | None = None,
    ax: Any = None,
    *,
    annot: bool = True,
    abbreviate: bool = True,
) -> Any:
    """Heatmap of how often two findings occur on the same image.

    Args:
        label_matrix: ``(N, C)`` 0/1 labels (e.g. ``ChestXray14(...).labels``).
        classes: class names of the columns.
        normalize: None for counts (the diagonal holds each class's count), or
            ``"conditional"`` for ``P(column | row)``: of the images with the row's finding,
            the fraction that also have the column's (the diagonal is 1).
        ax: axes to draw in; a new figure when None.
        annot: write the numbers in the cells.
        abbreviate: label the axes with the Table 1 abbreviations.

    Returns:
        The Figure (seaborn's heatmap when seaborn is installed, matplotlib's otherwise).
    """
    y = to_numpy(label_matrix).astype(float)
    classes = [str(c) for c in classes]
    if y.ndim != 2 or y.shape[1] != len(classes):
        raise DataError(f"label_matrix has shape {y.shape}; give (N images, {len(classes)} classes) 0/1 labels.")
    counts = y.T @ y
    if normalize is None:
        mat, fmt, label = counts, ".0f", "images with both"
    elif normalize == "conditional":
        diag = np.diag(counts).copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            mat = counts / diag[:, None]
        mat[diag == 0] = np.nan
        fmt, label = ".2f", "P(column | row)"
    else:
        raise ConfigError(f"normalize={normalize!r}: use None (counts) or 'conditional'.")
    ticks = [abbr(c) for c in classes] if abbreviate else classes
    frame = pd.DataFrame(mat, index=ticks, columns=ticks)
    own = ax is None
    fig, ax = fig_ax(ax, (0.55 * len(classes) + 2.5, 0.5 * len(classes) + 1.5))
    try:
        import seaborn as sns
    except ImportError:  # seaborn is a 'book' extra: fall back to plain matplotlib
        sns = None
    if sns is not None:
        sns.heatmap(frame, ax=ax, annot=annot, fmt=fmt, cmap="viridis", annot_kws={"fontsize": 6},
                    cbar_kws={"label": label}, square=True)
    else:
        im = ax.imshow(mat, cmap="viridis")
        ax.set_xticks(range(len(ticks)), ticks, rotation=90)
        ax.set_yticks(range(len(ticks)), ticks)
        fig.colorbar(im, ax=ax, label=label)
        if annot:
            for i in range(len(ticks)):
                for j in range(len(ticks)):
                    if not np.isnan(mat[i, j]):
                        ax.text(j, i, format(mat[i, j], fmt), ha="center", va="center", fontsize=6, color="white")
    ax.set_xlabel("finding (column)")
    ax.set_ylabel("finding (row)")
    ax.set_title("co-occurrence of findings" + ("" if normalize is None else ": P(column | row)"), fontsize=10)
    if own:
        fig.tight_layout()
    return fig


__all__ = ['plot_cooccurrence', 'plot_examples']
