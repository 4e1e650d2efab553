"""The scene of a phantom: every random number of one image, independent of its pixel size.

:func:`draw_scene` draws the normal anatomy (per patient), the pose and exposure (per image)
and the parameters of each finding (:data:`FINDING_PARAMETERS`, one function per finding,
keyed like :data:`~cral_lib.synthetic.signatures.SIGNATURES`). The painters of
:mod:`cral_lib.synthetic.painters` then draw them at any size.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .. import CLASSES, NO_FINDING
from ..errors import ConfigError
from .draw import stream_rng
from .templates import LungTemplates, lung_templates

# Seed-sequence streams: one generator per purpose, so that a patient's anatomy, the
# place of each of their findings and the per-image variation are independent.
ANATOMY, FINDING, IMAGE, TEXTURE = 1, 2, 3, 4


@dataclass
class Scene:
    """The parameters of one phantom (relative units), drawn by :func:`draw_scene`.

    Attributes:
        labels: the findings shown, in class order.
        view: ``"PA"`` or ``"AP"``.
        anatomy: the normal anatomy and the image's acquisition parameters.
        findings: one parameter dict per finding (keyed by class name).
        normal_anatomy: the anatomy before any finding changed it (the patient's normal film
            of this image); empty when not known.
    """

    labels: tuple[str, ...]
    view: str
    anatomy: dict[str, Any]
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)
    normal_anatomy: dict[str, Any] = field(default_factory=dict)

    def normal(self) -> "Scene":
        """The same image without any finding: the patient's normal film, same pose and exposure."""
        base = self.normal_anatomy or self.anatomy
        return Scene(labels=(), view=self.view, anatomy=copy.deepcopy(base), normal_anatomy=copy.deepcopy(base))

    def alone(self, name: str) -> "Scene":
        """The normal film with one of this scene's findings, drawn with the parameters it has here."""
        base = self.normal_anatomy or self.anatomy
        anatomy = copy.deepcopy(base)
        p = self.findings[name]
        if name in ANATOMY_EFFECTS:
            ANATOMY_EFFECTS[name](p, anatomy)
        return Scene(labels=(name,), view=self.view, anatomy=anatomy, findings={name: p},
                     normal_anatomy=copy.deepcopy(base))


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


# --------------------------------------------------------------------------------------
# The parameters of each finding: fr is the finding's generator (per patient), sev its
# severity, point(side, v_range, lateral_range, inset) a point in the patient's lung.
# Volume loss (Atelectasis, Fibrosis: "volume") lifts the lung's base where it is drawn
# (render.py); the one change to the patient's anatomy, Emphysema's hyperexpansion, is in
# ANATOMY_EFFECTS, so that a finding can be drawn alone on the normal film (Scene.alone).
# --------------------------------------------------------------------------------------


def _atelectasis(fr, sev, point, anatomy):
    side = int(fr.random() < 0.45)
    p = dict(side=side, kind="wedge" if fr.random() < 0.35 else "band",
             point=point(side, (0.45, 0.85), (0.3, 0.9)),
             angle=fr.uniform(-0.35, 0.35), length=fr.uniform(0.35, 0.65),
             thickness=0.012 + 0.02 * sev, spread=fr.uniform(0.25, 0.45),
             opacity=0.3 + 0.45 * sev, volume=1.0 - (0.02 + 0.06 * sev))
    return p


def _cardiomegaly(fr, sev, point, anatomy):
    return dict(ctr=0.52 + 0.13 * sev)


def _effusion(fr, sev, point, anatomy):
    return dict(sides=_sides(fr, 0.4, 0.35), level=0.02 + 0.16 * sev,
                rise=fr.uniform(0.06, 0.16), opacity=0.3 + 0.45 * sev, soft=fr.uniform(0.01, 0.03))


def _infiltration(fr, sev, point, anatomy):
    count = int(fr.integers(2, 6))
    patches = []
    for _ in range(count):
        side = int(fr.random() < 0.5)
        patches.append(dict(side=side, point=point(side, (0.1, 0.95)),
                            radius=fr.uniform(0.03, 0.065), stretch=fr.uniform(0.6, 1.4)))
    return dict(patches=patches, opacity=0.18 + 0.32 * sev, seed=int(fr.integers(2**31)))


