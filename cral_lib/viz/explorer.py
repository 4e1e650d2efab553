"""The interactive explorer of attention maps (ipywidgets) and its static twin for the printed book."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import CLASSES
from ..errors import ConfigError, DataError
from .common import TRUE_COLOR, abbr, batch, frame_axis, grid, per_image_boxes, pyplot, to_numpy
from .heatmaps import overlay_heatmap

# matplotlib (and seaborn, ipywidgets where used) is imported inside the functions that draw:
# `import cral_lib.viz` must not load it or choose its backend (tests/test_viz.py checks both).


def _explorer_inputs(images, attention, probs, labels, classes):
    classes = [str(c) for c in classes]
    imgs = batch(images)
    att = to_numpy(attention).astype(float)
    B = len(imgs)
    if att.ndim != 4 or att.shape[0] != B or att.shape[1] not in (1, len(classes)):
        raise DataError(
            f"attention has shape {att.shape}; give ({B}, {len(classes)} or 1, h, w) for the {B} images."
        )
    p = to_numpy(probs).astype(float)
    y = to_numpy(labels)
    if p.shape != (B, len(classes)) or y.shape != p.shape:
        raise DataError(f"probs {p.shape} and labels {y.shape} must both be ({B}, {len(classes)}).")
    return classes, imgs, att, p, y


def _explorer_panel(ax, imgs, att, p, y, classes, per_box, i, c, alpha, boxes_frame, window):
    a = att[i, 0 if att.shape[1] == 1 else c]
    name = classes[c]
    shown = [(lab, b) for lab, b in per_box[i] if lab in (name, "Infiltrate" if name == "Infiltration" else name)]
    overlay_heatmap(imgs[i], a, boxes=shown, ax=ax, alpha=alpha, vrange=(0.0, 1.0), boxes_frame=boxes_frame,
                    window=window)
    is_true = bool(y[i, c] > 0.5)
    shared = " (shared map)" if att.shape[1] == 1 else ""
    ax.set_title(f"image {i}: {name}{shared}\np = {p[i, c]:.3f}  ({'true' if is_true else 'absent'})", fontsize=8,
                 color=TRUE_COLOR if is_true else "black")
    if is_true:
        frame_axis(ax, TRUE_COLOR)


def static_explorer_figure(
    images: Any,
    attention: Any,
    probs: Any,
    labels: Any,
    classes: Sequence[str] = CLASSES,
    boxes: Any = None,
    *,
    pairs: Sequence[tuple[int, int | str]] | None = None,
    max_pairs: int = 6,
    ncols: int = 3,
    alpha: float = 0.5,
    boxes_frame: Sequence[float] | None = None,
    window: Sequence[float] | None = None,
    fig: Any = None,
) -> Any:
    """What :func:`attention_explorer` shows, for a few (image, class) pairs, as a static figure.

    Widgets do not render in the static HTML book, so the book prints this figure next to
    the explorer.

    Args:
        images, attention, probs, labels, classes, boxes: as for :func:`attention_explorer`.
        pairs: ``(image index, class index or name)`` pairs to show; default: for the first
            images, each of their true classes (or the most probable class when none), up to
            ``max_pairs``.
        max_pairs: how many pairs the default picks.
        ncols: panels per row.
        alpha: opacity of the maps.
        boxes_frame: ``(W, H)`` of the boxes' frame when it is not the images'.
        window: ``(x0, y0, w, h)`` of the image the maps cover.
        fig: an existing figure to draw into.

    Returns:
        The Figure, one axes per pair.
    """
    classes, imgs, att, p, y = _explorer_inputs(images, attention, probs, labels, classes)
    per_box = per_image_boxes(boxes, len(imgs))
    if pairs is None:
        pairs = []
        for i in range(len(imgs)):
            cs = list(np.flatnonzero(y[i] > 0.5)) or [int(np.argmax(p[i]))]
            pairs.extend((i, int(c)) for c in cs)
        pairs = pairs[:max_pairs]
    resolved = []
    for i, c in pairs:
        ci = classes.index(c) if isinstance(c, str) else int(c)
        if not (0 <= int(i) < len(imgs)) or not (0 <= ci < len(classes)):
            raise ConfigError(f"pair ({i}, {c!r}) is out of range: {len(imgs)} images, {len(classes)} classes.")
        resolved.append((int(i), ci))
    if not resolved:
        raise ConfigError("no (image, class) pair to show; pass pairs=[(0, 'Effusion'), ...].")
    fig, axes = grid(len(resolved), ncols, (3.2, 3.5), fig=fig)
    for ax, (i, c) in zip(axes, resolved):
        _explorer_panel(ax, imgs, att, p, y, classes, per_box, i, c, alpha, boxes_frame, window)
    fig.tight_layout()
    return fig


def attention_explorer(
    images: Any,
    attention: Any,
    probs: Any,
    labels: Any,
    classes: Sequence[str] = CLASSES,
    boxes: Any = None,
    *,
    alpha: float = 0.5,
    boxes_frame: Sequence[float] | None = None,
    window: Sequence[float] | None = None,
) -> Any:
    """An interactive explorer of attention maps (ipywidgets): pick an image and a class.

    Shows the image with the chosen class's attention map over it, its ground-truth boxes of
    that class, the predicted probability and whether the class is truly present, and a bar
    of all classes' probabilities. Needs a live Jupyter kernel; for the static book use
    :func:`static_explorer_figure`.

    Args:
        images: ``(B, H, W)`` or ``(B, C, H, W)`` images.
        attention: ``(B, C, h, w)`` maps, or ``(B, 1, h, w)`` (no_category: shared by all classes).
        probs: ``(B, C)`` probabilities.
        labels: ``(B, C)`` 0/1 labels.
        classes: class names.
        boxes: optional DataFrame ``row, label, x, y, w, h`` or one list of (label, box) per image.
        alpha: opacity of the maps.
        boxes_frame: ``(W, H)`` of the boxes' frame when it is not the images'.
        window: ``(x0, y0, w, h)`` of the image the maps cover.

    Returns:
        An ``ipywidgets.VBox`` when ipywidgets can be imported; otherwise (with a warning)
        the Figure of :func:`static_explorer_figure`.
    """
    classes, imgs, att, p, y = _explorer_inputs(images, attention, probs, labels, classes)
    per_box = per_image_boxes(boxes, len(imgs))
    try:
        import ipywidgets as widgets
    except ImportError:
        warnings.warn("ipywidgets is not installed: showing a static figure instead "
                      "(pip install ipywidgets for the interactive explorer).", stacklevel=2)
        return static_explorer_figure(images, attention, probs, labels, classes, boxes, alpha=alpha,
                                      boxes_frame=boxes_frame, window=window)
    from IPython.display import display

    plt = pyplot()
    image_w = widgets.IntSlider(value=0, min=0, max=len(imgs) - 1, description="image", continuous_update=False)
    first = int(np.flatnonzero(y[0] > 0.5)[0]) if (y[0] > 0.5).any() else int(np.argmax(p[0]))
    class_w = widgets.Dropdown(options=[(name, k) for k, name in enumerate(classes)], value=first, description="class")
    out = widgets.Output()

    def redraw(*_):
        i, c = int(image_w.value), int(class_w.value)
        with out:
            out.clear_output(wait=True)
            fig = plt.figure(figsize=(9, 4.2))
            gs = fig.add_gridspec(1, 2, width_ratios=[1.1, 1])
            ax = fig.add_subplot(gs[0])
            _explorer_panel(ax, imgs, att, p, y, classes, per_box, i, c, alpha, boxes_frame, window)
            axb = fig.add_subplot(gs[1])
            colors = [TRUE_COLOR if y[i, k] > 0.5 else "#9a9a9a" for k in range(len(classes))]
            ypos = np.arange(len(classes))[::-1]
            axb.barh(ypos, p[i], color=colors, edgecolor=["black" if k == c else "none" for k in range(len(classes))])
            axb.set_yticks(ypos)
            axb.set_yticklabels([abbr(n) for n in classes], fontsize=7)
            axb.set_xlim(0, 1)
            axb.set_title("predicted probabilities (red: true labels)", fontsize=8)
            fig.tight_layout()
            display(fig)
            plt.close(fig)

    image_w.observe(redraw, names="value")
    class_w.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([image_w, class_w]), out])


__all__ = ['attention_explorer', 'static_explorer_figure']
