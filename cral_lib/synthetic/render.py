"""Rendering a scene: the normal anatomy, the findings' painters at their stage, and the exposure.

:func:`render_scene` draws in this order (a painter of :data:`~cral_lib.synthetic.painters.PAINTERS`
runs at its stage, in the table's order):

1. the lung fields from the patient's template; stage ``lungs`` (Emphysema flattens the domes);
   the volume loss of Atelectasis and Fibrosis (the base of their lung rises);
2. the heart and the aortic knob; stage ``heart`` (Cardiomegaly's box);
3. the air in the lungs; stage ``air``: the findings that replace air by tissue or fluid;
4. the density: soft tissue, the lungs and their vessels; stage ``lung density`` (Edema);
   then the bones and the gastric bubble; stage ``abdomen`` (Hernia);
5. the exposure: density to brightness, contrast, gamma, gradient and detector noise.

The image is drawn at the size asked for, never drawn large and shrunk: the same scene gives
the same anatomy and findings at 64, 256 or 1024 pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage

from .draw import Canvas, blur, lines, noise_field, place, resize, soft, smoothstep
from .painters import LUNG_DARK, PAINTERS, lift_base
from .scene import Scene
from .templates import LungTemplates, lung_templates

# Density range and resolution of the look-up table that maps density to brightness.
_D_MAX = 1.2
_LUT_SIZE = 4096

Box = tuple[float, float, float, float]


@dataclass
class Phantom:
    """A drawn phantom.

    Attributes:
        image: ``(size, size)`` uint8 grey image.
        boxes: one box per localized finding: class -> ``(x, y, w, h)`` in pixels of ``image``
            (top-left corner, width, height; floats). :func:`render_scene` gives the box of
            where each drawing has half its strength; :func:`~cral_lib.synthetic.phantom.make_phantom`
            (and so ``cral synth``) the box of where the finding changed the image.
        scene: the parameters it was drawn from.
        checks: finding -> its :class:`~cral_lib.synthetic.visibility.Check` (how it shows),
            filled by :func:`~cral_lib.synthetic.phantom.make_phantom`.
    """

    image: np.ndarray
    boxes: dict[str, Box]
    scene: Scene
    checks: dict = field(default_factory=dict)


def _lung_geometry(sc: Scene) -> list[Box]:
    """The image rectangles ``(x0, y0, width, height)`` that the two template squares fill.

    The lungs hang from the same top line; each side has its own height (volume loss,
    hyperexpansion).
    """
    an = sc.anatomy
    width, height = an["lung_width"], an["lung_height"]
    x0 = an["cx"] - width / 2.0
    return [(x0, an["top"], width, height * an["vscale"][s]) for s in (0, 1)]


def _to_image(maps, side: int, uv) -> tuple[float, float]:
    """Template point ``(u, v)`` (0-1) of lung ``side`` -> image point ``(x, y)`` (0-1)."""
    x0, y0, w, h = maps[side]
    return float(x0 + uv[0] * w), float(y0 + uv[1] * h)


class Film:
    """The image being drawn: the scene, the pixel grid, and the layers the painters draw into.

    Attributes (relative units unless said otherwise):
        S, cv, c, X, Y: the side in pixels, its :class:`~cral_lib.synthetic.draw.Canvas`, the
            pixel centres and their row and column grids.
        an, f: the scene's anatomy and findings (parameters by class name).
        lung, coarse: each lung's mask at full size and on a grid of at most 128 (smooth fields).
        lboxes: each lung's extent ``(x0, x1, y0, y1)``; base_y: the lower of the two bases.
        hila: each hilum ``(x, y)``.
        heart, heart_window: the heart's mask and its window ``(rows, cols)`` (or None).
        air: air in the lungs; opacity: the share of it replaced by tissue or fluid;
            extra: density added outside the air model; marking_gain: how visible the lung
            markings are; lucent: extra darkness (pneumothorax); dist: per lung, the distance
            to its edge (only when a peripheral finding needs it).
        D: the density; eff_air, lucency: the air left and how dark it is (density stage).
        boxes: the boxes drawn so far, by class.
    """

    def __init__(self, sc: Scene, size: int, templates: LungTemplates, texture_seed: Sequence[int]) -> None:
        self.sc = sc
        self.S = S = int(size)
        self.cv = Canvas(S)
        self.an = an = sc.anatomy
        self.f = sc.findings
        self.tr = np.random.default_rng(list(texture_seed))
        self.templates = templates
        self.k = k = an["template"]
        self.cx, self.top = an["cx"], an["top"]
        self.W, self.H = an["lung_width"], an["lung_height"]
        self.boxes: dict[str, Box | None] = {}
        self.c = self.cv.c
        self.X = self.c[None, :]
        self.Y = self.c[:, None]

        # lungs, full size and a coarse copy for smooth fields
        self.maps = maps = _lung_geometry(sc)
        self.G = G = min(S, 128)
        self.lung = [place(templates.right[k], maps[0], S), place(templates.left[k], maps[1], S)]
        self.coarse = [place(templates.right[k], maps[0], G), place(templates.left[k], maps[1], G)]
        lboxes = []
        for s in (0, 1):
            u0, u1, v0, v1 = templates.boxes[k, s]
            corners = [_to_image(maps, s, (u, v)) for u in (u0, u1) for v in (v0, v1)]
            xs, ys = [p[0] for p in corners], [p[1] for p in corners]
            lboxes.append((min(xs), max(xs), min(ys), max(ys)))
        self.lboxes = lboxes
        self.base_y = max(lboxes[0][3], lboxes[1][3])
        # hila: just inside the medial edge of each lung, a little above mid-height
        hila = []
        for s in (0, 1):
            hy_ = lboxes[s][2] + 0.42 * (lboxes[s][3] - lboxes[s][2])
            row = np.flatnonzero(self.lung[s][min(int(hy_ * S), S - 1)] >= 0.5)
            if row.size:
                hx_ = (row[-1] + 0.5) / S - 0.03 if s == 0 else (row[0] + 0.5) / S + 0.03
            else:
                hx_ = self.cx - 0.1 if s == 0 else self.cx + 0.1
            hila.append((float(hx_), float(hy_)))
        self.hila = hila

    def to_image(self, side: int, uv) -> tuple[float, float]:
        """A template point of lung ``side`` in image coordinates."""
        return _to_image(self.maps, side, uv)

    def add_opacity(self, rows: slice, cols: slice, value: np.ndarray) -> None:
        """Replace a share ``value`` of the air left in a window (shares combine as probabilities)."""
        o = self.opacity[rows, cols]
        self.opacity[rows, cols] = 1.0 - (1.0 - o) * (1.0 - value)

    def lateral(self, s: int, Xw: np.ndarray) -> np.ndarray:
        """Position across lung ``s``: 0 at its medial edge, 1 at its lateral edge."""
        x0, x1 = self.lboxes[s][0], self.lboxes[s][1]
        return np.clip((x1 - Xw) / (x1 - x0) if s == 0 else (Xw - x0) / (x1 - x0), 0.0, 1.0)


def _paint(film: Film, stage: str) -> None:
    """Run the painters of one stage for the findings the scene shows, in the table's order."""
    for name, painter in PAINTERS.items():
        if painter.stage == stage and name in film.f:
            film.boxes[name] = painter.paint(film, film.f[name])


