"""The fast image cache: every image of a release, resized once, in one uint8 array file.

Decoding a 1024 x 1024 PNG takes about 10 ms of a CPU core, so a training epoch that reads
the PNGs keeps the GPU waiting. ``cral prepare`` (:func:`build_cache`) decodes each PNG once,
resizes it to ``S x S`` with PIL's antialiased bilinear filter (the paper's "resize 256"),
and stores it as a row of one ``N x S x S`` uint8 array. Training then reads batches of rows
from that file (memory-mapped, :class:`ImageCache`) and crops, flips and normalizes them on
the device (:mod:`cral_lib.data.augment`).

Size on disk is ``N * S * S`` bytes: the 112,120 images of ChestX-ray14 take about 7.3 GB at
256 px (6.9 GiB), 2.4 GB at 146 px.

A cache is a folder (by default ``<release>/cache/<size>/``, see :func:`default_cache_dir`)::

    images.npy   uint8, N x S x S, rows in the order of the metadata CSV
    index.csv    row, Image Index, width, height (of the source PNG), valid
    cache.json   version, size, count, fingerprint (of the CSV's image names), complete, ...
    state.npy    while building: per row (status, width, height); removed once complete

``complete: true`` is written last, atomically (temporary file + ``os.replace``), after the
image rows, the progress state and the index are on disk. A folder without it is resumed by
the next ``cral prepare``, never used: :class:`ImageCache` refuses it. Work done before an
interruption is kept: progress is saved every few seconds (:meth:`CacheWriter.flush`).

:class:`CacheWriter` is the part that writes: :func:`build_cache` feeds it decoded PNGs from a
process pool; ``cral download --cache-only`` feeds it images straight from the NIH archives.

The package has one module per job: ``layout.py`` (the files and ``cache.json``), ``reader.py``
(:class:`ImageCache`), ``writer.py`` (:class:`CacheWriter`) and ``build.py``
(:func:`build_cache`). The names below are imported on first use, so that the reader does not
load the builder (and the release reader it needs).
"""

from __future__ import annotations

from ..._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "CACHE_VERSION": ".layout",
    "DEFAULT_SIZE": ".layout",
    "IMAGES_FILE": ".layout",
    "INDEX_FILE": ".layout",
    "META_FILE": ".layout",
    "STATE_FILE": ".layout",
    "LOCK_FILE": ".layout",
    "default_cache_dir": ".layout",
    "is_complete_cache": ".layout",
    "names_fingerprint": ".layout",
    "ImageCache": ".reader",
    "release_fingerprint": ".reader",
    "release_names": ".reader",
    "CacheWriter": ".writer",
    "build_cache": ".build",
})