def _mass(fr, sev, point, anatomy):
    side = int(fr.random() < 0.5)
    return dict(side=side, point=point(side, (0.15, 0.8), (0.15, 0.85), 0.97),
                radius=0.038 + 0.042 * fr.random() * (0.6 + 0.4 * sev),
                lobes=fr.uniform(0.04, 0.12, size=3), phases=fr.uniform(0, 2 * np.pi, size=3),
                opacity=0.35 + 0.45 * sev)


def _nodule(fr, sev, point, anatomy):
    side = int(fr.random() < 0.5)
    return dict(side=side, point=point(side, (0.1, 0.85), (0.1, 0.9), 0.97),
                radius=0.009 + 0.014 * fr.random() * (0.5 + 0.5 * sev),
                opacity=0.45 + 0.5 * sev)


def _pneumonia(fr, sev, point, anatomy):
    side = int(fr.random() < 0.55)
    upper = fr.random() < 0.35
    return dict(side=side, upper=upper,
                point=point(side, (0.2, 0.45) if upper else (0.55, 0.85), (0.2, 0.8)),
                radius=fr.uniform(0.07, 0.12), stretch=fr.uniform(0.8, 1.3),
                opacity=0.35 + 0.45 * sev, seed=int(fr.integers(2**31)))


def _pneumothorax(fr, sev, point, anatomy):
    return dict(side=int(fr.random() < 0.45), depth=0.012 + 0.04 * sev,
                reach=fr.uniform(0.45, 0.8), dark=0.5 + 0.5 * sev)


def _consolidation(fr, sev, point, anatomy):
    side = int(fr.random() < 0.5)
    return dict(side=side, point=point(side, (0.35, 0.9), (0.2, 0.85)),
                radius=fr.uniform(0.045, 0.09), stretch=fr.uniform(0.7, 1.4),
                opacity=0.55 + 0.4 * sev, branches=int(fr.integers(2, 5)),
                seed=int(fr.integers(2**31)))


def _edema(fr, sev, point, anatomy):
    return dict(opacity=0.12 + 0.4 * sev, spread=fr.uniform(0.12, 0.2), kerley=fr.random() < 0.6)


def _emphysema(fr, sev, point, anatomy):
    # lucency overlaps the normal patients' range (0.9-1.1): a darker film alone is no proof
    return dict(lucency=1.0 + 0.15 * sev, expansion=1.02 + 0.06 * sev, markings=0.85 - 0.3 * sev,
                flatten=0.3 + 0.5 * sev)


def _fibrosis(fr, sev, point, anatomy):
    return dict(sides=_sides(fr, 0.15, 0.15), depth=0.05 + 0.06 * sev, opacity=0.25 + 0.45 * sev,
                basal=fr.uniform(0.4, 0.6), volume=1.0 - 0.05 * sev, seed=int(fr.integers(2**31)))


def _pleural_thickening(fr, sev, point, anatomy):
    side = int(fr.random() < 0.5)
    return dict(side=side, apical=fr.random() < 0.5, thickness=0.012 + 0.022 * sev,
                start=fr.uniform(0.2, 0.5), extent=fr.uniform(0.25, 0.5), opacity=0.8 + 0.2 * sev)


def _hernia(fr, sev, point, anatomy):
    return dict(dx=fr.uniform(0.0, 0.06), radius=0.035 + 0.03 * sev, squash=fr.uniform(0.7, 0.95),
                opacity=0.2 + 0.25 * sev, air=fr.random() < 0.7, level=fr.uniform(0.3, 0.55))


def _hyperexpansion(p: dict[str, Any], anatomy: dict[str, Any]) -> None:
    anatomy["vscale"] = [v * p["expansion"] for v in anatomy["vscale"]]


#: Finding -> how its parameters change the anatomy of the scene (lungs taller with Emphysema).
ANATOMY_EFFECTS: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = {"Emphysema": _hyperexpansion}

#: Attempts at drawing a finding (see :func:`draw_scene`'s ``attempts``): 0 as drawn, then
#: ``MOVES`` new places at the same severity, then ``RAISES`` more new places with the severity
#: raised in equal steps up to 1.
MOVES = 4
RAISES = 4
MAX_ATTEMPT = MOVES + RAISES


