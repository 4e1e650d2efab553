"""The top-k predictions of each image, true labels highlighted (Fig. 6)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import CLASSES
from ..errors import ConfigError, DataError
from .common import MISS_COLOR, TRUE_COLOR, abbr, batch, image_axis, pyplot, to_numpy

# matplotlib (and seaborn, ipywidgets where used) is imported inside the functions that draw:
# `import cral_lib.viz` must not load it or choose its backend (tests/test_viz.py checks both).


def plot_topk(
    images: Any,
    probs: Any,
    labels: Any,
    k: int = 8,
    classes: Sequence[str] = CLASSES,
    *,
    ncols: int = 4,
    threshold: float | None = None,
    fig: Any = None,
) -> Any:
    """Each image with its top-k predicted classes and probabilities (the paper's Fig. 6).

    Under each image, a bar chart of the k most probable classes. True labels the model
    finds are drawn in red (:data:`TRUE_COLOR`); true labels it misses in blue
    (:data:`MISS_COLOR`), appended below the top k when they rank lower, as the paper does
    for "Edema" (0.0130, ninth). A true label counts as found when it is in the top k, or,
    with ``threshold``, when its probability reaches the threshold.

    Args:
        images: ``(B, H, W)`` or ``(B, C, H, W)`` images.
        probs: ``(B, C)`` probabilities.
        labels: ``(B, C)`` 0/1 labels.
        k: how many predictions to list.
        classes: class names of the columns.
        ncols: images per row.
        threshold: optional probability a true label must reach to count as found.
        fig: an existing figure to draw into.

    Returns:
        The Figure, with two axes per image (image, bars).
    """
    classes = [str(c) for c in classes]
    imgs = batch(images)
    p = to_numpy(probs).astype(float)
    y = to_numpy(labels)
    B = len(imgs)
    if p.shape != (B, len(classes)) or y.shape != p.shape:
        raise DataError(f"probs {p.shape} and labels {y.shape} must both be ({B} images, {len(classes)} classes).")
    if not 1 <= k <= len(classes):
        raise ConfigError(f"k={k}: give 1 <= k <= {len(classes)}.")
    ncols = max(1, min(ncols, B))
    nrows = math.ceil(B / ncols)
    plt = pyplot()
    if fig is None:
        fig = plt.figure(figsize=(3.2 * ncols, 5.4 * nrows))
    gs = fig.add_gridspec(2 * nrows, ncols, height_ratios=[1.0, 0.9] * nrows)
    for b in range(B):
        r, c = divmod(b, ncols)
        ax_img = fig.add_subplot(gs[2 * r, c])
        ax_img.imshow(imgs[b], cmap="gray", vmin=0, vmax=1)
        image_axis(ax_img)
        true = set(np.flatnonzero(y[b] > 0.5))
        ax_img.set_title(", ".join(abbr(classes[t]) for t in sorted(true)) or "No Finding", fontsize=8)
        order = np.argsort(-p[b], kind="stable")
        top = list(order[:k])
        shown = top + [t for t in order[k:] if t in true]
        colors, weights = [], []
        for t in shown:
            if t in true:
                found = t in top if threshold is None else p[b, t] >= threshold
                colors.append(TRUE_COLOR if found else MISS_COLOR)
                weights.append("bold")
            else:
                colors.append("#9a9a9a")
                weights.append("normal")
        ax = fig.add_subplot(gs[2 * r + 1, c])
        ypos = np.arange(len(shown))[::-1]
        ax.barh(ypos, p[b, shown], color=colors, height=0.7)
        ax.set_yticks(ypos)
        ax.set_yticklabels([abbr(classes[t]) for t in shown], fontsize=7)
        for tick, color, weight in zip(ax.get_yticklabels(), colors, weights):
            tick.set_color(color if weight == "bold" else "black")
            tick.set_fontweight(weight)
        for yy, t in zip(ypos, shown):
            ax.text(min(p[b, t], 1.0) + 0.02, yy, f"{p[b, t]:.4f}", va="center", fontsize=6)
        ax.set_xlim(0, 1.25)
        ax.tick_params(axis="x", labelsize=6)
        ax.spines[["top", "right"]].set_visible(False)
    from matplotlib.patches import Patch

    fig.legend(
        handles=[
            Patch(color=TRUE_COLOR, label="true label, found"),
            Patch(color=MISS_COLOR, label="true label, missed"),
            Patch(color="#9a9a9a", label="other class"),
        ],
        loc="lower center", ncol=3, fontsize=8, frameon=False,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


__all__ = ['plot_topk']
