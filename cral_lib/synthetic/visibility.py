"""Every finding a phantom is labelled with shows in its image; its box is where the image changed.

The rule (:data:`MIN_CONTRAST`, :data:`MIN_PIXELS`, at :data:`REFERENCE_SIZE`): drawn alone on
the same patient's normal film (the same image without findings: same anatomy, pose, exposure
and noise, :meth:`~cral_lib.synthetic.scene.Scene.alone`), a finding must change at least
:data:`MIN_PIXELS` pixels of the 256 px image by at least :data:`MIN_CONTRAST` grey levels (of
255). That is a small region a few grey levels brighter or darker, of the order of one pixel's
detector noise (its standard deviation is 1 to 8 grey levels, the most in the brightest
parts): there to be found, not loud.

:func:`settle` applies it to a scene. A finding that falls short (a nodule behind the heart,
where an opacity has no air to replace, or a faint one at low severity) is drawn again,
deterministically: first at new places with the same severity
(:data:`~cral_lib.synthetic.scene.MOVES` attempts), then at new places with the severity raised
step by step up to 1 (:data:`~cral_lib.synthetic.scene.RAISES` attempts; see
:func:`~cral_lib.synthetic.scene.draw_scene`). One that still falls short keeps its first
drawing and its label, gets no box, and is reported as hidden: the synthetic release's label
noise, which ``cral synth`` records in ``SYNTHETIC.json``.

The box of a localized finding (:data:`~cral_lib.synthetic.signatures.BOXED`) is the bounding
box of the pixels it changed by at least :data:`MIN_CONTRAST`, in the reference image, scaled to
the image's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from .. import CLASSES
from .render import render_scene
from .scene import MAX_ATTEMPT, MOVES, Scene
from .templates import LungTemplates

#: The smallest change (grey levels of 255) that counts as visible.
MIN_CONTRAST = 6
#: How many pixels of the reference image a finding must change by at least :data:`MIN_CONTRAST`.
MIN_PIXELS = 12
#: The image side at which the rule is checked and the boxes are measured (the book's images).
REFERENCE_SIZE = 256

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Check:
    """How one finding shows, drawn alone on the patient's normal film at :data:`REFERENCE_SIZE`.

    Attributes:
        attempt: the drawing kept (0 as first drawn; see :func:`settle`).
        contrast: the change, in grey levels, that at least :data:`MIN_PIXELS` pixels reach.
        pixels: pixels changed by at least :data:`MIN_CONTRAST`.
        box: ``(x, y, w, h)`` of those pixels at :data:`REFERENCE_SIZE`, or None when there are none.
    """

    attempt: int
    contrast: int
    pixels: int
    box: Box | None

    @property
    def visible(self) -> bool:
        """Whether the finding meets the rule."""
        return self.contrast >= MIN_CONTRAST

    @property
    def kind(self) -> str:
        """``"as drawn"``, ``"moved"``, ``"raised"`` (moved, severity raised) or ``"hidden"``."""
        if not self.visible:
            return "hidden"
        return "as drawn" if self.attempt == 0 else "moved" if self.attempt <= MOVES else "raised"


def change(image: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """The absolute difference of two uint8 images, in grey levels."""
    return np.abs(image.astype(np.int16) - normal.astype(np.int16))


def measure(diff: np.ndarray, attempt: int = 0) -> Check:
    """The :class:`Check` of a change (:func:`change` of the finding alone and the normal film)."""
    flat = diff.ravel()
    k = min(MIN_PIXELS, flat.size)
    contrast = int(np.partition(flat, flat.size - k)[flat.size - k])
    hit = diff >= MIN_CONTRAST
    box = None
    if hit.any():
        ys = np.flatnonzero(hit.any(axis=1))
        xs = np.flatnonzero(hit.any(axis=0))
        box = (float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1))
    return Check(attempt=attempt, contrast=contrast, pixels=int(hit.sum()), box=box)


def scale_box(box: Box, size: int) -> Box:
    """A box of the reference image in the pixels of a ``size`` image (0.1 px)."""
    k = size / REFERENCE_SIZE
    return tuple(round(v * k, 1) for v in box)


def settle(
    draw: Callable[[Mapping[str, int]], Scene],
    templates: LungTemplates,
    texture_seed: Sequence[int],
) -> tuple[Scene, dict[str, Check], np.ndarray | None]:
    """Draw a scene whose every finding meets the rule, redrawing those that would not show.

    Args:
        draw: attempts (finding -> attempt number) -> the scene
            (:func:`~cral_lib.synthetic.scene.draw_scene` with everything else fixed).
        templates: the lung templates.
        texture_seed: the image's texture seed (the normal film and each finding alone share it).

    Returns:
        The scene, a :class:`Check` per finding, and the reference image of the scene when it
        has exactly one finding (it is that finding drawn alone), else None.
    """
    attempts: dict[str, int] = {}
    scene = draw(attempts)
    if not scene.labels:
        return scene, {}, None

    def render(sc: Scene) -> np.ndarray:
        return render_scene(sc, REFERENCE_SIZE, templates=templates, texture_seed=texture_seed).image

    normal = render(scene.normal())
    checks: dict[str, Check] = {}
    alone_image = None
    for name in scene.labels:
        first = first_image = None
        for attempt in range(MAX_ATTEMPT + 1):
            if attempt:
                attempts[name] = attempt
                scene = draw(attempts)
            image = render(scene.alone(name))
            check = measure(change(image, normal), attempt)
            if first is None:
                first, first_image = check, image
            if check.visible:
                break
        else:  # hidden whatever the attempt: keep the first drawing
            attempts.pop(name, None)
            scene = draw(attempts)
            check, image = first, first_image
        checks[name] = check
        alone_image = image
    return scene, checks, alone_image if len(scene.labels) == 1 else None


def summarize(findings: Sequence[tuple], names: Sequence[str]) -> dict:
    """What ``SYNTHETIC.json`` records of how the findings of a release show.

    Args:
        findings: ``(row, class, attempt, contrast, pixels)`` per labelled finding (the
            workers' records).
        names: the image name of each row.

    Returns:
        ``{"rule": {...}, "classes": {class: {"labelled", "as drawn", "moved", "raised",
        "hidden", "min contrast"}}, "hidden": [[image, class], ...]}``; ``hidden`` lists the
        label noise: labels kept on images where the finding does not show.
    """
    classes: dict[str, dict[str, int]] = {}
    hidden = []
    for row, label, attempt, contrast, pixels in sorted(findings, key=lambda f: (f[0], f[1])):
        kind = Check(int(attempt), int(contrast), int(pixels), None).kind
        counts = classes.setdefault(label, {"labelled": 0, "as drawn": 0, "moved": 0, "raised": 0, "hidden": 0})
        counts["labelled"] += 1
        counts[kind] += 1
        counts["min contrast"] = min(counts.get("min contrast", 255), int(contrast))
        if kind == "hidden":
            hidden.append([names[row], label])
    classes = {c: classes[c] for c in CLASSES if c in classes}
    rule = {"min_contrast": MIN_CONTRAST, "min_pixels": MIN_PIXELS, "reference_size": REFERENCE_SIZE,
            "moves": MOVES, "raises": MAX_ATTEMPT - MOVES}
    return {"rule": rule, "classes": classes, "hidden": hidden}


__all__ = ["Check", "summarize", "MIN_CONTRAST", "MIN_PIXELS", "REFERENCE_SIZE", "change", "measure", "scale_box", "settle"]
