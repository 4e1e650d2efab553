"""One painter per finding, keyed like :data:`~cral_lib.synthetic.signatures.SIGNATURES`.

A painter draws its finding into the :class:`~cral_lib.synthetic.render.Film` (the layers of the
image being drawn) from the finding's parameters (:mod:`cral_lib.synthetic.scene`) and returns
where its drawing has half its strength as a box in pixels, or None (the diffuse Edema and
Emphysema get none; see :data:`~cral_lib.synthetic.signatures.BOXED`). The release's boxes are
measured on the rendered image instead (:mod:`~cral_lib.synthetic.visibility`). Each runs at a stage of
:func:`~cral_lib.synthetic.render.render_scene`:

- ``lungs``: before the heart is drawn (Emphysema flattens the diaphragms; then the volume loss
  of Atelectasis and Fibrosis lifts the base of their lungs, :func:`lift_base`);
- ``heart``: once the heart is drawn (Cardiomegaly's box is the enlarged heart's);
- ``air``: findings that replace the air of the lungs by tissue or fluid, or add air
  (Pneumothorax); most findings;
- ``lung density``: once the lungs' density and vessels are drawn (Edema);
- ``abdomen``: once the bones and the gastric bubble are drawn (Hernia).

Within a stage they run in the order of :data:`PAINTERS`. Two findings also change the normal
anatomy, which :mod:`~cral_lib.synthetic.render` reads from their parameters: Emphysema (a
narrower heart, darker lungs with fewer markings, no gastric bubble) and Cardiomegaly (the
heart's size), and Edema blurs the vessels.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np

from .draw import bbox, lines, noise_field, smooth1d, smoothstep, soft, union

if TYPE_CHECKING:  # pragma: no cover - for type checkers only (render imports this module)
    from .render import Film

Box = tuple[float, float, float, float]

#: Attenuation of an air-filled lung relative to the soft tissue it replaces.
LUNG_DARK = 0.28

#: The stages of :func:`~cral_lib.synthetic.render.render_scene`, in drawing order.
STAGES: tuple[str, ...] = ("lungs", "heart", "air", "lung density", "abdomen")


class Painter(NamedTuple):
    """Where a finding is drawn (:data:`STAGES`) and the function that draws it."""

    stage: str
    paint: Callable[["Film", dict[str, Any]], Box | None]


# ----------------------------------------------------------------------------- stage "lungs"


def _lowest_rows(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of a lung mask: its lowest row inside (float) and whether the column has lung."""
    S = m.shape[0]
    inside = m >= 0.5
    return (S - 1 - np.argmax(inside[::-1, :], axis=0)).astype(np.float32), inside.any(axis=0)


def move_base(film: "Film", s: int, anchor: float, target: np.ndarray) -> None:
    """Move the base of lung ``s`` to row ``target`` (per column, pixels) by stretching or
    squeezing each column below row ``anchor``; the lung above the anchor stays as it is."""
    S, m = film.S, film.lung[s]
    last, has = _lowest_rows(m)
    rows = np.arange(S, dtype=np.float32)[:, None]
    stretch = (target > anchor + 1.0) & (last > anchor) & has
    scale = np.where(stretch, (last - anchor) / np.maximum(target - anchor, 1.0), 1.0)
    src = np.where(rows > anchor, anchor + (rows - anchor) * scale[None, :], rows)
    i0 = np.clip(np.floor(src).astype(np.intp), 0, S - 2)
    w = np.clip(src - i0, 0.0, 1.0).astype(np.float32)
    cols = np.arange(S)[None, :]
    moved = (m[i0, cols] * (1.0 - w) + m[i0 + 1, cols] * w) * (rows <= target[None, :] + 1.5)
    film.lung[s] = np.where(stretch[None, :], moved, m).astype(np.float32)


def lift_base(film: "Film", s: int, volume: float) -> None:
    """Volume loss of lung ``s`` (Atelectasis, Fibrosis): its base (the hemidiaphragm) rises by
    ``1 - volume`` of the lung's height; the lung above its middle and the heart stay in place."""
    S = film.S
    x0, x1, y0, y1 = film.lboxes[s]
    lift = (1.0 - volume) * (y1 - y0)
    last, has = _lowest_rows(film.lung[s])
    anchor, base = (y0 + 0.5 * (y1 - y0)) * S, y1 * S
    # columns whose lowest point is near the anchor rise less, so that no step appears between columns
    weight = smoothstep(anchor, anchor + 0.3 * (base - anchor), last) * has
    move_base(film, s, anchor, last - weight * lift * S)
    # findings drawn later find the new base; the body's outline (film.base_y) does not move
    film.lboxes[s] = (x0, x1, y0, y1 - lift)


