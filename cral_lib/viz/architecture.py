"""The CRAL architecture as a diagram (Fig. 1 and 2 of the paper)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import fig_ax

# matplotlib (and seaborn, ipywidgets where used) is imported inside the functions that draw:
# `import cral_lib.viz` must not load it or choose its backend (tests/test_viz.py checks both).


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
    fig, ax = fig_ax(ax, (15, 5.0))
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


__all__ = ['draw_architecture']
