"""Write a trained run's model into one file that others can load without the training code.

The file holds the weights, the model's config, the class list, the thresholds `cral evaluate`
chose on the validation split, the preprocessing (sizes, resize rule, normalization) and the
training images' intensity range: plain data only, so torch.load(FILE, weights_only=True) reads
it. Load it with cral_lib.Predictor.from_file(FILE), or `cral predict --model FILE IMAGES`.
No TorchScript or torch.export program is written.

examples:
  cral evaluate --run runs/r50_att1          # first: chooses the thresholds
  cral export --run runs/r50_att1 --out model.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError

HELP = "one weights_only-safe model file (weights, config, classes, thresholds, preprocessing)"
ORDER = 55


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", "--run-dir", dest="run", required=True, help="the run folder written by `cral train`")
    parser.add_argument("--out", required=True, help="the model file to write (e.g. model.pt)")
    parser.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint file (default: best)")


def run(args: argparse.Namespace) -> int:
    # torch loads when the command runs, not when `cral --help` builds the parser
    from .._io import human
    from ..inference import export_model

    out = Path(args.out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder: give a file name such as {out / 'model.pt'}")
    path = export_model(args.run, out, which=args.checkpoint)
    print(f"wrote {path} ({human(path.stat().st_size)}); load it with cral_lib.Predictor.from_file({str(path)!r}) "
          f"or `cral predict --model {path} IMAGES`")
    return 0
