"""Train a CRAL model (or an ablation) with the paper's recipe.

The defaults are the paper's (Section 4.2): ResNet-50 + att1 from ImageNet weights, SGD
lr 0.01 (divided by 10 after epoch 20), momentum 0.9, weight decay 1e-4, batch 64, 30 epochs,
random 224 px crops of the 256 px cache, mixed precision on GPU. Every value can be changed.

The run folder receives config.yaml, metrics.jsonl and checkpoints/{last,best}.pt. Without
--out it is runs/NAME, NAME derived from the config (model, crop size and a hash of the recipe,
the same name the book's chapters use). An interrupted run continues where it stopped with
--resume; a folder that already holds a run is never overwritten.

examples:
  cral train --data data/chestxray14 --out runs/r50_att1
  cral train --data data/chestxray14 --out runs/d121_att2 --backbone densenet121 --attention att2
  cral train --data data/synthetic --out runs/quick --backbone resnet18 --weights none \\
             --image-size 128 --cache-size 146 --epochs 3 --batch-size 32
  cral train --data data/chestxray14 --out runs/r50_att1 --resume
  torchrun --nproc_per_node=4 -m cral_lib train --data data/chestxray14 --out runs/r50_att1
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

from ..choices import AMP_MODES, ATTENTION_OPTIMIZERS, ATTENTIONS, BACKBONES, OPTIMIZERS, VARIANTS
from ..errors import ConfigError, DataError
from ..train.config import TrainConfig, run_name
from ._common import path_arg

HELP = "train a model (paper recipe by default); resumable with --resume"
ORDER = 30

# TrainConfig fields and how they appear on the command line
_FLAGS = {
    "data_dir": ("--data", "the ChestX-ray14 release folder (real, or made by `cral synth`)"),
    "out_dir": ("--out", "the run folder (default: runs/NAME, NAME derived from the config)"),
    "cache_dir": ("--cache", "the image cache folder (default: DATA/cache/CACHE_SIZE)"),
}
_METAVARS = {"data_dir": "DIR", "out_dir": "RUN", "cache_dir": "DIR", "weights": "imagenet|none|FILE",
             "device": "auto|cpu|cuda|cuda:N"
}
_CHOICES = {
    "backbone": BACKBONES,
    "attention": ATTENTIONS,
    "variant": VARIANTS,
    "amp": AMP_MODES,
    "optimizer": OPTIMIZERS,
    "attention_optimizer": ATTENTION_OPTIMIZERS,
}
#: Where runs go when --out is not given.
RUNS_DIR = Path("runs")
_SKIP = {"extra"}


def _field_help(name: str) -> str:
    """The description of a TrainConfig field, from the class docstring's Args section."""
    docs: dict[str, str] = {}
    current = None
    for line in (TrainConfig.__doc__ or "").splitlines():
        m = re.match(r"^ {8}(\w+): (.*)$", line)
        if m:
            current = m.group(1)
            docs[current] = m.group(2).strip()
        elif current and re.match(r"^ {12}\S", line):
            docs[current] += " " + line.strip()
        else:
            current = None
    return docs.get(name, "").replace("``", "").replace("%", "%%")  # argparse formats help with %


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--config", metavar="FILE", type=path_arg, help="read settings from a YAML/JSON file first (flags override it)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from checkpoints/last.pt, with the settings in its config.yaml "
                             "(flags given change them where a resume allows)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (one line per epoch)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in _SKIP:
            continue
        flag, helptext = _FLAGS.get(f.name, ("--" + f.name.replace("_", "-"), _field_help(f.name)))
        default = getattr(defaults, f.name)
        shown = "" if f.name in _FLAGS else f" (default: {default})"
        kwargs: dict = {"dest": f.name, "default": None, "help": helptext + shown}
        if f.name == "lr_milestones":
            kwargs.update(type=int, nargs="+", metavar="EPOCH")
        elif f.name == "crop_scale":
            kwargs.update(type=float, nargs=2, metavar=("LOW", "HIGH"))
        elif f.name == "channels_last":
            kwargs.update(action=argparse.BooleanOptionalAction)
        elif f.name == "compile":
            kwargs.update(action="store_true", default=None)
        elif f.name in _CHOICES:
            kwargs.update(choices=_CHOICES[f.name])
        elif isinstance(default, bool):
            kwargs.update(action=argparse.BooleanOptionalAction)
        elif isinstance(default, int) and not isinstance(default, bool):
            kwargs.update(type=int, metavar="N")
        elif isinstance(default, float):
            kwargs.update(type=float, metavar="X")
        elif f.name == "max_train_images":
            kwargs.update(type=int, metavar="N")
        else:
            kwargs.update(metavar=_METAVARS.get(f.name, "VALUE"))
            if f.name in _FLAGS:
                kwargs.update(type=path_arg)
        parser.add_argument(flag, **kwargs)


def config_from_args(args: argparse.Namespace):
    """The TrainConfig the flags (and --config file) describe; without --out, runs/NAME (:func:`run_name`)."""
    from_file = TrainConfig.read_mapping(args.config) if args.config else {}
    base = {**TrainConfig().to_dict(), **from_file}
    if args.resume:
        # the run's own config first: --resume alone continues it as it was started
        out = args.out_dir or from_file.get("out_dir")
        if not out:
            raise ConfigError("--resume needs --out RUN, the run folder to continue")
        saved = Path(out) / "config.yaml"
        if saved.is_file():
            base = {**TrainConfig().to_dict(), **TrainConfig.read_mapping(saved), **from_file, "out_dir": str(out)}
    for key in list(base):
        value = getattr(args, key, None)
        if value is not None:
            base[key] = value
    if not base.get("data_dir"):
        raise ConfigError("--data is required: a ChestX-ray14 release folder (or make one with `cral synth`)")
    config = TrainConfig.from_dict(base)
    if args.out_dir is None and "out_dir" not in from_file:
        config = config.replace(out_dir=str(RUNS_DIR / run_name(config)))
    return config


def run(args: argparse.Namespace) -> int:
    # the trainer (and torch) load when the command runs, not when `cral --help` builds the parser
    config = config_from_args(args).validate()  # bad values are refused before torch loads
    if not Path(config.data_dir).expanduser().is_dir():
        raise DataError(
            f"data folder not found: {config.data_dir} (--data): give a ChestX-ray14 release folder, or make one "
            "with `cral synth --out DIR`"
        )
    from ..train import train

    result = train(config, resume=args.resume, progress=not args.no_progress)
    print(f"run folder: {result.run_dir}")
    if result.best_epoch:
        print(f"best validation mean AUC {result.best_val_auc:.4f} at epoch {result.best_epoch} "
              f"(checkpoints/best.pt); evaluate with: cral evaluate --run {result.run_dir}")
    return 0