def _volume_loss(film: Film) -> None:
    """Atelectasis and Fibrosis lift the base of the lungs they are drawn in (volume loss)."""
    for name in ("Atelectasis", "Fibrosis"):
        if name in film.f:
            p = film.f[name]
            for s in (p["side"],) if "side" in p else p["sides"]:
                lift_base(film, s, p["volume"])


def _heart(film: Film) -> None:
    """The heart shadow (narrower with Emphysema, enlarged with Cardiomegaly) and the aortic knob."""
    S, cv, an, f, cx, top, W, H = film.S, film.cv, film.an, film.f, film.cx, film.top, film.W, film.H
    ctr = an["ctr"]
    if "Emphysema" in f:
        ctr *= 0.9
    if "Cardiomegaly" in f:
        ctr = max(ctr, f["Cardiomegaly"]["ctr"])
    heart_w = ctr * W * an["heart_scale"]
    ha = heart_w / 2.0
    hb = ha * 1.05
    hx = cx + 0.12 * heart_w
    hy = float(top + 0.8 * an["lung_height"] * np.mean(an["vscale"]))
    if "Cardiomegaly" in f:
        hy += 0.02 * f["Cardiomegaly"]["severity"]
    tilt = an["heart_tilt"]
    win = cv.window(hx - ha - 0.02, hx + ha + 0.02, hy - hb - 0.02, hy + hb + 0.02)
    heart = np.zeros((S, S), np.float32)
    film.heart_window = None
    if win is not None:
        rows, cols, Xw, Yw = win
        ct, st = math.cos(tilt), math.sin(tilt)
        du, dv = Xw - hx, Yw - hy
        # narrower towards the top, where the heart joins the mediastinum
        narrow = 0.45 + 0.55 * smoothstep(hy - 1.1 * hb, hy - 0.1 * hb, Yw)
        ru = (ct * du + st * dv) / (ha * narrow)
        rv = (-st * du + ct * dv) / hb
        r = np.sqrt(ru * ru + rv * rv)
        heart[rows, cols] = soft((r - 1.0) * ha * narrow, cv.edge)
        film.heart_window = (rows, cols)
    film.heart, film.hy, film.hb = heart, hy, hb
    # aortic knob: a bulge of the mediastinum into the left lung's medial edge
    ak_y, ak_r = top + 0.2 * H, 0.022
    row = film.lung[1][min(int(ak_y * S), S - 1)]
    inside = np.flatnonzero(row >= 0.5)
    ak_x = float((inside[0] + 0.5) / S - 0.4 * ak_r) if inside.size else cx + 0.04
    win = cv.window(ak_x - ak_r - 0.01, ak_x + ak_r + 0.01, ak_y - ak_r - 0.01, ak_y + ak_r + 0.01)
    aortic = np.zeros((S, S), np.float32)
    if win is not None:
        rows, cols, Xw, Yw = win
        aortic[rows, cols] = soft(np.sqrt((Xw - ak_x) ** 2 + (Yw - ak_y) ** 2) - ak_r, cv.edge)
    film.aortic = aortic


