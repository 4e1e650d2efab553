"""The heatmap PNGs of ``cral predict --heatmaps``: one per finding called, maps over the image.

Each PNG shows the finding's attention map ``a^c`` (Eq. 3, on a fixed 0-1 scale, so that a
weak map looks weak) and its class activation map (scaled to its own range: where the class's
evidence peaks), over the window of the image the network saw; the title gives the
probability and the threshold it passed. They are drawn on a :class:`matplotlib.figure.Figure`
without pyplot, so no backend is chosen and nothing is shown.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from ..viz import overlay_heatmap
from .predictor import Explanation, Predictor


def draw_explanation(explanation: Explanation, fig: Any = None) -> Any:
    """A figure of one :class:`Explanation`: attention map and CAM side by side (the CAM alone without attention).

    Args:
        explanation: what :meth:`Predictor.explain` returned.
        fig: a matplotlib Figure (or SubFigure) to draw into (a new one when None).

    Returns:
        The Figure.
    """
    if fig is None:
        from matplotlib.figure import Figure  # matplotlib only where a figure is drawn

        fig = Figure(figsize=(9 if explanation.attention is not None else 4.8, 4.4), dpi=100)
    e = explanation
    panels = [("attention map (0-1)", e.attention, (0.0, 1.0))] if e.attention is not None else []
    panels.append(("class activation map (own range)", e.cam, None))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, heat, vrange) in zip(axes, panels):
        overlay_heatmap(e.image, heat, ax=ax, window=e.window, vrange=vrange, title=label, colorbar=True)
    threshold = "no threshold" if e.threshold != e.threshold else f"threshold {e.threshold:.3f}"
    verdict = "called" if e.called else "not called"
    fig.suptitle(f"{Path(e.name).name}: {e.finding} p = {e.probability:.3f} ({threshold}, {verdict})", fontsize=10)
    if hasattr(fig, "tight_layout") and getattr(fig, "get_layout_engine", lambda: None)() is None:
        fig.tight_layout()  # a whole figure without a layout engine (a subfigure is laid out by its parent)
    return fig


def save_heatmap(explanation: Explanation, path: str | Path) -> Path:
    """Draw an :class:`Explanation` into a PNG file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = draw_explanation(explanation)
    fig.savefig(path, dpi=100, facecolor="white", metadata={"Software": None})
    return path


def _stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem) or "image"


def write_heatmaps(predictor: Predictor, predictions: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """One PNG per finding called in ``predictions`` (a frame of :meth:`Predictor.predict` over files).

    Files are named ``<image stem>_<finding>.png`` in ``out_dir``.

    Returns:
        The files written.
    """
    out_dir = Path(out_dir)
    written: list[Path] = []
    for row in predictions.itertuples(index=False):
        found = [f for f in str(row.findings or "").split(";") if f]
        if row.error or not found:
            continue
        image = predictor.read(row.image, name=row.image, keep_grey=True)
        for finding in found:
            e = predictor.explain(image, finding)
            path, k = out_dir / f"{_stem(row.image)}_{finding}.png", 2
            while path in written:  # two images of the same name in different folders
                path, k = out_dir / f"{_stem(row.image)}-{k}_{finding}.png", k + 1
            written.append(save_heatmap(e, path))
    return written


__all__ = ["draw_explanation", "save_heatmap", "write_heatmaps"]
