"""Heatmaps of conv5 features over the image (Fig. 5) and per-class attention maps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import CLASSES
from ..errors import DataError
from ..localize import upsample_map
from .common import (TRUE_COLOR, abbr, box_list, draw_boxes, fig_ax, frame_axis, grey, grid, image_axis, one_label_set,
                     rescale_boxes, to_numpy)

# matplotlib (and seaborn, ipywidgets where used) is imported inside the functions that draw:
# `import cral_lib.viz` must not load it or choose its backend (tests/test_viz.py checks both).


def feature_heatmap(conv5: Any) -> np.ndarray:
    """The paper's Fig. 5 heatmap: absolute value of conv5 features, maximum over channels.

    Section 4.5: "we first take the absolute value of the feature values at each position
    from a specific layer (the conv_5 layer of ResNet-50), and then count the maximum values
    along feature channels".

    Args:
        conv5: ``(B, N, h, w)`` features (``model(x, return_maps=True)["conv5"]``) or one
            ``(N, h, w)`` map; numpy or torch.

    Returns:
        ``(B, h, w)`` heatmaps (``(h, w)`` for a single map), float32.
    """
    f = to_numpy(conv5)
    if f.ndim not in (3, 4):
        raise DataError(f"conv5 has shape {f.shape}; give (B, N, h, w) or (N, h, w) features.")
    return np.abs(f).max(axis=-3).astype(np.float32)


def overlay_heatmap(
    image: Any,
    heat: Any,
    boxes: Any = None,
    labels: Sequence[str] | None = None,
    ax: Any = None,
    alpha: float = 0.45,
    *,
    cmap: str = "jet",
    window: Sequence[float] | None = None,
    vrange: tuple[float, float] | None = None,
    boxes_frame: Sequence[float] | None = None,
    title: str | None = None,
    colorbar: bool = False,
    cells: bool = False,
) -> Any:
    """Draw a heatmap, upsampled bilinearly, over a grey image, with ground-truth boxes.

    Args:
        image: the image (see the module notes on shapes).
        heat: ``(h, w)`` map (a :func:`feature_heatmap`, one class's attention, a CAM).
        boxes: ``(K, 4)`` boxes ``(x, y, w, h)``, a DataFrame with ``x, y, w, h`` (and
            ``label``), or a list of ``(label, box)`` pairs.
        labels: names written on the boxes (default: the DataFrame's ``label`` column).
        ax: axes to draw in; a new figure when None.
        alpha: opacity of the heatmap.
        cmap: colour map of the heatmap.
        window: ``(x0, y0, w, h)`` of the image that the map covers, in image pixels (the
            network's crop); None for the whole image.
        vrange: ``(vmin, vmax)`` of the colour scale; None scales the map to its own range
            (min-max), which shows where it peaks but not how high.
        boxes_frame: ``(W, H)`` of the frame the boxes are given in, when it is not the image.
        title: axes title.
        colorbar: add a colour bar.
        cells: draw the map as it is, one flat square per cell with thin lines between the
            cells, instead of upsampled (shows the map's real resolution).

    Returns:
        The Figure.
    """
    fig, ax = fig_ax(ax, (5, 5))
    img = grey(image)
    H, W = img.shape
    x0, y0, ww, wh = (0.0, 0.0, float(W), float(H)) if window is None else (float(v) for v in window)
    hmap = to_numpy(heat).astype(np.float64)
    if hmap.ndim == 3 and hmap.shape[0] == 1:
        hmap = hmap[0]
    if hmap.ndim != 2:
        raise DataError(f"heat has shape {hmap.shape}; give one (h, w) map.")
    up = hmap if cells else upsample_map(hmap, (max(1, round(ww)), max(1, round(wh))))
    if vrange is None:
        lo, hi = float(up.min()), float(up.max())
        up = np.zeros_like(up) if hi <= lo else (up - lo) / (hi - lo)
        vmin, vmax = 0.0, 1.0
    else:
        vmin, vmax = vrange
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, extent=(0, W, H, 0), interpolation="bilinear")
    im = ax.imshow(up, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax, extent=(x0, x0 + ww, y0 + wh, y0),
                   interpolation="nearest" if cells else "bilinear")
    if cells:
        h, w = hmap.shape
        ax.vlines([x0 + k * ww / w for k in range(1, w)], y0, y0 + wh, colors="white", lw=0.4, alpha=0.6)
        ax.hlines([y0 + k * wh / h for k in range(1, h)], x0, x0 + ww, colors="white", lw=0.4, alpha=0.6)
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    blist = box_list(boxes)
    if labels is not None:
        if len(labels) != len(blist):
            raise DataError(f"{len(labels)} labels for {len(blist)} boxes; give one label per box.")
        blist = [(str(lab), b) for lab, (_, b) in zip(labels, blist)]
    draw_boxes(ax, rescale_boxes(blist, boxes_frame, (H, W)))
    image_axis(ax)
    if title:
        ax.set_title(title, fontsize=9)
    if colorbar:
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return fig


def _attention_stack(attention: Any, n_classes: int) -> np.ndarray:
    a = to_numpy(attention).astype(np.float64)
    if a.ndim != 3 or a.shape[0] not in (1, n_classes):
        raise DataError(
            f"attention has shape {a.shape}; give (C, h, w) with C = {n_classes} classes, or (1, h, w) "
            "for the no_category ablation's shared map."
        )
    return a


def plot_attention_grid(
    image: Any,
    attention: Any,
    classes: Sequence[str] = CLASSES,
    probs: Any = None,
    labels: Any = None,
    boxes: Any = None,
    *,
    ncols: int = 5,
    vrange: tuple[float, float] | None = (0.0, 1.0),
    alpha: float = 0.5,
    boxes_frame: Sequence[float] | None = None,
    window: Sequence[float] | None = None,
    fig: Any = None,
) -> Any:
    """One panel per class: the class's attention map a^c over the image, true classes framed.

    The first panel shows the image with its true labels (and boxes). Then one panel per
    class, titled with the class (and its predicted probability); the classes the image
    truly has are framed and titled in red. For the ``no_category`` ablation, whose single
    map is shared by all classes (``(1, h, w)``), one map panel is drawn.

    Args:
        image: the network's input or the original image (see ``window``).
        attention: ``(C, h, w)`` attention scores (sigmoid outputs, in [0, 1]) or ``(1, h, w)``.
        classes: class names of the channels.
        probs: optional ``(C,)`` predicted probabilities.
        labels: optional ``(C,)`` 0/1 labels, or a list of class names.
        boxes: optional boxes (DataFrame with ``label, x, y, w, h``, or ``(label, box)``
            pairs); each is drawn on the image panel and on its class's panel.
        ncols: panels per row.
        vrange: colour range of the maps; ``(0, 1)`` (default) keeps the classes comparable,
            None scales each map to its own range.
        alpha: opacity of the maps.
        boxes_frame: ``(W, H)`` of the boxes' frame when it is not the image's.
        window: ``(x0, y0, w, h)`` of the image the maps cover (see :func:`overlay_heatmap`).
        fig: an existing figure to draw into (it should be empty).

    Returns:
        The Figure, with ``1 + C`` axes (``2`` for a shared map).
    """
    classes = [str(c) for c in classes]
    att = _attention_stack(attention, len(classes))
    truth = one_label_set(labels, classes)
    p = None if probs is None else to_numpy(probs).reshape(-1)
    if p is not None and p.shape[0] != len(classes):
        raise DataError(f"probs has {p.shape[0]} values for {len(classes)} classes.")
    img = grey(image)
    blist = rescale_boxes(box_list(boxes), boxes_frame, img.shape)
    n_panels = 1 + att.shape[0]
    fig, axes = grid(n_panels, ncols, (2.6, 2.8), fig=fig)
    ax0 = axes[0]
    ax0.imshow(img, cmap="gray", vmin=0, vmax=1)
    draw_boxes(ax0, blist, fontsize=6)
    image_axis(ax0)
    ax0.set_title("image: " + (", ".join(abbr(c) for c in classes if c in truth) or "No Finding"), fontsize=8)
    for k, ax in enumerate(axes[1:]):
        if att.shape[0] == 1:
            name, shown = "shared map (w/o category)", blist
            is_true = False
        else:
            name = classes[k]
            shown = [(lab, b) for lab, b in blist if lab == name or lab == "Infiltrate" and name == "Infiltration"]
            is_true = name in truth
        overlay_heatmap(img, att[k], boxes=shown, ax=ax, alpha=alpha, vrange=vrange, window=window)
        title = name if att.shape[0] == 1 else abbr(name)
        if p is not None and att.shape[0] > 1:
            title += f"  p={p[k]:.2f}"
        ax.set_title(title, fontsize=8, color=TRUE_COLOR if is_true else "black",
                     fontweight="bold" if is_true else "normal")
        if is_true:
            frame_axis(ax, TRUE_COLOR)
    fig.tight_layout()
    return fig


__all__ = ['feature_heatmap', 'overlay_heatmap', 'plot_attention_grid']