def _air(film: Film) -> None:
    """The air in the lungs and the empty layers the findings of stage ``air`` draw into."""
    S, lung, heart, aortic = film.S, film.lung, film.heart, film.aortic
    right_air = lung[0] * (1.0 - heart) * (1.0 - aortic)
    left_air = lung[1] * (1.0 - heart) * (1.0 - aortic)
    film.air = np.clip(right_air + left_air, 0.0, 1.0)
    film.opacity = np.zeros((S, S), np.float32)  # fraction of air replaced by tissue or fluid
    film.extra = np.zeros((S, S), np.float32)  # density added outside the air model
    film.marking_gain = np.ones((S, S), np.float32)
    film.lucent = np.zeros((S, S), np.float32)  # extra darkness (pneumothorax)
    # coarse distance to the lung edge (relative units) for peripheral findings
    film.dist = None
    if any(n in film.f for n in ("Pneumothorax", "Pleural_Thickening", "Fibrosis")):
        film.dist = [resize(ndimage.distance_transform_edt(film.coarse[s] >= 0.5).astype(np.float32) / film.G, S)
                     for s in (0, 1)]


def _soft_tissue(film: Film) -> None:
    """The body: chest wall, neck, shoulders and arms, humeral heads, breast shadows."""
    S, cv, an, cx, top, W = film.S, film.cv, film.an, film.cx, film.top, film.W
    X, Y, c, H, lboxes = film.X, film.Y, film.c, film.H, film.lboxes
    # Densities are chosen for the brightness map below: 0.13 (aerated lung, dark grey),
    # 0.25 (chest wall), 0.42 (mediastinum), 0.5 (spine behind the mediastinum).
    D = np.full((S, S), 0.015, np.float32)
    dx = np.abs(X - cx)
    grow = smoothstep(top - 0.05, top + 0.75 * H, c)
    half = (W / 2.0 * (0.93 + 0.09 * grow) + an["margin"])[:, None]
    chest = soft(dx - half, 0.008) * smoothstep(top - 0.09, top - 0.03, Y)
    # neck and shoulders: the top contour falls from the neck to the shoulder tips
    neck, reach = an["neck"], W / 2.0 + an["margin"] + 0.1
    sh_top = top - 0.1 + 0.07 * np.square(np.clip((dx - neck) / (reach - neck), 0.0, 1.0))
    shoulders = soft(sh_top - Y, 0.01) * soft(dx - reach, 0.01) * (1.0 - smoothstep(top + 0.04, top + 0.12, Y))
    neck_col = soft(dx - neck, 0.008) * (1.0 - smoothstep(top - 0.09, top - 0.03, Y))
    arms = soft(half + an["arm_gap"] - dx, 0.01) * soft(sh_top + 0.02 - Y, 0.02)
    body = np.maximum(np.maximum(chest, shoulders), np.maximum(neck_col, 0.8 * arms))
    thick = np.sqrt(np.clip(1.0 - np.square(dx / (half + 0.05)), 0.0, 1.0))
    D += body * (0.2 + 0.22 * thick)
    # abdomen below the domes is a little denser (liver, spleen)
    D += body * 0.03 * smoothstep(film.base_y - 0.04, film.base_y + 0.06, Y)
    # humeral heads in the shoulders
    for sgn in (-1.0, 1.0):
        hx_, hy_, hr = cx + sgn * (reach - 0.02), top - 0.02, 0.055
        win = cv.window(hx_ - hr - 0.01, hx_ + hr + 0.01, hy_ - hr - 0.01, hy_ + hr + 0.01)
        if win is not None:
            rows, cols, Xw, Yw = win
            head = soft(np.sqrt((Xw - hx_) ** 2 + (Yw - hy_) ** 2) - hr, cv.edge + 0.004)
            D[rows, cols] += 0.07 * an["bone"] * head * body[rows, cols]
    if an["breasts"]:
        for s in (0, 1):
            x0, x1, y0, y1 = lboxes[s]
            bx = x0 + 0.35 * (x1 - x0) if s == 0 else x1 - 0.35 * (x1 - x0)
            by, br = y1 - 0.05, 0.17 * an["breast_size"]
            win = cv.window(bx - br, bx + br, by - br, by + 0.8 * br)
            rows, cols, Xw, Yw = win
            r = np.sqrt(((Xw - bx) / br) ** 2 + ((Yw - by) / (0.8 * br)) ** 2)
            D[rows, cols] += 0.03 * soft((r - 1.0) * br, 0.02) * smoothstep(by - 0.6 * br, by, Yw)
    film.D, film.body, film.half = D, body, half


