"""Build the fast image cache of a ChestX-ray14 release folder (real or synthetic).

Every image of the metadata CSV is decoded once (any PNG mode becomes one 8-bit grey
channel), resized to SIZE x SIZE (PIL bilinear, antialiased: the paper's "resize 256") and
stored as one row of a uint8 array file, in the order of the CSV. Training then reads
batches from that file instead of decoding PNGs, and crops, flips and normalizes them on the
GPU.

The work is spread over all CPU cores and shows its progress. An interrupted run resumes
where it stopped; a finished cache of the same release and size is reused at once. The
cache takes SIZE x SIZE bytes per image: about 7.3 GB for the 112,120 images of ChestX-ray14
at 256 px (2.4 GB at 146 px).

Examples:
  cral prepare --data data/nih                  # -> data/nih/cache/256/
  cral prepare --data data/nih --size 146 --out /fast/disk/nih146
  cral prepare --data data/nih --lenient        # skip missing or corrupt PNGs (counted)
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from .._io import human
from ..data.cache.layout import MAX_SIZE
from ..errors import ConfigError
from ._common import path_arg

HELP = "build the fast uint8 image cache of a release folder (resumable; ~7.3 GB for NIH at 256 px)"
ORDER = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cral prepare``."""
    parser.add_argument("--data", required=True, metavar="DIR", type=path_arg, help="the release folder (NIH layout, real or synthetic)")
    parser.add_argument("--size", type=int, default=256, metavar="S", help="side of the cached images (default: 256)")
    parser.add_argument(
        "--out", default=None, metavar="CACHE", type=path_arg, help="cache folder (default: DIR/cache/SIZE)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="processes decoding PNGs (default: all CPU cores; 0 = in this process)",
    )
    parser.add_argument(
        "--lenient", action="store_true",
        help="skip missing or corrupt images (with a warning and a count) instead of stopping",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace a cache of another release or size found in the cache folder",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def run(args: argparse.Namespace) -> int:
    # the cache (numpy, the release reader) loads when the command runs, not when `cral --help` builds the parser
    from ..data.cache import ImageCache, build_cache
    from ..data.cache.layout import prepare_command

    if not 1 <= args.size <= MAX_SIZE:
        raise ConfigError(f"--size {args.size} must be from 1 to {MAX_SIZE} pixels (256 is the paper's)")
    if args.workers is not None and args.workers < 0:
        raise ConfigError(f"--workers {args.workers} must be 0 or more")
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = build_cache(
            Path(args.data),
            out=args.out,
            size=args.size,
            workers=args.workers,
            lenient=args.lenient,
            progress=not args.no_progress,
            overwrite=args.overwrite,
        )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    cache = ImageCache(path, fix=prepare_command(args.data, args.size, path))
    skipped = int((~cache.valid).sum())
    note = f", {skipped} skipped (lenient mode)" if skipped else ""
    print(
        f"cache: {path} ({len(cache)} images{note}, {cache.size} x {cache.size} px, "
        f"{human(cache.nbytes_on_disk)} on disk, {time.perf_counter() - start:.1f} s)"
    )
    return 0
