"""Download ChestX-ray14 and stream it straight into the image cache (or the NIH layout).

NIH ships the 112,120 images as 12 gzip tar archives (about 42 GB). Each archive is decoded
while it downloads: with --cache-only every PNG is decoded, resized to SIZE x SIZE and written
into the uint8 image cache that `cral prepare` would build (about 7.3 GB at 256 px), no PNG is
written to disk, and each archive is deleted once its images are in, so the peak disk need is
the cache plus one archive (12-13 GB). Without --cache-only the images are written as NIH ships
them (DIR/images_NNN/images/*.png: about 50 GB with one archive; `cral prepare --data DIR` then
builds the cache, 7.3 GB more). Free disk space is checked before anything is fetched.

Interrupted? Run the same command again: the download resumes at the byte it reached
(DIR/images_NNN.tar.gz.part) and images already in the cache are not decoded again. Cut
connections and server errors are retried with back-off. Each archive is checked (gzip CRC,
tar headers, PNG CRCs, the exact image names of its range) before DIR/.cral_download.json
marks it done; a corrupt one is named, deleted and fetched afresh on the next run.

Metadata: Data_Entry_2017_v2020.csv and BBox_List_2017.csv are written from the copies in the
torchxrayvision package when DIR lacks them. The official split lists (train_val_list.txt,
test_list.txt) are not in the archives: get them from https://nihcc.app.box.com/v/ChestXray-NIHCC
or https://www.kaggle.com/datasets/nih-chest-xrays/data (`--source kaggle --metadata-only`
fetches them with a Kaggle API token). Training needs them; the cache does not.

--archives fetches a subset (e.g. 1-2 or 1,3,5). With --cache-only the cache then stays
incomplete until all 12 are in (run again without --archives to finish it); to train on a
subset, download without --cache-only and run `cral prepare --data DIR --lenient`.

--source kaggle fetches the Kaggle copy (one 42 GB zip with images, CSVs and split lists)
with the `kaggle` command line (pip install kaggle; token in ~/.kaggle/kaggle.json or
KAGGLE_USERNAME/KAGGLE_KEY), reads it the same way, and deletes the zip when all is in.

Examples:
  cral download --out /content/chestxray14 --cache-only     # Colab: ~13 GB of disk at peak
  cral download --out data/nih                               # NIH layout; then cral prepare
  cral download --out data/nih --archives 1-2                # two archives (layout)
  cral download --out data/nih --source kaggle --metadata-only   # just the CSVs and split lists
  CRAL_NIH_BASE_URL=https://mirror.example/nih cral download --out data/nih
"""

from __future__ import annotations

import argparse
import sys

from ..fetch.nih import BASE_URL_ENV, NIH_BASE_URL, SOURCES
from ._common import path_arg

HELP = "fetch ChestX-ray14 (42 GB) and stream it into the image cache: resumable, checked, ~13 GB peak disk"
ORDER = 15


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cral download``."""
    parser.add_argument("--out", required=True, metavar="DIR", type=path_arg,
                        help="the release folder: metadata, state file, and (without --cache-only) the PNGs")
    parser.add_argument("--cache-only", action="store_true",
                        help="write images only into the cache (no PNG on disk; each archive deleted when in)")
    parser.add_argument("--archives", default=None, metavar="LIST",
                        help="which of the 12 archives, e.g. 1-12 (default), 1-2 or 1,3,5")
    parser.add_argument("--size", type=int, default=256, metavar="S",
                        help="side of the cached images (default: 256)")
    parser.add_argument("--cache", default=None, metavar="CACHE_DIR", type=path_arg,
                        help="cache folder (default: DIR/cache/SIZE, where cral prepare and cral train look)")
    parser.add_argument("--source", choices=SOURCES, default=SOURCES[0],
                        help="nih: NIH's 12 archives (default); kaggle: the Kaggle copy via the kaggle command line")
    parser.add_argument("--metadata-only", action="store_true",
                        help="only the metadata: write the CSVs (nih) or fetch the CSVs and split lists (kaggle)")
    parser.add_argument("--base-url", default=None, metavar="URL",
                        help=f"where the <id>.gz archives are (default: ${BASE_URL_ENV} or {NIH_BASE_URL})")
    parser.add_argument("--retries", type=int, default=5, metavar="N",
                        help="retries per archive after a failed request or a cut connection (default: 5)")
    parser.add_argument("--retry-wait", type=float, default=2.0, metavar="SECONDS",
                        help="wait before the first retry, doubled each time up to 60 s (default: 2)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="seconds without data before a connection counts as failed (default: 60)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="threads decoding PNGs for the cache (default: all CPU cores; 0 = this thread)")
    parser.add_argument("--keep-archives", action="store_true",
                        help="keep each checked archive as DIR/images_NNN.tar.gz instead of deleting it")
    parser.add_argument("--no-space-check", action="store_true",
                        help="do not check free disk space before starting")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a cache of another release or size found in the cache folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (one line per archive)")


def run(args: argparse.Namespace) -> int:
    # the downloader loads when the command runs, not when `cral --help` builds the parser
    from ..fetch import download

    result = download(
        args.out,
        source=args.source,
        cache_only=args.cache_only,
        archives=args.archives,
        size=args.size,
        cache=args.cache,
        base_url=args.base_url,
        retries=args.retries,
        retry_wait=args.retry_wait,
        timeout=args.timeout,
        workers=args.workers,
        keep_archives=args.keep_archives,
        metadata_only=args.metadata_only,
        space_check=not args.no_space_check,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    for message in result.messages:
        print(f"note: {message}", file=sys.stderr)
    if args.metadata_only:
        written = ", ".join(result.metadata.written) or "nothing (all there)"
        print(f"metadata in {result.out}: wrote {written}")
        return 0
    fetched = f"{len(result.fetched)} fetched now" if result.fetched else "nothing to fetch"
    line = f"release: {result.out} ({len(result.done)} archive(s) done, {fetched})"
    if result.cache is not None:
        state = "complete" if result.cache_complete else "incomplete"
        line += f"; cache: {result.cache} ({result.cache_done:,} of {result.cache_total:,} images, {state})"
    print(line)
    return 0