def _lung_density(film: Film) -> None:
    """Air removes density, most where the lung is thickest; then the vessels, densest at the hila."""
    S, cv, an, f, D, X, Y, air = film.S, film.cv, film.an, film.f, film.D, film.X, film.Y, film.air
    lucency = an["lucency"] * (f["Emphysema"]["lucency"] if "Emphysema" in f else 1.0)
    depth_f = resize(np.clip(blur(film.coarse[0] + film.coarse[1], 0.04 * film.G), 0.0, 1.0), S)
    eff_air = air * (1.0 - film.opacity)
    lr = np.flatnonzero(air.any(axis=1))
    lc = np.flatnonzero(air.any(axis=0))
    if lr.size:  # where there is lung
        rows, cols = slice(lr[0], lr[-1] + 1), slice(lc[0], lc[-1] + 1)
    else:  # pragma: no cover - lungs always lie in the image
        rows, cols = slice(0, S), slice(0, S)
    D[rows, cols] -= LUNG_DARK * lucency * eff_air[rows, cols] * (0.6 + 0.4 * depth_f[rows, cols])
    D[rows, cols] -= film.lucent[rows, cols] * air[rows, cols]

    # vessels: a line network, densest at the hila (drawn where there is lung only)
    Xw, Yw = X[:, cols], Y[rows, :]
    v1 = lines(noise_field(film.tr, 22, S, rows, cols), 0.35)
    v2 = lines(noise_field(film.tr, 48, S, rows, cols), 0.3)
    hil = np.zeros_like(v1)
    for hx_, hy_ in film.hila:
        hil = np.maximum(hil, np.exp(-np.sqrt((Xw - hx_) ** 2 + (Yw - hy_) ** 2) / 0.14))
    markings = (0.6 * v1 + 0.35 * v2) * (0.25 + 0.75 * hil)
    gain = an["vessels"] * (f["Emphysema"]["markings"] if "Emphysema" in f else 1.0)
    if "Edema" in f:
        gain *= 0.7  # blurred vessels
    D[rows, cols] += 0.05 * gain * markings * eff_air[rows, cols] * film.marking_gain[rows, cols]
    for hx_, hy_ in film.hila:  # hilar vessels
        win = cv.window(hx_ - 0.06, hx_ + 0.06, hy_ - 0.08, hy_ + 0.08)
        rows, cols, Xw, Yw = win
        D[rows, cols] += 0.04 * np.exp(-(((Xw - hx_) / 0.025) ** 2 + ((Yw - hy_) / 0.045) ** 2))
    film.lucency, film.eff_air = lucency, eff_air


