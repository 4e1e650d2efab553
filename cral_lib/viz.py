"""The figures of the CRAL Book: heatmaps, attention maps, ROC curves, top-k panels, widgets.

Counterparts of the paper's figures (Guan & Huang, Pattern Recognit. Lett. 2020):

- Fig. 1/2, the architecture: :func:`draw_architecture`;
- Fig. 3, examples with labels: :func:`plot_examples`;
- Fig. 4, ROC curves of the 14 classes: :func:`plot_roc_curves`, :func:`plot_roc_grid`;
- Fig. 5, heatmaps of conv5 features with ground-truth boxes: :func:`feature_heatmap` and
  :func:`overlay_heatmap`;
- Fig. 6, top-8 predictions with the true labels highlighted: :func:`plot_topk`.

And what the book adds: per-class attention maps (:func:`plot_attention_grid`), AUCs with
bootstrap intervals (:func:`plot_auc_ci`), training curves, label co-occurrence, and an
interactive explorer (:func:`attention_explorer`) with a static twin for the printed book
(:func:`static_explorer_figure`).

Conventions: every plotting function takes an optional ``ax`` (or makes its own figure),
returns the :class:`matplotlib.figure.Figure`, never calls ``plt.show()`` and never changes
global styles. matplotlib (and seaborn, where used) are imported inside the functions, so
``import cral_lib.viz`` is cheap. Images may be ``(H, W)``, ``(1, H, W)``, ``(3, H, W)`` or
``(H, W, 3)``, uint8 or float (ImageNet-normalised tensors included: each image is rescaled
to its own range for display). Boxes are ``(x, y, w, h)`` in pixels of the image *as shown*;
pass ``boxes_frame=(W, H)`` when they are in another frame (NIH boxes are in the 1024 x 1024
original), and they are rescaled.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import CLASSES
from .errors import ConfigError, DataError

__all__ = [
    "MISS_COLOR",
    "TRUE_COLOR",
    "attention_explorer",
    "draw_architecture",
    "feature_heatmap",
    "overlay_heatmap",
    "plot_attention_grid",
    "plot_auc_ci",
    "plot_cooccurrence",
    "plot_examples",
    "plot_roc_curves",
    "plot_roc_grid",
    "plot_topk",
    "plot_training_curves",
    "static_explorer_figure",
]

#: Colour of a true label the model ranks among its top predictions (red, as in Fig. 6).
TRUE_COLOR = "#d62728"
#: Colour of a true label the model misses (blue, as in Fig. 6).
MISS_COLOR = "#1f77b4"
_BOX_COLOR = "#00e000"


# ----------------------------------------------------------------------------- helpers


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x)


def _fig_ax(ax: Any = None, figsize: tuple[float, float] = (6, 5)):
    if ax is not None:
        return ax.figure, ax
    fig, ax = _plt().subplots(figsize=figsize)
    return fig, ax


def _grid(n: int, ncols: int, panel: tuple[float, float] = (3.0, 3.0), fig: Any = None, **kw):
    """A figure with ``n`` axes in rows of ``ncols``; the unused cells are removed."""
    ncols = max(1, min(int(ncols), n))
    nrows = math.ceil(n / ncols)
    if fig is None:
        fig = _plt().figure(figsize=(panel[0] * ncols, panel[1] * nrows), **kw)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]
    return fig, axes


def _grey(image: Any) -> np.ndarray:
    """One image as a 2-D float array in [0, 1] for display."""
    img = _np(image).astype(np.float64)
    if img.ndim == 3:
        if img.shape[0] in (1, 3):
            img = img.mean(axis=0)
        elif img.shape[-1] in (1, 3, 4):
            img = img[..., :3].mean(axis=-1)
    if img.ndim != 2:
        raise DataError(f"image has shape {_np(image).shape}; give (H, W), (1 or 3, H, W) or (H, W, 3).")
    lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
    return np.zeros_like(img) if hi <= lo else (img - lo) / (hi - lo)


def _batch(images: Any) -> list[np.ndarray]:
    arr = _np(images) if not isinstance(images, (list, tuple)) else None
    if arr is not None and arr.ndim in (3, 4):
        return [_grey(a) for a in arr]
    if isinstance(images, (list, tuple)):
        return [_grey(a) for a in images]
    raise DataError(f"images has shape {None if arr is None else arr.shape}; give (B, H, W) or (B, C, H, W).")


def _label_names(labels: Any, classes: Sequence[str], n: int) -> list[list[str]]:
    """Per-image lists of class names from a (B, C) 0/1 matrix or lists of names."""
    if labels is None:
        return [[] for _ in range(n)]
    if isinstance(labels, (list, tuple)) and (len(labels) == 0 or not np.isscalar(labels[0])):
        if labels and all(isinstance(x, (list, tuple, set)) for x in labels):
            return [[str(c) for c in x] for x in labels]
    mat = _np(labels)
    if mat.ndim == 1 and n == 1:
        mat = mat[None]
    if mat.ndim != 2 or mat.shape != (n, len(classes)):
        raise DataError(f"labels has shape {mat.shape}; give ({n}, {len(classes)}) 0/1 labels or lists of names.")
    return [[classes[c] for c in np.flatnonzero(row > 0.5)] for row in mat]


def _one_label_set(labels: Any, classes: Sequence[str]) -> set[str]:
    """The class names of one image from a (C,) 0/1 vector or a list of names."""
    if labels is None:
        return set()
    if isinstance(labels, str):
        return {labels}
    if isinstance(labels, (list, tuple, set)) and all(isinstance(x, str) for x in labels):
        return {str(x) for x in labels}
    vec = _np(labels).reshape(-1)
    if vec.shape[0] != len(classes):
        raise DataError(f"labels has {vec.shape[0]} values for {len(classes)} classes; give (C,) 0/1 labels.")
    return {classes[c] for c in np.flatnonzero(vec > 0.5)}


def _box_list(boxes: Any, index: int | None = None) -> list[tuple[str, np.ndarray]]:
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
            out.append(("", np.asarray(_np(item), dtype=float).reshape(4)))
    return out


def _per_image_boxes(boxes: Any, n: int) -> list[list[tuple[str, np.ndarray]]]:
    if boxes is None:
        return [[] for _ in range(n)]
    if isinstance(boxes, pd.DataFrame):
        if "row" not in boxes.columns:
            raise DataError("boxes for several images need a 'row' column (the image's index in the batch).")
        return [_box_list(boxes, i) for i in range(n)]
    if isinstance(boxes, Mapping):
        return [_box_list(boxes.get(i)) for i in range(n)]
    if len(boxes) != n:
        raise DataError(f"boxes has {len(boxes)} entries for {n} images; give one list of boxes per image.")
    return [_box_list(b) for b in boxes]


def _rescale_boxes(boxes: list[tuple[str, np.ndarray]], frame: Any, shape: tuple[int, int]):
    if frame is None:
        return boxes
    fw, fh = (float(v) for v in frame)
    h, w = shape
    f = np.array([w / fw, h / fh, w / fw, h / fh])
    return [(lab, b * f) for lab, b in boxes]


def _draw_boxes(ax: Any, boxes: list[tuple[str, np.ndarray]], color: str = _BOX_COLOR, fontsize: float = 8) -> None:
    from matplotlib.patches import Rectangle

    for lab, (x, y, w, h) in boxes:
        ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=color, linewidth=1.5))
        if lab:
            ax.text(x, y - 2, lab, color=color, fontsize=fontsize, va="bottom", ha="left",
                    bbox=dict(facecolor="black", alpha=0.5, pad=1, linewidth=0))


def _abbr(name: str) -> str:
    from .metrics import ABBREVIATIONS

    return ABBREVIATIONS.get(name, name)


def _frame_axis(ax: Any, color: str, width: float = 3.0) -> None:
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(color)
        spine.set_linewidth(width)


def _image_axis(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------- heatmaps (Fig. 5)


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
    f = _np(conv5)
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

    Returns:
        The Figure.
    """
    from .localize import upsample_map

    fig, ax = _fig_ax(ax, (5, 5))
    img = _grey(image)
    H, W = img.shape
    x0, y0, ww, wh = (0.0, 0.0, float(W), float(H)) if window is None else (float(v) for v in window)
    hmap = _np(heat).astype(np.float64)
    if hmap.ndim == 3 and hmap.shape[0] == 1:
        hmap = hmap[0]
    if hmap.ndim != 2:
        raise DataError(f"heat has shape {hmap.shape}; give one (h, w) map.")
    up = upsample_map(hmap, (max(1, round(ww)), max(1, round(wh))))
    if vrange is None:
        lo, hi = float(up.min()), float(up.max())
        up = np.zeros_like(up) if hi <= lo else (up - lo) / (hi - lo)
        vmin, vmax = 0.0, 1.0
    else:
        vmin, vmax = vrange
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, extent=(0, W, H, 0), interpolation="bilinear")
    im = ax.imshow(up, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax, extent=(x0, x0 + ww, y0 + wh, y0),
                   interpolation="bilinear")
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    blist = _box_list(boxes)
    if labels is not None:
        if len(labels) != len(blist):
            raise DataError(f"{len(labels)} labels for {len(blist)} boxes; give one label per box.")
        blist = [(str(lab), b) for lab, (_, b) in zip(labels, blist)]
    _draw_boxes(ax, _rescale_boxes(blist, boxes_frame, (H, W)))
    _image_axis(ax)
    if title:
        ax.set_title(title, fontsize=9)
    if colorbar:
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return fig


