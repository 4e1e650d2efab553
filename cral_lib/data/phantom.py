"""Procedural chest radiograph phantoms: the images of the synthetic ChestX-ray14.

A phantom is a frontal chest radiograph drawn from a few dozen random numbers. It is not a
simulation of X-ray physics; it is a picture with the parts a reader of chest films looks at,
in the right places, so that a network has to find *where* a finding is and *what* it looks
like, as on the real data. Everything is drawn in coordinates relative to the image side, so
that the same seed gives the same anatomy and findings at 64, 256 or 1024 pixels; the image is
drawn at the size asked for (never drawn large and shrunk).

Normal anatomy (per patient, so that a patient's follow-up images share it):

- body outline and soft tissue (thicker in the middle), neck, shoulders and humeral heads;
  breast shadows over the lower lung fields of female patients;
- lung fields whose shapes are real: each patient gets one of the lung masks that ship with
  torchxrayvision (:func:`cral_lib.data.lung_masks`), jittered per image by a small affine
  transform (scale, stretch, shift, inspiration depth);
- heart (cardio-thoracic ratio 0.38-0.50) and aortic knob, mediastinum, trachea and main
  bronchi, the spine with its vertebral end plates;
- diaphragm domes (the lung bases), a gastric air bubble under the left dome in some images;
- posterior ribs (curved bands, brighter at their cortex), fainter anterior ribs, clavicles;
- lung markings: a branching-looking vessel network densest at the hila, fading outwards.

Per image: patient position (shift), inspiration depth, exposure, contrast, gamma,
detector noise and a slow brightness gradient. View: AP images magnify the heart (x1.04-1.12),
raise the clavicles, show the scapulae over the upper lung fields and have lower lung volumes.

The 14 findings (see :data:`SIGNATURES`; each has a severity that sets its size and contrast,
so that some cases are faint or small and hence hard):

- **Atelectasis**: a plate-like band (oblique line, mid or lower zone) or a wedge pointing to
  the hilum, with volume loss: the lung on that side is shorter (raised hemidiaphragm).
- **Cardiomegaly**: an enlarged heart shadow, cardio-thoracic ratio 0.52-0.65, growing to the
  patient's left and down.
- **Effusion**: fluid in the costophrenic recess of one or both lungs: the angle is blunted and
  the base is replaced by a homogeneous opacity whose top is a meniscus rising laterally;
  small effusions only blunt the angle.
- **Infiltration**: two to five patchy, ill-defined, mottled opacities in one or both lungs.
- **Mass**: one large (3-6 cm) round, slightly lobulated opacity with a well-defined edge.
- **Nodule**: one small (0.7-2 cm) round opacity with a sharp edge, often faint.
- **Pneumonia**: a lobar patch: an ill-defined, mottled opacity with one straight, sharp edge
  (a fissure), in one lung.
- **Pneumothorax**: a peripheral apical/lateral rim without lung markings, darker than the lung,
  limited by a thin bright visceral pleural line.
- **Consolidation**: a dense homogeneous opacity with dark branching air bronchograms inside.
- **Edema**: bilateral perihilar haziness fading to the periphery ("bat wing"), blurred hila,
  and short horizontal septal lines (Kerley B) at the lateral bases.
- **Emphysema**: hyperlucent, hyperexpanded lungs with sparse markings, flattened diaphragms
  and a narrow heart.
- **Fibrosis**: a fine reticular (net-like) pattern at the periphery and bases, with some
  volume loss; usually on both sides.
- **Pleural_Thickening**: a smooth band of soft tissue along the pleura: an apical cap or a
  stretch of the lateral chest wall.
- **Hernia**: a hiatal hernia: a rounded retrocardiac opacity just above the diaphragm, often
  with an air bubble and a flat air-fluid level.

Boxes (:data:`BOXED`): every localized finding gets one box per image, the bounding box of the
pixels where its drawing is at least half of its strength (all its parts together: both sides
for a bilateral effusion or fibrosis, all patches of an infiltration). Edema and Emphysema are
diffuse and bilateral, as in NIH's box list (which has none for them): they get no box.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .. import CLASSES, NO_FINDING
from ..errors import ConfigError

#: One line per finding: what its drawing looks like (the book prints this table).
SIGNATURES: dict[str, str] = {
    "Atelectasis": "plate-like band or wedge towards the hilum, mid/lower zone, with volume loss "
    "(raised hemidiaphragm)",
    "Cardiomegaly": "enlarged heart shadow, cardio-thoracic ratio 0.52-0.65",
    "Effusion": "blunted costophrenic angle; homogeneous basal opacity topped by a meniscus "
    "rising laterally; one or both sides",
    "Infiltration": "2-5 patchy, ill-defined, mottled opacities in one or both lungs",
    "Mass": "one large (3-6 cm) round, slightly lobulated, well-defined opacity",
    "Nodule": "one small (0.7-2 cm) round, sharp-edged, often faint opacity",
    "Pneumonia": "lobar patch: ill-defined mottled opacity with one straight sharp edge (fissure)",
    "Pneumothorax": "apical/lateral rim without lung markings, darker, bounded by a thin pleural line",
    "Consolidation": "dense homogeneous opacity with dark branching air bronchograms",
    "Edema": "bilateral perihilar haziness (bat wing), blurred hila, Kerley B lines; no box",
    "Emphysema": "hyperlucent, hyperexpanded lungs, sparse markings, flat diaphragms, narrow "
    "heart; no box",
    "Fibrosis": "fine reticular pattern at the periphery and bases, some volume loss",
    "Pleural_Thickening": "smooth soft-tissue band along the pleura: apical cap or lateral wall",
    "Hernia": "rounded retrocardiac opacity above the diaphragm, often with an air-fluid level",
}

#: The findings that get a box (all but the diffuse Edema and Emphysema).
BOXED: frozenset[str] = frozenset(CLASSES) - {"Edema", "Emphysema"}

#: Smallest and largest image side that :func:`make_phantom` draws.
MIN_SIZE = 32
MAX_SIZE = 4096

#: Bumped whenever a change to the drawing changes the pixels for the same seed.
PHANTOM_VERSION = 1

# Side of the square lung-shape templates and how many real masks serve as shapes.
TEMPLATE_RESOLUTION = 128
TEMPLATE_COUNT = 96

# Seed-sequence streams: one generator per purpose, so that a patient's anatomy, the
# place of each of their findings and the per-image variation are independent.
_ANATOMY, _FINDING, _IMAGE, _TEXTURE = 1, 2, 3, 4

# Density range and resolution of the look-up table that maps density to brightness.
_D_MAX = 1.2
_LUT_SIZE = 4096

# Attenuation of an air-filled lung relative to the soft tissue it replaces.
_LUNG_DARK = 0.28


# --------------------------------------------------------------------------------------
# Lung-shape templates from the real masks
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LungTemplates:
    """Real lung shapes, cropped to the two lungs and resampled to a square.

    Attributes:
        right: ``(K, T, T)`` float32 in [0, 1]: the patient's right lung (image left).
        left: ``(K, T, T)`` float32: the patient's left lung (image right).
        aspect: ``(K,)`` height / width of the real two-lung bounding box.
        boxes: ``(K, 2, 4)`` per template and side (right, left): ``u0, u1, v0, v1``, the
            lung's extent in template coordinates (0-1, u to the image right, v down).
        names: the mask file of each template.
    """

    right: np.ndarray
    left: np.ndarray
    aspect: np.ndarray
    boxes: np.ndarray
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)


def _template_from_mask(grey: np.ndarray, resolution: int):
    """Split a two-lung mask into right/left channels on a square; None when unusable."""
    from PIL import Image
    from scipy import ndimage

    # marks drawn over a lung (devices, labels; grey 127 in the file) leave holes: fill them
    small = ndimage.binary_fill_holes(grey >= 128)
    labels, count = ndimage.label(small)
    if count < 2:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    total = small.sum()
    order = np.argsort(sizes)[::-1]
    big = [i + 1 for i in order if sizes[i] > 0.05 * total]
    if len(big) != 2:
        return None
    lungs = np.isin(labels, big)
    ys, xs = np.nonzero(lungs)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    hh, ww = y1 - y0, x1 - x0
    touches = y0 == 0 or x0 == 0 or y1 == small.shape[0] or x1 == small.shape[1]
    ratio = sizes[big[0] - 1] / sizes[big[1] - 1]
    fill = lungs.sum() / (hh * ww)
    if touches or not (0.6 <= hh / ww <= 1.05) or not (0.5 <= fill <= 0.7) or ratio > 1.5:
        return None
    crop = labels[y0:y1, x0:x1]
    cx = [np.nonzero(crop == b)[1].mean() for b in big]
    right_id, left_id = (big[0], big[1]) if cx[0] < cx[1] else (big[1], big[0])
    channels, boxes = [], []
    for lab in (right_id, left_id):
        part = (crop == lab)
        py, px = np.nonzero(part)
        if px.max() > 0.75 * ww if lab == right_id else px.min() < 0.25 * ww:
            return None  # one lung reaches across the midline: not a usable shape
        boxes.append((px.min() / ww, (px.max() + 1) / ww, py.min() / hh, (py.max() + 1) / hh))
        img = Image.fromarray(part.astype(np.float32))
        arr = np.asarray(img.resize((resolution, resolution), Image.BILINEAR), dtype=np.float32)
        channels.append(ndimage.gaussian_filter(arr, 0.7).astype(np.float32))
    return channels[0], channels[1], hh / ww, np.asarray(boxes, dtype=np.float32)


@functools.lru_cache(maxsize=2)
def lung_templates(count: int = TEMPLATE_COUNT, resolution: int = TEMPLATE_RESOLUTION) -> LungTemplates:
    """Return the lung-shape templates that phantoms draw their lung fields from.

    The real masks (:func:`cral_lib.data.metadata.reduced_lung_masks`) are read in name order;
    a mask is used when it holds exactly two lungs side by side that do not touch its border,
    with a plausible shape (height/width of both lungs 0.6-1.05, lungs filling 50-70 % of
    their bounding box, the larger lung at most 1.5 times the smaller one). The first
    ``count`` such masks are kept. Cached per process.

    Args:
        count: how many templates to keep (at most the 434 masks that pass).
        resolution: side of the square templates.

    Returns:
        The :class:`LungTemplates`.

    Raises:
        DataError: torchxrayvision (which carries the masks) is not installed.
    """
    from .metadata import reduced_lung_masks

    right, left, aspect, boxes, names = [], [], [], [], []
    for name, grey in reduced_lung_masks():
        made = _template_from_mask(grey, resolution)
        if made is None:
            continue
        right.append(made[0])
        left.append(made[1])
        aspect.append(made[2])
        boxes.append(made[3])
        names.append(name)
        if len(names) >= count:
            break
    out = LungTemplates(
        right=np.stack(right),
        left=np.stack(left),
        aspect=np.asarray(aspect, dtype=np.float32),
        boxes=np.stack(boxes),
        names=tuple(names),
    )
    for arr in (out.right, out.left, out.aspect, out.boxes):
        arr.flags.writeable = False
    return out


# --------------------------------------------------------------------------------------
# Small drawing helpers (coordinates relative to the image side: x right, y down, 0-1)
# --------------------------------------------------------------------------------------


def _rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream, *[int(k) for k in keys]])


def _soft(signed_distance: np.ndarray, width: float) -> np.ndarray:
    """1 inside, 0 outside, a linear ramp of ``width`` across the edge."""
    return np.clip(0.5 - signed_distance / width, 0.0, 1.0)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class _Canvas:
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


def _resize(field: np.ndarray, size: int, resample: str = "bilinear") -> np.ndarray:
    """Resample a float field to ``size x size`` (it covers the whole image)."""
    from PIL import Image

    if field.shape == (size, size):
        return field.astype(np.float32, copy=False)
    method = Image.BICUBIC if resample == "bicubic" else Image.BILINEAR
    img = Image.fromarray(np.ascontiguousarray(field, dtype=np.float32))
    return np.asarray(img.resize((size, size), method), dtype=np.float32)


def _noise_field(rng: np.random.Generator, grid: int, size: int, rows: slice | None = None,
                 cols: slice | None = None) -> np.ndarray:
    """A smooth random field: unit-variance noise on ``grid`` x ``grid``, bicubic to ``size``.

    With ``rows`` and ``cols``, only that window of the ``size`` x ``size`` field is computed
    (the same values as the whole field would have there).
    """
    from PIL import Image

    noise = rng.standard_normal((grid, grid), dtype=np.float32)
    if rows is None:
        return _resize(noise, size, "bicubic")
    k = grid / size
    box = (cols.start * k, rows.start * k, cols.stop * k, rows.stop * k)
    img = Image.fromarray(noise).resize((cols.stop - cols.start, rows.stop - rows.start), Image.BICUBIC, box=box)
    return np.asarray(img, dtype=np.float32)


def _lines(field: np.ndarray, width: float) -> np.ndarray:
    """Thin curvy lines along the zero crossings of a smooth random field."""
    return np.exp(-np.square(field / width))


def _bbox(weight: np.ndarray, rows: slice, cols: slice, level: float):
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


def _union(boxes: Iterable[tuple[float, float, float, float] | None]):
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return (x0, y0, x1 - x0, y1 - y0)


_PAD = 8  # zero border around a template, so that resampling windows stay inside it


def _place(channel: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """Draw a template channel onto the image rectangle ``box = (x0, y0, width, height)``.

    The template's square is stretched onto the rectangle (relative units) with Pillow's
    resampling of just that window (bilinear, antialiased when shrinking); the rest of the
    ``size x size`` image is 0, as the template's border is.
    """
    from PIL import Image

    x0, y0, w, h = box
    out = np.zeros((size, size), np.float32)
    j0, j1 = max(int(np.floor(x0 * size)), 0), min(int(np.ceil((x0 + w) * size)), size)
    i0, i1 = max(int(np.floor(y0 * size)), 0), min(int(np.ceil((y0 + h) * size)), size)
    if j1 <= j0 or i1 <= i0:
        return out
    res = channel.shape[0]
    padded = np.pad(channel, _PAD)
    # the window's edges in template pixels (continuous coordinates), shifted by the pad
    u0, u1 = ((j / size - x0) / w * res + _PAD for j in (j0, j1))
    v0, v1 = ((i / size - y0) / h * res + _PAD for i in (i0, i1))
    img = Image.fromarray(padded).resize((j1 - j0, i1 - i0), Image.BILINEAR, box=(u0, v0, u1, v1))
    out[i0:i1, j0:j1] = np.asarray(img, dtype=np.float32)
    return out


# --------------------------------------------------------------------------------------
# The scene: every random number of one image, independent of the pixel size
# --------------------------------------------------------------------------------------


@dataclass
class Scene:
    """The parameters of one phantom (relative units), drawn by :func:`draw_scene`.

    Attributes:
        labels: the findings shown, in class order.
        view: ``"PA"`` or ``"AP"``.
        anatomy: the normal anatomy and the image's acquisition parameters.
        findings: one parameter dict per finding (keyed by class name).
    """

    labels: tuple[str, ...]
    view: str
    anatomy: dict[str, Any]
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)


def _point_in_lung(rng, templates: LungTemplates, k: int, side: int, v_range=(0.0, 1.0),
                   lateral_range=(0.0, 1.0), inset: float = 0.9):
    """A random template point (u, v) inside lung ``side`` (0 right, 1 left) of template k.

    ``v_range`` limits the height (0 apex, 1 base) and ``lateral_range`` the position
    across the lung (0 medial, 1 lateral), both relative to that lung's extent.
    """
    channel = templates.right[k] if side == 0 else templates.left[k]
    u0, u1, v0, v1 = templates.boxes[k, side]
    res = channel.shape[0]
    ys, xs = np.nonzero(channel >= inset)
    u = (xs + 0.5) / res
    v = (ys + 0.5) / res
    vr = (v - v0) / max(v1 - v0, 1e-6)
    lat = (u1 - u) / max(u1 - u0, 1e-6) if side == 0 else (u - u0) / max(u1 - u0, 1e-6)
    ok = (vr >= v_range[0]) & (vr <= v_range[1]) & (lat >= lateral_range[0]) & (lat <= lateral_range[1])
    if not ok.any():
        ok = np.ones_like(u, dtype=bool)
    i = rng.choice(np.flatnonzero(ok))
    return float(u[i]), float(v[i])


def _sides(rng, p_right=0.45, p_left=0.35) -> tuple[int, ...]:
    r = rng.random()
    return (0,) if r < p_right else (1,) if r < p_right + p_left else (0, 1)


def draw_scene(
    labels: Sequence[str],
    *,
    view: str = "PA",
    sex: str = "M",
    age: float = 50.0,
    seed: int = 0,
    image_id: int = 0,
    patient_id: int | None = None,
    templates: LungTemplates | None = None,
) -> Scene:
    """Draw the parameters of one phantom.

    Anatomy comes from a generator seeded by ``(seed, patient_id)``, so that the images of
    one patient share their lungs, heart and bones; the place and shape of each finding from
    one seeded by ``(seed, patient_id, class)``, so that a finding stays where it was on a
    follow-up; pose, exposure and severities from one seeded by ``(seed, image_id)``.

    Args:
        labels: finding names (classes of :data:`cral_lib.CLASSES`; ``No Finding`` is ignored).
        view: ``"PA"`` or ``"AP"``.
        sex: ``"M"`` or ``"F"`` (breast shadows for ``"F"``).
        age: years (older patients have slightly lower bone contrast).
        seed: the dataset seed.
        image_id: the image's number within the dataset.
        patient_id: the patient's number; defaults to ``image_id`` (a patient of one image).
        templates: lung templates (default: :func:`lung_templates`).

    Returns:
        The :class:`Scene`.

    Raises:
        ConfigError: an unknown label or view.
    """
    labels = tuple(dict.fromkeys(str(x) for x in labels if str(x) != NO_FINDING))
    unknown = [x for x in labels if x not in CLASSES]
    if unknown:
        raise ConfigError(f"unknown finding(s) {unknown}; expected names from {list(CLASSES)}")
    labels = tuple(c for c in CLASSES if c in labels)
    view = str(view).upper()
    if view not in ("PA", "AP"):
        raise ConfigError(f"view must be 'PA' or 'AP', got {view!r}")
    if templates is None:
        templates = lung_templates()
    patient = image_id if patient_id is None else patient_id
    ar = _rng(seed, _ANATOMY, patient)
    ir = _rng(seed, _IMAGE, image_id)
    ap = view == "AP"

    # ---- anatomy (per patient) ----
    k = int(ar.integers(len(templates)))
    width = ar.uniform(0.64, 0.76)
    aspect = float(np.clip(templates.aspect[k] * ar.uniform(1.08, 1.22), 0.78, 1.02))
    anatomy: dict[str, Any] = {
        "template": k,
        "lung_width": width,
        "lung_aspect": aspect,
        "margin": ar.uniform(0.035, 0.085),
        "arm_gap": ar.uniform(0.01, 0.05),
        "neck": ar.uniform(0.09, 0.12),
        "ctr": float(np.clip(ar.normal(0.44, 0.03), 0.38, 0.50)),
        "heart_tilt": ar.uniform(-0.12, 0.12),
        "rib_curve": ar.uniform(0.45, 0.7),
        "rib_count": ar.uniform(9.0, 10.5),
        "rib_phase": ar.uniform(0.0, 0.25),
        "clavicle_drop": ar.uniform(0.03, 0.06),
        "spine_width": ar.uniform(0.028, 0.036),
        "breasts": sex.upper().startswith("F"),
        "breast_size": ar.uniform(0.7, 1.2),
        "bone": float(np.clip(1.05 - 0.004 * max(float(age) - 40.0, 0.0), 0.8, 1.05)),
        "lucency": ar.uniform(0.9, 1.1),
    }
    # ---- this image: position, inspiration, exposure ----
    inspiration = ir.uniform(0.93, 1.03) * (0.95 if ap else 1.0)
    height = width * aspect * inspiration
    top = ir.uniform(0.06, 0.12) + (0.02 if ap else 0.0)
    if top + height > 0.84:
        height = 0.84 - top
    anatomy.update(
        cx=0.5 + ir.normal(0.0, 0.012),
        top=top,
        lung_height=height,
        vscale=[1.0, 1.0],
        heart_scale=ir.uniform(1.04, 1.12) if ap else ir.uniform(0.98, 1.02),
        clavicle_y=top + (ir.uniform(0.0, 0.03) if ap else ir.uniform(0.03, 0.06)),
        scapula=ap or ir.random() < 0.15,
        gastric=ir.random() < 0.6,
        gastric_size=ir.uniform(0.025, 0.045),
        gain=ir.uniform(1.7, 2.4),
        gamma=ir.uniform(0.8, 1.25),
        contrast=ir.uniform(0.85, 1.08),
        offset=ir.uniform(-0.04, 0.05),
        noise=ir.uniform(0.008, 0.03),
        gradient=(ir.normal(0.0, 0.04), ir.normal(0.0, 0.04)),
        vessels=ir.uniform(0.8, 1.2),
    )

    findings: dict[str, dict[str, Any]] = {}
    for name in labels:
        fr = _rng(seed, _FINDING, patient, CLASSES.index(name))
        # severity: mostly the patient's, partly this image's, so a finding can change
        sev = float(np.clip(0.7 * fr.random() + 0.3 * ir.random(), 0.0, 1.0))
        p: dict[str, Any] = {"severity": sev}
        if name == "Atelectasis":
            side = int(fr.random() < 0.45)
            p.update(side=side, kind="wedge" if fr.random() < 0.35 else "band",
                     point=_point_in_lung(fr, templates, k, side, (0.45, 0.85), (0.3, 0.9)),
                     angle=fr.uniform(-0.35, 0.35), length=fr.uniform(0.35, 0.65),
                     thickness=0.012 + 0.02 * sev, spread=fr.uniform(0.25, 0.45),
                     opacity=0.3 + 0.45 * sev, volume=1.0 - (0.02 + 0.06 * sev))
            anatomy["vscale"][side] *= p["volume"]
        elif name == "Cardiomegaly":
            p.update(ctr=0.52 + 0.13 * sev)
        elif name == "Effusion":
            p.update(sides=_sides(fr, 0.4, 0.35), level=0.03 + 0.24 * sev,
                     rise=fr.uniform(0.06, 0.16), opacity=0.45 + 0.45 * sev, soft=fr.uniform(0.01, 0.03))
        elif name == "Infiltration":
            count = int(fr.integers(2, 6))
            patches = []
            for _ in range(count):
                side = int(fr.random() < 0.5)
                patches.append(dict(side=side, point=_point_in_lung(fr, templates, k, side, (0.1, 0.95)),
                                    radius=fr.uniform(0.03, 0.065), stretch=fr.uniform(0.6, 1.4)))
            p.update(patches=patches, opacity=0.18 + 0.32 * sev, seed=int(fr.integers(2**31)))
        elif name == "Mass":
            side = int(fr.random() < 0.5)
            p.update(side=side, point=_point_in_lung(fr, templates, k, side, (0.15, 0.8), (0.15, 0.85), 0.97),
                     radius=0.038 + 0.042 * fr.random() * (0.6 + 0.4 * sev),
                     lobes=fr.uniform(0.04, 0.12, size=3), phases=fr.uniform(0, 2 * np.pi, size=3),
                     opacity=0.35 + 0.45 * sev)
        elif name == "Nodule":
            side = int(fr.random() < 0.5)
            p.update(side=side, point=_point_in_lung(fr, templates, k, side, (0.1, 0.85), (0.1, 0.9), 0.97),
                     radius=0.009 + 0.014 * fr.random() * (0.5 + 0.5 * sev),
                     opacity=0.45 + 0.5 * sev)
        elif name == "Pneumonia":
            side = int(fr.random() < 0.55)
            upper = fr.random() < 0.35
            p.update(side=side, upper=upper,
                     point=_point_in_lung(fr, templates, k, side, (0.2, 0.45) if upper else (0.55, 0.85), (0.2, 0.8)),
                     radius=fr.uniform(0.07, 0.12), stretch=fr.uniform(0.8, 1.3),
                     opacity=0.35 + 0.45 * sev, seed=int(fr.integers(2**31)))
        elif name == "Pneumothorax":
            p.update(side=int(fr.random() < 0.45), depth=0.012 + 0.04 * sev,
                     reach=fr.uniform(0.45, 0.8), dark=0.5 + 0.5 * sev)
        elif name == "Consolidation":
            side = int(fr.random() < 0.5)
            p.update(side=side, point=_point_in_lung(fr, templates, k, side, (0.35, 0.9), (0.2, 0.85)),
                     radius=fr.uniform(0.045, 0.09), stretch=fr.uniform(0.7, 1.4),
                     opacity=0.55 + 0.4 * sev, branches=int(fr.integers(2, 5)),
                     seed=int(fr.integers(2**31)))
        elif name == "Edema":
            p.update(opacity=0.2 + 0.45 * sev, spread=fr.uniform(0.12, 0.2), kerley=fr.random() < 0.6)
        elif name == "Emphysema":
            p.update(lucency=1.12 + 0.2 * sev, expansion=1.03 + 0.08 * sev, markings=0.7 - 0.35 * sev,
                     flatten=0.5 + 0.5 * sev)
            anatomy["vscale"] = [v * p["expansion"] for v in anatomy["vscale"]]
        elif name == "Fibrosis":
            p.update(sides=_sides(fr, 0.15, 0.15), depth=0.05 + 0.06 * sev, opacity=0.25 + 0.45 * sev,
                     basal=fr.uniform(0.4, 0.6), volume=1.0 - 0.05 * sev, seed=int(fr.integers(2**31)))
            anatomy["vscale"] = [v * p["volume"] for v in anatomy["vscale"]]
        elif name == "Pleural_Thickening":
            side = int(fr.random() < 0.5)
            p.update(side=side, apical=fr.random() < 0.5, thickness=0.012 + 0.022 * sev,
                     start=fr.uniform(0.2, 0.5), extent=fr.uniform(0.25, 0.5), opacity=0.8 + 0.2 * sev)
        elif name == "Hernia":
            p.update(dx=fr.uniform(0.0, 0.06), radius=0.035 + 0.03 * sev, squash=fr.uniform(0.7, 0.95),
                     opacity=0.2 + 0.25 * sev, air=fr.random() < 0.7, level=fr.uniform(0.3, 0.55))
        findings[name] = p
    return Scene(labels=labels, view=view, anatomy=anatomy, findings=findings)


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


@dataclass
class Phantom:
    """A drawn phantom.

    Attributes:
        image: ``(size, size)`` uint8 grey image.
        boxes: one box per localized finding: class -> ``(x, y, w, h)`` in pixels of ``image``
            (top-left corner, width, height; floats).
        scene: the parameters it was drawn from.
    """

    image: np.ndarray
    boxes: dict[str, tuple[float, float, float, float]]
    scene: Scene


def _lung_geometry(sc: Scene) -> list[tuple[float, float, float, float]]:
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


def render_scene(sc: Scene, size: int, *, templates: LungTemplates | None = None,
                 texture_seed: Sequence[int] = (0,)) -> Phantom:
    """Draw a :class:`Scene` as a ``size x size`` uint8 image with its boxes.

    Args:
        sc: the scene (from :func:`draw_scene`).
        size: image side in pixels (:data:`MIN_SIZE` to :data:`MAX_SIZE`).
        templates: the lung templates the scene was drawn with (default: :func:`lung_templates`).
        texture_seed: entropy for the generator of the image's textures and noise.

    Returns:
        The :class:`Phantom`.
    """
    if templates is None:
        templates = lung_templates()
    S = int(size)
    cv = _Canvas(S)
    an = sc.anatomy
    f = sc.findings
    tr = np.random.default_rng(list(texture_seed))
    k = an["template"]
    cx, top = an["cx"], an["top"]
    W, H = an["lung_width"], an["lung_height"]
    boxes: dict[str, tuple[float, float, float, float]] = {}
    c = cv.c
    X = c[None, :]
    Y = c[:, None]

    # ---- lungs (full size and a coarse copy for smooth fields) ----
    maps = _lung_geometry(sc)
    G = min(S, 128)
    lung = [_place(templates.right[k], maps[0], S), _place(templates.left[k], maps[1], S)]
    coarse = [_place(templates.right[k], maps[0], G), _place(templates.left[k], maps[1], G)]
    lboxes = []
    for s in (0, 1):
        u0, u1, v0, v1 = templates.boxes[k, s]
        corners = [_to_image(maps, s, (u, v)) for u in (u0, u1) for v in (v0, v1)]
        xs, ys = [p[0] for p in corners], [p[1] for p in corners]
        lboxes.append((min(xs), max(xs), min(ys), max(ys)))
    base_y = max(lboxes[0][3], lboxes[1][3])
    # hila: just inside the medial edge of each lung, a little above mid-height
    hila = []
    for s in (0, 1):
        hy_ = lboxes[s][2] + 0.42 * (lboxes[s][3] - lboxes[s][2])
        row = np.flatnonzero(lung[s][min(int(hy_ * S), S - 1)] >= 0.5)
        if row.size:
            hx_ = (row[-1] + 0.5) / S - 0.03 if s == 0 else (row[0] + 0.5) / S + 0.03
        else:
            hx_ = cx - 0.1 if s == 0 else cx + 0.1
        hila.append((float(hx_), float(hy_)))

    if "Emphysema" in f:
        # flat diaphragms: stretch the lower part of each lung column down, most under the
        # dome, so that the base becomes a nearly level line at the costophrenic angle
        flatten = f["Emphysema"]["flatten"]
        rows = np.arange(S, dtype=np.float32)[:, None]
        for s in (0, 1):
            m = lung[s]
            inside = m >= 0.5
            last = (S - 1 - np.argmax(inside[::-1, :], axis=0)).astype(np.float32)
            top_px, base_px = lboxes[s][2] * S, lboxes[s][3] * S
            anchor = top_px + 0.55 * (base_px - top_px)
            weight = _smoothstep(anchor, anchor + 0.3 * (base_px - anchor), last) * inside.any(axis=0)
            shift = flatten * weight * np.maximum(base_px - last, 0.0)
            # smooth across columns so that a lone deep column does not become a streak
            target = last + _smooth1d(shift.astype(np.float32), 0.012 * S)
            stretch = (target > anchor + 1.0) & (last > anchor) & inside.any(axis=0)
            scale = np.where(stretch, (last - anchor) / np.maximum(target - anchor, 1.0), 1.0)
            src = np.where(rows > anchor, anchor + (rows - anchor) * scale[None, :], rows)
            i0 = np.clip(np.floor(src).astype(np.intp), 0, S - 2)
            w = np.clip(src - i0, 0.0, 1.0).astype(np.float32)
            cols = np.arange(S)[None, :]
            stretched = (m[i0, cols] * (1.0 - w) + m[i0 + 1, cols] * w) * (rows <= target[None, :] + 1.5)
            lung[s] = np.where(stretch[None, :], stretched, m).astype(np.float32)

    # ---- heart and aortic knob ----
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
    if win is not None:
        rows, cols, Xw, Yw = win
        ct, st = math.cos(tilt), math.sin(tilt)
        du, dv = Xw - hx, Yw - hy
        # narrower towards the top, where the heart joins the mediastinum
        narrow = 0.45 + 0.55 * _smoothstep(hy - 1.1 * hb, hy - 0.1 * hb, Yw)
        ru = (ct * du + st * dv) / (ha * narrow)
        rv = (-st * du + ct * dv) / hb
        r = np.sqrt(ru * ru + rv * rv)
        heart[rows, cols] = _soft((r - 1.0) * ha * narrow, cv.edge)
        if "Cardiomegaly" in f:
            boxes["Cardiomegaly"] = _bbox(heart[rows, cols], rows, cols, 0.5)
    # aortic knob: a bulge of the mediastinum into the left lung's medial edge
    ak_y, ak_r = top + 0.2 * H, 0.022
    row = lung[1][min(int(ak_y * S), S - 1)]
    inside = np.flatnonzero(row >= 0.5)
    ak_x = float((inside[0] + 0.5) / S - 0.4 * ak_r) if inside.size else cx + 0.04
    win = cv.window(ak_x - ak_r - 0.01, ak_x + ak_r + 0.01, ak_y - ak_r - 0.01, ak_y + ak_r + 0.01)
    aortic = np.zeros((S, S), np.float32)
    if win is not None:
        rows, cols, Xw, Yw = win
        aortic[rows, cols] = _soft(np.sqrt((Xw - ak_x) ** 2 + (Yw - ak_y) ** 2) - ak_r, cv.edge)

    # ---- air in the lungs, then the findings that replace it ----
    right_air = lung[0] * (1.0 - heart) * (1.0 - aortic)
    left_air = lung[1] * (1.0 - heart) * (1.0 - aortic)
    air = np.clip(right_air + left_air, 0.0, 1.0)
    opacity = np.zeros((S, S), np.float32)  # fraction of air replaced by tissue or fluid
    extra = np.zeros((S, S), np.float32)  # density added outside the air model
    marking_gain = np.ones((S, S), np.float32)
    lucent = np.zeros((S, S), np.float32)  # extra darkness (pneumothorax)

    def add_opacity(region_rows, region_cols, value):
        o = opacity[region_rows, region_cols]
        opacity[region_rows, region_cols] = 1.0 - (1.0 - o) * (1.0 - value)

    # coarse distance to the lung edge (relative units) for peripheral findings
    dist = None
    if any(n in f for n in ("Pneumothorax", "Pleural_Thickening", "Fibrosis")):
        from scipy import ndimage

        dist = []
        for s in (0, 1):
            d = ndimage.distance_transform_edt(coarse[s] >= 0.5).astype(np.float32) / G
            dist.append(_resize(d, S))

    def lateral(s, Xw):
        x0, x1 = lboxes[s][0], lboxes[s][1]
        return np.clip((x1 - Xw) / (x1 - x0) if s == 0 else (Xw - x0) / (x1 - x0), 0.0, 1.0)

    if "Effusion" in f:
        p = f["Effusion"]
        parts = []
        for s in p["sides"]:
            x0, x1, y0, y1 = lboxes[s]
            h = y1 - y0
            win = cv.window(x0 - 0.01, x1 + 0.01, y0 + 0.3 * h, y1 + 0.01)
            if win is None:
                continue
            rows, cols, Xw, Yw = win
            lat = lateral(s, Xw)
            level = y1 - p["level"] * h - p["rise"] * h * lat ** 2
            fluid = _smoothstep(level - p["soft"], level + p["soft"] * 0.5, Yw)
            value = fluid * p["opacity"]
            add_opacity(rows, cols, value)
            parts.append(_bbox(value * lung[s][rows, cols], rows, cols, 0.5 * p["opacity"]))
        boxes["Effusion"] = _union(parts)

    if "Atelectasis" in f:
        p = f["Atelectasis"]
        s = p["side"]
        px_, py_ = _to_image(maps, s, p["point"])
        x0, x1, y0, y1 = lboxes[s]
        lw = x1 - x0
        if p["kind"] == "band":
            half = p["length"] * lw / 2.0
            win = cv.window(px_ - half - 0.03, px_ + half + 0.03, py_ - half - 0.03, py_ + half + 0.03)
            rows, cols, Xw, Yw = win
            ca, sa = math.cos(p["angle"]), math.sin(p["angle"])
            along = (Xw - px_) * ca + (Yw - py_) * sa
            across = -(Xw - px_) * sa + (Yw - py_) * ca
            band = _soft(np.abs(across) - p["thickness"] / 2.0, cv.edge + p["thickness"] * 0.4)
            band = band * _soft(np.abs(along) - half, 0.02)
        else:
            hx_, hy_ = hila[s]
            r = 0.7 * lw
            win = cv.window(min(px_, hx_) - r, max(px_, hx_) + r, min(py_, hy_) - r, max(py_, hy_) + r)
            rows, cols, Xw, Yw = win
            ang0 = math.atan2(py_ - hy_, px_ - hx_)
            ang = np.arctan2(Yw - hy_, Xw - hx_)
            dang = np.abs(np.mod(ang - ang0 + math.pi, 2 * math.pi) - math.pi)
            rad = np.sqrt((Xw - hx_) ** 2 + (Yw - hy_) ** 2)
            band = _soft(dang - p["spread"] * 0.5, 0.04) * _smoothstep(0.01, 0.06, rad)
        value = band * p["opacity"] * lung[s][rows, cols]
        add_opacity(rows, cols, value)
        boxes["Atelectasis"] = _bbox(value, rows, cols, 0.5 * p["opacity"])

    def blob(s, point, radius, stretch, tex_seed, grid):
        """A mottled, ill-defined blob inside lung s: (rows, cols, weight in 0-1)."""
        px_, py_ = _to_image(maps, s, point)
        rx, ry = radius * stretch, radius / stretch
        win = cv.window(px_ - 1.6 * rx, px_ + 1.6 * rx, py_ - 1.6 * ry, py_ + 1.6 * ry)
        if win is None:
            return None
        rows, cols, Xw, Yw = win
        r2 = ((Xw - px_) / rx) ** 2 + ((Yw - py_) / ry) ** 2
        mottle = _noise_field(np.random.default_rng(tex_seed), grid, S, rows, cols)
        w = np.exp(-r2 * (1.2 + 0.5 * mottle)) * np.clip(0.75 + 0.35 * mottle, 0.0, 1.2)
        return rows, cols, np.clip(w, 0.0, 1.0) * lung[s][rows, cols], px_, py_, Yw

    if "Infiltration" in f:
        p = f["Infiltration"]
        parts = []
        for i, patch in enumerate(p["patches"]):
            got = blob(patch["side"], patch["point"], patch["radius"], patch["stretch"], [p["seed"], i], 40)
            if got is None:
                continue
            rows, cols, w = got[:3]
            add_opacity(rows, cols, w * p["opacity"])
            parts.append(_bbox(w, rows, cols, 0.5))
        boxes["Infiltration"] = _union(parts)

    if "Pneumonia" in f:
        p = f["Pneumonia"]
        got = blob(p["side"], p["point"], p["radius"], p["stretch"], [p["seed"]], 28)
        if got is not None:
            rows, cols, w, px_, py_, Yw = got
            # a fissure: one straight, sharp, nearly horizontal edge
            edge_y = py_ + (0.35 if p["upper"] else -0.35) * p["radius"]
            sign = -1.0 if p["upper"] else 1.0
            fissure = _soft(sign * (edge_y - Yw), cv.edge)
            w = np.clip(w * 1.3, 0.0, 1.0) * fissure
            add_opacity(rows, cols, w * p["opacity"])
            boxes["Pneumonia"] = _bbox(w, rows, cols, 0.5)

    if "Consolidation" in f:
        p = f["Consolidation"]
        s = p["side"]
        px_, py_ = _to_image(maps, s, p["point"])
        rx, ry = p["radius"] * p["stretch"], p["radius"] / p["stretch"]
        win = cv.window(px_ - 1.3 * rx, px_ + 1.3 * rx, py_ - 1.3 * ry, py_ + 1.3 * ry)
        if win is not None:
            rows, cols, Xw, Yw = win
            g = np.random.default_rng([p["seed"]])
            wobble = _noise_field(g, 24, S, rows, cols)
            r = np.sqrt(((Xw - px_) / rx) ** 2 + ((Yw - py_) / ry) ** 2) * (1.0 + 0.12 * wobble)
            w = _soft((r - 1.0) * min(rx, ry), 0.012) * lung[s][rows, cols]
            # air bronchograms: dark branching tubes pointing to the hilum
            hx_, hy_ = hila[s]
            base = math.atan2(py_ - hy_, px_ - hx_)
            tubes = np.zeros_like(w)
            for b in range(p["branches"]):
                ang = base + g.uniform(-0.5, 0.5)
                ox, oy = px_ + g.uniform(-0.4, 0.4) * rx, py_ + g.uniform(-0.4, 0.4) * ry
                across = np.abs(-(Xw - ox) * math.sin(ang) + (Yw - oy) * math.cos(ang))
                width = 0.004 + 0.003 * g.random()
                tubes = np.maximum(tubes, _soft(across - width / 2.0, max(cv.edge, width * 0.6)))
            value = w * p["opacity"] * (1.0 - 0.55 * tubes)
            add_opacity(rows, cols, value)
            boxes["Consolidation"] = _bbox(w, rows, cols, 0.5)

    if "Nodule" in f or "Mass" in f:
        for name in ("Nodule", "Mass"):
            if name not in f:
                continue
            p = f[name]
            s = p["side"]
            px_, py_ = _to_image(maps, s, p["point"])
            rad = p["radius"]
            win = cv.window(px_ - 1.3 * rad, px_ + 1.3 * rad, py_ - 1.3 * rad, py_ + 1.3 * rad)
            if win is None:
                continue
            rows, cols, Xw, Yw = win
            r = np.sqrt((Xw - px_) ** 2 + (Yw - py_) ** 2)
            if name == "Mass":
                ang = np.arctan2(Yw - py_, Xw - px_)
                lob = 1.0 + sum(float(a) * np.sin((i + 2) * ang + float(ph)) for i, (a, ph) in
                                enumerate(zip(p["lobes"], p["phases"])))
                r = r / lob
            disc = _soft(r - rad, cv.edge + 0.08 * rad)
            sphere = np.sqrt(np.clip(1.0 - (r / rad) ** 2, 0.0, 1.0))
            w = disc * (0.55 + 0.45 * sphere)
            add_opacity(rows, cols, w * p["opacity"] * np.maximum(lung[s][rows, cols], 0.3))
            boxes[name] = _bbox(disc, rows, cols, 0.5)

    if "Pleural_Thickening" in f:
        p = f["Pleural_Thickening"]
        s = p["side"]
        x0, x1, y0, y1 = lboxes[s]
        h = y1 - y0
        if p["apical"]:
            win = cv.window(x0 - 0.01, x1 + 0.01, y0 - 0.01, y0 + 0.3 * h)
        else:
            ys0 = y0 + p["start"] * h
            win = cv.window(x0 - 0.01, x1 + 0.01, ys0, ys0 + p["extent"] * h)
        rows, cols, Xw, Yw = win
        d = dist[s][rows, cols]
        band = _soft(d - p["thickness"], cv.edge + 0.3 * p["thickness"]) * lung[s][rows, cols]
        if p["apical"]:
            band = band * (1.0 - _smoothstep(y0 + 0.12 * h, y0 + 0.25 * h, Yw))
        else:
            band = band * _smoothstep(0.45, 0.75, lateral(s, Xw))
        add_opacity(rows, cols, band * p["opacity"])
        boxes["Pleural_Thickening"] = _bbox(band, rows, cols, 0.5)

    if "Fibrosis" in f:
        p = f["Fibrosis"]
        g = np.random.default_rng([p["seed"]])
        net = _lines(_noise_field(g, 90, S), 0.25)
        parts = []
        for s in p["sides"]:
            x0, x1, y0, y1 = lboxes[s]
            h = y1 - y0
            win = cv.window(x0 - 0.01, x1 + 0.01, y0, y1 + 0.01)
            rows, cols, Xw, Yw = win
            zone = (1.0 - _smoothstep(0.6 * p["depth"], p["depth"], dist[s][rows, cols]))
            zone = np.maximum(zone, _smoothstep(y1 - p["basal"] * h, y1 - 0.2 * p["basal"] * h, Yw) * 0.8)
            zone = zone * _smoothstep(y0 + 0.25 * h, y0 + 0.5 * h, Yw) * lung[s][rows, cols]
            add_opacity(rows, cols, zone * p["opacity"] * (0.3 + 0.7 * net[rows, cols]))
            parts.append(_bbox(zone, rows, cols, 0.5))
        boxes["Fibrosis"] = _union(parts)

    if "Pneumothorax" in f:
        p = f["Pneumothorax"]
        s = p["side"]
        x0, x1, y0, y1 = lboxes[s]
        h = y1 - y0
        win = cv.window(x0 - 0.01, x1 + 0.01, y0 - 0.01, y0 + p["reach"] * h + 0.02)
        rows, cols, Xw, Yw = win
        lat = lateral(s, Xw)
        vert = np.clip((Yw - y0) / (p["reach"] * h), 0.0, 1.0)
        depth = p["depth"] * (0.35 + 0.65 * lat) * (1.0 - vert ** 2)
        d = dist[s][rows, cols]
        inside = lung[s][rows, cols]
        space = _soft(d - depth, cv.edge) * inside * (depth > 0.004)
        line = np.exp(-np.square((d - depth) / max(cv.edge * 0.6, 0.0012))) * inside * (depth > 0.006)
        marking_gain[rows, cols] *= 1.0 - space
        lucent[rows, cols] = np.maximum(lucent[rows, cols], space * (0.03 + 0.05 * p["dark"]))
        extra[rows, cols] += line * (0.04 + 0.04 * p["dark"])
        # the collapsed lung under the line is slightly denser
        add_opacity(rows, cols, (1.0 - space) * inside * np.exp(-np.maximum(d - depth, 0.0) / 0.02) * 0.15)
        boxes["Pneumothorax"] = _bbox(space, rows, cols, 0.5)

    # ---- density: soft tissue, lungs, bones, findings outside the lungs ----
    # Densities are chosen for the brightness map below: 0.13 (aerated lung, dark grey),
    # 0.25 (chest wall), 0.42 (mediastinum), 0.5 (spine behind the mediastinum).
    D = np.full((S, S), 0.015, np.float32)
    dx = np.abs(X - cx)
    grow = _smoothstep(top - 0.05, top + 0.75 * H, c)
    half = (W / 2.0 * (0.93 + 0.09 * grow) + an["margin"])[:, None]
    chest = _soft(dx - half, 0.008) * _smoothstep(top - 0.09, top - 0.03, Y)
    # neck and shoulders: the top contour falls from the neck to the shoulder tips
    neck, reach = an["neck"], W / 2.0 + an["margin"] + 0.1
    sh_top = top - 0.1 + 0.07 * np.square(np.clip((dx - neck) / (reach - neck), 0.0, 1.0))
    shoulders = _soft(sh_top - Y, 0.01) * _soft(dx - reach, 0.01) * (1.0 - _smoothstep(top + 0.04, top + 0.12, Y))
    neck_col = _soft(dx - neck, 0.008) * (1.0 - _smoothstep(top - 0.09, top - 0.03, Y))
    arms = _soft(half + an["arm_gap"] - dx, 0.01) * _soft(sh_top + 0.02 - Y, 0.02)
    body = np.maximum(np.maximum(chest, shoulders), np.maximum(neck_col, 0.8 * arms))
    thick = np.sqrt(np.clip(1.0 - np.square(dx / (half + 0.05)), 0.0, 1.0))
    D += body * (0.2 + 0.22 * thick)
    # abdomen below the domes is a little denser (liver, spleen)
    D += body * 0.03 * _smoothstep(base_y - 0.04, base_y + 0.06, Y)
    # humeral heads in the shoulders
    for sgn in (-1.0, 1.0):
        hx_, hy_, hr = cx + sgn * (reach - 0.02), top - 0.02, 0.055
        win = cv.window(hx_ - hr - 0.01, hx_ + hr + 0.01, hy_ - hr - 0.01, hy_ + hr + 0.01)
        if win is not None:
            rows, cols, Xw, Yw = win
            head = _soft(np.sqrt((Xw - hx_) ** 2 + (Yw - hy_) ** 2) - hr, cv.edge + 0.004)
            D[rows, cols] += 0.07 * an["bone"] * head * body[rows, cols]
    if an["breasts"]:
        for s in (0, 1):
            x0, x1, y0, y1 = lboxes[s]
            bx = x0 + 0.35 * (x1 - x0) if s == 0 else x1 - 0.35 * (x1 - x0)
            by, br = y1 - 0.05, 0.17 * an["breast_size"]
            win = cv.window(bx - br, bx + br, by - br, by + 0.8 * br)
            rows, cols, Xw, Yw = win
            r = np.sqrt(((Xw - bx) / br) ** 2 + ((Yw - by) / (0.8 * br)) ** 2)
            D[rows, cols] += 0.03 * _soft((r - 1.0) * br, 0.02) * _smoothstep(by - 0.6 * br, by, Yw)

    # lungs: air removes density, most where the lung is thickest
    lucency = an["lucency"] * (f["Emphysema"]["lucency"] if "Emphysema" in f else 1.0)
    depth_f = _resize(np.clip(_blur(coarse[0] + coarse[1], 0.04 * G), 0.0, 1.0), S)
    eff_air = air * (1.0 - opacity)
    lr = np.flatnonzero(air.any(axis=1))
    lc = np.flatnonzero(air.any(axis=0))
    if lr.size:  # where there is lung
        rows, cols = slice(lr[0], lr[-1] + 1), slice(lc[0], lc[-1] + 1)
    else:  # pragma: no cover - lungs always lie in the image
        rows, cols = slice(0, S), slice(0, S)
    D[rows, cols] -= _LUNG_DARK * lucency * eff_air[rows, cols] * (0.6 + 0.4 * depth_f[rows, cols])
    D[rows, cols] -= lucent[rows, cols] * air[rows, cols]

    # vessels: a line network, densest at the hila (drawn where there is lung only)
    Xw, Yw = X[:, cols], Y[rows, :]
    v1 = _lines(_noise_field(tr, 22, S, rows, cols), 0.35)
    v2 = _lines(_noise_field(tr, 48, S, rows, cols), 0.3)
    hil = np.zeros_like(v1)
    for hx_, hy_ in hila:
        hil = np.maximum(hil, np.exp(-np.sqrt((Xw - hx_) ** 2 + (Yw - hy_) ** 2) / 0.14))
    markings = (0.6 * v1 + 0.35 * v2) * (0.25 + 0.75 * hil)
    gain = an["vessels"] * (f["Emphysema"]["markings"] if "Emphysema" in f else 1.0)
    if "Edema" in f:
        gain *= 0.7  # blurred vessels
    D[rows, cols] += 0.05 * gain * markings * eff_air[rows, cols] * marking_gain[rows, cols]
    for hx_, hy_ in hila:  # hilar vessels
        win = cv.window(hx_ - 0.06, hx_ + 0.06, hy_ - 0.08, hy_ + 0.08)
        rows, cols, Xw, Yw = win
        D[rows, cols] += 0.04 * np.exp(-(((Xw - hx_) / 0.025) ** 2 + ((Yw - hy_) / 0.045) ** 2))

    if "Edema" in f:
        p = f["Edema"]
        haze = np.zeros((S, S), np.float32)
        for hx_, hy_ in hila:
            haze = np.maximum(haze, np.exp(-(((X - hx_) / (p["spread"] * 1.1)) ** 2 + ((Y - hy_) / p["spread"]) ** 2)))
        D += _LUNG_DARK * lucency * eff_air * haze * p["opacity"] * 0.65
        if p["kerley"]:
            for s in (0, 1):
                x0, x1, y0, y1 = lboxes[s]
                win = cv.window(x0, x1, y1 - 0.2 * (y1 - y0), y1)
                rows, cols, Xw, Yw = win
                lines = _lines(np.sin(2 * np.pi * Yw / 0.018) + 0 * Xw, 0.25)
                near = _smoothstep(0.55, 0.9, lateral(s, Xw))
                D[rows, cols] += 0.03 * p["opacity"] * lines * near * air[rows, cols]

    # trachea and main bronchi, spine
    tx, car = cx - 0.004, top + 0.30 * H
    win = cv.window(tx - 0.09, tx + 0.09, 0.0, car + 0.08)
    if win is not None:
        rows, cols, Xw, Yw = win
        trachea = _soft(np.abs(Xw - tx) - 0.015, 0.008) * (1.0 - _smoothstep(car - 0.01, car + 0.01, Yw))
        for sgn, slope in ((-1.0, 0.9), (1.0, 1.4)):
            xb = tx + sgn * np.maximum(Yw - car, 0.0) / slope
            tube = _soft(np.abs(Xw - xb) - 0.01, 0.008)
            tube = tube * _smoothstep(car - 0.02, car, Yw) * (1.0 - _smoothstep(car + 0.04, car + 0.08, Yw))
            trachea = np.maximum(trachea, tube)
        D[rows, cols] -= 0.06 * trachea * body[rows, cols]
    sw = an["spine_width"]
    win = cv.window(cx - sw - 0.02, cx + sw + 0.02, 0.0, 1.0)
    rows, cols, Xw, Yw = win
    period = H / 11.0
    plates = 0.5 + 0.5 * np.cos(2 * np.pi * (Yw - top) / period)
    spine = _soft(np.abs(Xw - cx) - sw, 0.008) * (0.8 + 0.2 * plates ** 4)
    pedicles = np.exp(-(((np.abs(Xw - cx) - 0.7 * sw) / (0.22 * sw)) ** 2)) * np.exp(-np.square(plates - 0.5) / 0.05) * 0.25
    D[rows, cols] += 0.06 * an["bone"] * (spine + pedicles) * body[rows, cols]

    # ribs: posterior arcs (brighter at the cortex) and fainter anterior ones
    reach_x = float(half.max()) + 0.03
    win = cv.window(cx - reach_x, cx + reach_x, top - 0.06, base_y + 0.06)
    if win is not None:
        rows, cols, Xw, Yw = win
        thorax = _soft(np.abs(Xw - cx) - (half[rows] + 0.005), 0.015)
        thorax = thorax * _smoothstep(top - 0.06, top, Yw) * (1.0 - _smoothstep(base_y - 0.04, base_y + 0.06, Yw))
        rx = np.abs(Xw - cx) / (W / 2.0)
        curve = H * an["rib_curve"] * (np.square(rx - 0.25) - 0.0625)
        t_lin = np.clip((Yw - top + 0.06 * H - curve) / (1.05 * H), 0.0, 1.5)
        phase = an["rib_count"] * t_lin ** 0.85 + an["rib_phase"]
        fr_ = phase - np.floor(phase)
        e = 1.5 / (S * H / an["rib_count"])  # about 1.5 px in phase units
        rib = _soft(np.abs(fr_ - 0.2) - 0.17, e)
        cortex = _soft(np.abs(np.abs(fr_ - 0.2) - 0.16) - 0.02, e)
        ribs = (0.7 * rib + 0.5 * cortex) * _smoothstep(0.1, 0.25, rx)
        ant_curve = H * 0.4 * np.square(1.05 - np.minimum(rx, 1.05))
        ant_phase = 6.0 * np.clip((Yw - top - 0.06 * H - ant_curve) / H, 0.0, 1.5)
        afr = ant_phase - np.floor(ant_phase)
        ant = _soft(np.abs(afr - 0.2) - 0.13, e * 0.6) * _smoothstep(0.35, 0.65, rx) * 0.45
        D[rows, cols] += 0.035 * an["bone"] * (ribs + ant) * thorax

    # clavicles: from the sternal end up and out to the shoulder
    cy0, drop = an["clavicle_y"], an["clavicle_drop"]
    win = cv.window(cx - 0.36, cx + 0.36, cy0 - drop - 0.05, cy0 + 0.05)
    if win is not None:
        rows, cols, Xw, Yw = win
        t = (np.abs(Xw - cx) - 0.025) / 0.3
        yc = cy0 - drop * t + 0.015 * np.sin(np.pi * np.clip(t, 0, 1))
        clav = _soft(np.abs(Yw - yc) - 0.012, cv.edge + 0.004) * _soft(np.abs(t - 0.5) - 0.5, 0.05)
        D[rows, cols] += 0.07 * an["bone"] * clav * body[rows, cols]
    if an["scapula"]:
        for s in (0, 1):
            x0, x1, y0, y1 = lboxes[s]
            sx = x0 + 0.05 * (x1 - x0) if s == 0 else x1 - 0.05 * (x1 - x0)
            win = cv.window(sx - 0.08, sx + 0.08, y0, y0 + 0.5 * (y1 - y0))
            rows, cols, Xw, Yw = win
            r = np.sqrt(((Xw - sx) / 0.07) ** 2 + ((Yw - (y0 + 0.22 * (y1 - y0))) / (0.24 * (y1 - y0))) ** 2)
            D[rows, cols] += 0.03 * an["bone"] * _soft((r - 1.0) * 0.07, 0.008)

    # gastric bubble under the left dome; hiatal hernia behind the heart
    if an["gastric"] and "Emphysema" not in f:
        x0, x1, y0, y1 = lboxes[1]
        gx, gy, gr = x0 + 0.45 * (x1 - x0), y1 + 0.035, an["gastric_size"]
        win = cv.window(gx - 1.6 * gr, gx + 1.6 * gr, gy - gr, gy + gr)
        if win is not None:
            rows, cols, Xw, Yw = win
            r = np.sqrt(((Xw - gx) / (1.5 * gr)) ** 2 + ((Yw - gy) / gr) ** 2)
            D[rows, cols] -= 0.08 * _soft((r - 1.0) * gr, 0.006) * (Yw < gy + 0.2 * gr)
    if "Hernia" in f:
        p = f["Hernia"]
        rx_, ry_ = p["radius"], p["radius"] * p["squash"]
        gx, gy = cx + 0.01 + p["dx"], hy + 0.1 * hb
        win = cv.window(gx - rx_ - 0.02, gx + rx_ + 0.02, gy - ry_ - 0.02, gy + ry_ + 0.02)
        rows, cols, Xw, Yw = win
        r = np.sqrt(((Xw - gx) / rx_) ** 2 + ((Yw - gy) / ry_) ** 2)
        sac = _soft((r - 1.0) * ry_, cv.edge + 0.004)
        rim = np.exp(-np.square((r - 1.0) * ry_ / 0.004)) * 0.5
        D[rows, cols] += p["opacity"] * (0.3 * sac + 0.2 * rim)
        if p["air"]:
            level = gy - ry_ + p["level"] * 2 * ry_
            bubble = sac * _soft(Yw - level, cv.edge) * _soft(r - 0.85, 0.05)
            D[rows, cols] -= 0.7 * p["opacity"] * bubble
        boxes["Hernia"] = _bbox(sac, rows, cols, 0.5)

    D += extra

    # ---- exposure: density -> brightness, contrast, gamma, gradient, noise ----
    # brightness = ((1 - exp(-gain D)) / norm) ** gamma, through a fine look-up table
    g = an["gain"]
    levels = np.linspace(0.0, _D_MAX, _LUT_SIZE, dtype=np.float64)
    curve = np.clip((1.0 - np.exp(-g * levels)) / (1.0 - math.exp(-g * 0.8)), 0.0, 1.0) ** an["gamma"]
    index = np.clip(D * ((_LUT_SIZE - 1) / _D_MAX), 0, _LUT_SIZE - 1).astype(np.intp)
    base = curve.astype(np.float32)[index]
    gx_, gy_ = an["gradient"]
    img = an["offset"] + an["contrast"] * base * (1.0 + gx_ * (X - 0.5) + gy_ * (Y - 0.5))
    img += 0.012 * _noise_field(tr, 12, S)
    # detector noise, larger where more photons arrive (brighter)
    spread = (an["noise"] * np.sqrt(np.clip(an["offset"] + an["contrast"] * curve, 0.05, 1.0))).astype(np.float32)
    img += spread[index] * tr.standard_normal((S, S), dtype=np.float32)
    out = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    boxes = {name: tuple(round(v, 1) for v in b) for name, b in boxes.items() if b is not None}
    return Phantom(image=out, boxes=boxes, scene=sc)


def _smooth1d(values: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter1d(values, max(sigma, 0.5), mode="nearest")


def _blur(field: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(field, sigma, mode="constant").astype(np.float32)


def make_phantom(
    labels: Sequence[str] = (),
    *,
    size: int = 256,
    view: str = "PA",
    sex: str = "M",
    age: float = 50.0,
    seed: int = 0,
    image_id: int = 0,
    patient_id: int | None = None,
    templates: LungTemplates | None = None,
) -> Phantom:
    """Draw one synthetic chest radiograph showing the given findings.

    The same arguments give the same pixels. The anatomy is the patient's (``seed`` and
    ``patient_id``), the pose, exposure and noise the image's (``seed`` and ``image_id``).

    Args:
        labels: findings to show (names from :data:`cral_lib.CLASSES`); empty for a normal film.
        size: image side in pixels (:data:`MIN_SIZE` to :data:`MAX_SIZE`).
        view: ``"PA"`` or ``"AP"``.
        sex: ``"M"`` or ``"F"``.
        age: years.
        seed: the dataset seed.
        image_id: the image's number.
        patient_id: the patient's number (default: ``image_id``).
        templates: lung templates (default: :func:`lung_templates`).

    Returns:
        A :class:`Phantom`: the uint8 image and a box per localized finding.

    Raises:
        ConfigError: a bad size, view or label.

    Example:
        >>> from cral_lib.data.phantom import make_phantom
        >>> ph = make_phantom(["Effusion", "Nodule"], size=256, seed=1)  # doctest: +SKIP
        >>> ph.image.shape, sorted(ph.boxes)  # doctest: +SKIP
        ((256, 256), ['Effusion', 'Nodule'])
    """
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError(f"phantom size must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    if templates is None:
        templates = lung_templates()
    scene = draw_scene(labels, view=view, sex=sex, age=age, seed=seed, image_id=image_id,
                       patient_id=patient_id, templates=templates)
    return render_scene(scene, int(size), templates=templates, texture_seed=(int(seed), _TEXTURE, int(image_id)))


__all__ = [
    "BOXED",
    "LungTemplates",
    "MAX_SIZE",
    "MIN_SIZE",
    "PHANTOM_VERSION",
    "Phantom",
    "SIGNATURES",
    "Scene",
    "draw_scene",
    "lung_templates",
    "make_phantom",
    "render_scene",
]
