"""Fetching ChestX-ray14 (``cral download``): from NIH (or Kaggle), streamed straight into the image cache.

The NIH Clinical Center publishes the 112,120 images as 12 gzip-compressed tar archives behind
static Box links (:data:`NIH_ARCHIVES`, about 42 GB in all). The usual recipe (download all 12,
extract them, decode 112,120 PNGs every epoch) needs about 90 GB of disk and hours of CPU.
:func:`download` does better:

- **Streaming.** Each archive is decoded *while it downloads*: gzip, then tar, then every PNG is
  decoded, resized to ``S x S`` and written into the uint8 image cache
  (:class:`~cral_lib.data.cache.CacheWriter`, the same files ``cral prepare`` makes) on a few
  threads, overlapped with the download. With ``cache_only=True`` no PNG is ever written to
  disk and each archive is deleted once its images are in, so the peak disk need is the cache
  (about 7.3 GB at 256 px) plus one archive (about 4 GB): 12-13 GB. Without it, the release is
  written as NIH ships it (``images_NNN/images/*.png``, about 50 GB with one archive) and
  ``cral prepare`` builds the cache (7.3 GB more).
- **Resuming.** The bytes of the archive being fetched are appended to
  ``DIR/images_NNN.tar.gz.part`` before they are decoded. A cut connection is retried with
  back-off and an HTTP ``Range`` request from the byte reached (a server that ignores ``Range``
  answers with the whole file; its first bytes are then read and discarded, so the partial file
  stays valid). See "Resuming with --cache-only" below for an interrupted run.
- **Checking.** An archive counts as done only after all of it was read: its gzip CRC-32 and
  length, every tar header checksum, every PNG's chunk CRCs (and, for the cache, a full decode),
  and its image names: exactly the names of the release CSV that fall in the archive's range
  (NIH's archives hold consecutive image names: 4,999 in the first, 10,000 in each of the next
  ten, 7,121 in the last).
- **State.** ``DIR/.cral_download.json`` (written atomically) records, per archive, its size,
  the byte offset reached and where it is done (``layout`` and/or the cache folder). The files
  themselves stay the truth: an archive whose images are all in the cache (or on disk) is done.
- **Disk.** Free space is checked before anything is fetched; the message says how much is
  needed with and without ``--cache-only``.

Resuming with --cache-only (the design choice). A gzip stream cannot be decoded from the middle,
so a decoder cannot resume where an interrupted one stopped. Two designs keep resume correct:
(a) download the whole ``.gz`` with Range resume, then decode it from the file; (b) decode while
downloading, keep the bytes on disk, and after an interruption decode the partial file again from
its start (local disk, seconds), skipping images the cache already holds, then continue with the
network from the byte the file reached. This module does (b): the same peak disk as (a), but the
PNG decoding overlaps the download, within a run a cut connection costs nothing (the decoder
just waits for the retry), and across runs only gunzip of the partial file is repeated.

Trust. A cache row (or PNG file) is written only from an image that passed its own checks (tar
header checksum, PNG chunk CRCs and, for the cache, a complete decode), so rows written from an archive that later
fails (a bad byte near its end, a missing image) are kept, and the next run fetches the archive
afresh but does not decode those images again. A corrupt archive is reported by name, never
marked done, and its partial download is deleted (resuming it would keep the bad bytes).
Archives a user put into ``DIR`` (``images_001.tar.gz`` or NIH's own name ``images_01.tar.gz``)
are read from disk instead of downloaded, and never deleted.

Metadata. The archives hold only images. ``Data_Entry_2017_v2020.csv`` and
``BBox_List_2017.csv`` are written from the copies the torchxrayvision wheel carries
(:mod:`cral_lib.data.metadata`) when ``DIR`` has none. The official split lists
(``train_val_list.txt``, ``test_list.txt``) are not shipped anywhere offline; this module
never invents them and says where to get them (:data:`SPLIT_LISTS_HELP`). The cache needs only
the image names, so it can be built without them; training needs them.

Kaggle. ``source="kaggle"`` fetches the Kaggle copy (``nih-chest-xrays/data``, one 42 GB zip
with the images, both CSVs and the split lists) with the ``kaggle`` command line (``pip install
kaggle`` and an API token), then reads it like the NIH archives (streaming into the cache, or
extracting the NIH layout; images are assigned to ``images_NNN`` by name, as for NIH's archives)
and deletes the zip it downloaded. A zip cannot be read while it downloads, so the peak disk is
the zip plus the cache (about 50 GB) or plus the PNGs (about 85 GB). ``metadata_only=True`` fetches
just the four metadata files (``kaggle datasets download -d nih-chest-xrays/data -f FILE``),
the quickest way to the split lists. By hand, ``kaggle datasets download -d
nih-chest-xrays/data -p DIR --unzip`` gives the same layout (peak disk about 87 GB).

Subsets. ``archives=[1, 2]`` fetches only those archives. In ``cache_only`` mode the cache is
filled with their rows and stays incomplete (unusable) until the others are in; a later run
without ``archives`` fetches only what is missing. To train on a subset, use the layout mode
and ``cral prepare --lenient``: the images that are absent become invalid rows that training
leaves out, with a warning that counts them.

Example:
    >>> from cral_lib.fetch import download
    >>> result = download("/content/chestxray14", cache_only=True)  # doctest: +SKIP

One module per job: ``nih.py`` (the archive table, the links, the metadata files),
``http_range.py`` (HTTP with Range resume), ``stream.py`` (the bytes of an archive: the file on
disk, then the network; gunzip), ``archive.py`` (the tar inside, each PNG's CRCs), ``sinks.py``
(the cache or the NIH layout), ``state.py`` (the state file), ``disk.py`` (free space),
``run.py`` (:func:`download`, one run's steps) and ``kaggle.py`` (the Kaggle copy). The names
below are imported on first use.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "download": ".run",
    "DownloadResult": ".run",
    "Archive": ".nih",
    "NIH_ARCHIVES": ".nih",
    "NIH_BASE_URL": ".nih",
    "BASE_URL_ENV": ".nih",
    "NIH_PAGE": ".nih",
    "KAGGLE_PAGE": ".nih",
    "KAGGLE_DATASET": ".nih",
    "KAGGLE_ZIP": ".nih",
    "SOURCES": ".nih",
    "SPLIT_LISTS_HELP": ".nih",
    "MetadataReport": ".nih",
    "archive_names": ".nih",
    "ensure_metadata": ".nih",
    "parse_archives": ".nih",
    "resolve_base_url": ".nih",
    "DiskPlan": ".disk",
    "check_disk_space": ".disk",
    "STATE_FILE": ".state",
})