def _attention_stack(attention: Any, n_classes: int) -> np.ndarray:
    a = _np(attention).astype(np.float64)
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
    truth = _one_label_set(labels, classes)
    p = None if probs is None else _np(probs).reshape(-1)
    if p is not None and p.shape[0] != len(classes):
        raise DataError(f"probs has {p.shape[0]} values for {len(classes)} classes.")
    img = _grey(image)
    blist = _rescale_boxes(_box_list(boxes), boxes_frame, img.shape)
    n_panels = 1 + att.shape[0]
    fig, axes = _grid(n_panels, ncols, (2.6, 2.8), fig=fig)
    ax0 = axes[0]
    ax0.imshow(img, cmap="gray", vmin=0, vmax=1)
    _draw_boxes(ax0, blist, fontsize=6)
    _image_axis(ax0)
    ax0.set_title("image: " + (", ".join(_abbr(c) for c in classes if c in truth) or "No Finding"), fontsize=8)
    for k, ax in enumerate(axes[1:]):
        if att.shape[0] == 1:
            name, shown = "shared map (w/o category)", blist
            is_true = False
        else:
            name = classes[k]
            shown = [(lab, b) for lab, b in blist if lab == name or lab == "Infiltrate" and name == "Infiltration"]
            is_true = name in truth
        overlay_heatmap(img, att[k], boxes=shown, ax=ax, alpha=alpha, vrange=vrange, window=window)
        title = name if att.shape[0] == 1 else _abbr(name)
        if p is not None and att.shape[0] > 1:
            title += f"  p={p[k]:.2f}"
        ax.set_title(title, fontsize=8, color=TRUE_COLOR if is_true else "black",
                     fontweight="bold" if is_true else "normal")
        if is_true:
            _frame_axis(ax, TRUE_COLOR)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- ROC (Fig. 4)


