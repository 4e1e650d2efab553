"""Compare two evaluated runs on the same images with a paired bootstrap.

Both runs must have been evaluated on the same split (`cral evaluate`), of the same release:
runs whose test images are not at least 90% the same are refused (the message gives how many
they share). The table gives, per
class and for the mean, the AUC difference (B minus A), its 95% interval and a two-sided
bootstrap p-value: an interval that contains 0 means the data cannot tell the runs apart.

example:
  cral compare runs/r50_baseline runs/r50_att1
"""

from __future__ import annotations

import argparse
import sys
import warnings

from ..errors import ConfigError
from ._common import MAX_BOOTSTRAP, path_arg

HELP = "paired bootstrap comparison of two evaluated runs (which differences are real)"
ORDER = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", type=path_arg, help="run folder A (the reference)")
    parser.add_argument("run_b", type=path_arg, help="run folder B")
    parser.add_argument("--split", default="test", help="the split both were evaluated on (default: test)")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="resamples (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    parser.add_argument("--resample", default="patients", choices=["patients", "images"],
                        help="what the bootstrap draws: whole patients (default) or single images")


def run(args: argparse.Namespace) -> int:
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed} must be 0 or more")
    if not 1 <= args.bootstrap <= MAX_BOOTSTRAP:
        raise ConfigError(f"--bootstrap {args.bootstrap} must be from 1 to {MAX_BOOTSTRAP:,} (1,000 is plenty)")
    # pandas and the trainer load when the command runs, not when `cral --help` builds the parser
    import pandas as pd

    from ..train import compare_runs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = compare_runs(args.run_a, args.run_b, split=args.split, n_boot=args.bootstrap, seed=args.seed,
                             by_patient=args.resample == "patients")
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        print(table)
    return 0