def _spine(film: Film) -> None:
    """The trachea and main bronchi, and the spine with its end plates and pedicles."""
    cv, an, cx, top, H, D, body = film.cv, film.an, film.cx, film.top, film.H, film.D, film.body
    tx, car = cx - 0.004, top + 0.30 * H
    win = cv.window(tx - 0.09, tx + 0.09, 0.0, car + 0.08)
    if win is not None:
        rows, cols, Xw, Yw = win
        trachea = soft(np.abs(Xw - tx) - 0.015, 0.008) * (1.0 - smoothstep(car - 0.01, car + 0.01, Yw))
        for sgn, slope in ((-1.0, 0.9), (1.0, 1.4)):
            xb = tx + sgn * np.maximum(Yw - car, 0.0) / slope
            tube = soft(np.abs(Xw - xb) - 0.01, 0.008)
            tube = tube * smoothstep(car - 0.02, car, Yw) * (1.0 - smoothstep(car + 0.04, car + 0.08, Yw))
            trachea = np.maximum(trachea, tube)
        D[rows, cols] -= 0.06 * trachea * body[rows, cols]
    sw = an["spine_width"]
    win = cv.window(cx - sw - 0.02, cx + sw + 0.02, 0.0, 1.0)
    rows, cols, Xw, Yw = win
    period = H / 11.0
    plates = 0.5 + 0.5 * np.cos(2 * np.pi * (Yw - top) / period)
    spine = soft(np.abs(Xw - cx) - sw, 0.008) * (0.8 + 0.2 * plates ** 4)
    pedicles = np.exp(-(((np.abs(Xw - cx) - 0.7 * sw) / (0.22 * sw)) ** 2)) * np.exp(-np.square(plates - 0.5) / 0.05) * 0.25
    D[rows, cols] += 0.06 * an["bone"] * (spine + pedicles) * body[rows, cols]


def _ribs_and_shoulders(film: Film) -> None:
    """Posterior ribs (brighter at the cortex), fainter anterior ribs, clavicles, scapulae."""
    S, cv, an, cx, top, W, H = film.S, film.cv, film.an, film.cx, film.top, film.W, film.H
    D, body, half, base_y = film.D, film.body, film.half, film.base_y
    reach_x = float(half.max()) + 0.03
    win = cv.window(cx - reach_x, cx + reach_x, top - 0.06, base_y + 0.06)
    if win is not None:
        rows, cols, Xw, Yw = win
        thorax = soft(np.abs(Xw - cx) - (half[rows] + 0.005), 0.015)
        thorax = thorax * smoothstep(top - 0.06, top, Yw) * (1.0 - smoothstep(base_y - 0.04, base_y + 0.06, Yw))
        rx = np.abs(Xw - cx) / (W / 2.0)
        curve = H * an["rib_curve"] * (np.square(rx - 0.25) - 0.0625)
        t_lin = np.clip((Yw - top + 0.06 * H - curve) / (1.05 * H), 0.0, 1.5)
        phase = an["rib_count"] * t_lin ** 0.85 + an["rib_phase"]
        fr_ = phase - np.floor(phase)
        e = 1.5 / (S * H / an["rib_count"])  # about 1.5 px in phase units
        rib = soft(np.abs(fr_ - 0.2) - 0.17, e)
        cortex = soft(np.abs(np.abs(fr_ - 0.2) - 0.16) - 0.02, e)
        ribs = (0.7 * rib + 0.5 * cortex) * smoothstep(0.1, 0.25, rx)
        ant_curve = H * 0.4 * np.square(1.05 - np.minimum(rx, 1.05))
        ant_phase = 6.0 * np.clip((Yw - top - 0.06 * H - ant_curve) / H, 0.0, 1.5)
        afr = ant_phase - np.floor(ant_phase)
        ant = soft(np.abs(afr - 0.2) - 0.13, e * 0.6) * smoothstep(0.35, 0.65, rx) * 0.45
        D[rows, cols] += 0.035 * an["bone"] * (ribs + ant) * thorax

    # clavicles: from the sternal end up and out to the shoulder
    cy0, drop = an["clavicle_y"], an["clavicle_drop"]
    win = cv.window(cx - 0.36, cx + 0.36, cy0 - drop - 0.05, cy0 + 0.05)
    if win is not None:
        rows, cols, Xw, Yw = win
        t = (np.abs(Xw - cx) - 0.025) / 0.3
        yc = cy0 - drop * t + 0.015 * np.sin(np.pi * np.clip(t, 0, 1))
        clav = soft(np.abs(Yw - yc) - 0.012, cv.edge + 0.004) * soft(np.abs(t - 0.5) - 0.5, 0.05)
        D[rows, cols] += 0.07 * an["bone"] * clav * body[rows, cols]
    if an["scapula"]:
        for s in (0, 1):
            x0, x1, y0, y1 = film.lboxes[s]
            sx = x0 + 0.05 * (x1 - x0) if s == 0 else x1 - 0.05 * (x1 - x0)
            win = cv.window(sx - 0.08, sx + 0.08, y0, y0 + 0.5 * (y1 - y0))
            rows, cols, Xw, Yw = win
            r = np.sqrt(((Xw - sx) / 0.07) ** 2 + ((Yw - (y0 + 0.22 * (y1 - y0))) / (0.24 * (y1 - y0))) ** 2)
            D[rows, cols] += 0.03 * an["bone"] * soft((r - 1.0) * 0.07, 0.008)


