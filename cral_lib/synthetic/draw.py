"""Drawing primitives of the phantoms, in coordinates relative to the image side (x right, y down, 0-1).

Soft edges, smooth random fields, windows into the image, boxes of what was drawn, and the
placing of a lung template onto its rectangle. :mod:`cral_lib.synthetic.render` and
:mod:`cral_lib.synthetic.painters` draw with them.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from PIL import Image
from scipy import ndimage


def stream_rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    """A generator seeded by ``(seed, stream, *keys)``: one independent stream per purpose."""
    return np.random.default_rng([int(seed), stream, *[int(k) for k in keys]])


def soft(signed_distance: np.ndarray, width: float) -> np.ndarray:
    """1 inside, 0 outside, a linear ramp of ``width`` across the edge."""
    return np.clip(0.5 - signed_distance / width, 0.0, 1.0)


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """0 below ``e0``, 1 above ``e1``, the cubic ``3t^2 - 2t^3`` between."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class Canvas:
    """Pixel-centre coordinates of an S x S image and windows into it."""

    def __init__(self, size: int):
        self.size = size
        self.px = 1.0 / size
        self.c = ((np.arange(size, dtype=np.float32) + 0.5) / size).astype(np.float32)
        # an edge is at least 1.2 pixels wide and never sharper than 0.15 % of the side
        self.edge = max(1.2 / size, 0.0015)

    def window(self, x0: float, x1: float, y0: float, y1: float):
        """Return ``(rows, cols, X, Y)`` for a box (clipped to the image), or None if empty."""
        s = self.size
        i0, i1 = max(int(np.floor(y0 * s)), 0), min(int(np.ceil(y1 * s)), s)
        j0, j1 = max(int(np.floor(x0 * s)), 0), min(int(np.ceil(x1 * s)), s)
        if i1 <= i0 or j1 <= j0:
            return None
        rows, cols = slice(i0, i1), slice(j0, j1)
        return rows, cols, self.c[cols][None, :], self.c[rows][:, None]


def resize(field: np.ndarray, size: int, resample: str = "bilinear") -> np.ndarray:
    """Resample a float field to ``size x size`` (it covers the whole image)."""
    if field.shape == (size, size):
        return field.astype(np.float32, copy=False)
    method = Image.BICUBIC if resample == "bicubic" else Image.BILINEAR
    img = Image.fromarray(np.ascontiguousarray(field, dtype=np.float32))
    return np.asarray(img.resize((size, size), method), dtype=np.float32)


def noise_field(rng: np.random.Generator, grid: int, size: int, rows: slice | None = None,
                 cols: slice | None = None) -> np.ndarray:
    """A smooth random field: unit-variance noise on ``grid`` x ``grid``, bicubic to ``size``.

    With ``rows`` and ``cols``, only that window of the ``size`` x ``size`` field is computed
    (the same values as the whole field would have there).
    """
    noise = rng.standard_normal((grid, grid), dtype=np.float32)
    if rows is None:
        return resize(noise, size, "bicubic")
    k = grid / size
    box = (cols.start * k, rows.start * k, cols.stop * k, rows.stop * k)
    img = Image.fromarray(noise).resize((cols.stop - cols.start, rows.stop - rows.start), Image.BICUBIC, box=box)
    return np.asarray(img, dtype=np.float32)


def lines(field: np.ndarray, width: float) -> np.ndarray:
    """Thin curvy lines along the zero crossings of a smooth random field."""
    return np.exp(-np.square(field / width))


def bbox(weight: np.ndarray, rows: slice, cols: slice, level: float):
    """Pixel box ``(x, y, w, h)`` of ``weight >= level`` inside a window, or None.

    A finding thinner than a pixel (a faint rim at a small size) never reaches ``level``;
    then half of its largest value is used.
    """
    hit = weight >= level
    if not hit.any():
        peak = float(weight.max()) if weight.size else 0.0
        if peak <= 1e-3:
            return None
        hit = weight >= 0.5 * peak
    ys = np.flatnonzero(hit.any(axis=1))
    xs = np.flatnonzero(hit.any(axis=0))
    x0, y0 = cols.start + xs[0], rows.start + ys[0]
    return (float(x0), float(y0), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1))


def union(boxes: Iterable[tuple[float, float, float, float] | None]):
    """The pixel box around several ``(x, y, w, h)`` boxes (None ones ignored), or None."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return (x0, y0, x1 - x0, y1 - y0)


PAD = 8  # zero border around a template, so that resampling windows stay inside it


def place(channel: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """Draw a template channel onto the image rectangle ``box = (x0, y0, width, height)``.

    The template's square is stretched onto the rectangle (relative units) with Pillow's
    resampling of just that window (bilinear, antialiased when shrinking); the rest of the
    ``size x size`` image is 0, as the template's border is.
    """
    x0, y0, w, h = box
    out = np.zeros((size, size), np.float32)
    j0, j1 = max(int(np.floor(x0 * size)), 0), min(int(np.ceil((x0 + w) * size)), size)
    i0, i1 = max(int(np.floor(y0 * size)), 0), min(int(np.ceil((y0 + h) * size)), size)
    if j1 <= j0 or i1 <= i0:
        return out
    res = channel.shape[0]
    # the window's edges in template pixels (continuous coordinates), before the pad
    us = [(j / size - x0) / w * res for j in (j0, j1)]
    vs = [(i / size - y0) / h * res for i in (i0, i1)]
    # On small images one pixel of rounding spans more template pixels than PAD: pad more there
    # (only there, so that larger images stay exactly as they were).
    beyond = max(-min(us + vs), max(us + vs) - res, 0.0)
    pad = PAD if beyond <= PAD else int(np.ceil(beyond)) + 1
    padded = np.pad(channel, pad)
    u0, u1 = (u + pad for u in us)
    v0, v1 = (v + pad for v in vs)
    img = Image.fromarray(padded).resize((j1 - j0, i1 - i0), Image.BILINEAR, box=(u0, v0, u1, v1))
    out[i0:i1, j0:j1] = np.asarray(img, dtype=np.float32)
    return out


def smooth1d(values: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian smoothing along one axis (at least half a pixel), edges repeated."""
    return ndimage.gaussian_filter1d(values, max(sigma, 0.5), mode="nearest")


def blur(field: np.ndarray, sigma: float) -> np.ndarray:
    """A 2-D Gaussian blur with zeros outside, as float32."""
    return ndimage.gaussian_filter(field, sigma, mode="constant").astype(np.float32)


__all__ = ["PAD", "Canvas", "bbox", "blur", "lines", "noise_field", "place", "resize", "smooth1d", "smoothstep", "soft",
           "stream_rng", "union"]
