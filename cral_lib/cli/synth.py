"""Write a synthetic ChestX-ray14 in the exact layout of the NIH release.

The folder gets Data_Entry_2017_v2020.csv, train_val_list.txt, test_list.txt,
BBox_List_2017.csv and images_001/images/*.png (then images_002/ ... as NIH's archives),
plus SYNTHETIC.json. Rows are whole real patients from the real metadata (renumbered), split by
patient in the official proportions; images are procedural phantoms whose findings have a
visual signature and a box. The same --images, --size and --seed give the same files.

A complete dataset with the same parameters is reused at once and an interrupted one is
resumed; any other non-empty folder is refused unless --overwrite is given.

Examples:
  cral synth --out data/synth --images 2000 --size 256
  cral synth --out data/synth-full --images 112120 --size 1024 --workers 16
"""

from __future__ import annotations

import argparse

from ._common import path_arg

HELP = "write a synthetic ChestX-ray14 (exact release layout, real labels, phantom images)"
ORDER = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``cral synth``."""
    parser.add_argument("--out", required=True, metavar="DIR", type=path_arg, help="folder to write (empty or new)")
    parser.add_argument("--images", type=int, default=1000, metavar="N",
                        help="number of images, 1 to 112120 (default: 1000)")
    parser.add_argument("--size", type=int, default=1024, metavar="S",
                        help="image side in pixels, 32 to 4096 (default: 1024, as NIH's PNGs)")
    parser.add_argument("--seed", type=int, default=0, metavar="K", help="dataset seed (default: 0)")
    parser.add_argument("--workers", type=int, default=None, metavar="W",
                        help="processes that draw images (default: all CPU cores)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a synthetic dataset made with other parameters, or the "
                        "release files in a non-empty folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def run(args: argparse.Namespace) -> int:
    # the writer (pandas, the phantoms) loads when the command runs, not when `cral --help` builds the parser
    from ..synthetic import make_synthetic

    make_synthetic(
        args.out,
        n_images=args.images,
        image_size=args.size,
        seed=args.seed,
        workers=args.workers,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    return 0
