"""Data: reading a ChestX-ray14 release, the image cache, the loader and the batched augmentation.

One module per job:

- ``release.py``: the release's files (names, exact headers) and their readers;
- ``nih.py``: :class:`ChestXray14`, a split of a release folder (patient-disjoint validation split);
- ``images.py``: :func:`load_grey`, any PNG mode to one uint8 grey channel;
- ``metadata.py``: the real NIH metadata and boxes that the torchxrayvision wheel carries, and
  label statistics of any frame; ``masks.py``: the real lung masks of that wheel;
- ``cache/``: :func:`build_cache` (``cral prepare``), :class:`ImageCache`, :class:`CacheWriter`;
- ``augment.py``: :class:`TrainTransform`, :class:`TestTransform`, :func:`test_time_resize`;
- ``loader.py``: :class:`BatchLoader`, cache rows to batches on the device.

Making a release folder is another job: the synthetic one is :mod:`cral_lib.synthetic`
(``cral synth``), the real download :mod:`cral_lib.fetch` (``cral download``). Their names that
lived here before (``make_synthetic``, ``resolve_data_dir``, ``make_phantom``, ...) are
importable from here still.

The names below are imported on first use (``from cral_lib.data import ChestXray14``), so that
importing one part does not pull in the others (the augmentation and the loader need torch;
the reader does not).
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "ChestXray14": ".nih",
    "SPLITS": ".nih",
    "looks_like_release": ".nih",
    "load_grey": ".images",
    "nih_metadata": ".metadata",
    "nih_boxes": ".metadata",
    "label_matrix": ".metadata",
    "label_stats": ".metadata",
    "lung_masks": ".masks",
    "build_cache": ".cache",
    "ImageCache": ".cache",
    "CacheWriter": ".cache",
    "default_cache_dir": ".cache",
    "TrainTransform": ".augment",
    "TestTransform": ".augment",
    "IMAGENET_MEAN": ".augment",
    "IMAGENET_STD": ".augment",
    "test_time_resize": ".augment",
    "BatchLoader": ".loader",
    # made elsewhere, importable from here as before
    "make_synthetic": ".synth",
    "is_synthetic_complete": ".synth",
    "resolve_data_dir": ".synth",
    "synthetic_metadata": ".synth",
    "make_phantom": ".phantom",
})