def _gastric_bubble(film: Film) -> None:
    """The gastric bubble under the left dome (not with the flat domes of Emphysema)."""
    an = film.an
    if an["gastric"] and "Emphysema" not in film.f:
        x0, x1, y0, y1 = film.lboxes[1]
        gx, gy, gr = x0 + 0.45 * (x1 - x0), y1 + 0.035, an["gastric_size"]
        win = film.cv.window(gx - 1.6 * gr, gx + 1.6 * gr, gy - gr, gy + gr)
        if win is not None:
            rows, cols, Xw, Yw = win
            r = np.sqrt(((Xw - gx) / (1.5 * gr)) ** 2 + ((Yw - gy) / gr) ** 2)
            film.D[rows, cols] -= 0.08 * soft((r - 1.0) * gr, 0.006) * (Yw < gy + 0.2 * gr)


def _expose(film: Film) -> np.ndarray:
    """Density to brightness, contrast, gamma, gradient and noise; the uint8 image.

    brightness = ((1 - exp(-gain D)) / norm) ** gamma, through a fine look-up table.
    """
    an, D, X, Y, S, tr = film.an, film.D, film.X, film.Y, film.S, film.tr
    g = an["gain"]
    levels = np.linspace(0.0, _D_MAX, _LUT_SIZE, dtype=np.float64)
    curve = np.clip((1.0 - np.exp(-g * levels)) / (1.0 - math.exp(-g * 0.8)), 0.0, 1.0) ** an["gamma"]
    index = np.clip(D * ((_LUT_SIZE - 1) / _D_MAX), 0, _LUT_SIZE - 1).astype(np.intp)
    base = curve.astype(np.float32)[index]
    gx_, gy_ = an["gradient"]
    img = an["offset"] + an["contrast"] * base * (1.0 + gx_ * (X - 0.5) + gy_ * (Y - 0.5))
    img += 0.012 * noise_field(tr, 12, S)
    # detector noise, larger where more photons arrive (brighter)
    spread = (an["noise"] * np.sqrt(np.clip(an["offset"] + an["contrast"] * curve, 0.05, 1.0))).astype(np.float32)
    img += spread[index] * tr.standard_normal((S, S), dtype=np.float32)
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_scene(sc: Scene, size: int, *, templates: LungTemplates | None = None,
                 texture_seed: Sequence[int] = (0,)) -> Phantom:
    """Draw a :class:`~cral_lib.synthetic.scene.Scene` as a ``size x size`` uint8 image with its boxes.

    Args:
        sc: the scene (from :func:`~cral_lib.synthetic.scene.draw_scene`).
        size: image side in pixels (:data:`~cral_lib.synthetic.phantom.MIN_SIZE` to
            :data:`~cral_lib.synthetic.phantom.MAX_SIZE`).
        templates: the lung templates the scene was drawn with (default:
            :func:`~cral_lib.synthetic.templates.lung_templates`).
        texture_seed: entropy for the generator of the image's textures and noise.

    Returns:
        The :class:`Phantom`.
    """
    film = Film(sc, size, templates if templates is not None else lung_templates(), texture_seed)
    _paint(film, "lungs")
    _volume_loss(film)
    _heart(film)
    _paint(film, "heart")
    _air(film)
    _paint(film, "air")
    _soft_tissue(film)
    _lung_density(film)
    _paint(film, "lung density")
    _spine(film)
    _ribs_and_shoulders(film)
    _gastric_bubble(film)
    _paint(film, "abdomen")
    film.D += film.extra
    image = _expose(film)
    boxes = {name: tuple(round(v, 1) for v in b) for name, b in film.boxes.items() if b is not None}
    return Phantom(image=image, boxes=boxes, scene=sc)


__all__ = ["Film", "Phantom", "render_scene"]
