"""The data a run trains on: its image cache and the splits of the release, as rows of that cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import ChestXray14, ImageCache, build_cache
from ..data.cache.layout import prepare_command
from ..errors import ConfigError
from .config import TrainConfig


@dataclass
class SplitData:
    """One split of the dataset, as rows of the cache."""

    dataset: Any  # ChestXray14
    rows: np.ndarray  # cache rows, aligned with labels
    labels: np.ndarray  # (n, C) float32
    names: list[str]


def open_cache(config: TrainConfig, progress: bool = True) -> ImageCache:
    """Open (building it first if needed) the image cache a config asks for."""
    path = build_cache(config.data_dir, out=config.cache_dir, size=config.cache_size, progress=progress)
    return ImageCache(path, fix=prepare_command(config.data_dir, config.cache_size, path))


def load_split(config: TrainConfig, split: str, cache: ImageCache) -> SplitData:
    """Read one split of the release folder and find its rows in the cache.

    Images the cache marks as unusable (skipped in lenient mode) are left out, and said so.
    """
    # The images come from the cache, so the PNGs need not be on disk (a `cral download
    # --cache-only` folder holds only the CSVs, the lists and the cache).
    ds = ChestXray14(config.data_dir, split=split, val_fraction=config.val_fraction, seed=config.seed,
                     require_images=False)
    names = list(ds.frame["Image Index"])
    rows = np.asarray(cache.rows(names), dtype=np.int64)
    labels = np.asarray(ds.labels, dtype=np.float32)
    valid = np.asarray(cache.valid)[rows]
    if not valid.all():
        print(f"{split}: leaving out {int((~valid).sum())} images the cache could not read")
        keep = np.flatnonzero(valid)
        rows, labels, names = rows[keep], labels[keep], [names[i] for i in keep]
    if len(rows) == 0:
        raise ConfigError(f"the {split} split of {config.data_dir} is empty")
    return SplitData(ds, rows, labels, names)


def subset_train(split: SplitData, n: int | None, seed: int) -> SplitData:
    """Keep ``n`` training images (whole random sample, seeded), or all when ``n`` is None."""
    if n is None or n >= len(split.rows):
        return split
    keep = np.sort(np.random.default_rng(seed).choice(len(split.rows), size=n, replace=False))
    return SplitData(split.dataset, split.rows[keep], split.labels[keep], [split.names[i] for i in keep])


__all__ = ["SplitData", "load_split", "open_cache", "subset_train"]
