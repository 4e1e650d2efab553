"""What each finding looks like on a phantom: the table the painters are keyed by (the book prints it).

:data:`cral_lib.synthetic.painters.PAINTERS` has one painter per row of :data:`SIGNATURES`,
and a test keeps the two tables the same.
"""

from __future__ import annotations

from .. import CLASSES

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


__all__ = ["BOXED", "SIGNATURES"]
