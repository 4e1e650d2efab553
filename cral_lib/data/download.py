"""Kept for the old import path: ``cral download`` now lives in :mod:`cral_lib.fetch`.

``from cral_lib.data.download import download`` (and every public name this module had) still
works; each name is imported from :mod:`cral_lib.fetch` on first use.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    name: "cral_lib.fetch" for name in (
        "Archive", "BASE_URL_ENV", "DiskPlan", "DownloadResult", "KAGGLE_DATASET", "KAGGLE_PAGE", "MetadataReport",
        "NIH_ARCHIVES", "NIH_BASE_URL", "NIH_PAGE", "SPLIT_LISTS_HELP", "STATE_FILE", "archive_names",
        "check_disk_space", "download", "ensure_metadata", "parse_archives", "resolve_base_url")
})