def paint_emphysema(film: "Film", p: dict[str, Any]) -> None:
    """Flat diaphragms: stretch the lower part of each lung column down, most under the dome,
    so that the base becomes a nearly level line at the costophrenic angle. No box (diffuse)."""
    S, lboxes = film.S, film.lboxes
    for s in (0, 1):
        last, has = _lowest_rows(film.lung[s])
        top_px, base_px = lboxes[s][2] * S, lboxes[s][3] * S
        anchor = top_px + 0.55 * (base_px - top_px)
        weight = smoothstep(anchor, anchor + 0.3 * (base_px - anchor), last) * has
        shift = p["flatten"] * weight * np.maximum(base_px - last, 0.0)
        # smooth across columns so that a lone deep column does not become a streak
        move_base(film, s, anchor, last + smooth1d(shift.astype(np.float32), 0.012 * S))
    return None


# ----------------------------------------------------------------------------- stage "heart"


def paint_cardiomegaly(film: "Film", p: dict[str, Any]) -> Box | None:
    """The enlarged heart is drawn with the heart (its size comes from ``p["ctr"]``); its box."""
    if film.heart_window is None:
        return None
    rows, cols = film.heart_window
    return bbox(film.heart[rows, cols], rows, cols, 0.5)


# ----------------------------------------------------------------------------- stage "air"


def paint_effusion(film: "Film", p: dict[str, Any]) -> Box | None:
    """Fluid at the base of one or both lungs, topped by a meniscus that rises laterally."""
    parts = []
    for s in p["sides"]:
        x0, x1, y0, y1 = film.lboxes[s]
        h = y1 - y0
        win = film.cv.window(x0 - 0.01, x1 + 0.01, y0 + 0.3 * h, y1 + 0.01)
        if win is None:
            continue
        rows, cols, Xw, Yw = win
        lat = film.lateral(s, Xw)
        level = y1 - p["level"] * h - p["rise"] * h * lat ** 2
        fluid = smoothstep(level - p["soft"], level + p["soft"] * 0.5, Yw)
        value = fluid * p["opacity"]
        film.add_opacity(rows, cols, value)
        parts.append(bbox(value * film.lung[s][rows, cols], rows, cols, 0.5 * p["opacity"]))
    return union(parts)


def paint_atelectasis(film: "Film", p: dict[str, Any]) -> Box | None:
    """A plate-like band, or a wedge pointing to the hilum (its volume loss: :func:`lift_base`)."""
    cv = film.cv
    s = p["side"]
    px_, py_ = film.to_image(s, p["point"])
    x0, x1, y0, y1 = film.lboxes[s]
    lw = x1 - x0
    if p["kind"] == "band":
        half = p["length"] * lw / 2.0
        win = cv.window(px_ - half - 0.03, px_ + half + 0.03, py_ - half - 0.03, py_ + half + 0.03)
        rows, cols, Xw, Yw = win
        ca, sa = math.cos(p["angle"]), math.sin(p["angle"])
        along = (Xw - px_) * ca + (Yw - py_) * sa
        across = -(Xw - px_) * sa + (Yw - py_) * ca
        band = soft(np.abs(across) - p["thickness"] / 2.0, cv.edge + p["thickness"] * 0.4)
        band = band * soft(np.abs(along) - half, 0.02)
    else:
        hx_, hy_ = film.hila[s]
        r = 0.7 * lw
        win = cv.window(min(px_, hx_) - r, max(px_, hx_) + r, min(py_, hy_) - r, max(py_, hy_) + r)
        rows, cols, Xw, Yw = win
        ang0 = math.atan2(py_ - hy_, px_ - hx_)
        ang = np.arctan2(Yw - hy_, Xw - hx_)
        dang = np.abs(np.mod(ang - ang0 + math.pi, 2 * math.pi) - math.pi)
        rad = np.sqrt((Xw - hx_) ** 2 + (Yw - hy_) ** 2)
        band = soft(dang - p["spread"] * 0.5, 0.04) * smoothstep(0.01, 0.06, rad)
    value = band * p["opacity"] * film.lung[s][rows, cols]
    film.add_opacity(rows, cols, value)
    return bbox(value, rows, cols, 0.5 * p["opacity"])


