"""Evaluate a trained run: per-class AUC with 95% bootstrap intervals and the mean, the
paper's Table 1 beside the run's row, and predictions per image.

Writes into the run folder: predictions_SPLIT.csv, auc_SPLIT.csv, auc_SPLIT.json, table1_SPLIT.csv.
With --data of another dataset than the run's own, the names say which data
(predictions_SPLIT_on_FOLDER-HASH.csv, ...): the run's own results are never replaced.
And the thresholds: one per class, chosen on the validation split (by default Youden's J: the
threshold with the largest sensitivity + specificity - 1 there), kept in thresholds.json for
`cral predict`, and the SPLIT's sensitivity, specificity and PPV at them with 95% Wilson
intervals in operating_SPLIT.csv.

examples:
  cral evaluate --run runs/r50_att1
  cral evaluate --run runs/r50_att1 --split val --checkpoint last
  cral evaluate --run runs/r50_att1 --data /elsewhere/chestxray14     # the data moved
  torchrun --nproc_per_node=4 -m cral_lib evaluate --run-dir runs/r50_att1   # on 4 GPUs
"""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from ..train.config import check_device_name
from ._common import MAX_BOOTSTRAP, path_arg

HELP = "per-class AUC (with 95%% CIs), the paper's table and predictions of a trained run"
ORDER = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", "--run-dir", dest="run", required=True, type=path_arg,
                        help="the run folder written by `cral train` (under torchrun, spell it --run-dir: "
                             "torchrun takes --run for one of its own options)")
    parser.add_argument("--split", default="test", choices=["test", "val", "train", "train_val"],
                        help="which split to predict (default: test)")
    parser.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint file (default: best)")
    parser.add_argument("--data", type=path_arg, help="the release folder, if it is not where the run was trained")
    parser.add_argument("--cache", type=path_arg, help="the image cache folder, if not the default")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default: auto)")
    parser.add_argument("--batch-size", type=int, help="prediction batch size (default: the run's)")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="bootstrap resamples for the 95%% intervals; 0 for none (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    parser.add_argument("--resample", default="patients", choices=["patients", "images"],
                        help="what the bootstrap draws: whole patients with all their images (the cluster "
                             "bootstrap, default) or single images")
    parser.add_argument("--thresholds", default="youden", metavar="RULE",
                        help="how the per-class thresholds are chosen on the validation split: youden "
                             "(max sensitivity + specificity - 1), sensitivity:S (the highest threshold "
                             "reaching sensitivity S), or none (default: youden)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed} must be 0 or more")
    if not 0 <= args.bootstrap <= MAX_BOOTSTRAP:
        raise ConfigError(f"--bootstrap {args.bootstrap} must be from 0 to {MAX_BOOTSTRAP:,} (1,000 is plenty)")
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size} must be 1 or more (default: the run's eval batch size)")
    check_device_name(args.device)
    # pandas and the trainer load when the command runs, not when `cral --help` builds the parser
    import pandas as pd

    from ..train import evaluate_run

    rule = None if args.thresholds.strip().lower() == "none" else args.thresholds  # evaluate_run checks it first
    result = evaluate_run(
        args.run, args.split, which=args.checkpoint, data_dir=args.data, cache_dir=args.cache, device=args.device,
        batch_size=args.batch_size, n_boot=args.bootstrap, seed=args.seed, progress=not args.no_progress,
        threshold_rule=rule, by_patient=args.resample == "patients",
    )
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(result.auc)
        print(f"\nintervals: {result.auc.attrs.get('resample', 'no')} resampled")
        print()
        print(result.classes.drop(columns=["note"]))
        print(result.classes.attrs["rule"])
        print()
        print(result.table1)
        if result.operating is not None:
            shown = result.operating[["threshold", "sensitivity", "sens_lo", "sens_hi", "specificity", "spec_lo",
                                      "spec_hi", "tp", "fp"]]
            print(f"\nat the thresholds chosen on the validation split ({rule}), on the {args.split} split:")
            print(shown)
            n = result.normal
            print(f"images without any finding: {n['flagged']} of {n['normal_images']} get at least one finding "
                  f"called ({n['flagged_share']:.1%}, 95% CI {n['flagged_lo']:.1%}-{n['flagged_hi']:.1%})")
    print(f"\nwritten to {result.run_dir}: {', '.join(result.files)}")
    return 0
