"""The synthetic ChestX-ray14: procedural chest radiographs in the exact layout of the NIH release.

It makes release folders (``cral synth``) that the reader (:class:`cral_lib.data.ChestXray14`)
cannot tell from a real download, so that every chapter, test and CI run goes through the code
path of the real data. One module per job:

- ``writer.py``: :func:`make_synthetic` (``cral synth``), :func:`is_synthetic_complete`;
- ``rows.py``: :func:`synthetic_metadata`, the rows (real patients, renumbered, split by patient);
- ``workers.py``: the processes that draw the images;
- ``phantom.py``: :func:`make_phantom`, one radiograph with given findings; it draws with
  ``scene.py`` (the random numbers), ``render.py`` (the anatomy and the exposure),
  ``painters.py`` (one painter per finding, keyed by :data:`SIGNATURES` of ``signatures.py``),
  ``draw.py`` (primitives) and ``templates.py`` (real lung shapes), and checks with
  ``visibility.py`` that every finding it is labelled with shows (boxes from what changed);
- ``default.py``: :func:`resolve_data_dir`, a chapter's data folder (a parameter,
  ``CRAL_DATA_DIR``, or a synthetic dataset made on first use).

The names below are imported on first use, so that the image workers, which import the
phantom's modules, do not load pandas.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "make_synthetic": ".writer",
    "is_synthetic_complete": ".writer",
    "GENERATOR": ".writer",
    "MARKER": ".writer",
    "SYNTH_VERSION": ".writer",
    "DATA_ENTRY": ".writer",
    "BBOX_LIST": ".writer",
    "TRAIN_VAL_LIST": ".writer",
    "TEST_LIST": ".writer",
    "synthetic_metadata": ".rows",
    "split_counts": ".rows",
    "image_folder": ".rows",
    "PATIENT_OFFSET": ".rows",
    "OFFICIAL_TEST": ".rows",
    "OFFICIAL_TOTAL": ".rows",
    "OFFICIAL_TRAIN_VAL": ".rows",
    "BOOK_SYNTHETIC": ".default",
    "default_synthetic_dir": ".default",
    "resolve_data_dir": ".default",
    "make_phantom": ".phantom",
    "Phantom": ".phantom",
    "Scene": ".phantom",
    "draw_scene": ".phantom",
    "render_scene": ".phantom",
    "lung_templates": ".phantom",
    "LungTemplates": ".phantom",
    "SIGNATURES": ".phantom",
    "BOXED": ".phantom",
    "PAINTERS": ".painters",
    "MIN_CONTRAST": ".visibility",
    "MIN_PIXELS": ".visibility",
    "REFERENCE_SIZE": ".visibility",
})