def _blob(film: "Film", s, point, radius, stretch, tex_seed, grid):
    """A mottled, ill-defined blob inside lung s: (rows, cols, weight in 0-1, x, y, Y), or None."""
    px_, py_ = film.to_image(s, point)
    rx, ry = radius * stretch, radius / stretch
    win = film.cv.window(px_ - 1.6 * rx, px_ + 1.6 * rx, py_ - 1.6 * ry, py_ + 1.6 * ry)
    if win is None:
        return None
    rows, cols, Xw, Yw = win
    r2 = ((Xw - px_) / rx) ** 2 + ((Yw - py_) / ry) ** 2
    mottle = noise_field(np.random.default_rng(tex_seed), grid, film.S, rows, cols)
    w = np.exp(-r2 * (1.2 + 0.5 * mottle)) * np.clip(0.75 + 0.35 * mottle, 0.0, 1.2)
    return rows, cols, np.clip(w, 0.0, 1.0) * film.lung[s][rows, cols], px_, py_, Yw


def paint_infiltration(film: "Film", p: dict[str, Any]) -> Box | None:
    """Two to five patchy, mottled opacities; one box around all of them."""
    parts = []
    for i, patch in enumerate(p["patches"]):
        got = _blob(film, patch["side"], patch["point"], patch["radius"], patch["stretch"], [p["seed"], i], 40)
        if got is None:
            continue
        rows, cols, w = got[:3]
        film.add_opacity(rows, cols, w * p["opacity"])
        parts.append(bbox(w, rows, cols, 0.5))
    return union(parts)


def paint_pneumonia(film: "Film", p: dict[str, Any]) -> Box | None:
    """A lobar patch: a mottled blob with one straight, sharp, nearly horizontal edge (a fissure)."""
    got = _blob(film, p["side"], p["point"], p["radius"], p["stretch"], [p["seed"]], 28)
    if got is None:
        return None
    rows, cols, w, px_, py_, Yw = got
    edge_y = py_ + (0.35 if p["upper"] else -0.35) * p["radius"]
    sign = -1.0 if p["upper"] else 1.0
    fissure = soft(sign * (edge_y - Yw), film.cv.edge)
    w = np.clip(w * 1.3, 0.0, 1.0) * fissure
    film.add_opacity(rows, cols, w * p["opacity"])
    return bbox(w, rows, cols, 0.5)


def paint_consolidation(film: "Film", p: dict[str, Any]) -> Box | None:
    """A dense homogeneous opacity with dark branching air bronchograms pointing to the hilum."""
    cv = film.cv
    s = p["side"]
    px_, py_ = film.to_image(s, p["point"])
    rx, ry = p["radius"] * p["stretch"], p["radius"] / p["stretch"]
    win = cv.window(px_ - 1.3 * rx, px_ + 1.3 * rx, py_ - 1.3 * ry, py_ + 1.3 * ry)
    if win is None:
        return None
    rows, cols, Xw, Yw = win
    g = np.random.default_rng([p["seed"]])
    wobble = noise_field(g, 24, film.S, rows, cols)
    r = np.sqrt(((Xw - px_) / rx) ** 2 + ((Yw - py_) / ry) ** 2) * (1.0 + 0.12 * wobble)
    w = soft((r - 1.0) * min(rx, ry), 0.012) * film.lung[s][rows, cols]
    hx_, hy_ = film.hila[s]
    base = math.atan2(py_ - hy_, px_ - hx_)
    tubes = np.zeros_like(w)
    for _ in range(p["branches"]):
        ang = base + g.uniform(-0.5, 0.5)
        ox, oy = px_ + g.uniform(-0.4, 0.4) * rx, py_ + g.uniform(-0.4, 0.4) * ry
        across = np.abs(-(Xw - ox) * math.sin(ang) + (Yw - oy) * math.cos(ang))
        width = 0.004 + 0.003 * g.random()
        tubes = np.maximum(tubes, soft(across - width / 2.0, max(cv.edge, width * 0.6)))
    value = w * p["opacity"] * (1.0 - 0.55 * tubes)
    film.add_opacity(rows, cols, value)
    return bbox(w, rows, cols, 0.5)