def _class_colors(n: int) -> list:
    from matplotlib import colormaps

    # the dark half of tab20 first, then the light half: neighbours in the legend differ
    cmap = colormaps["tab20"]
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    return [cmap(order[i % 20]) for i in range(n)]


def _auc_lookup(aucs: Any, name: str) -> float | None:
    if aucs is None:
        return None
    if isinstance(aucs, pd.DataFrame):
        aucs = aucs["auc"]
    try:
        v = aucs[name]
    except (KeyError, IndexError, TypeError):
        try:
            v = aucs[_abbr(name)]
        except (KeyError, IndexError, TypeError):
            return None
    return None if v is None or pd.isna(v) else float(v)


def plot_roc_curves(
    roc: Mapping[str, pd.DataFrame],
    aucs: Any = None,
    ax: Any = None,
    title: str | None = "ROC curves",
    *,
    legend: bool = True,
) -> Any:
    """The ROC curves of all classes in one panel, AUC in the legend (the paper's Fig. 4).

    Args:
        roc: class -> DataFrame with ``fpr``, ``tpr`` (:func:`cral_lib.metrics.roc_curves`).
            An empty frame (an undefined class) is listed in the legend as undefined.
        aucs: class -> AUC (a Series, dict or :func:`cral_lib.metrics.auc_table`); None
            computes it from the curve (trapezoidal rule).
        ax: axes to draw in; a new figure when None.
        title: axes title.
        legend: draw the legend.

    Returns:
        The Figure.
    """
    own = ax is None
    fig, ax = _fig_ax(ax, (6, 6))
    colors = _class_colors(len(roc))
    for color, (name, frame) in zip(colors, roc.items()):
        if frame is None or len(frame) == 0:
            ax.plot([], [], color=color, label=f"{name} (undefined)")
            continue
        fpr, tpr = frame["fpr"].to_numpy(), frame["tpr"].to_numpy()
        auc = _auc_lookup(aucs, name)
        if auc is None:
            auc = float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))
        ax.plot(fpr, tpr, color=color, lw=1.4, label=f"{name} ({auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    if legend:
        ax.legend(loc="lower right", fontsize=7, title="class (AUC)", title_fontsize=7, frameon=True)
    if own:
        fig.tight_layout()
    return fig


def plot_roc_grid(
    rocs: Mapping[str, Mapping[str, pd.DataFrame]],
    aucs: Mapping[str, Any] | None = None,
    *,
    ncols: int = 2,
    fig: Any = None,
) -> Any:
    """Several models' ROC curves side by side, one panel per model (Fig. 4 has four).

    Args:
        rocs: model name -> the dict of :func:`cral_lib.metrics.roc_curves`.
        aucs: model name -> its AUCs (see :func:`plot_roc_curves`).
        ncols: panels per row.
        fig: an existing figure to draw into.

    Returns:
        The Figure, one axes per model.
    """
    if not rocs:
        raise ConfigError("rocs is empty; give model name -> roc_curves(...) for at least one model.")
    fig, axes = _grid(len(rocs), ncols, (5.0, 5.0), fig=fig)
    for ax, (name, roc) in zip(axes, rocs.items()):
        plot_roc_curves(roc, None if aucs is None else aucs.get(name), ax=ax, title=name)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- top-k (Fig. 6)


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
    imgs = _batch(images)
    p = _np(probs).astype(float)
    y = _np(labels)
    B = len(imgs)
    if p.shape != (B, len(classes)) or y.shape != p.shape:
        raise DataError(f"probs {p.shape} and labels {y.shape} must both be ({B} images, {len(classes)} classes).")
    if not 1 <= k <= len(classes):
        raise ConfigError(f"k={k}: give 1 <= k <= {len(classes)}.")
    ncols = max(1, min(ncols, B))
    nrows = math.ceil(B / ncols)
    plt = _plt()
    if fig is None:
        fig = plt.figure(figsize=(3.2 * ncols, 5.4 * nrows))
    gs = fig.add_gridspec(2 * nrows, ncols, height_ratios=[1.0, 0.9] * nrows)
    for b in range(B):
        r, c = divmod(b, ncols)
        ax_img = fig.add_subplot(gs[2 * r, c])
        ax_img.imshow(imgs[b], cmap="gray", vmin=0, vmax=1)
        _image_axis(ax_img)
        true = set(np.flatnonzero(y[b] > 0.5))
        ax_img.set_title(", ".join(_abbr(classes[t]) for t in sorted(true)) or "No Finding", fontsize=8)
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
        ax.set_yticklabels([_abbr(classes[t]) for t in shown], fontsize=7)
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


# ----------------------------------------------------------------------------- AUC with CIs


def plot_auc_ci(
    table_with_ci: pd.DataFrame,
    ax: Any = None,
    *,
    paper: Any = None,
    paper_label: str = "paper (Table 1)",
    title: str | None = "AUC with 95% bootstrap intervals",
) -> Any:
    """Forest plot: per-class AUC with its confidence interval, the paper's values marked.

    Args:
        table_with_ci: :func:`cral_lib.metrics.bootstrap_auc` output (``auc``, ``ci_low``,
            ``ci_high``; index = classes plus ``"Mean"``).
        ax: axes to draw in; a new figure when None.
        paper: optional class -> AUC to mark, e.g. :func:`cral_lib.metrics.paper_row`.
        paper_label: legend label of those marks.
        title: axes title.

    Returns:
        The Figure.
    """
    missing = [c for c in ("auc", "ci_low", "ci_high") if c not in table_with_ci.columns]
    if missing:
        raise DataError(f"the table lacks {missing}; pass the output of metrics.bootstrap_auc.")
    t = table_with_ci
    n = len(t)
    own = ax is None
    fig, ax = _fig_ax(ax, (6, 0.32 * n + 1.2))
    ypos = np.arange(n)[::-1].astype(float)
    is_mean = np.array([str(i) == "Mean" for i in t.index])
    ypos[is_mean] -= 0.5  # a little gap before the mean
    auc = t["auc"].to_numpy(dtype=float)
    lo = t["ci_low"].to_numpy(dtype=float)
    hi = t["ci_high"].to_numpy(dtype=float)
    err = np.vstack([auc - lo, hi - auc])
    ok = ~np.isnan(auc)
    ax.errorbar(auc[ok & ~is_mean], ypos[ok & ~is_mean], xerr=err[:, ok & ~is_mean], fmt="o", color="black",
                ecolor="grey", capsize=2, ms=4, label="this run")
    if (ok & is_mean).any():
        ax.errorbar(auc[ok & is_mean], ypos[ok & is_mean], xerr=err[:, ok & is_mean], fmt="D", color="black",
                    ecolor="grey", capsize=2, ms=5)
    for yy, name, good in zip(ypos, t.index, ok):
        if not good:
            ax.text(0.5, yy, "undefined", va="center", fontsize=7, color="grey")
    if paper is not None:
        xs, ys = [], []
        for yy, name in zip(ypos, t.index):
            v = _auc_lookup(paper, str(name))
            if v is not None:
                xs.append(v)
                ys.append(yy)
        ax.scatter(xs, ys, marker="x", color=TRUE_COLOR, s=30, zorder=3, label=paper_label)
    ax.set_yticks(ypos)
    ax.set_yticklabels([str(i) for i in t.index], fontsize=8)
    ax.axvline(0.5, color="lightgrey", lw=0.8, ls=":")
    ax.set_xlabel("AUC")
    ax.set_xlim(max(0.0, np.nanmin(np.append(lo, 0.5)) - 0.02), 1.0)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(loc="lower left", fontsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    if own:
        fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- training, data


def plot_training_curves(metrics: pd.DataFrame, x: str | None = None, *, fig: Any = None) -> Any:
    """Training curves: losses, validation AUC and learning rate, one panel each.

    Columns are grouped by name: any with "loss" in it, any with "auc" in it, and
    ``lr``/``learning_rate``. Rows where a column is empty (a metrics log mixes per-step and
    per-epoch rows) are skipped for that column.

    Args:
        metrics: the run's metrics (e.g. ``pd.read_json("metrics.jsonl", lines=True)``).
        x: the x column; default ``epoch`` if present, else ``step``, else the row number.
        fig: an existing figure to draw into.

    Returns:
        The Figure, one axes per group found.
    """
    if not isinstance(metrics, pd.DataFrame) or metrics.empty:
        raise DataError("metrics is empty; give the run's metrics as a DataFrame (one row per step or epoch).")
    if x is None:
        x = next((c for c in ("epoch", "step") if c in metrics.columns), None)
    elif x not in metrics.columns:
        raise ConfigError(f"x={x!r} is not a column of metrics ({list(metrics.columns)}).")
    xs = metrics[x] if x else pd.Series(np.arange(len(metrics)), index=metrics.index)
    numeric = [c for c in metrics.columns if c != x and pd.api.types.is_numeric_dtype(metrics[c])]
    groups = {
        "loss": [c for c in numeric if "loss" in c.lower()],
        "AUC": [c for c in numeric if "auc" in c.lower()],
        "learning rate": [c for c in numeric if c.lower() in ("lr", "learning_rate")],
    }
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        raise DataError(
            f"metrics has no loss, auc or lr column (columns: {list(metrics.columns)}); "
            "name them e.g. train_loss, val_auc, lr."
        )
    fig, axes = _grid(len(groups), len(groups), (4.2, 3.2), fig=fig)
    for ax, (group, cols) in zip(axes, groups.items()):
        for col in cols:
            ok = metrics[col].notna()
            ax.plot(xs[ok], metrics.loc[ok, col], marker="o" if ok.sum() < 40 else None, ms=3, label=col,
                    drawstyle="steps-post" if group == "learning rate" else "default")
        ax.set_xlabel(x or "row")
        ax.set_title(group, fontsize=10)
        if group == "learning rate" and (metrics[cols].dropna() > 0).all().all():
            ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


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
    imgs = _batch(images)
    names = _label_names(labels, classes, len(imgs))
    per_box = _per_image_boxes(boxes, len(imgs))
    fig, axes = _grid(len(imgs), ncols, (3.0, 3.3), fig=fig)
    for i, ax in enumerate(axes):
        ax.imshow(imgs[i], cmap="gray", vmin=0, vmax=1)
        _draw_boxes(ax, _rescale_boxes(per_box[i], boxes_frame, imgs[i].shape), fontsize=6)
        _image_axis(ax)
        text = "\n".join(_wrap(", ".join(names[i]) or "No Finding", 34))
        if titles is not None:
            text = f"{titles[i]}\n{text}"
        ax.set_title(text, fontsize=8)
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

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
    y = _np(label_matrix).astype(float)
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
    ticks = [_abbr(c) for c in classes] if abbreviate else classes
    frame = pd.DataFrame(mat, index=ticks, columns=ticks)
    own = ax is None
    fig, ax = _fig_ax(ax, (0.55 * len(classes) + 2.5, 0.5 * len(classes) + 1.5))
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


# ----------------------------------------------------------------------------- the architecture


def draw_architecture(ax: Any = None, *, title: str | None = "CRAL: category-wise residual attention learning") -> Any:
    """A block diagram of CRAL with the paper's equation numbers (Fig. 1 and 2 of the paper).

    Input X-ray -> backbone (ResNet-50 or DenseNet-121, cut at conv5, Eq. 1) -> features F
    (N x 7 x 7) -> attention branch att1/att2 (Eq. 2) -> sigmoid scores A (C x 7 x 7, Eq. 3)
    -> for each class c: H^c = F + a^c (.) F = (1 + a^c) (.) F (Eq. 4-5) -> ReLU (Eq. 6) ->
    global average pooling (Eq. 7) -> FC_c (Eq. 8) -> sigmoid p_c (Eq. 9); binary
    cross-entropy over the C classes (Eq. 10). For att2, a trunk of two residual units turns
    F into F~, which replaces F in Eq. 4-5.

    Args:
        ax: axes to draw in; a new 15 x 5.2 inch figure when None.
        title: figure title.

    Returns:
        The Figure.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    own = ax is None
    fig, ax = _fig_ax(ax, (15, 5.0))
    ax.set_xlim(0, 117)
    ax.set_ylim(2, 41)
    ax.set_axis_off()
    colors = {
        "input": "#e8e8e8",
        "backbone": "#c6dbef",
        "feature": "#deebf7",
        "attention": "#fdd0a2",
        "scores": "#fee6ce",
        "class": "#c7e9c0",
        "loss": "#f2f2f2",
    }

    def block(x, y, w, h, text, kind, fontsize=8.5, stack=0):
        for s in range(stack, 0, -1):  # shadows: one copy per class
            ax.add_patch(FancyBboxPatch((x + 0.8 * s, y + 0.8 * s), w, h, boxstyle="round,pad=0.3,rounding_size=0.8",
                                        facecolor=colors[kind], edgecolor="#555555", linewidth=0.8, zorder=1))
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.3,rounding_size=0.8",
                                    facecolor=colors[kind], edgecolor="#333333", linewidth=1.0, zorder=2))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, zorder=3)
        return (x, y, w, h)

    def arrow(p, q, text=None, style="-|>", color="#333333", rad=0.0, offset=(0, 1.2)):
        ax.add_patch(FancyArrowPatch(p, q, arrowstyle=style, mutation_scale=12, color=color, lw=1.2,
                                     connectionstyle=f"arc3,rad={rad}", zorder=1.5, shrinkA=0, shrinkB=0))
        if text:
            ax.text((p[0] + q[0]) / 2 + offset[0], (p[1] + q[1]) / 2 + offset[1], text, ha="center",
                    va="bottom", fontsize=7.5, color="#333333")

    def right(b):
        return (b[0] + b[2] + 0.3, b[1] + b[3] / 2)

    def left(b):
        return (b[0] - 0.3, b[1] + b[3] / 2)

    # a stylised chest X-ray as the input: body, two dark lungs, heart and spine
    yy, xx = np.mgrid[-1:1:96j, -1:1:96j]
    body = ((xx / 0.98) ** 2 + ((yy - 0.2) / 1.2) ** 2 < 1).astype(float)
    lungs = ((((np.abs(xx) - 0.42) / 0.3) ** 2 + ((yy + 0.05) / 0.62) ** 2) < 1).astype(float)
    heart = (((xx - 0.15) / 0.32) ** 2 + ((yy - 0.38) / 0.28) ** 2 < 1).astype(float)
    thumb = 0.05 + 0.65 * body - 0.5 * lungs + 0.4 * heart * lungs + 0.2 * (np.abs(xx) < 0.06) * body
    kernel = np.exp(-0.5 * (np.arange(-4, 5) / 1.5) ** 2)
    kernel /= kernel.sum()
    for axis in (0, 1):  # a soft edge, like a radiograph
        thumb = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), axis, thumb)
    ax.imshow(np.clip(thumb, 0, 1), cmap="gray", vmin=0, vmax=1, extent=(1, 10.5, 15.5, 26.5), zorder=2, aspect="auto")
    ax.text(5.75, 14.2, "input X-ray\n3 x 224 x 224", ha="center", va="top", fontsize=8)
    main_y, h = 16, 10
    bb = block(13.5, main_y, 14, h, "backbone\nResNet-50 or\nDenseNet-121\n(ImageNet weights,\ncut at conv5)  Eq. 1",
               "backbone", fontsize=8)
    arrow((10.8, main_y + h / 2), left(bb))
    fb = block(30.5, main_y, 10, h, "features $F$\n$N$ x 7 x 7\n$N$ = 2048 / 1024", "feature")
    arrow(right(bb), left(fb))
    # attention branch (top row)
    top_y = 30
    ab = block(43, top_y, 22, 9, "attention branch (Eq. 2)\natt1: 3x3 conv+ReLU, 3x3 conv+ReLU,\n1x1 conv to $C$ maps"
               "\natt2: hourglass (max-pool, residual\nunits, upsample), two 1x1 convs", "attention", fontsize=7.2)
    arrow((fb[0] + fb[2] / 2, main_y + h + 0.3), (ab[0] - 0.3, top_y + 4.5), rad=-0.25)
    sb = block(68.5, top_y, 12, 9, "$A = \\sigma(Z)$  (Eq. 3)\n$C$ x 7 x 7:\none map $a^c$\nper class", "scores")
    arrow(right(ab), left(sb))
    # category-wise residual attention, one copy per class
    rb = block(44, main_y, 21, h, "per class $c$ (Eq. 4-5):\n$V^c = a^c \\odot F$\n"
               "$H^c = F + V^c = (1 + a^c) \\odot F$", "class", fontsize=8, stack=2)
    arrow(right(fb), left(rb))
    arrow((sb[0] + sb[2] / 2, top_y - 0.3), (rb[0] + rb[2] * 0.8, main_y + h + 1.9), text="$a^c$", offset=(2.5, -0.8))
    relu = block(70, main_y + 2, 7, 6, "ReLU\n(Eq. 6)", "class", stack=2)
    arrow(right(rb), left(relu))
    gap = block(81, main_y + 2, 8, 6, "GAP\n(Eq. 7)\n$N$-dim", "class", fontsize=8, stack=2)
    arrow(right(relu), left(gap))
    fc = block(93, main_y + 2, 7, 6, "FC$_c$\n(Eq. 8)", "class", stack=2)
    arrow(right(gap), left(fc))
    sg = block(104, main_y + 2, 8, 6, "$\\sigma \\rightarrow p_c$\n(Eq. 9)", "class", stack=2)
    arrow(right(fc), left(sg))
    loss = block(101, 4, 14, 6, "BCE over $C$ classes\nwith labels $l_c$ (Eq. 10)", "loss", fontsize=8)
    arrow((sg[0] + sg[2] / 2, main_y + 1.7), (sg[0] + sg[2] / 2, loss[1] + loss[3] + 0.3))
    ax.text(54.5, 12.6, "x $C$ classes: each class weighs $F$ with its own map", ha="center", fontsize=7.5,
            color="#2c7a2c")
    ax.text(1, 6.5, "att2 only: a trunk of two residual units turns $F$ into $\\tilde{F}$,"
            " which replaces $F$ in Eq. 4-5."
            "\nAblations (Table 2): w/o category = one map shared by all classes;  w/o residual = $H = A \\odot F$;"
            "\nw/o attention = backbone, GAP, FC (the baseline).", fontsize=7.5, va="center", color="#444444")
    if own:
        fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93 if title else 0.99)
    if title:
        ax.set_title(title, fontsize=12)
    return fig


# ----------------------------------------------------------------------------- explorer


def _explorer_inputs(images, attention, probs, labels, classes):
    classes = [str(c) for c in classes]
    imgs = _batch(images)
    att = _np(attention).astype(float)
    B = len(imgs)
    if att.ndim != 4 or att.shape[0] != B or att.shape[1] not in (1, len(classes)):
        raise DataError(
            f"attention has shape {att.shape}; give ({B}, {len(classes)} or 1, h, w) for the {B} images."
        )
    p = _np(probs).astype(float)
    y = _np(labels)
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
        _frame_axis(ax, TRUE_COLOR)


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
    per_box = _per_image_boxes(boxes, len(imgs))
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
    fig, axes = _grid(len(resolved), ncols, (3.2, 3.5), fig=fig)
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
    per_box = _per_image_boxes(boxes, len(imgs))
    try:
        import ipywidgets as widgets
    except ImportError:
        warnings.warn("ipywidgets is not installed: showing a static figure instead "
                      "(pip install ipywidgets for the interactive explorer).", stacklevel=2)
        return static_explorer_figure(images, attention, probs, labels, classes, boxes, alpha=alpha,
                                      boxes_frame=boxes_frame, window=window)
    from IPython.display import display

    plt = _plt()
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
            axb.set_yticklabels([_abbr(n) for n in classes], fontsize=7)
            axb.set_xlim(0, 1)
            axb.set_title("predicted probabilities (red: true labels)", fontsize=8)
            fig.tight_layout()
            display(fig)
            plt.close(fig)

    image_w.observe(redraw, names="value")
    class_w.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([image_w, class_w]), out])
