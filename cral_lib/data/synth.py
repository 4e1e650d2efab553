"""Kept for the old import path: the synthetic dataset's writer now lives in :mod:`cral_lib.synthetic`.

``from cral_lib.data.synth import make_synthetic`` (and every name this module had) still works;
each name is imported from its new module on first use.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    **{name: "cral_lib.synthetic.writer" for name in (
        "BBOX_LIST", "DATA_ENTRY", "MARKER", "PARTS", "SYNTH_VERSION", "TEST_LIST", "TRAIN_VAL_LIST",
        "is_synthetic_complete", "make_synthetic")},
    **{name: "cral_lib.synthetic.rows" for name in (
        "FIRST_FOLDER_IMAGES", "FOLDER_IMAGES", "MAX_IMAGES", "MAX_IMAGE_SIZE", "MIN_IMAGE_SIZE", "OFFICIAL_TEST",
        "OFFICIAL_TOTAL", "OFFICIAL_TRAIN_VAL", "PATIENT_OFFSET", "image_folder", "split_counts",
        "synthetic_metadata")},
    **{name: "cral_lib.synthetic.default" for name in ("default_synthetic_dir", "resolve_data_dir")},
    "looks_like_release": "cral_lib.data.nih",
})