def _round_opacity(film: "Film", p: dict[str, Any], lobulated: bool) -> Box | None:
    """A round opacity with a sharp edge (slightly lobulated for a mass); the box of its disc."""
    s = p["side"]
    px_, py_ = film.to_image(s, p["point"])
    rad = p["radius"]
    win = film.cv.window(px_ - 1.3 * rad, px_ + 1.3 * rad, py_ - 1.3 * rad, py_ + 1.3 * rad)
    if win is None:
        return None
    rows, cols, Xw, Yw = win
    r = np.sqrt((Xw - px_) ** 2 + (Yw - py_) ** 2)
    if lobulated:
        ang = np.arctan2(Yw - py_, Xw - px_)
        lob = 1.0 + sum(float(a) * np.sin((i + 2) * ang + float(ph)) for i, (a, ph) in
                        enumerate(zip(p["lobes"], p["phases"])))
        r = r / lob
    disc = soft(r - rad, film.cv.edge + 0.08 * rad)
    sphere = np.sqrt(np.clip(1.0 - (r / rad) ** 2, 0.0, 1.0))
    w = disc * (0.55 + 0.45 * sphere)
    film.add_opacity(rows, cols, w * p["opacity"] * np.maximum(film.lung[s][rows, cols], 0.3))
    return bbox(disc, rows, cols, 0.5)


def paint_nodule(film: "Film", p: dict[str, Any]) -> Box | None:
    """One small round opacity with a sharp edge."""
    return _round_opacity(film, p, lobulated=False)


def paint_mass(film: "Film", p: dict[str, Any]) -> Box | None:
    """One large round, slightly lobulated opacity with a well-defined edge."""
    return _round_opacity(film, p, lobulated=True)


def paint_pleural_thickening(film: "Film", p: dict[str, Any]) -> Box | None:
    """A smooth band of soft tissue along the pleura: an apical cap or a stretch of the lateral wall."""
    cv = film.cv
    s = p["side"]
    x0, x1, y0, y1 = film.lboxes[s]
    h = y1 - y0
    if p["apical"]:
        win = cv.window(x0 - 0.01, x1 + 0.01, y0 - 0.01, y0 + 0.3 * h)
    else:
        ys0 = y0 + p["start"] * h
        win = cv.window(x0 - 0.01, x1 + 0.01, ys0, ys0 + p["extent"] * h)
    rows, cols, Xw, Yw = win
    d = film.dist[s][rows, cols]
    band = soft(d - p["thickness"], cv.edge + 0.3 * p["thickness"]) * film.lung[s][rows, cols]
    if p["apical"]:
        band = band * (1.0 - smoothstep(y0 + 0.12 * h, y0 + 0.25 * h, Yw))
    else:
        band = band * smoothstep(0.45, 0.75, film.lateral(s, Xw))
    film.add_opacity(rows, cols, band * p["opacity"])
    return bbox(band, rows, cols, 0.5)


def paint_fibrosis(film: "Film", p: dict[str, Any]) -> Box | None:
    """A fine reticular pattern at the periphery and the bases of one or both lungs."""
    g = np.random.default_rng([p["seed"]])
    net = lines(noise_field(g, 90, film.S), 0.25)
    parts = []
    for s in p["sides"]:
        x0, x1, y0, y1 = film.lboxes[s]
        h = y1 - y0
        win = film.cv.window(x0 - 0.01, x1 + 0.01, y0, y1 + 0.01)
        rows, cols, Xw, Yw = win
        zone = (1.0 - smoothstep(0.6 * p["depth"], p["depth"], film.dist[s][rows, cols]))
        zone = np.maximum(zone, smoothstep(y1 - p["basal"] * h, y1 - 0.2 * p["basal"] * h, Yw) * 0.8)
        zone = zone * smoothstep(y0 + 0.25 * h, y0 + 0.5 * h, Yw) * film.lung[s][rows, cols]
        film.add_opacity(rows, cols, zone * p["opacity"] * (0.3 + 0.7 * net[rows, cols]))
        parts.append(bbox(zone, rows, cols, 0.5))
    return union(parts)


def paint_pneumothorax(film: "Film", p: dict[str, Any]) -> Box | None:
    """An apical/lateral rim of air without lung markings, bounded by a thin bright pleural line."""
    cv = film.cv
    s = p["side"]
    x0, x1, y0, y1 = film.lboxes[s]
    h = y1 - y0
    win = cv.window(x0 - 0.01, x1 + 0.01, y0 - 0.01, y0 + p["reach"] * h + 0.02)
    rows, cols, Xw, Yw = win
    lat = film.lateral(s, Xw)
    vert = np.clip((Yw - y0) / (p["reach"] * h), 0.0, 1.0)
    depth = p["depth"] * (0.35 + 0.65 * lat) * (1.0 - vert ** 2)
    d = film.dist[s][rows, cols]
    inside = film.lung[s][rows, cols]
    space = soft(d - depth, cv.edge) * inside * (depth > 0.004)
    line = np.exp(-np.square((d - depth) / max(cv.edge * 0.6, 0.0012))) * inside * (depth > 0.006)
    film.marking_gain[rows, cols] *= 1.0 - space
    film.lucent[rows, cols] = np.maximum(film.lucent[rows, cols], space * (0.03 + 0.05 * p["dark"]))
    film.extra[rows, cols] += line * (0.04 + 0.04 * p["dark"])
    # the collapsed lung under the line is slightly denser
    film.add_opacity(rows, cols, (1.0 - space) * inside * np.exp(-np.maximum(d - depth, 0.0) / 0.02) * 0.15)
    return bbox(space, rows, cols, 0.5)


