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
  torchxrayvision (:func:`cral_lib.data.lung_masks`, :mod:`cral_lib.synthetic.templates`),
  jittered per image by a small affine
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
so that some cases are faint or small and hence hard; :mod:`cral_lib.synthetic.painters` has
one painter per finding, keyed by that table):

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

Every finding shows (:mod:`~cral_lib.synthetic.visibility`): drawn alone on the patient's normal
film, it changes at least :data:`~cral_lib.synthetic.visibility.MIN_PIXELS` pixels of the 256 px
image by :data:`~cral_lib.synthetic.visibility.MIN_CONTRAST` grey levels or more; one that would
not is drawn again elsewhere (then stronger), and one that still would not is kept as label
noise, without a box (:attr:`Phantom.checks` says which).

Boxes (:data:`BOXED`): every localized finding that shows gets one box per image, the bounding
box of the pixels its drawing changed by at least the minimum contrast (all its parts together:
both sides for a bilateral effusion or fibrosis, all patches of an infiltration, the raised
base of a lung that lost volume), measured at 256 px and scaled to the image. Edema and
Emphysema are diffuse and bilateral, as in NIH's box list (which has none for them): they get
no box.

The work is split by job: :mod:`~cral_lib.synthetic.scene` draws the random numbers,
:mod:`~cral_lib.synthetic.render` the normal anatomy and the exposure, the painters the
findings, :mod:`~cral_lib.synthetic.draw` holds the drawing primitives and
:mod:`~cral_lib.synthetic.templates` the lung shapes. This module is the door: :func:`make_phantom`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ConfigError
from .render import Phantom, render_scene
from .scene import TEXTURE, Scene, draw_scene
from .signatures import BOXED, SIGNATURES
from .templates import TEMPLATE_COUNT, TEMPLATE_RESOLUTION, LungTemplates, lung_templates
from .visibility import REFERENCE_SIZE, scale_box, settle

#: Smallest and largest image side that :func:`make_phantom` draws.
MIN_SIZE = 32
MAX_SIZE = 4096

#: Bumped whenever a change to the drawing changes the pixels for the same seed.
PHANTOM_VERSION = 3


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
        A :class:`Phantom`: the uint8 image, a box per localized finding that shows, and the
        :class:`~cral_lib.synthetic.visibility.Check` of every finding.

    Raises:
        ConfigError: a bad size, view or label.

    Example:
        >>> from cral_lib.synthetic.phantom import make_phantom
        >>> ph = make_phantom(["Effusion", "Nodule"], size=256, seed=1)  # doctest: +SKIP
        >>> ph.image.shape, sorted(ph.boxes)  # doctest: +SKIP
        ((256, 256), ['Effusion', 'Nodule'])
    """
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError(f"phantom size must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    if templates is None:
        templates = lung_templates()
    texture_seed = (int(seed), TEXTURE, int(image_id))

    def draw(attempts):
        return draw_scene(labels, view=view, sex=sex, age=age, seed=seed, image_id=image_id,
                          patient_id=patient_id, templates=templates, attempts=attempts)

    scene, checks, reference = settle(draw, templates, texture_seed)
    if reference is not None and size == REFERENCE_SIZE:
        image = reference  # the one finding drawn alone is the image itself
    else:
        image = render_scene(scene, int(size), templates=templates, texture_seed=texture_seed).image
    boxes = {name: scale_box(c.box, int(size)) for name, c in checks.items()
             if name in BOXED and c.visible and c.box is not None}
    return Phantom(image=image, boxes=boxes, scene=scene, checks=checks)


__all__ = [
    "BOXED",
    "LungTemplates",
    "MAX_SIZE",
    "MIN_SIZE",
    "PHANTOM_VERSION",
    "Phantom",
    "SIGNATURES",
    "Scene",
    "TEMPLATE_COUNT",
    "TEMPLATE_RESOLUTION",
    "draw_scene",
    "lung_templates",
    "make_phantom",
    "render_scene",
]
