"""Data: the ChestX-ray14 reader, the synthetic dataset, the image cache and augmentation.

The names below are imported on first use (``from cral_lib.data import ChestXray14``),
so that importing one part does not pull in the others.

- :class:`ChestXray14` (``nih.py``): reads a release folder, real or synthetic.
- :func:`load_grey` (``images.py``): any PNG mode to one uint8 grey channel.
- :func:`make_synthetic`, :func:`is_synthetic_complete`, :func:`synthetic_metadata` (``synth.py``):
  the synthetic dataset.
- :func:`resolve_data_dir` (``synth.py``): a notebook's data folder from a parameter,
  ``CRAL_DATA_DIR``, or a default synthetic dataset made on first use.
- :func:`nih_metadata`, :func:`nih_boxes`, :func:`lung_masks`, :func:`label_matrix`,
  :func:`label_stats` (``metadata.py``): the real NIH metadata and lung masks that the
  torchxrayvision wheel carries, and label statistics of any frame.
- :func:`make_phantom` (``phantom.py``): one procedural chest radiograph with given findings.
- :func:`build_cache`, :class:`ImageCache`, :class:`CacheWriter`, :func:`default_cache_dir`
  (``cache.py``): the fast uint8 image cache.
- :class:`TrainTransform`, :class:`TestTransform` (``augment.py``): the paper's transforms, batch-wise.
- :class:`BatchLoader` (``loader.py``): cache rows to augmented batches on the device.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ChestXray14": "nih",
    "SPLITS": "nih",
    "load_grey": "images",
    "make_synthetic": "synth",
    "is_synthetic_complete": "synth",
    "resolve_data_dir": "synth",
    "nih_metadata": "metadata",
    "nih_boxes": "metadata",
    "lung_masks": "metadata",
    "label_matrix": "metadata",
    "label_stats": "metadata",
    "synthetic_metadata": "synth",
    "make_phantom": "phantom",
    "build_cache": "cache",
    "ImageCache": "cache",
    "CacheWriter": "cache",
    "default_cache_dir": "cache",
    "TrainTransform": "augment",
    "TestTransform": "augment",
    "IMAGENET_MEAN": "augment",
    "IMAGENET_STD": "augment",
    "test_time_resize": "augment",
    "BatchLoader": "loader",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS)