# ----------------------------------------------------------------------------- density stages


def paint_edema(film: "Film", p: dict[str, Any]) -> None:
    """Bilateral perihilar haze (bat wing) and Kerley B lines at the lateral bases. No box (diffuse)."""
    S, X, Y = film.S, film.X, film.Y
    haze = np.zeros((S, S), np.float32)
    for hx_, hy_ in film.hila:
        haze = np.maximum(haze, np.exp(-(((X - hx_) / (p["spread"] * 1.1)) ** 2 + ((Y - hy_) / p["spread"]) ** 2)))
    film.D += LUNG_DARK * film.lucency * film.eff_air * haze * p["opacity"] * 0.65
    if p["kerley"]:
        for s in (0, 1):
            x0, x1, y0, y1 = film.lboxes[s]
            win = film.cv.window(x0, x1, y1 - 0.2 * (y1 - y0), y1)
            rows, cols, Xw, Yw = win
            kerley = lines(np.sin(2 * np.pi * Yw / 0.018) + 0 * Xw, 0.25)
            near = smoothstep(0.55, 0.9, film.lateral(s, Xw))
            film.D[rows, cols] += 0.03 * p["opacity"] * kerley * near * film.air[rows, cols]
    return None


def paint_hernia(film: "Film", p: dict[str, Any]) -> Box | None:
    """A hiatal hernia: a rounded retrocardiac sac above the diaphragm, often with an air-fluid level."""
    cv, D = film.cv, film.D
    rx_, ry_ = p["radius"], p["radius"] * p["squash"]
    gx, gy = film.cx + 0.01 + p["dx"], film.hy + 0.1 * film.hb
    win = cv.window(gx - rx_ - 0.02, gx + rx_ + 0.02, gy - ry_ - 0.02, gy + ry_ + 0.02)
    rows, cols, Xw, Yw = win
    r = np.sqrt(((Xw - gx) / rx_) ** 2 + ((Yw - gy) / ry_) ** 2)
    sac = soft((r - 1.0) * ry_, cv.edge + 0.004)
    rim = np.exp(-np.square((r - 1.0) * ry_ / 0.004)) * 0.5
    D[rows, cols] += p["opacity"] * (0.3 * sac + 0.2 * rim)
    if p["air"]:
        level = gy - ry_ + p["level"] * 2 * ry_
        bubble = sac * soft(Yw - level, cv.edge) * soft(r - 0.85, 0.05)
        D[rows, cols] -= 0.7 * p["opacity"] * bubble
    return bbox(sac, rows, cols, 0.5)


#: Finding -> its painter, in drawing order (the stages of :data:`STAGES`; within one, this order).
PAINTERS: dict[str, Painter] = {
    "Emphysema": Painter("lungs", paint_emphysema),
    "Cardiomegaly": Painter("heart", paint_cardiomegaly),
    "Effusion": Painter("air", paint_effusion),
    "Atelectasis": Painter("air", paint_atelectasis),
    "Infiltration": Painter("air", paint_infiltration),
    "Pneumonia": Painter("air", paint_pneumonia),
    "Consolidation": Painter("air", paint_consolidation),
    "Nodule": Painter("air", paint_nodule),
    "Mass": Painter("air", paint_mass),
    "Pleural_Thickening": Painter("air", paint_pleural_thickening),
    "Fibrosis": Painter("air", paint_fibrosis),
    "Pneumothorax": Painter("air", paint_pneumothorax),
    "Edema": Painter("lung density", paint_edema),
    "Hernia": Painter("abdomen", paint_hernia),
}

__all__ = ["LUNG_DARK", "PAINTERS", "STAGES", "Painter", "lift_base", "move_base"] + [f"paint_{name.lower()}" for name in PAINTERS]