#: Finding -> the function that draws its parameters, in class order (the order they are drawn in).
FINDING_PARAMETERS: dict[str, Callable[..., dict[str, Any]]] = {
    "Atelectasis": _atelectasis,
    "Cardiomegaly": _cardiomegaly,
    "Effusion": _effusion,
    "Infiltration": _infiltration,
    "Mass": _mass,
    "Nodule": _nodule,
    "Pneumonia": _pneumonia,
    "Pneumothorax": _pneumothorax,
    "Consolidation": _consolidation,
    "Edema": _edema,
    "Emphysema": _emphysema,
    "Fibrosis": _fibrosis,
    "Pleural_Thickening": _pleural_thickening,
    "Hernia": _hernia,
}


# --------------------------------------------------------------------------------------
# The scene
# --------------------------------------------------------------------------------------


def _anatomy(ar, templates: LungTemplates, sex: str, age: float) -> dict[str, Any]:
    """The patient's normal anatomy (generator ``ar``, per patient)."""
    k = int(ar.integers(len(templates)))
    width = ar.uniform(0.64, 0.76)
    aspect = float(np.clip(templates.aspect[k] * ar.uniform(1.08, 1.22), 0.78, 1.02))
    return {
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


def _acquisition(ir, anatomy: dict[str, Any], ap: bool) -> None:
    """This image's position, inspiration and exposure (generator ``ir``, per image), into ``anatomy``."""
    inspiration = ir.uniform(0.93, 1.03) * (0.95 if ap else 1.0)
    height = anatomy["lung_width"] * anatomy["lung_aspect"] * inspiration
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
    attempts: Mapping[str, int] | None = None,
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
        attempts: finding -> attempt number (default 0, as drawn). Attempt ``a`` from 1 to
            :data:`MOVES` draws the finding's place and shape again from a generator seeded
            by ``(seed, patient_id, class, a)`` at the same severity; attempts above
            :data:`MOVES` also raise the severity ``s`` to ``s + (1 - s) (a - MOVES) / RAISES``.
            The other findings and the anatomy stay as they were.
            :func:`~cral_lib.synthetic.visibility.settle` uses them to redraw a finding that
            would not show.

    Returns:
        The :class:`Scene`.

    Raises:
        ConfigError: an unknown label or view, or an attempt out of range.
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
    ar = stream_rng(seed, ANATOMY, patient)
    ir = stream_rng(seed, IMAGE, image_id)
    attempts = dict(attempts or {})
    bad = {k: v for k, v in attempts.items() if not (isinstance(v, int) and 0 <= v <= MAX_ATTEMPT)}
    if bad:
        raise ConfigError(f"attempts must be integers from 0 to {MAX_ATTEMPT}, got {bad}")
    anatomy = _anatomy(ar, templates, sex, age)
    _acquisition(ir, anatomy, view == "AP")
    normal = copy.deepcopy(anatomy)
    k = anatomy["template"]

    findings: dict[str, dict[str, Any]] = {}
    for name in labels:
        fr = stream_rng(seed, FINDING, patient, CLASSES.index(name))
        # severity: mostly the patient's, partly this image's, so a finding can change
        sev = float(np.clip(0.7 * fr.random() + 0.3 * ir.random(), 0.0, 1.0))
        attempt = attempts.get(name, 0)
        if attempt:
            fr = stream_rng(seed, FINDING, patient, CLASSES.index(name), attempt)
            if attempt > MOVES:
                sev = min(sev + (1.0 - sev) * (attempt - MOVES) / RAISES, 1.0)

        def point(side, v_range=(0.0, 1.0), lateral_range=(0.0, 1.0), inset=0.9, _fr=fr):
            return _point_in_lung(_fr, templates, k, side, v_range, lateral_range, inset)

        findings[name] = {"severity": sev, **FINDING_PARAMETERS[name](fr, sev, point, anatomy)}
        if attempt:
            findings[name]["attempt"] = attempt
        if name in ANATOMY_EFFECTS:
            ANATOMY_EFFECTS[name](findings[name], anatomy)
    return Scene(labels=labels, view=view, anatomy=anatomy, findings=findings, normal_anatomy=normal)


__all__ = ["ANATOMY", "ANATOMY_EFFECTS", "FINDING", "FINDING_PARAMETERS", "IMAGE", "MAX_ATTEMPT", "MOVES", "RAISES",
           "Scene", "TEXTURE", "draw_scene"]
